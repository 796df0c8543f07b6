package gateway_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
)

// TestConcurrentDeposits: concurrent clients on one account lose nothing
// and double nothing; the journal holds exactly one event per answer.
func TestConcurrentDeposits(t *testing.T) {
	const clients, perClient, initial = 50, 20, 1000
	h := newHarness(t)
	alice := token(t, "alice")
	a := h.open(alice, "BUSY-1", initial)
	dep := "/api/v1/accounts/" + a.ID + "/deposits"

	var wg sync.WaitGroup
	errs := make(chan error, clients*perClient)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				r, err := h.send("POST", dep, alice, fmt.Sprintf(`{"amount":1,"description":"client %d #%d"}`, c, i))
				if err == nil && r.status != http.StatusOK {
					err = fmt.Errorf("client %d deposit %d: %s", c, i, r)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	const deposits = clients * perClient
	got := h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK)
	if got.Balance != initial+deposits || got.Version != deposits+1 {
		t.Fatalf("balance %d version %d, want %d and %d", got.Balance, got.Version, initial+deposits, deposits+1)
	}

	events := h.events(alice, a.ID, 97) // a limit that does not divide the count
	if len(events) != deposits+1 {
		t.Fatalf("%d events, want %d", len(events), deposits+1)
	}
	seen := make(map[string]bool, deposits)
	for i, e := range events {
		if e.Version != uint64(i+1) {
			t.Fatalf("event %d has version %d: versions not contiguous", i, e.Version)
		}
		if i == 0 {
			continue
		}
		desc, _ := e.Data["description"].(string)
		if e.Type != "MoneyDeposited" || e.Data["amount"] != float64(1) || seen[desc] {
			t.Fatalf("event %d = %+v (duplicate: %v)", i, e, seen[desc])
		}
		seen[desc] = true
	}
}
