package gateway_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"granary/persistence"
	"granary/testkit"
)

// garblingStore, once armed, hands out version 2 of every stream with a
// payload no account can decode, as a journal written by a newer release
// (an event type this one does not know) would.
type garblingStore struct {
	persistence.Store
	armed atomic.Bool
}

func (s *garblingStore) ReadStream(ctx context.Context, stream string, after uint64, limit int) ([]persistence.Event, error) {
	events, err := s.Store.ReadStream(ctx, stream, after, limit)
	if s.armed.Load() {
		for i := range events {
			if events[i].Version == 2 {
				events[i].Data = []byte("\xff not an account event")
			}
		}
	}
	return events, err
}

// TestUndecodableEvent: an event the gateway cannot decode is a storage
// failure (503), not a crash (500); the events around it stay readable.
func TestUndecodableEvent(t *testing.T) {
	store := &garblingStore{Store: testkit.NewStore(t)}
	h := newHarness(t, withClusterOptions(testkit.WithStore(store)))
	alice := token(t, "alice")
	a := h.open(alice, "GARBLED-1", 10)
	base := "/api/v1/accounts/" + a.ID
	h.do("POST", base+"/deposits", alice, `{"amount":1}`).account(t, http.StatusOK)
	h.do("POST", base+"/deposits", alice, `{"amount":1}`).account(t, http.StatusOK)

	store.armed.Store(true)
	h.do("GET", base+"/events", alice, "").problem(t, http.StatusServiceUnavailable, "service_unavailable")
	h.do("GET", base+"?at_version=3", alice, "").problem(t, http.StatusServiceUnavailable, "service_unavailable")
	for _, path := range []string{base + "/events?limit=1", base + "/events?after_version=2", base + "?at_version=1", base} {
		if r := h.do("GET", path, alice, ""); r.status != http.StatusOK {
			t.Errorf("GET %s: %s", path, r)
		}
	}

	store.armed.Store(false)
	if events := h.events(alice, a.ID, 100); len(events) != 3 {
		t.Fatalf("%d events once readable again, want 3", len(events))
	}
}
