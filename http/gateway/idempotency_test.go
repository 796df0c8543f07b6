package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestIdempotencyKey: a retried request with the same key is answered
// without being applied again.
func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	const openBody = `{"account_number":"IDEM-1","owner_name":"I","initial_balance":100}`

	first := h.do("POST", "/api/v1/accounts", alice, openBody, "Idempotency-Key", "open-IDEM-1").account(t, http.StatusCreated)
	// Without the key the retry would be a 409 already_exists.
	again := h.do("POST", "/api/v1/accounts", alice, openBody, "Idempotency-Key", "open-IDEM-1").account(t, http.StatusCreated)
	if again != first {
		t.Fatalf("retried open = %+v, want %+v", again, first)
	}
	dep := "/api/v1/accounts/" + first.ID + "/deposits"
	key := strings.Repeat("k", 255)
	d1 := h.do("POST", dep, alice, `{"amount":40}`, "Idempotency-Key", key).account(t, http.StatusOK)
	d2 := h.do("POST", dep, alice, `{"amount":40}`, "Idempotency-Key", key).account(t, http.StatusOK)
	if d1.Balance != 140 || d1.Version != 2 || d2 != d1 {
		t.Fatalf("deposit %+v, retried %+v; want balance 140 at version 2 both times", d1, d2)
	}
	// A new key is a new deposit.
	if d3 := h.do("POST", dep, alice, `{"amount":40}`, "Idempotency-Key", "another").account(t, http.StatusOK); d3.Balance != 180 {
		t.Fatalf("deposit with a new key: %+v", d3)
	}
	// The same key from another caller is that caller's own request.
	bob := token(t, "bob")
	b := h.open(bob, "IDEM-2", 0)
	h.do("POST", "/api/v1/accounts/"+b.ID+"/deposits", bob, `{"amount":40}`, "Idempotency-Key", "another").account(t, http.StatusOK)

	events := h.events(alice, first.ID, 100)
	if len(events) != 3 {
		t.Fatalf("%d events, want open and two deposits: %+v", len(events), events)
	}

	p := h.do("POST", dep, alice, `{"amount":40}`, "Idempotency-Key", key+"k").problem(t, http.StatusBadRequest, "validation_failed")
	if !strings.Contains(p.Detail, "Idempotency-Key") {
		t.Errorf("detail %q does not name Idempotency-Key", p.Detail)
	}
	if got := h.do("GET", "/api/v1/accounts/"+first.ID, alice, "").account(t, http.StatusOK); got.Balance != 180 || got.Version != 3 {
		t.Fatalf("final %+v", got)
	}
}
