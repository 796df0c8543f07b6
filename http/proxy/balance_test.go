package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLeastConnectionsCountsTheCluster(t *testing.T) {
	arrived := make(chan string, 4)
	release := make(chan struct{})
	handler := func(id string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/users/slow" {
				arrived <- id
				select {
				case <-release:
				case <-time.After(10 * time.Second):
				}
			}
			_, _ = io.WriteString(w, id)
		}
	}
	ts := []Target{upstream(t, "a", handler("a")), upstream(t, "b", handler("b"))}
	rdb, prefix := testRedis(t)
	here := NewRedisCounts(rdb, prefix, "gw-here", 10*time.Millisecond, testLogger(t))
	other := NewRedisCounts(rdb, prefix, "gw-other", 10*time.Millisecond, testLogger(t))
	t.Cleanup(func() { here.Close(); other.Close() })
	h := newHarness(t, Config{Targets: (&fixedTargets{ts: ts}).get, Counts: here}, route(StrategyLeastConnections), Identity{})

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, err := h.client.Get(h.front.URL + "/api/users/slow")
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
		}
	}()
	defer wg.Wait()
	var busy string
	select {
	case busy = <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("slow request never arrived")
	}
	defer close(release)
	idle := map[string]string{"a": "b", "b": "a"}[busy]
	for i := range 5 {
		if _, body := h.do(t, "GET", "/api/users/1", nil, nil); string(body) != idle {
			t.Fatalf("request %d went to %q while %q holds a request", i, body, busy)
		}
	}

	// Another gateway now has 3 in flight on the idle one: it is the busier.
	other.Add(idle, 3)
	waitFor(t, 5*time.Second, func() error {
		if n := here.Total(idle); n != 3 {
			return fmt.Errorf("Total(%s) = %d, want 3", idle, n)
		}
		return nil
	})
	for i := range 5 {
		if _, body := h.do(t, "GET", "/api/users/1", nil, nil); string(body) != busy {
			t.Fatalf("request %d went to %q, which another gateway loads more", i, body)
		}
	}
	other.Add(idle, -3)
}

func TestBreakerOpensSkipsAndRecovers(t *testing.T) {
	var healthy atomic.Bool
	bad := upstream(t, "a-bad", func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = io.WriteString(w, "a-bad")
	})
	good := upstream(t, "b-good", servedBy("b-good"))
	cfg := Config{Targets: (&fixedTargets{ts: []Target{bad, good}}).get, BreakerOpenFor: 50 * time.Millisecond}
	h := newHarness(t, cfg, route(StrategyRoundRobin), Identity{})

	// Round robin alternates: 10 requests give a-bad its 5 failures, relayed as they are.
	for range 10 {
		res, body := h.do(t, "GET", "/api/users/1", nil, nil)
		if string(body) == "a-bad" && res.StatusCode != 500 {
			t.Fatalf("a-bad's 500 relayed as %d", res.StatusCode)
		}
	}
	if st := statusOf(h.p, "a-bad"); st.Breaker != "open" {
		t.Fatalf("a-bad after 5 failures: %+v", st)
	}
	// Only a short window is open; the requests must all avoid a-bad while it is.
	for range 4 {
		if _, body := h.do(t, "GET", "/api/users/1", nil, nil); string(body) != "b-good" && statusOf(h.p, "a-bad").Breaker == "open" {
			t.Fatalf("open instance got a request")
		}
	}

	healthy.Store(true)
	waitFor(t, 5*time.Second, func() error {
		h.do(t, "GET", "/api/users/1", nil, nil)
		if st := statusOf(h.p, "a-bad"); st.Breaker != "closed" {
			return fmt.Errorf("a-bad breaker %s", st.Breaker)
		}
		return nil
	})
}

func TestBreakerOpenOnlyInstanceIs503(t *testing.T) {
	var hits atomic.Int32
	bad := upstream(t, "a-bad", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	})
	cfg := Config{Targets: (&fixedTargets{ts: []Target{bad}}).get, BreakerOpenFor: time.Hour}
	h := newHarness(t, cfg, route(StrategyRoundRobin), Identity{})
	for range 5 {
		if res, _ := h.do(t, "GET", "/api/users/1", nil, nil); res.StatusCode != 500 {
			t.Fatalf("status %d, want the upstream's 500", res.StatusCode)
		}
	}
	res, body := h.do(t, "GET", "/api/users/1", nil, nil)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "5" || problemCode(t, body) != "service_unavailable" {
		t.Fatalf("got %d Retry-After %q %s", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	if hits.Load() != 5 {
		t.Fatalf("upstream hit %d times, want 5", hits.Load())
	}
	h.p.Forget("a-bad")
	if len(h.p.Instances()) != 0 {
		t.Fatalf("Forget kept %v", h.p.Instances())
	}
}

func statusOf(p *Proxy, id string) InstanceStatus {
	for _, st := range p.Instances() {
		if st.ID == id {
			return st
		}
	}
	return InstanceStatus{}
}

func TestRedisCountsShareAndExpire(t *testing.T) {
	rdb, prefix := testRedis(t)
	g1 := NewRedisCounts(rdb, prefix, "g1", 10*time.Millisecond, testLogger(t))
	g2 := NewRedisCounts(rdb, prefix, "g2", 10*time.Millisecond, testLogger(t))
	defer g2.Close()

	g1.Add("x", 2)
	g2.Add("x", 1)
	waitFor(t, 5*time.Second, func() error {
		if a, b := g1.Total("x"), g2.Total("x"); a != 3 || b != 3 {
			return fmt.Errorf("totals %d %d, want 3 3", a, b)
		}
		return nil
	})
	g1.Add("x", -2)
	g2.Add("x", -1)
	waitFor(t, 5*time.Second, func() error {
		if a, b := g1.Total("x"), g2.Total("x"); a != 0 || b != 0 {
			return fmt.Errorf("totals %d %d, want 0 0", a, b)
		}
		if s := g2.Served("x"); s != 3 {
			return fmt.Errorf("served %d, want 3", s)
		}
		return nil
	})

	// A gateway that stopped publishing long ago is ignored.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := rdb.HSet(ctx, prefix+":{registry}:inflight", "dead", "1000;x=7").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		if err := rdb.HGet(ctx, prefix+":{registry}:inflight", "dead").Err(); err == nil {
			return errors.New("stale field still there")
		}
		return nil
	})
	if n := g2.Total("x"); n != 0 {
		t.Fatalf("stale counts seen: %d", n)
	}

	// Close removes the gateway's field, so the others stop counting it at once.
	g1.Add("y", 4)
	waitFor(t, 5*time.Second, func() error {
		if n := g2.Total("y"); n != 4 {
			return fmt.Errorf("Total(y) = %d, want 4", n)
		}
		return nil
	})
	g1.Close()
	if err := rdb.HGet(ctx, prefix+":{registry}:inflight", "g1").Err(); err == nil {
		t.Fatal("g1's field survived Close")
	}
}

func BenchmarkProxiedGET(b *testing.B) {
	up := upstream(b, "u1", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	direct := fmt.Sprintf("http://%s:%d/users/1", up.Host, up.Port)
	h := newHarness(b, Config{Targets: (&fixedTargets{ts: []Target{up}}).get}, route(StrategyRoundRobin), Identity{})
	get := func(b *testing.B, url string) {
		for b.Loop() {
			res, err := h.client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.StatusCode != 200 {
				b.Fatalf("status %d", res.StatusCode)
			}
		}
	}
	b.Run("direct", func(b *testing.B) { get(b, direct) })
	b.Run("proxied", func(b *testing.B) { get(b, h.front.URL+"/api/users/1") })
}
