package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"granary/testkit"
)

func pprofGet(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// The listener serves pprof, and stop ends it, also with a CPU profile
// still running (TestMain's goleak check then finds nothing left).
func TestPprofServesAndStops(t *testing.T) {
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	stop, addr, err := startPprof("127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	base := "http://" + addr.String() + "/debug/pprof/"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, path := range []string{"", "cmdline", "heap?debug=1", "goroutine?debug=1"} {
		if code, _, err := pprofGet(ctx, base+path); err != nil || code != http.StatusOK {
			t.Fatalf("GET %s: %d, %v", path, code, err)
		}
	}

	profile := make(chan error, 1)
	go func() {
		code, body, err := pprofGet(ctx, base+"profile?seconds=60")
		if err == nil {
			err = fmt.Errorf("profile answered %d %q before it was cut", code, body)
		}
		profile <- err
	}()
	testkit.WaitFor(t, 10*time.Second, func() error {
		_, stacks, err := pprofGet(ctx, base+"goroutine?debug=2")
		if err != nil {
			return err
		}
		if !strings.Contains(stacks, "net/http/pprof.Profile") {
			return errors.New("the profile request is not running yet")
		}
		return nil
	})

	began := time.Now()
	stop()
	stopped = true
	if took := time.Since(began); took > pprofStopTimeout+2*time.Second {
		t.Fatalf("stop took %v with a profile running", took)
	}
	select {
	case err := <-profile:
		t.Logf("profile in flight at stop: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the profile request was not cut by stop")
	}
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Fatal("pprof still accepts connections after stop")
	}
}

func TestPprofRefusesWhatItCannotBind(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, _, err := startPprof(ln.Addr().String(), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "GRANARY_PPROF_ADDR") {
		t.Fatalf("listening on a taken port: %v", err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
