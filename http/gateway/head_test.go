package gateway_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// headerVaries are the headers two answers to the same request may differ
// in whatever the method.
var headerVaries = []string{"Date"}

// TestHeadMirrorsEveryGet: the contract's "HEAD is answered wherever GET
// is (same status and headers, no body)", for every GET route the gateway
// registers, answered as the caller would be (allowed or not).
func TestHeadMirrorsEveryGet(t *testing.T) {
	h := newHarness(t)
	admin, alice := token(t, "root", "admin"), token(t, "alice")
	acc := h.open(alice, "HEAD-1", 10)
	// The summary route answers differently (X-Served-By) until the read
	// model has the account: let it get there before comparing.
	h.do("GET", "/api/v1/accounts/"+acc.ID+"/summary?min_version=1", alice, "").decodeStatus(t, http.StatusOK, &map[string]any{})
	params := map[string]string{
		"{id}": acc.ID, "{name}": "head-counter", "{group}": "head-group", "{counter}": "c1", "{service}": "auth",
		"{product_id}": "product_1", "{payment_id}": "pay_none", "{path}": "app.js",
	}
	routes := 0
	for _, r := range h.gw.Routes() {
		if r.Method != http.MethodGet {
			continue
		}
		routes++
		path := r.Path
		for k, v := range params {
			path = strings.ReplaceAll(path, k, v)
		}
		if strings.Contains(path, "{") {
			t.Fatalf("%s: no value for its parameter; add one to params", r.Path)
		}
		for _, who := range []struct{ name, tok string }{{"admin", admin}, {"alice", alice}, {"anonymous", ""}} {
			t.Run(strings.TrimPrefix(r.Path, "/")+"/"+who.name, func(t *testing.T) {
				if strings.HasPrefix(path, "/api/v1/transfers/") || strings.HasPrefix(path, "/api/v1/orders/") {
					path = strings.Replace(path, acc.ID, "none", 1) // a saga id that is not there: 404 both ways
				}
				get := headersOf(t, h, http.MethodGet, path, who.tok)
				head := headersOf(t, h, http.MethodHead, path, who.tok)
				if head.status != get.status {
					t.Fatalf("HEAD %s: %d, GET: %d", path, head.status, get.status)
				}
				if len(head.body) != 0 {
					t.Errorf("HEAD %s has a body: %q", path, head.body)
				}
				for _, name := range sortedKeys(get.header, head.header) {
					if slices.Contains(headerVaries, name) || (path == "/metrics" && name == "Content-Length") {
						continue // /metrics counts the requests themselves
					}
					if g, hd := get.header.Values(name), head.header.Values(name); !slices.Equal(g, hd) {
						t.Errorf("HEAD %s: %s = %q, GET gives %q", path, name, hd, g)
					}
				}
			})
		}
	}
	if routes < 20 {
		t.Fatalf("only %d GET routes walked", routes)
	}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// headersOf sends one request with a fixed X-Request-ID (so that it does
// not differ between the two) and reads its body, but only the headers of
// a stream (whose body does not end).
func headersOf(t *testing.T, h *harness, method, path, tok string) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-ID", "head-test")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	a := answer{status: res.StatusCode, header: res.Header}
	if res.Header.Get("Content-Type") != "text/event-stream" || method == http.MethodHead {
		if a.body, err = io.ReadAll(res.Body); err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
	}
	return a
}

func sortedKeys(hs ...http.Header) []string {
	var out []string
	for _, h := range hs {
		for k := range h {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestHeadOnStreamEnds: HEAD on a stream gives its headers and ends, and
// gives its slot back: a caller can HEAD far more often than the cap.
func TestHeadOnStreamEnds(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	acc := h.open(alice, "HEAD-S", 1)
	for range 3 * 8 {
		r := h.do(http.MethodHead, "/api/v1/accounts/"+acc.ID+"/events/stream", alice, "")
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("HEAD stream: %d %s", r.status, r.header.Get("Content-Type"))
		}
	}
}

// TestOptionsAnswersAllow: OPTIONS on any route names its methods, HEAD
// beside GET; so does a 405.
func TestOptionsAnswersAllow(t *testing.T) {
	h := newHarness(t)
	for path, want := range map[string][]string{
		"/health":                  {"OPTIONS", "GET", "HEAD"},
		"/api/v1/accounts":         {"OPTIONS", "GET", "HEAD", "POST"},
		"/api/v1/accounts/acc_x":   {"OPTIONS", "GET", "HEAD"},
		"/api/v1/counters/c/reset": {"OPTIONS", "POST"},
	} {
		r := h.do(http.MethodOptions, path, "", "")
		if r.status != http.StatusNoContent || !sameMethods(r.header.Get("Allow"), want) {
			t.Errorf("OPTIONS %s: %d Allow %q, want %q", path, r.status, r.header.Get("Allow"), want)
		}
	}
	r := h.do(http.MethodPut, "/health", "", "")
	if r.status != http.StatusMethodNotAllowed || !sameMethods(r.header.Get("Allow"), []string{"OPTIONS", "GET", "HEAD"}) {
		t.Errorf("PUT /health: %d Allow %q", r.status, r.header.Get("Allow"))
	}
}

func sameMethods(allow string, want []string) bool {
	var got []string
	for _, m := range strings.Split(allow, ",") {
		got = append(got, strings.TrimSpace(m))
	}
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	return slices.Equal(got, want)
}
