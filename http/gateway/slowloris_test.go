package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"granary/http/gateway"
)

// serveReal serves g on a loopback listener through its own http.Server
// (the one carrying the timeouts), until the test ends.
func serveReal(t *testing.T, g *gateway.Gateway) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return ln.Addr().String()
}

// TestSlowlorisCutOff: a client that sends its headers a trickle at a time
// is disconnected once ReadHeaderTimeout has passed since it started,
// however steadily it trickles, while a normal client is served.
func TestSlowlorisCutOff(t *testing.T) {
	const headerTimeout = 300 * time.Millisecond
	h := newHarness(t)
	cfg := gateway.DefaultConfig()
	cfg.ReadHeaderTimeout = headerTimeout
	addr := serveReal(t, h.newGateway(h.cluster.Member(0), cfg, nil))

	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("normal client: %d", resp.StatusCode)
	}

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: granary\r\n"); err != nil {
		t.Fatal(err)
	}
	// Trickle one header line every tenth of the timeout: each write
	// arrives well within any per-read deadline, so only a deadline on the
	// headers as a whole stops this client.
	closed := make(chan time.Duration, 1)
	go func() {
		_ = conn.SetReadDeadline(time.Now().Add(10 * headerTimeout))
		_, err := bufio.NewReader(conn).ReadByte()
		if err == nil {
			err = errors.New("the server answered before the headers were complete")
		}
		if errors.Is(err, io.EOF) || isConnReset(err) {
			closed <- time.Since(start)
			return
		}
		closed <- -1
		t.Errorf("waiting for the server to hang up: %v", err)
	}()
	tick := time.NewTicker(headerTimeout / 10)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case took := <-closed:
			if took < 0 {
				return
			}
			if took < headerTimeout || took > 5*headerTimeout {
				t.Fatalf("cut off after %v, want about %v", took, headerTimeout)
			}
			return
		case <-tick.C:
			// Writes may fail once the server hung up; the reader reports.
			_, _ = fmt.Fprintf(conn, "X-Slow-%d: a\r\n", i)
		}
	}
}

func isConnReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
