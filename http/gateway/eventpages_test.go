package gateway_test

import (
	"net/http"
	"testing"
)

// next_after_version is null on the last page, even when the events
// divide evenly into pages (no empty page to fetch).
func TestEventPagesSayWhetherMoreFollow(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	acc := h.open(alice, "PAGES-1", 10) // event 1
	for i := 0; i < 3; i++ {
		h.do("POST", "/api/v1/accounts/"+acc.ID+"/deposits", alice, `{"amount":1}`).account(t, http.StatusOK)
	}
	type page struct {
		Events []eventBody `json:"events"`
		Next   *uint64     `json:"next_after_version"`
	}
	var p page
	h.do("GET", "/api/v1/accounts/"+acc.ID+"/events?limit=2", alice, "").decodeStatus(t, http.StatusOK, &p)
	if len(p.Events) != 2 || p.Next == nil || *p.Next != 2 {
		t.Fatalf("first page: %d events, next %v", len(p.Events), p.Next)
	}
	h.do("GET", "/api/v1/accounts/"+acc.ID+"/events?limit=2&after_version=2", alice, "").decodeStatus(t, http.StatusOK, &p)
	if len(p.Events) != 2 || p.Next != nil {
		t.Fatalf("last page: %d events, next %v (want null)", len(p.Events), p.Next)
	}
	h.do("GET", "/api/v1/accounts/"+acc.ID+"/events?after_version=4", alice, "").decodeStatus(t, http.StatusOK, &p)
	if len(p.Events) != 0 || p.Next != nil {
		t.Fatalf("past the end: %+v", p)
	}
}
