package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func route(strategy string) Route {
	return Route{Name: "users", PathPrefix: "/api/users", Service: "users", RewritePrefix: "/users",
		Strategy: strategy, Timeout: 5 * time.Second}
}

func servedBy(id string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, id) }
}

func TestRewritePath(t *testing.T) {
	for _, c := range []struct{ path, prefix, rewrite, want string }{
		{"/api/users/123", "/api/users", "/users", "/users/123"},
		{"/api/users", "/api/users", "/users", "/users"},
		{"/api/users/123", "/api/users", "", "/123"},
		{"/api/users", "/api/users", "", "/"},
		{"/api/users/123", "/api/users", "/v2/", "/v2/123"},
		{"/api/users/123", "/api/users/", "/users/", "/users/123"},
	} {
		if got := rewritePath(c.path, c.prefix, c.rewrite); got != c.want {
			t.Errorf("rewritePath(%q, %q, %q) = %q, want %q", c.path, c.prefix, c.rewrite, got, c.want)
		}
	}
}

func TestRewriteKeepsQuery(t *testing.T) {
	up := upstream(t, "u1", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.URL.RequestURI()) })
	h := newHarness(t, Config{Targets: (&fixedTargets{ts: []Target{up}}).get}, route(StrategyRoundRobin), Identity{})
	res, body := h.do(t, "GET", "/api/users/123?x=1&y=a%20b", nil, nil)
	if res.StatusCode != 200 || string(body) != "/users/123?x=1&y=a%20b" {
		t.Fatalf("got %d %q, want 200 /users/123?x=1&y=a%%20b", res.StatusCode, body)
	}
}

func TestForwardedAndIdentityHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	up := upstream(t, "u1", func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Clone() })
	targets := (&fixedTargets{ts: []Target{up}}).get
	cfg := Config{
		Targets:   targets,
		RequestID: func(*http.Request) string { return "req-42" },
		ClientIP:  func(*http.Request) string { return "203.0.113.7" },
	}
	client := map[string]string{"X-Granary-Subject": "mallory", "x-granary-roles": "admin", "X-Granary-Other": "1", "X-Forwarded-For": "6.6.6.6"}

	h := newHarness(t, cfg, route(StrategyRoundRobin), Identity{Subject: "alice", Roles: []string{"admin", "user"}})
	if res, _ := h.do(t, "GET", "/api/users/1", nil, client); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	hd := <-got
	want := map[string]string{
		"X-Request-Id": "req-42", "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  strings.TrimPrefix(h.front.URL, "http://"),
		"X-Granary-Subject": "alice", "X-Granary-Roles": "admin,user", "X-Granary-Other": "",
	}
	for k, v := range want {
		if hd.Get(k) != v || (v == "" && len(hd.Values(k)) != 0) {
			t.Errorf("required route: %s = %q, want %q", k, hd.Values(k), v)
		}
	}

	pub := route(StrategyRoundRobin)
	pub.Public = true
	h = newHarness(t, cfg, pub, Identity{})
	if res, _ := h.do(t, "GET", "/api/users/1", nil, client); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	hd = <-got
	for k := range hd {
		if strings.HasPrefix(k, "X-Granary-") {
			t.Errorf("public route: upstream got %s: %q", k, hd.Values(k))
		}
	}
	if hd.Get("X-Forwarded-For") != "203.0.113.7" {
		t.Errorf("public route: X-Forwarded-For = %q", hd.Get("X-Forwarded-For"))
	}
}

func TestRelaysStatusHeadersBody(t *testing.T) {
	up := upstream(t, "u1", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Custom", "yes")
		w.Header().Set("X-Request-ID", "upstream-made-this-up")
		w.Header().Set("X-Served-By", "someone-else")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"echo":`+string(b)+`}`)
	})
	cfg := Config{Targets: (&fixedTargets{ts: []Target{up}}).get, RequestID: func(*http.Request) string { return "req-1" }}
	h := newHarness(t, cfg, route(StrategyRoundRobin), Identity{})
	res, body := h.do(t, "POST", "/api/users", strings.NewReader(`{"name":"ann"}`), nil)
	if res.StatusCode != 201 || string(body) != `{"echo":{"name":"ann"}}` {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "X-Custom": "yes", "X-Request-Id": "req-1", "X-Served-By": "u1"} {
		if vs := res.Header.Values(k); len(vs) != 1 || vs[0] != v {
			t.Errorf("%s = %q, want [%q]", k, vs, v)
		}
	}
}

func TestStreamsResponse(t *testing.T) {
	release := make(chan struct{})
	up := upstream(t, "u1", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		_, _ = io.WriteString(w, "second\n")
	})
	h := newHarness(t, Config{Targets: (&fixedTargets{ts: []Target{up}}).get}, route(StrategyRoundRobin), Identity{})
	res, err := h.client.Get(h.front.URL + "/api/users/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk %q, %v", line, err)
	}
	close(release) // only now may the upstream finish
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

func TestRoundRobinExactlyEven(t *testing.T) {
	ts := []Target{upstream(t, "a", servedBy("a")), upstream(t, "b", servedBy("b")), upstream(t, "c", servedBy("c"))}
	h := newHarness(t, Config{Targets: (&fixedTargets{ts: ts}).get}, route(StrategyRoundRobin), Identity{})
	hits := map[string]int{}
	for range 30 {
		res, body := h.do(t, "GET", "/api/users/1", nil, nil)
		if res.Header.Get("X-Served-By") != string(body) {
			t.Fatalf("X-Served-By %q for body %q", res.Header.Get("X-Served-By"), body)
		}
		hits[string(body)]++
	}
	if hits["a"] != 10 || hits["b"] != 10 || hits["c"] != 10 {
		t.Fatalf("hits %v, want 10 each", hits)
	}
	for _, st := range h.p.Instances() {
		if st.Served != 10 || st.InFlight != 0 || st.Breaker != "closed" {
			t.Errorf("status %+v", st)
		}
	}
}

func TestRandomReachesEveryTarget(t *testing.T) {
	ts := []Target{upstream(t, "a", servedBy("a")), upstream(t, "b", servedBy("b")), upstream(t, "c", servedBy("c"))}
	h := newHarness(t, Config{Targets: (&fixedTargets{ts: ts}).get}, route(StrategyRandom), Identity{})
	hits := map[string]int{}
	for range 150 {
		_, body := h.do(t, "GET", "/api/users/1", nil, nil)
		hits[string(body)]++
	}
	// Each has 50 expected; below 10 has probability ~1e-12.
	for _, id := range []string{"a", "b", "c"} {
		if hits[id] < 10 {
			t.Fatalf("hits %v: %s nearly never picked", hits, id)
		}
	}
}

func TestNoTargetsIs503(t *testing.T) {
	h := newHarness(t, Config{Targets: (&fixedTargets{}).get}, route(StrategyRoundRobin), Identity{})
	res, body := h.do(t, "GET", "/api/users/1", nil, nil)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "1" || problemCode(t, body) != "service_unavailable" {
		t.Fatalf("got %d Retry-After %q %s", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
}

func TestRefusedDialRetriedOnAnother(t *testing.T) {
	var bodies atomic.Int32
	good := upstream(t, "b-good", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == "POST" && string(b) == "payload" {
			bodies.Add(1)
		}
		_, _ = io.WriteString(w, "b-good")
	})
	ts := []Target{closedPort(t, "a-closed"), good}
	h := newHarness(t, Config{Targets: (&fixedTargets{ts: ts}).get}, route(StrategyRoundRobin), Identity{})
	// Round robin starts at a-closed, so the first request of each pair is refused first.
	for i := range 4 {
		res, body := h.do(t, "POST", "/api/users", strings.NewReader("payload"), nil)
		if res.StatusCode != 200 || string(body) != "b-good" {
			t.Fatalf("request %d: %d %q", i, res.StatusCode, body)
		}
	}
	if bodies.Load() != 4 {
		t.Fatalf("upstream got the body %d times, want 4", bodies.Load())
	}
}

func TestAllRefusedIs503(t *testing.T) {
	ts := []Target{closedPort(t, "a"), closedPort(t, "b"), closedPort(t, "c"), closedPort(t, "d")}
	h := newHarness(t, Config{Targets: (&fixedTargets{ts: ts}).get}, route(StrategyRoundRobin), Identity{})
	res, body := h.do(t, "GET", "/api/users/1", nil, nil)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "1" || problemCode(t, body) != "service_unavailable" {
		t.Fatalf("got %d Retry-After %q %s", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
}

func TestAllowedRefusesOtherAddresses(t *testing.T) {
	var hits atomic.Int32
	up := upstream(t, "u1", func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	cfg := Config{Targets: (&fixedTargets{ts: []Target{up}}).get, Allowed: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	h := newHarness(t, cfg, route(StrategyRoundRobin), Identity{})
	res, body := h.do(t, "GET", "/api/users/1", nil, nil)
	if res.StatusCode != 503 || problemCode(t, body) != "service_unavailable" || hits.Load() != 0 {
		t.Fatalf("got %d %s, upstream hits %d", res.StatusCode, body, hits.Load())
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := upstream(t, "a-slow", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // so that the server notices the proxy hanging up
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	var fastHits atomic.Int32
	fast := upstream(t, "b-fast", func(w http.ResponseWriter, r *http.Request) {
		fastHits.Add(1)
		_, _ = io.WriteString(w, "b-fast")
	})
	rt := route(StrategyRoundRobin)
	rt.Timeout = 100 * time.Millisecond
	h := newHarness(t, Config{Targets: (&fixedTargets{ts: []Target{slow, fast}}).get}, rt, Identity{})

	// Each fresh route name starts its rotation at a-slow.
	res, body := h.do(t, "GET", "/api/users/1", nil, map[string]string{"Test-Route": "get"})
	if res.StatusCode != 200 || string(body) != "b-fast" || fastHits.Load() != 1 {
		t.Fatalf("GET: %d %q, fast hits %d; want retried on b-fast", res.StatusCode, body, fastHits.Load())
	}
	res, body = h.do(t, "POST", "/api/users", strings.NewReader("x"), map[string]string{"Test-Route": "post"})
	if res.StatusCode != 504 || problemCode(t, body) != "timeout" {
		t.Fatalf("POST: %d %s, want 504 timeout", res.StatusCode, body)
	}
	if fastHits.Load() != 1 {
		t.Fatalf("POST was retried: fast hits %d", fastHits.Load())
	}

	h = newHarness(t, Config{Targets: (&fixedTargets{ts: []Target{slow}}).get}, rt, Identity{})
	res, body = h.do(t, "GET", "/api/users/1", nil, nil)
	if res.StatusCode != 504 || problemCode(t, body) != "timeout" {
		t.Fatalf("GET to the only slow instance: %d %s, want 504", res.StatusCode, body)
	}
}
