package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"granary/http/auth"
	"granary/http/gateway"
	"granary/testkit"
)

// testSecret is long enough for auth.NewVerifier; tests forge bad tokens
// with other secrets on purpose.
var testSecret = []byte("granary-gateway-tests-secret-0123456789")

// harness is one gateway served over real HTTP in front of a real
// one-member cluster.
type harness struct {
	t       testing.TB
	cluster *testkit.Cluster
	gw      *gateway.Gateway
	srv     *httptest.Server
}

type harnessConfig struct {
	gateway gateway.Config
	cluster []testkit.Option
}

type harnessOption func(*harnessConfig)

func withGatewayConfig(f func(*gateway.Config)) harnessOption {
	return func(c *harnessConfig) { f(&c.gateway) }
}

func withClusterOptions(opts ...testkit.Option) harnessOption {
	return func(c *harnessConfig) { c.cluster = append(c.cluster, opts...) }
}

func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	cfg := harnessConfig{gateway: gateway.DefaultConfig()}
	for _, o := range opts {
		o(&cfg)
	}
	c := testkit.NewCluster(t, 1, cfg.cluster...)
	g := newGateway(t, c, cfg.gateway)
	srv := httptest.NewServer(g.Handler())
	// The concurrency test runs 50 clients at once; keep their connections
	// alive instead of churning through ephemeral ports.
	srv.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = 100
	// Registered after the cluster's cleanup, so it runs first: no request
	// is in flight when the member stops.
	t.Cleanup(srv.Close)
	return &harness{t: t, cluster: c, gw: g, srv: srv}
}

// as returns h reporting to t: a subtest must fail itself, not its parent.
func (h *harness) as(t testing.TB) *harness {
	c := *h
	c.t = t
	return &c
}

// sibling serves another gateway, configured by cfg, in front of the same
// cluster: cheaper than a second cluster when only the gateway differs.
func (h *harness) sibling(cfg gateway.Config) *harness {
	h.t.Helper()
	g := newGateway(h.t, h.cluster, cfg)
	srv := httptest.NewServer(g.Handler())
	h.t.Cleanup(srv.Close)
	return &harness{t: h.t, cluster: h.cluster, gw: g, srv: srv}
}

func newGateway(t testing.TB, c *testkit.Cluster, cfg gateway.Config) *gateway.Gateway {
	t.Helper()
	v, err := auth.NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Deps{Member: c.Member(0), Store: c.Store, Verifier: v, Logger: c.Log, Services: c.Services(0)})
	if err != nil {
		t.Fatal(err)
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
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
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
	resp, err := h.srv.Client().Do(req)
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
		}
		r.decode(h.t, &page)
		all = append(all, page.Events...)
		if len(page.Events) > 0 {
			after = page.Events[len(page.Events)-1].Version
		}
		if len(page.Events) < limit {
			return all
		}
	}
}
