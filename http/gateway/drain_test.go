package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"
)

// Issue 9, item 7: once draining (SIGTERM), /ready answers 503 naming the
// shutdown check while other routes keep serving.
func TestDrainMakesReadyUnavailable(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	a := h.open(alice, "DRAIN-1", 100)
	if r := h.do("GET", "/ready", "", ""); r.status != http.StatusOK {
		t.Fatalf("ready before draining: %s", r)
	}
	h.gw.Drain()
	r := h.do("GET", "/ready", "", "")
	r.problem(t, http.StatusServiceUnavailable, "service_unavailable")
	var ready struct {
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(r.body, &ready); err != nil {
		t.Fatal(err)
	}
	if ready.Checks["shutdown"] != "draining" || r.header.Get("Retry-After") == "" {
		t.Errorf("ready while draining: checks %v Retry-After %q", ready.Checks, r.header.Get("Retry-After"))
	}
	h.do("POST", "/api/v1/accounts/"+a.ID+"/deposits", alice, `{"amount":1}`).account(t, http.StatusOK)
}
