package gateway_test

import (
	"net/http"
	"testing"
	"time"
)

// TestSeedScenario is the contract's worked example: a few movements, the
// journal that records them, and a look back in time.
func TestSeedScenario(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")

	a := h.open(alice, "SEED-1", 100000)
	if a.Balance != 100000 || a.Version != 1 || a.Owner != "alice" || a.Closed {
		t.Fatalf("opened %+v", a)
	}
	base := "/api/v1/accounts/" + a.ID
	steps := []struct {
		path        string
		amount      string
		wantBalance int64
		wantVersion uint64
	}{
		{"/deposits", `{"amount":50000,"description":"salary"}`, 150000, 2},
		{"/withdrawals", `{"amount":20000}`, 130000, 3},
		{"/deposits", `{"amount":30000}`, 160000, 4},
		{"/withdrawals", `{"amount":10000,"description":"rent"}`, 150000, 5},
	}
	for _, s := range steps {
		got := h.do("POST", base+s.path, alice, s.amount).account(t, http.StatusOK)
		if got.Balance != s.wantBalance || got.Version != s.wantVersion {
			t.Fatalf("POST %s %s: balance %d version %d, want %d and %d", s.path, s.amount, got.Balance, got.Version, s.wantBalance, s.wantVersion)
		}
	}

	events := h.events(alice, a.ID, 100)
	want := []struct {
		typ    string
		field  string
		amount float64
	}{
		{"AccountOpened", "initial_balance", 100000},
		{"MoneyDeposited", "amount", 50000},
		{"MoneyWithdrawn", "amount", 20000},
		{"MoneyDeposited", "amount", 30000},
		{"MoneyWithdrawn", "amount", 10000},
	}
	if len(events) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(events), len(want), events)
	}
	for i, w := range want {
		e := events[i]
		if e.Version != uint64(i+1) || e.Type != w.typ || e.Data[w.field] != w.amount {
			t.Errorf("event %d = %+v, want version %d, type %s, %s %v", i, e, i+1, w.typ, w.field, w.amount)
		}
		if _, err := time.Parse(time.RFC3339Nano, e.OccurredAt); err != nil {
			t.Errorf("event %d occurred_at: %v", i, err)
		}
	}
	if d := events[1].Data["description"]; d != "salary" {
		t.Errorf("deposit description %v, want salary", d)
	}

	past := h.do("GET", base+"?at_version=4", alice, "").account(t, http.StatusOK)
	if past.Balance != 160000 || past.Version != 4 || past.ID != a.ID {
		t.Fatalf("at_version=4: %+v", past)
	}
	// Looking back must not disturb the live grain.
	now := h.do("GET", base, alice, "").account(t, http.StatusOK)
	if now.Balance != 150000 || now.Version != 5 {
		t.Fatalf("current after at_version: %+v", now)
	}
}
