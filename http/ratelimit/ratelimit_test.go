package ratelimit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"granary/http/problem"
	"granary/http/ratelimit"
	"granary/internal/leakcheck"
	"granary/internal/testnet"
	"granary/testkit"
)

func TestMain(m *testing.M) { leakcheck.Main(m, testkit.LeakOptions()...) }

func TestClientAddr(t *testing.T) {
	trusted, err := ratelimit.ParseTrustedProxies([]string{"10.0.0.0/8", "::1", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer, no header", "203.0.113.9:5000", nil, "203.0.113.9"},
		{"untrusted peer lies", "203.0.113.9:5000", []string{"1.2.3.4"}, "203.0.113.9"},
		{"trusted proxy", "10.1.1.1:80", []string{"198.51.100.7"}, "198.51.100.7"},
		{"client prepends a lie", "10.1.1.1:80", []string{"1.2.3.4, 198.51.100.7"}, "198.51.100.7"},
		{"chain of trusted proxies", "10.1.1.1:80", []string{"198.51.100.7, 10.2.2.2", "10.3.3.3"}, "198.51.100.7"},
		{"all hops trusted", "10.1.1.1:80", []string{"10.2.2.2"}, "10.2.2.2"},
		{"garbage stops the walk", "10.1.1.1:80", []string{"198.51.100.7, bogus"}, "10.1.1.1"},
		{"hop with port", "10.1.1.1:80", []string{"198.51.100.7:4711"}, "198.51.100.7"},
		{"ipv6 hop with port", "10.1.1.1:80", []string{"[2001:db8::1]:4711"}, "2001:db8::1"},
		{"trusted ipv6 peer", "[::1]:80", []string{"2001:db8::2"}, "2001:db8::2"},
		{"mapped ipv4 peer", "[::ffff:10.1.1.1]:80", []string{"198.51.100.7"}, "198.51.100.7"},
		{"empty header", "10.1.1.1:80", []string{""}, "10.1.1.1"},
		{"peer without port", "203.0.113.9", nil, "203.0.113.9"},
		{"unparsable peer", "@pipe", []string{"1.2.3.4"}, "invalid IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ratelimit.ClientAddr(r, trusted).String(); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			// Nobody trusted: the header never matters.
			if got, want := ratelimit.ClientAddr(r, nil).String(), tc.want; len(tc.xff) > 0 && tc.peer == "10.1.1.1:80" && got != "10.1.1.1" {
				t.Fatalf("without trusted proxies got %s (trusted answer %s), want the peer", got, want)
			}
		})
	}
}

func TestAddressKey(t *testing.T) {
	a := ratelimit.AddressKey(netip.MustParseAddr("2001:db8:1:2:aaaa::1"))
	b := ratelimit.AddressKey(netip.MustParseAddr("2001:db8:1:2:bbbb::9"))
	c := ratelimit.AddressKey(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Fatalf("IPv6 keys %q %q %q: want one per /64", a, b, c)
	}
	if ratelimit.AddressKey(netip.MustParseAddr("192.0.2.1")) == ratelimit.AddressKey(netip.MustParseAddr("192.0.2.2")) {
		t.Fatal("IPv4 addresses share a key")
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := ratelimit.ParseTrustedProxies([]string{"10.0.0.0/8", " 192.168.1.7 ", "2001:db8::/32", "::ffff:172.16.0.0/108", "10.1.2.3/8"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32", "172.16.0.0/12", "10.0.0.0/8"}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0", "", "fe80::1%eth0", "1.2.3.4/x"} {
		_, err := ratelimit.ParseTrustedProxies([]string{bad})
		var pe *ratelimit.ProxyError
		if !errors.As(err, &pe) || pe.Entry != strings.TrimSpace(bad) {
			t.Errorf("%q: %v, want a ProxyError naming it", bad, err)
		}
	}
}

// server limits GET / by the X-Client header.
type server struct {
	e   *echo.Echo
	reg *prometheus.Registry
}

func newServer(t *testing.T, rdb goredis.UniversalClient, prefix string, perMinute int) *server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	l, err := ratelimit.New(rdb, ratelimit.Config{PerMinute: perMinute, KeyPrefix: prefix, Timeout: 200 * time.Millisecond}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.HTTPErrorHandler = problem.Handler(log)
	e.Use(l.Middleware(func(c echo.Context) ratelimit.Key {
		return ratelimit.Key{By: "subject", ID: c.Request().Header.Get("X-Client")}
	}))
	e.GET("/", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	return &server{e: e, reg: reg}
}

func (s *server) get(client string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Client", client)
	rec := httptest.NewRecorder()
	s.e.ServeHTTP(rec, r)
	return rec
}

func (s *server) counter(name string) float64 {
	mfs, _ := s.reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func testRedis(t *testing.T) (*goredis.Client, string, *miniredis.Miniredis) {
	t.Helper()
	var rdb *goredis.Client
	var mr *miniredis.Miniredis
	if url := os.Getenv(testkit.RedisURLEnv); url != "" {
		opt, err := goredis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		rdb = goredis.NewClient(opt)
	} else {
		mr = miniredis.RunT(t)
		rdb = goredis.NewClient(&goredis.Options{Addr: mr.Addr(), MaxRetries: -1})
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "rltest-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// redis_rate puts its own "rate:" before our prefix.
		iter := rdb.Scan(ctx, 0, "rate:"+prefix+":*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		_ = rdb.Close()
	})
	return rdb, prefix, mr
}

func TestLimit(t *testing.T) {
	rdb, prefix, _ := testRedis(t)
	// Two limiters on one Redis are one limit: gateways share budgets.
	a, b := newServer(t, rdb, prefix, 5), newServer(t, rdb, prefix, 5)
	for i := range 5 {
		s := []*server{a, b}[i%2]
		rec := s.get("alice")
		if rec.Code != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, rec.Code, rec.Body)
		}
		h := rec.Header()
		if h.Get(ratelimit.HeaderLimit) != "5" || h.Get(ratelimit.HeaderRemaining) != strconv.Itoa(4-i) {
			t.Fatalf("request %d: limit %q remaining %q", i+1, h.Get(ratelimit.HeaderLimit), h.Get(ratelimit.HeaderRemaining))
		}
		// GCRA refills one request every 12 s: the budget is full again
		// 12 s per spent request from now.
		if reset, _ := strconv.Atoi(h.Get(ratelimit.HeaderReset)); reset < 1 || reset > 12*(i+1) {
			t.Fatalf("request %d: reset %q, want 1..%d", i+1, h.Get(ratelimit.HeaderReset), 12*(i+1))
		}
	}
	for _, s := range []*server{a, b} {
		rec := s.get("alice")
		if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), `"code":"rate_limited"`) ||
			rec.Header().Get("Content-Type") != problem.ContentType {
			t.Fatalf("over the limit: %d %s", rec.Code, rec.Body)
		}
		retry, err := strconv.Atoi(rec.Header().Get("Retry-After"))
		if err != nil || retry < 1 || retry > 12 {
			t.Fatalf("Retry-After %q, want 1..12 s (one request refills in 12 s)", rec.Header().Get("Retry-After"))
		}
		if rec.Header().Get(ratelimit.HeaderRemaining) != "0" {
			t.Fatalf("remaining %q on a 429", rec.Header().Get(ratelimit.HeaderRemaining))
		}
	}
	if got := a.counter("granary_ratelimit_rejected_total") + b.counter("granary_ratelimit_rejected_total"); got != 2 {
		t.Fatalf("rejections counted %v, want 2", got)
	}
	// Another client has its own budget.
	if rec := a.get("bob"); rec.Code != http.StatusOK {
		t.Fatalf("bob: %d", rec.Code)
	}
}

// With Redis gone, requests go through (fail open) and are counted.
func TestFailOpen(t *testing.T) {
	if os.Getenv(testkit.RedisURLEnv) != "" {
		t.Log("using an embedded Redis: this test stops it")
	}
	mr := miniredis.RunT(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	s := newServer(t, rdb, "failopen", 1)
	if rec := s.get("alice"); rec.Code != http.StatusOK {
		t.Fatalf("first: %d", rec.Code)
	}
	if rec := s.get("alice"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("second: %d", rec.Code)
	}
	mr.Close()
	for i := range 3 {
		rec := s.get("alice")
		if rec.Code != http.StatusOK || rec.Header().Get(ratelimit.HeaderLimit) != "" {
			t.Fatalf("request %d with Redis down: %d %v", i, rec.Code, rec.Header())
		}
	}
	if got := s.counter("granary_ratelimit_errors_total"); got != 3 {
		t.Fatalf("errors counted %v, want 3", got)
	}
}

// A Redis that accepts connections but never answers costs each request
// at most the timeout.
func TestSlowRedisBounded(t *testing.T) {
	ln := testnet.Blackhole(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: ln, MaxRetries: -1, ReadTimeout: time.Minute, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	s := newServer(t, rdb, "slow", 1)
	start := time.Now()
	if rec := s.get("alice"); rec.Code != http.StatusOK {
		t.Fatalf("%d", rec.Code)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v with a 200ms timeout", took)
	}
}

func TestOff(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := ratelimit.New(nil, ratelimit.Config{Timeout: time.Second}, log, prometheus.NewRegistry())
	if err != nil || l.Enabled() {
		t.Fatalf("limiter without a limit: %v, enabled %v", err, l.Enabled())
	}
	if _, err := ratelimit.New(nil, ratelimit.Config{PerMinute: 1, Timeout: time.Second}, log, prometheus.NewRegistry()); err == nil {
		t.Fatal("a limit without Redis was accepted")
	}
	if _, err := ratelimit.New(nil, ratelimit.Config{PerMinute: -1, Timeout: time.Second}, log, prometheus.NewRegistry()); err == nil {
		t.Fatal("a negative limit was accepted")
	}
}

// FuzzClientAddr: whatever a client puts in X-Forwarded-For, the answer is
// the peer or an address some trusted hop vouched for, and parsing never
// panics.
func FuzzClientAddr(f *testing.F) {
	trusted, err := ratelimit.ParseTrustedProxies([]string{"10.0.0.0/8"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "1.2.3.4", "1.2.3.4, 10.0.0.1", "[::1]:80", ",,,", "10.0.0.1,10.0.0.2,garbage", strings.Repeat("10.0.0.9,", 100)} {
		f.Add("10.1.1.1:80", s)
		f.Add("203.0.113.1:80", s)
	}
	f.Fuzz(func(t *testing.T, peer, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = peer
		r.Header.Set("X-Forwarded-For", xff)
		got := ratelimit.ClientAddr(r, trusted)
		direct := httptest.NewRequest("GET", "/", nil)
		direct.RemoteAddr = peer
		peerAddr := ratelimit.ClientAddr(direct, nil)
		if got != peerAddr && !trusted[0].Contains(peerAddr) {
			t.Fatalf("untrusted peer %q: got %v from X-Forwarded-For %q", peer, got, xff)
		}
		if got.IsValid() && got != peerAddr && !strings.Contains(xff, got.String()) && !strings.Contains(strings.ToLower(xff), got.String()) {
			// An address that is neither the peer nor written in the header
			// was made up (a parsed form may differ in spelling: mapped or
			// zoned addresses, ports; allow those by re-parsing).
			found := false
			for _, hop := range strings.Split(xff, ",") {
				h2 := httptest.NewRequest("GET", "/", nil)
				h2.RemoteAddr = strings.TrimSpace(hop)
				if ratelimit.ClientAddr(h2, nil) == got {
					found = true
				}
			}
			if !found {
				t.Fatalf("peer %q, X-Forwarded-For %q: %v is in neither", peer, xff, got)
			}
		}
		_ = ratelimit.AddressKey(got)
	})
}
