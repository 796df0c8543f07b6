package gateway_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"granary/http/auth"
	"granary/http/gateway"
)

func rateLimited(perMinute int, trusted ...string) func(*gateway.Config) {
	return func(c *gateway.Config) {
		c.RateLimit = perMinute
		for _, p := range trusted {
			c.TrustedProxies = append(c.TrustedProxies, netip.MustParsePrefix(p))
		}
	}
}

func limitedConfig(perMinute int, trusted ...string) gateway.Config {
	c := gateway.DefaultConfig()
	rateLimited(perMinute, trusted...)(&c)
	return c
}

// TestRateLimitAcrossGateways: two gateways sharing Redis enforce one
// budget per token subject, and say how much is left.
func TestRateLimitAcrossGateways(t *testing.T) {
	const limit = 5
	a := newHarness(t, withGatewayConfig(rateLimited(limit)))
	b := a.sibling(limitedConfig(limit))
	alice := token(t, "alice")
	for i := range limit {
		gw := []*harness{a, b}[i%2]
		r := gw.do("GET", "/api/v1/counters/rl-shared", alice, "")
		if r.status != http.StatusOK {
			t.Fatalf("request %d: %s", i+1, r)
		}
		checkRateHeaders(t, r, limit, limit-1-i)
	}
	for _, gw := range []*harness{a, b} {
		r := gw.do("GET", "/api/v1/counters/rl-shared", alice, "")
		r.problem(t, http.StatusTooManyRequests, "rate_limited")
		retry, err := strconv.Atoi(r.header.Get("Retry-After"))
		// 5 a minute refill one every 12 s.
		if err != nil || retry < 1 || retry > 60/limit {
			t.Fatalf("Retry-After %q, want 1..%d", r.header.Get("Retry-After"), 60/limit)
		}
		checkRateHeaders(t, r, limit, 0)
	}
	// The budget is the subject's, not the connection's: bob still has his.
	if r := b.do("GET", "/health", token(t, "bob"), ""); r.status != http.StatusOK {
		t.Fatalf("bob: %s", r)
	}
}

// TestRateLimitAcrossMembers: the same with each gateway in front of its
// own member, as in a real cluster.
func TestRateLimitAcrossMembers(t *testing.T) {
	const limit = 3
	a := newHarness(t, withGatewayConfig(rateLimited(limit)))
	a.cluster.AddMember() // skips under -race: see testkit.ErrSharedProcessRace
	a.cluster.WaitForMembers(2, 10*time.Second)
	b := a.siblingOn(a.cluster.Member(1), limitedConfig(limit))
	alice := token(t, "alice")
	for i := range limit {
		if r := []*harness{a, b}[i%2].do("GET", "/health", alice, ""); r.status != http.StatusOK {
			t.Fatalf("request %d: %s", i+1, r)
		}
	}
	b.do("GET", "/health", alice, "").problem(t, http.StatusTooManyRequests, "rate_limited")
	a.do("GET", "/health", alice, "").problem(t, http.StatusTooManyRequests, "rate_limited")
	// Hand member 1 over before the cleanup kills member 0 under it:
	// otherwise its remoting redials the dead member, and Proto.Actor
	// never closes a failed dial's gRPC connection (a leak goleak sees).
	a.cluster.Leave(1)
}

func checkRateHeaders(t *testing.T, r *response, limit, remaining int) {
	t.Helper()
	if got := r.header.Get("RateLimit-Limit"); got != strconv.Itoa(limit) {
		t.Fatalf("RateLimit-Limit %q, want %d", got, limit)
	}
	if got := r.header.Get("RateLimit-Remaining"); got != strconv.Itoa(remaining) {
		t.Fatalf("RateLimit-Remaining %q, want %d", got, remaining)
	}
	// Seconds until the whole budget is back: at most a minute.
	if reset, err := strconv.Atoi(r.header.Get("RateLimit-Reset")); err != nil || reset < 1 || reset > 60 {
		t.Fatalf("RateLimit-Reset %q, want 1..60", r.header.Get("RateLimit-Reset"))
	}
}

// TestRateLimitForwardedFor: X-Forwarded-For names the client only when
// the peer sending it is a trusted proxy. The test's peer is loopback.
func TestRateLimitForwardedFor(t *testing.T) {
	const limit = 2
	direct := newHarness(t, withGatewayConfig(rateLimited(limit)))
	proxied := direct.sibling(limitedConfig(limit, "127.0.0.0/8", "::1/128"))

	// From an untrusted peer every spoofed address is the peer itself.
	for i := range limit {
		if r := direct.do("GET", "/health", "", "", "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1)); r.status != http.StatusOK {
			t.Fatalf("direct %d: %s", i+1, r)
		}
	}
	direct.do("GET", "/health", "", "", "X-Forwarded-For", "198.51.100.99").problem(t, http.StatusTooManyRequests, "rate_limited")

	// Behind a trusted proxy each client has its own budget, whatever a
	// client put in front of the header itself.
	for i := range limit {
		if r := proxied.do("GET", "/health", "", "", "X-Forwarded-For", "203.0.113.1"); r.status != http.StatusOK {
			t.Fatalf("proxied client 1, request %d: %s", i+1, r)
		}
	}
	proxied.do("GET", "/health", "", "", "X-Forwarded-For", "10.9.9.9, 203.0.113.1").problem(t, http.StatusTooManyRequests, "rate_limited")
	if r := proxied.do("GET", "/health", "", "", "X-Forwarded-For", "203.0.113.2"); r.status != http.StatusOK {
		t.Fatalf("proxied client 2: %s", r)
	}
}

// TestRateLimitPublicAndInvalidTokens: public paths and unknown routes are
// limited by address, and so is a request whose token does not verify: a
// forged subject buys no fresh budget.
func TestRateLimitPublicAndInvalidTokens(t *testing.T) {
	const limit = 3
	h := newHarness(t, withGatewayConfig(rateLimited(limit)))
	h.do("GET", "/health", "", "")
	h.do("GET", "/no-such-route", "", "").problem(t, http.StatusNotFound, "route_not_found")
	forged, err := auth.Issue([]byte("not-the-gateway-secret-but-long-enough!!"), "mallory-1", nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h.do("GET", "/api/v1/counters/x", forged, "").problem(t, http.StatusUnauthorized, "unauthorized")
	h.do("GET", "/metrics", "", "").problem(t, http.StatusTooManyRequests, "rate_limited")
	// A valid token is a budget of its own.
	if r := h.do("GET", "/metrics", token(t, "carol"), ""); r.status != http.StatusOK {
		t.Fatalf("valid token: %s", r)
	}
}
