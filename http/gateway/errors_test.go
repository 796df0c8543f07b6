package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestNotFound: unknown accounts and unknown routes are both 404, told
// apart by code.
func TestNotFound(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	unknown := "/api/v1/accounts/acc_" + strings.Repeat("ab", 12)

	for _, r := range []struct{ method, path, body string }{
		{"GET", unknown, ""},
		{"GET", unknown + "?at_version=1", ""},
		{"GET", unknown + "/events", ""},
		{"POST", unknown + "/deposits", `{"amount":1}`},
		{"POST", unknown + "/withdrawals", `{"amount":1}`},
		{"POST", unknown + "/close", ""},
		// Malformed ids never reach the cluster.
		{"GET", "/api/v1/accounts/nope", ""},
		{"GET", "/api/v1/accounts/acc_" + strings.Repeat("AB", 12), ""},
		{"POST", "/api/v1/accounts/acc_1/deposits", `{"amount":1}`},
		{"GET", "/api/v1/accounts/%2e%2e/events", ""},
	} {
		h.do(r.method, r.path, alice, r.body).problem(t, http.StatusNotFound, "not_found")
	}
	// A lookup does not create the account.
	h.do("GET", unknown, alice, "").problem(t, http.StatusNotFound, "not_found")

	for _, path := range []string{"/api/v1/nope", "/nope", "/api/v2/accounts", "/api/v1/accounts/x/y/z"} {
		// Without a token too: a missing route is not a secret.
		for _, tok := range []string{alice, ""} {
			h.do("GET", path, tok, "").problem(t, http.StatusNotFound, "route_not_found")
		}
	}
}

// TestMethodNotAllowed: a known path with an unknown method says which
// methods it has.
func TestMethodNotAllowed(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	id := "acc_" + strings.Repeat("0", 24)
	for _, tc := range []struct{ method, path, allow string }{
		{"PUT", "/api/v1/accounts/" + id, "GET"},
		{"DELETE", "/api/v1/accounts/" + id, "GET"},
		{"DELETE", "/api/v1/accounts", "POST"},
		{"PUT", "/api/v1/accounts", "GET"},
		{"GET", "/api/v1/accounts/" + id + "/deposits", "POST"},
		{"PATCH", "/api/v1/accounts/" + id + "/events", "GET"},
		{"POST", "/health", "GET"},
	} {
		r := h.do(tc.method, tc.path, alice, "")
		r.problem(t, http.StatusMethodNotAllowed, "method_not_allowed")
		allow := r.header.Get("Allow")
		if !strings.Contains(allow, tc.allow) || strings.Contains(allow, tc.method) {
			t.Errorf("%s %s: Allow %q, want it to list %s and not %s", tc.method, tc.path, allow, tc.allow, tc.method)
		}
	}
}

// TestDomainConflicts: the 409s the account grain decides.
func TestDomainConflicts(t *testing.T) {
	h := newHarness(t)
	alice, bob := token(t, "alice"), token(t, "bob")

	t.Run("insufficient funds", func(t *testing.T) {
		h := h.as(t)
		a := h.open(alice, "FUNDS-1", 1000)
		wd := "/api/v1/accounts/" + a.ID + "/withdrawals"
		p := h.do("POST", wd, alice, `{"amount":1001}`).problem(t, http.StatusConflict, "insufficient_funds")
		if !strings.Contains(p.Detail, "1000") || !strings.Contains(p.Detail, "1001") {
			t.Errorf("detail %q should carry balance and amount", p.Detail)
		}
		if got := h.do("POST", wd, alice, `{"amount":1000}`).account(t, http.StatusOK); got.Balance != 0 || got.Version != 2 {
			t.Fatalf("withdrawing the whole balance: %+v", got)
		}
		h.do("POST", wd, alice, `{"amount":1}`).problem(t, http.StatusConflict, "insufficient_funds")
	})

	t.Run("account closed", func(t *testing.T) {
		h := h.as(t)
		a := h.open(alice, "CLOSED-1", 300)
		base := "/api/v1/accounts/" + a.ID
		if got := h.do("POST", base+"/close", alice, `{"reason":"moving"}`).account(t, http.StatusOK); !got.Closed || got.Version != 2 {
			t.Fatalf("close: %+v", got)
		}
		h.do("POST", base+"/deposits", alice, `{"amount":1}`).problem(t, http.StatusConflict, "account_closed")
		h.do("POST", base+"/withdrawals", alice, `{"amount":1}`).problem(t, http.StatusConflict, "account_closed")
		h.do("POST", base+"/close", alice, `{"reason":"again"}`).problem(t, http.StatusConflict, "account_closed")
		if got := h.do("GET", base, alice, "").account(t, http.StatusOK); !got.Closed || got.Version != 2 || got.Balance != 300 {
			t.Fatalf("closed account: %+v", got)
		}
	})

	t.Run("already exists", func(t *testing.T) {
		h := h.as(t)
		a := h.open(alice, "TAKEN-1", 10)
		h.do("POST", "/api/v1/accounts", alice, `{"account_number":"TAKEN-1","owner_name":"Alice"}`).problem(t, http.StatusConflict, "already_exists")
		h.do("POST", "/api/v1/accounts", bob, `{"account_number":"TAKEN-1","owner_name":"Bob","initial_balance":99}`).problem(t, http.StatusConflict, "already_exists")
		if got := h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK); got.Owner != "alice" || got.Balance != 10 || got.Version != 1 {
			t.Fatalf("a second open changed the account: %+v", got)
		}
	})

	t.Run("version conflict", func(t *testing.T) {
		h := h.as(t)
		a := h.open(alice, "MATCH-1", 0)
		dep := "/api/v1/accounts/" + a.ID + "/deposits"
		r := h.do("POST", dep, alice, `{"amount":10}`)
		if got := r.account(t, http.StatusOK); got.Version != 2 {
			t.Fatalf("deposit: %+v", got)
		}
		p := h.do("POST", dep, alice, `{"amount":10}`, "If-Match", `"1"`).problem(t, http.StatusConflict, "version_conflict")
		if !strings.Contains(p.Detail, "1") || !strings.Contains(p.Detail, "2") {
			t.Errorf("detail %q should carry both versions", p.Detail)
		}
		h.do("POST", "/api/v1/accounts/"+a.ID+"/close", alice, "", "If-Match", `"3"`).problem(t, http.StatusConflict, "version_conflict")
		// The ETag of the last answer is the If-Match of the next change.
		got := h.do("POST", dep, alice, `{"amount":10}`, "If-Match", r.header.Get("ETag")).account(t, http.StatusOK)
		if got.Balance != 20 || got.Version != 3 {
			t.Fatalf("matching If-Match: %+v", got)
		}
		if got := h.do("POST", dep, alice, `{"amount":1}`, "If-Match", "*").account(t, http.StatusOK); got.Version != 4 {
			t.Fatalf("If-Match *: %+v", got)
		}
	})
}
