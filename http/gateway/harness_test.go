package gateway_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"granary/cluster"
	"granary/http/auth"
	"granary/http/gateway"
	"granary/testkit"
)

// testSecret is long enough for auth.NewVerifier; tests forge bad tokens
// with other secrets on purpose.
var testSecret = []byte("granary-gateway-tests-secret-0123456789")

// harness is one gateway served over real HTTP in front of a real
// one-member cluster, sharing rate limits and idempotency records with its
// siblings through one Redis (GRANARY_REDIS_URL's, else an embedded one).
type harness struct {
	t       testing.TB
	cluster *testkit.Cluster
	redis   goredis.UniversalClient
	prefix  string // of the gateways' Redis keys
	// advance moves the shared Redis's clock forward (a no-op on a real
	// server, which keeps real time: wait with testkit.WaitFor there).
	advance func(time.Duration)
	gw      *gateway.Gateway
	srv     *httptest.Server
	// base and client are where send goes: srv's, or a granary process's
	// (see process_harness_test.go).
	base   string
	client *http.Client
	// siblingProc, in process mode, is the second process's harness.
	siblingProc *harness
}

type harnessConfig struct {
	gateway gateway.Config
	cluster []testkit.Option
	deps    func(d *gateway.Deps, keyPrefix string)
}

type harnessOption func(*harnessConfig)

func withGatewayConfig(f func(*gateway.Config)) harnessOption {
	return func(c *harnessConfig) { f(&c.gateway) }
}

func withClusterOptions(opts ...testkit.Option) harnessOption {
	return func(c *harnessConfig) { c.cluster = append(c.cluster, opts...) }
}

// withDeps adjusts the gateway's dependencies before it is built; keyPrefix
// is the test's prefix of Redis keys.
func withDeps(f func(d *gateway.Deps, keyPrefix string)) harnessOption {
	return func(c *harnessConfig) { c.deps = f }
}

func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	if processHarness != nil {
		if len(opts) > 0 {
			t.Fatal("a harness with options cannot run against processes")
		}
		return processHarness(t)
	}
	cfg := harnessConfig{gateway: gateway.DefaultConfig()}
	for _, o := range opts {
		o(&cfg)
	}
	rdb, prefix, advance := edgeRedis(t)
	cfg.gateway.KeyPrefix = prefix
	c := testkit.NewCluster(t, 1, cfg.cluster...)
	h := &harness{t: t, cluster: c, redis: rdb, prefix: prefix, advance: advance}
	var adjust func(*gateway.Deps)
	if cfg.deps != nil {
		adjust = func(d *gateway.Deps) { cfg.deps(d, prefix) }
	}
	g := h.newGateway(c.Member(0), cfg.gateway, adjust)
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(g.Close) // before srv.Close (cleanups run last first): ends open streams
	// The concurrency test runs 50 clients at once; keep their connections
	// alive instead of churning through ephemeral ports.
	srv.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = 100
	// Every answer the tests get is checked against docs/openapi.yaml.
	srv.Client().Transport = newSchemaCheck(t, srv.Client().Transport)
	// Registered after the cluster's cleanup, so it runs first: no request
	// is in flight when the member stops.
	t.Cleanup(srv.Close)
	h.gw, h.srv = g, srv
	h.base, h.client = srv.URL, srv.Client()
	return h
}

// edgeRedis is the Redis the gateways of one test share, under a key
// prefix of the test's own (removed at the end on a real server).
func edgeRedis(t testing.TB) (goredis.UniversalClient, string, func(time.Duration)) {
	t.Helper()
	var rdb *goredis.Client
	advance := func(time.Duration) {}
	if url := os.Getenv(testkit.RedisURLEnv); url != "" {
		opt, err := goredis.ParseURL(url)
		if err != nil {
			t.Fatalf("%s: %v", testkit.RedisURLEnv, err)
		}
		rdb = goredis.NewClient(opt)
	} else {
		mr := miniredis.RunT(t)
		rdb = goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
		advance = mr.FastForward
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "gwtest-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// redis_rate puts its own "rate:" before our prefix.
		for _, pattern := range []string{prefix + ":*", "rate:" + prefix + ":*"} {
			iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
			for iter.Next(ctx) {
				rdb.Del(ctx, iter.Val())
			}
		}
		_ = rdb.Close()
	})
	return rdb, prefix, advance
}

// as returns h reporting to t: a subtest must fail itself, not its parent.
func (h *harness) as(t testing.TB) *harness {
	c := *h
	c.t = t
	return &c
}

// sibling serves another gateway, configured by cfg, in front of the same
// cluster and Redis: cheaper than a second cluster when only the gateway
// differs. deps, if any, adjust its dependencies.
func (h *harness) sibling(cfg gateway.Config, deps ...func(*gateway.Deps)) *harness {
	h.t.Helper()
	if h.siblingProc != nil {
		return h.siblingProc
	}
	return h.siblingOn(h.cluster.Member(0), cfg, deps...)
}

// siblingOn is sibling in front of another member of the cluster.
func (h *harness) siblingOn(m *cluster.Member, cfg gateway.Config, deps ...func(*gateway.Deps)) *harness {
	h.t.Helper()
	cfg.KeyPrefix = h.prefix
	s := &harness{t: h.t, cluster: h.cluster, redis: h.redis, prefix: h.prefix, advance: h.advance}
	var adjust func(*gateway.Deps)
	if len(deps) > 0 {
		adjust = deps[0]
	}
	s.gw = h.newGateway(m, cfg, adjust)
	s.srv = httptest.NewServer(s.gw.Handler())
	s.srv.Client().Transport = newSchemaCheck(h.t, s.srv.Client().Transport)
	s.base, s.client = s.srv.URL, s.srv.Client()
	h.t.Cleanup(s.gw.Close) // after srv.Close: its background loops end
	h.t.Cleanup(s.srv.Close)
	return s
}

func (h *harness) newGateway(m *cluster.Member, cfg gateway.Config, adjust func(*gateway.Deps)) *gateway.Gateway {
	h.t.Helper()
	v, err := auth.NewVerifier(testSecret)
	if err != nil {
		h.t.Fatal(err)
	}
	deps := gateway.Deps{Member: m, Store: h.cluster.Store, Verifier: v, Logger: h.cluster.Log, Services: m.Services(), Redis: h.redis}
	if adjust != nil {
		adjust(&deps)
	}
	g, err := gateway.New(cfg, deps)
	if err != nil {
		h.t.Fatal(err)
	}
	return g
}

// token issues a valid token for sub, good for an hour.
func token(t testing.TB, sub string, roles ...string) string {
	t.Helper()
	tok, err := auth.Issue(testSecret, sub, roles, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// send performs one request. A non-empty body goes as application/json
// unless headers (name, value pairs) say otherwise; a header given with
// an empty value is removed. send never fails the test, so it is safe to
// call from other goroutines.
func (h *harness) send(method, path, tok, body string, headers ...string) (*response, error) {
	if len(headers)%2 != 0 {
		return nil, fmt.Errorf("headers must be name, value pairs: %q", headers)
	}
	req, err := http.NewRequest(method, h.base+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	r := &response{status: resp.StatusCode, header: resp.Header, body: raw}
	return r, checkInvariants(method, path, r)
}

// do is send for the test's own goroutine: any failure ends the test.
func (h *harness) do(method, path, tok, body string, headers ...string) *response {
	h.t.Helper()
	r, err := h.send(method, path, tok, body, headers...)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// open opens an account owned by tok's subject.
func (h *harness) open(tok, number string, initial int64) accountBody {
	h.t.Helper()
	body := fmt.Sprintf(`{"account_number":%q,"owner_name":"Owner of %s","initial_balance":%d}`, number, number, initial)
	return h.do("POST", "/api/v1/accounts", tok, body).account(h.t, http.StatusCreated)
}

// events lists every event of account id, paging with limit.
func (h *harness) events(tok, id string, limit int) []eventBody {
	h.t.Helper()
	var all []eventBody
	var after uint64
	for {
		path := fmt.Sprintf("/api/v1/accounts/%s/events?after_version=%d&limit=%d", id, after, limit)
		r := h.do("GET", path, tok, "")
		if r.status != http.StatusOK {
			h.t.Fatalf("GET %s: %s", path, r)
		}
		var page struct {
			Events []eventBody `json:"events"`
			Next   *uint64     `json:"next_after_version"`
		}
		r.decode(h.t, &page)
		all = append(all, page.Events...)
		if page.Next == nil {
			return all
		}
		// A next page is announced only after a full one, from its last event.
		if len(page.Events) != limit || *page.Next != page.Events[len(page.Events)-1].Version {
			h.t.Fatalf("GET %s: next_after_version %d after %d events", path, *page.Next, len(page.Events))
		}
		after = *page.Next
	}
}
