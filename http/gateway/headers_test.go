package gateway_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

var generatedRequestID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestRequestID: every answer, errors included, carries X-Request-ID: the
// client's when it is plain, a fresh one otherwise.
func TestRequestID(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	requests := []struct{ name, method, path, tok string }{
		{"health", "GET", "/health", ""},
		{"success", "POST", "/api/v1/accounts", alice},
		{"unauthorized", "GET", "/api/v1/accounts/acc_" + strings.Repeat("0", 24), ""},
		{"route not found", "GET", "/nope", ""},
		{"method not allowed", "PUT", "/health", ""},
	}
	for i, req := range requests {
		t.Run(req.name, func(t *testing.T) {
			h := h.as(t)
			body := ""
			if req.method == "POST" {
				body = `{"account_number":"RID-` + string(rune('A'+i)) + `","owner_name":"R"}`
			}
			sent := "client-req.42:A_b"
			r := h.do(req.method, req.path, req.tok, body, "X-Request-ID", sent)
			if got := r.header.Get("X-Request-ID"); got != sent {
				t.Errorf("sent %q, got %q", sent, got)
			}
			if r.status >= 400 {
				if p := r.problem(t, r.status, codeOf(t, r)); p.RequestID != sent {
					t.Errorf("problem request_id %q, want %q", p.RequestID, sent)
				}
			}

			// Values that could not go into a log line or header as they
			// are get replaced, as does no value at all.
			var seen []string
			for _, bad := range []string{"", "has space", "new\tline", strings.Repeat("a", 129), "<script>"} {
				r := h.do(req.method, req.path, req.tok, "", "X-Request-ID", bad)
				got := r.header.Get("X-Request-ID")
				if !generatedRequestID.MatchString(got) {
					t.Errorf("sent %q, got %q, want a generated id", bad, got)
				}
				seen = append(seen, got)
			}
			for i := 1; i < len(seen); i++ {
				if seen[i] == seen[i-1] {
					t.Errorf("generated id %q repeats", seen[i])
				}
			}
		})
	}
}

// codeOf reads the code of a problem body.
func codeOf(t testing.TB, r *response) string {
	t.Helper()
	var p problemBody
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r, err)
	}
	return p.Code
}

// TestGrainHeaders: answers from a grain name the member that produced
// them, versions travel as ETags, and a creation says where it lives.
func TestGrainHeaders(t *testing.T) {
	h := newHarness(t)
	member := h.cluster.Member(0).ID()
	alice, bob := token(t, "alice"), token(t, "bob")

	r := h.do("POST", "/api/v1/accounts", alice, `{"account_number":"HDR-1","owner_name":"H","initial_balance":5}`)
	a := r.account(t, http.StatusCreated)
	base := "/api/v1/accounts/" + a.ID
	if loc := r.header.Get("Location"); loc != base {
		t.Errorf("Location %q, want %q", loc, base)
	}
	if got := h.do("GET", r.header.Get("Location"), alice, "").account(t, http.StatusOK); got != a {
		t.Errorf("GET Location = %+v, want %+v", got, a)
	}

	unknown := "/api/v1/accounts/acc_" + strings.Repeat("1", 24)
	answers := []struct {
		name string
		r    *response
		etag string // "" when the answer has no version
	}{
		{"open", r, `"1"`},
		{"deposit", h.do("POST", base+"/deposits", alice, `{"amount":5}`), `"2"`},
		{"read", h.do("GET", base, alice, ""), `"2"`},
		{"read in the past", h.do("GET", base+"?at_version=1", alice, ""), `"1"`},
		{"insufficient funds", h.do("POST", base+"/withdrawals", alice, `{"amount":11}`), ""},
		{"forbidden", h.do("GET", base, bob, ""), ""},
		{"version conflict", h.do("POST", base+"/deposits", alice, `{"amount":1}`, "If-Match", `"1"`), ""},
		{"unknown account", h.do("GET", unknown, alice, ""), ""},
	}
	for _, a := range answers {
		if a.etag == "" && a.r.status < 400 {
			t.Errorf("%s: unexpected success %s", a.name, a.r)
		}
		if got := a.r.header.Get("X-Served-By"); got != member {
			t.Errorf("%s: X-Served-By %q, want member %q", a.name, got, member)
		}
		if got := a.r.header.Get("ETag"); a.etag != "" && got != a.etag {
			t.Errorf("%s: ETag %q, want %s", a.name, got, a.etag)
		}
	}
}

// TestProbes: /health answers while the process lives; /ready reports its
// checks.
func TestProbes(t *testing.T) {
	h := newHarness(t)
	r := h.do("GET", "/health", "", "")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("health: %s (%s)", r, r.header.Get("Content-Type"))
	}
	var health map[string]any
	r.decode(t, &health)
	if len(health) != 1 || health["status"] != "ok" {
		t.Fatalf("health body %v", health)
	}

	r = h.do("GET", "/ready", "", "")
	if r.status != http.StatusOK {
		t.Fatalf("ready: %s", r)
	}
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	r.decode(t, &ready)
	if ready.Status != "ready" || ready.Checks["cluster"] != "ok" || ready.Checks["storage"] != "ok" {
		t.Fatalf("ready body %+v", ready)
	}
}
