package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"granary/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// upstream starts an instance on 127.0.0.1 and returns it as a Target.
func upstream(t testing.TB, id string, h http.HandlerFunc) Target {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return targetOf(t, id, s.Listener.Addr().String())
}

func targetOf(t testing.TB, id, addr string) Target {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return Target{ID: id, Host: host, Port: n}
}

// closedPort is an address nothing listens on: dialing it is refused.
func closedPort(t testing.TB, id string) Target {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return targetOf(t, id, addr)
}

// fixedTargets is a registry that never changes.
type fixedTargets struct {
	mu sync.Mutex
	ts []Target
}

func (f *fixedTargets) get(string) []Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ts
}

type harness struct {
	p      *Proxy
	front  *httptest.Server
	client *http.Client
}

// newHarness puts p behind a server whose handler serves every request on route.
func newHarness(t testing.TB, cfg Config, route Route, id Identity) *harness {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := route
		if name := r.Header.Get("Test-Route"); name != "" {
			rt.Name = name
		}
		p.Serve(w, r, rt, id)
	}))
	tr := &http.Transport{}
	h := &harness{p: p, front: front, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	t.Cleanup(func() {
		front.Close()
		tr.CloseIdleConnections()
		p.Close()
	})
	return h
}

func (h *harness) do(t testing.TB, method, path string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, h.front.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

func problemCode(t testing.TB, b []byte) string {
	t.Helper()
	var p struct{ Code string }
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("problem body %q: %v", b, err)
	}
	return p.Code
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t testing.TB, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", d, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// testRedis is real Redis when GRANARY_REDIS_URL is set, else miniredis; the
// key prefix is unique to the test.
func testRedis(t testing.TB) (goredis.UniversalClient, string) {
	t.Helper()
	prefix := fmt.Sprintf("granary-test-%s-%d", t.Name(), time.Now().UnixNano())
	var rdb *goredis.Client
	if url := os.Getenv("GRANARY_REDIS_URL"); url != "" {
		opt, err := goredis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		rdb = goredis.NewClient(opt)
	} else {
		mr := miniredis.RunT(t)
		rdb = goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = rdb.Del(ctx, prefix+":{registry}:inflight", prefix+":{registry}:served").Err()
		_ = rdb.Close()
	})
	return rdb, prefix
}
