package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"granary/http/auth"
	"granary/testkit"
)

// gatewayCall is one request the fake gateway received.
type gatewayCall struct {
	method, path, auth string
	body               []byte
	status             int
}

// fakeGateway stands in for the registry endpoints: it records every call
// and answers with respond (201/200/204 by default). The real gateway's
// side of the contract is tested where it is built.
type fakeGateway struct {
	*httptest.Server
	mu      sync.Mutex
	calls   []gatewayCall
	respond func(n int, method, path string) int // n counts calls with this method, from 1
}

func newFakeGateway(t *testing.T, respond func(n int, method, path string) int) *fakeGateway {
	g := &fakeGateway{respond: respond}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		g.mu.Lock()
		n := 1
		for _, c := range g.calls {
			if c.method == r.Method {
				n++
			}
		}
		status := 0
		if g.respond != nil {
			status = g.respond(n, r.Method, r.URL.Path)
		}
		if status == 0 {
			status = map[string]int{http.MethodPut: 201, http.MethodPost: 200, http.MethodDelete: 204}[r.Method]
		}
		g.calls = append(g.calls, gatewayCall{r.Method, r.URL.Path, r.Header.Get("Authorization"), body, status})
		g.mu.Unlock()
		if status >= 400 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"title":"fake","detail":"fake refusal %d"}`, status)
			return
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *fakeGateway) snapshot() []gatewayCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

// methods lists the calls' methods and statuses, e.g. "PUT 503".
func (g *fakeGateway) methods() []string {
	var out []string
	for _, c := range g.snapshot() {
		out = append(out, fmt.Sprintf("%s %d", c.method, c.status))
	}
	return out
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type runningExample struct {
	cancel context.CancelFunc
	done   chan error
	stdout *lockedBuffer
}

// startExample runs example-service in-process; the cleanup stops it and
// waits, so no goroutine or log line outlives the test.
func startExample(t *testing.T, environ map[string]string, args ...string) *runningExample {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningExample{cancel: cancel, done: make(chan error, 1), stdout: &lockedBuffer{}}
	go func() { r.done <- exampleService(ctx, args, env(environ), r.stdout, testLogWriter{t}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("example-service did not return after cancel")
		}
	})
	return r
}

// stop cancels and returns the function's result, within a deadline.
func (r *runningExample) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("example-service did not return after cancel")
		return nil
	}
}

type registration struct {
	Host            string            `json:"host"`
	Port            int               `json:"port"`
	Metadata        map[string]string `json:"metadata"`
	HealthCheckPath string            `json:"health_check_path"`
	TTLSeconds      int               `json:"ttl_seconds"`
}

func firstRegistration(t *testing.T, g *fakeGateway) (gatewayCall, registration) {
	t.Helper()
	var put gatewayCall
	testkit.WaitFor(t, 5*time.Second, func() error {
		for _, c := range g.snapshot() {
			if c.method == http.MethodPut && c.status < 300 {
				put = c
				return nil
			}
		}
		return fmt.Errorf("no successful PUT yet: %v", g.methods())
	})
	var reg registration
	if err := json.Unmarshal(put.body, &reg); err != nil {
		t.Fatalf("PUT body %q: %v", put.body, err)
	}
	return put, reg
}

func TestExampleServiceRegistersHeartbeatsAndDeregisters(t *testing.T) {
	// The first PUT is refused (retry with backoff), the first heartbeat
	// says the instance was removed (register again).
	g := newFakeGateway(t, func(n int, method, _ string) int {
		switch {
		case method == http.MethodPut && n == 1:
			return http.StatusServiceUnavailable
		case method == http.MethodPost && n == 1:
			return http.StatusNotFound
		}
		return 0
	})
	r := startExample(t, nil, "-name", "users", "-port", "0", "-gateway", g.URL, "-token", "tok-1",
		"-ttl", "1", "-metadata", "zone=a", "-metadata", "version=2")

	put, reg := firstRegistration(t, g)
	want := registration{Host: "127.0.0.1", Port: reg.Port, Metadata: map[string]string{"zone": "a", "version": "2"}, HealthCheckPath: "/health", TTLSeconds: 1}
	if reg.Port <= 0 || fmt.Sprint(reg) != fmt.Sprint(want) {
		t.Fatalf("PUT body = %+v, want %+v", reg, want)
	}
	instancePath := fmt.Sprintf("/api/v1/registry/users/instances/users-%d", reg.Port)
	if put.path != instancePath || put.auth != "Bearer tok-1" {
		t.Fatalf("PUT %s with %q, want %s with the bearer token", put.path, put.auth, instancePath)
	}

	wantPrefix := []string{"PUT 503", "PUT 201", "POST 404", "PUT 201", "POST 200", "POST 200"}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if got := g.methods(); len(got) < len(wantPrefix) || !slices.Equal(got[:len(wantPrefix)], wantPrefix) {
			return fmt.Errorf("calls %v, want them to start with %v", got, wantPrefix)
		}
		return nil
	})
	for _, c := range g.snapshot() {
		wantPath := instancePath
		if c.method == http.MethodPost {
			wantPath += "/heartbeat"
		}
		if c.path != wantPath || c.auth != "Bearer tok-1" {
			t.Fatalf("%s %s with %q, want %s with the bearer token", c.method, c.path, c.auth, wantPath)
		}
	}
	line := fmt.Sprintf("example-service users/users-%d listening on http://127.0.0.1:%d, registered with %s\n", reg.Port, reg.Port, g.URL)
	if got := r.stdout.String(); got != line {
		t.Fatalf("stdout = %q, want %q", got, line)
	}

	if err := r.stop(t); err != nil {
		t.Fatalf("stop: %v, want nil", err)
	}
	calls := g.snapshot()
	if last := calls[len(calls)-1]; last.method != http.MethodDelete || last.path != instancePath || last.auth != "Bearer tok-1" {
		t.Fatalf("last call %s %s (%q), want DELETE %s with the bearer token", last.method, last.path, last.auth, instancePath)
	}
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", reg.Port)); err == nil {
		t.Fatal("server still answers after stop")
	}
}

func TestExampleServiceRoutes(t *testing.T) {
	g := newFakeGateway(t, nil)
	startExample(t, nil, "-name", "users", "-port", "0", "-id", "u-1", "-gateway", g.URL, "-token", "t")
	_, reg := firstRegistration(t, g)
	base := fmt.Sprintf("http://127.0.0.1:%d", reg.Port)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	do := func(method, path, body string, header map[string]string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		if got := res.Header.Get("X-Instance"); got != "u-1" {
			t.Fatalf("%s %s: X-Instance %q, want u-1", method, path, got)
		}
		var out map[string]any
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		return res.StatusCode, out
	}
	expect := func(what string, status, wantStatus int, got, want map[string]any) {
		t.Helper()
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if status != wantStatus || string(gj) != string(wj) {
			t.Fatalf("%s = %d %s, want %d %s", what, status, gj, wantStatus, wj)
		}
	}

	st, body := do("GET", "/health", "", nil)
	expect("GET /health", st, 200, body, map[string]any{"status": "ok", "instance": "u-1"})
	st, body = do("GET", "/users/7", "", nil)
	expect("GET /users/7", st, 200, body, map[string]any{"id": "7", "name": "Edsger Dijkstra", "instance": "u-1"})
	st, body = do("GET", "/users/42", "", nil)
	expect("GET /users/42", st, 200, body, map[string]any{"id": "42", "name": "User 42", "instance": "u-1"})
	st, body = do("GET", "/users", "", nil)
	if users, _ := body["users"].([]any); st != 200 || len(users) != len(demoUsers) {
		t.Fatalf("GET /users = %d %v, want 200 and %d users", st, body, len(demoUsers))
	}
	st, body = do("POST", "/users", `{"name":"Barbara Liskov","age":86}`, map[string]string{"Content-Type": "application/json"})
	expect("POST /users", st, 201, body, map[string]any{"name": "Barbara Liskov", "age": 86, "instance": "u-1"})
	st, _ = do("POST", "/users", `[1,2]`, nil)
	if st != 400 {
		t.Fatalf("POST /users with an array = %d, want 400", st)
	}
	hdr := map[string]string{
		"X-Granary-Subject": "alice", "X-Granary-Roles": "admin,service", "X-Forwarded-For": "10.0.0.9",
		"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example", "X-Request-ID": "req-1",
	}
	st, body = do("GET", "/whoami", "", hdr)
	echoed := map[string]any{}
	for k, v := range hdr {
		echoed[k] = v
	}
	expect("GET /whoami", st, 200, body, map[string]any{"headers": echoed, "instance": "u-1"})
	st, body = do("GET", "/slow?ms=20", "", nil)
	expect("GET /slow?ms=20", st, 200, body, map[string]any{"slept_ms": 20, "instance": "u-1"})
	st, _ = do("GET", "/slow?ms=soon", "", nil)
	if st != 400 {
		t.Fatalf("GET /slow?ms=soon = %d, want 400", st)
	}

	// /slow gives up with its client instead of holding the goroutine.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/slow?ms=60000", nil)
	start := time.Now()
	if res, err := client.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("GET /slow?ms=60000 answered %d within 100ms", res.StatusCode)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("a cancelled /slow request was not released")
	}
}

func TestExampleServiceMintsServiceToken(t *testing.T) {
	g := newFakeGateway(t, nil)
	startExample(t, map[string]string{"GRANARY_JWT_SECRET": goodSecret, "GRANARY_URL": g.URL}, "-name", "orders", "-port", "0")
	put, _ := firstRegistration(t, g)
	v, err := auth.NewVerifier([]byte(goodSecret))
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(strings.TrimPrefix(put.auth, "Bearer "))
	if err != nil {
		t.Fatalf("Authorization %q: %v", put.auth, err)
	}
	if p.Subject != "svc:orders" || !slices.Equal(p.Roles, []string{"service"}) {
		t.Fatalf("token for %q %v, want svc:orders [service]", p.Subject, p.Roles)
	}
}

func TestExampleServiceRefusesBadFlags(t *testing.T) {
	g := newFakeGateway(t, nil)
	withToken := map[string]string{"GRANARY_TOKEN": "t", "GRANARY_URL": g.URL}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"missing name", withToken, []string{"-port", "0"}, "-name is required"},
		{"bad name", withToken, []string{"-name", "Users!", "-port", "0"}, `-name "Users!" must match`},
		{"missing port", withToken, []string{"-name", "users"}, "-port is required"},
		{"port too big", withToken, []string{"-name", "users", "-port", "70000"}, "-port is required"},
		{"bad id", withToken, []string{"-name", "users", "-port", "0", "-id", "-x"}, `-id "-x" must match`},
		{"ttl zero", withToken, []string{"-name", "users", "-port", "0", "-ttl", "0"}, "-ttl 0 must be 1..300"},
		{"bad health", withToken, []string{"-name", "users", "-port", "0", "-health", "health"}, "must start with /"},
		{"bad gateway", withToken, []string{"-name", "users", "-port", "0", "-gateway", "ftp://x"}, "not an http(s) URL"},
		{"no token", map[string]string{"GRANARY_URL": g.URL}, []string{"-name", "users", "-port", "0"}, "no token"},
		{"short secret", map[string]string{"GRANARY_JWT_SECRET": "short", "GRANARY_URL": g.URL}, []string{"-name", "users", "-port", "0"}, "GRANARY_JWT_SECRET"},
		{"bad metadata", withToken, []string{"-name", "users", "-port", "0", "-metadata", "novalue"}, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := exampleService(context.Background(), tt.args, env(tt.env), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v (stderr %q), want one containing %q", err, stderr.String(), tt.wantErr)
			}
		})
	}
	if calls := g.methods(); len(calls) != 0 {
		t.Fatalf("gateway got %v from refused configurations", calls)
	}
}

func TestExampleServiceDispatchedByRun(t *testing.T) {
	err := run(context.Background(), []string{"example-service", "-port", "0"}, env(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-name is required") {
		t.Fatalf("run example-service without -name = %v, want the -name error", err)
	}
}
