package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"granary/http/gateway"
)

// TestBadParameters: query parameters and If-Match out of range are a 400
// naming the parameter.
func TestBadParameters(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	a := h.open(alice, "PARAM-1", 10)
	h.do("POST", "/api/v1/accounts/"+a.ID+"/deposits", alice, `{"amount":5}`).account(t, http.StatusOK)
	base := "/api/v1/accounts/" + a.ID

	cases := []struct {
		name, method, path, body string
		headers                  []string
		field                    string
	}{
		{"If-Match not a version", "POST", base + "/deposits", `{"amount":1}`, []string{"If-Match", "abc"}, "If-Match"},
		{"If-Match negative", "POST", base + "/withdrawals", `{"amount":1}`, []string{"If-Match", `"-1"`}, "If-Match"},
		{"If-Match list", "POST", base + "/close", ``, []string{"If-Match", `"1", "2"`}, "If-Match"},
		{"after_version negative", "GET", base + "/events?after_version=-1", "", nil, "after_version"},
		{"after_version not a number", "GET", base + "/events?after_version=x", "", nil, "after_version"},
		{"limit zero", "GET", base + "/events?limit=0", "", nil, "limit"},
		{"limit above 1000", "GET", base + "/events?limit=1001", "", nil, "limit"},
		{"limit not a number", "GET", base + "/events?limit=ten", "", nil, "limit"},
		{"at_version zero", "GET", base + "?at_version=0", "", nil, "at_version"},
		{"at_version past the version", "GET", base + "?at_version=3", "", nil, "at_version"},
		{"at_version empty", "GET", base + "?at_version=", "", nil, "at_version"},
		{"at_version not a number", "GET", base + "?at_version=two", "", nil, "at_version"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := h.as(t)
			p := h.do(tc.method, tc.path, alice, tc.body, tc.headers...).problem(t, http.StatusBadRequest, "validation_failed")
			if !strings.Contains(p.Detail, tc.field) {
				t.Errorf("detail %q does not name %s", p.Detail, tc.field)
			}
		})
	}

	// The edges are inside the ranges.
	for _, path := range []string{base + "?at_version=1", base + "?at_version=2", base + "/events?after_version=2&limit=1000", base + "/events?limit=1"} {
		if r := h.do("GET", path, alice, ""); r.status != http.StatusOK {
			t.Errorf("GET %s: %s", path, r)
		}
	}
	if got := h.do("GET", base, alice, "").account(t, http.StatusOK); got.Balance != 15 || got.Version != 2 {
		t.Fatalf("bad parameters changed the account: %+v", got)
	}
}

// TestPayloadTooLarge: the limit is configurable and defaults to 1 MiB.
func TestPayloadTooLarge(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	a := h.open(alice, "BIG-1", 0)
	dep := "/api/v1/accounts/" + a.ID + "/deposits"

	// A valid body, so only its size can be refused.
	body := func(size int) string {
		const frame = `{"amount":1,"description":""}`
		return `{"amount":1,"description":"` + strings.Repeat("x", size-len(frame)) + `"}`
	}

	t.Run("configured limit", func(t *testing.T) {
		cfg := gateway.DefaultConfig()
		cfg.BodyLimit = 64
		small := h.as(t).sibling(cfg)
		if r := small.do("POST", dep, alice, body(64)); r.status != http.StatusOK {
			t.Fatalf("body at the limit: %s", r)
		}
		p := small.do("POST", dep, alice, body(65)).problem(t, http.StatusRequestEntityTooLarge, "payload_too_large")
		if !strings.Contains(p.Detail, "64") {
			t.Errorf("detail %q does not give the limit", p.Detail)
		}
		// Size is checked before the media type: a client learns the
		// limit whatever it sent.
		small.do("POST", dep, alice, body(65), "Content-Type", "text/plain").problem(t, http.StatusRequestEntityTooLarge, "payload_too_large")
	})
	t.Run("default 1 MiB", func(t *testing.T) {
		h := h.as(t)
		h.do("POST", dep, alice, body(1<<20+1)).problem(t, http.StatusRequestEntityTooLarge, "payload_too_large")
		// Descriptions over 500 characters are refused, so a body at the
		// limit that passes the size check is a validation error.
		h.do("POST", dep, alice, body(1<<20)).problem(t, http.StatusBadRequest, "validation_failed")
	})
	if got := h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK); got.Balance != 1 || got.Version != 2 {
		t.Fatalf("want exactly the one deposit at the limit: %+v", got)
	}
}

// TestUnsupportedMediaType: a body must be declared JSON.
func TestUnsupportedMediaType(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	a := h.open(alice, "MEDIA-1", 0)
	dep := "/api/v1/accounts/" + a.ID + "/deposits"
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/xml", "application/jsonx", "not a media type"} {
		p := h.do("POST", dep, alice, `{"amount":1}`, "Content-Type", ct).problem(t, http.StatusUnsupportedMediaType, "unsupported_media_type")
		if !strings.Contains(p.Detail, "application/json") {
			t.Errorf("Content-Type %q: detail %q does not say what is expected", ct, p.Detail)
		}
	}
	// No Content-Type at all, with a body.
	h.do("POST", dep, alice, `{"amount":1}`, "Content-Type", "").problem(t, http.StatusUnsupportedMediaType, "unsupported_media_type")
	h.do("POST", "/api/v1/accounts", alice, `{"account_number":"MEDIA-2","owner_name":"M"}`, "Content-Type", "text/plain").
		problem(t, http.StatusUnsupportedMediaType, "unsupported_media_type")
	if got := h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK); got.Version != 1 {
		t.Fatalf("a refused body was recorded: %+v", got)
	}
}
