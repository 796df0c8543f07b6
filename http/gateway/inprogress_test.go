package gateway_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"granary/http/gateway"
	"granary/persistence"
	"granary/testkit"
)

// gatedStore holds every append back until the test opens the gate, then
// lets it through to the real store: a grain whose member is frozen for a
// while, then wakes and commits.
type gatedStore struct {
	persistence.Store
	mu     sync.Mutex
	gate   chan struct{}
	closed bool
}

func newGatedStore(s persistence.Store) *gatedStore {
	g := &gatedStore{Store: s, gate: make(chan struct{})}
	g.open()
	return g
}

// hold makes appends wait from now on; open lets them all through.
func (s *gatedStore) hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate, s.closed = make(chan struct{}), false
}

func (s *gatedStore) open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		close(s.gate)
		s.closed = true
	}
}

func (s *gatedStore) Append(ctx context.Context, stream string, v uint64, evs []persistence.EventData, opts ...persistence.AppendOption) (persistence.AppendResult, error) {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	select {
	case <-gate:
	case <-ctx.Done():
		return persistence.AppendResult{}, ctx.Err()
	}
	return s.Store.Append(ctx, stream, v, evs, opts...)
}

// TestRetryWaitsForTheAttemptInProgress: a retry arriving while the first
// attempt has no answer yet is neither run nor refused: it waits for the
// first answer and replays it, so both say the deposit was applied, once.
func TestRetryWaitsForTheAttemptInProgress(t *testing.T) {
	store := newGatedStore(testkit.NewStore(t))
	t.Cleanup(store.open)
	h := newHarness(t, withClusterOptions(testkit.WithStore(store)),
		withGatewayConfig(func(c *gateway.Config) { c.CallTimeout = 4 * time.Second }))
	alice := token(t, "alice")
	acc := h.open(alice, "INPROG-1", 100)
	store.hold()

	// Whichever of the two claims the key first is held in its append;
	// the other must wait for it.
	dep := "/api/v1/accounts/" + acc.ID + "/deposits"
	first, retry := make(chan *response, 1), make(chan *response, 1)
	go func() { first <- h.do("POST", dep, alice, `{"amount":7}`, "Idempotency-Key", "slow-1") }()
	go func() { retry <- h.do("POST", dep, alice, `{"amount":7}`, "Idempotency-Key", "slow-1") }()
	select {
	case r := <-first:
		t.Fatalf("answered %s while the append was held", r)
	case r := <-retry:
		t.Fatalf("answered %s while the append was held", r)
	case <-time.After(300 * time.Millisecond): // both still waiting, as they should be
	}
	store.open()
	a, b := <-first, <-retry
	if b.header.Get("Idempotent-Replayed") != "true" {
		a, b = b, a
	}
	got := a.account(t, http.StatusOK)
	if b.status != http.StatusOK || string(b.body) != string(a.body) || b.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("one answer %s, the other %s: want the first answer replayed", b, a)
	}
	if got.Balance != 107 {
		t.Fatalf("balance %d, want 107", got.Balance)
	}
	if events := h.events(alice, acc.ID, 100); len(events) != 2 {
		t.Fatalf("%d events, want the opening and one deposit", len(events))
	}
}
