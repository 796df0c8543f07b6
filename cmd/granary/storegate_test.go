package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"granary/persistence"
	"granary/persistence/memory"
)

// slowStore times out or fails every StreamVersion as told, counting calls.
type slowStore struct {
	persistence.Store
	err   error
	calls int
}

func (s *slowStore) StreamVersion(ctx context.Context, stream string) (uint64, error) {
	s.calls++
	return 0, s.err
}

func TestGatedStoreFailsFastAfterATimeoutOnly(t *testing.T) {
	now := time.Unix(1000, 0)
	inner := &slowStore{err: errors.New("boom")}
	g := newGatedStore(inner)
	g.now = func() time.Time { return now }
	ctx := context.Background()

	// A plain error does not close the gate.
	for range 2 {
		if _, err := g.StreamVersion(ctx, "s"); err == nil || errors.Is(err, errStoreDown) {
			t.Fatalf("plain error: %v", err)
		}
	}
	if inner.calls != 2 {
		t.Fatalf("calls %d, want 2", inner.calls)
	}
	// A timeout does: the next calls fail at once, without reaching the store.
	inner.err = context.DeadlineExceeded
	if _, err := g.StreamVersion(ctx, "s"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	if _, err := g.StreamVersion(ctx, "s"); !errors.Is(err, errStoreDown) || inner.calls != 3 {
		t.Fatalf("within the window: %v after %d calls, want errStoreDown without a call", err, inner.calls)
	}
	// After the window the store is tried again.
	now = now.Add(storeDownWindow)
	inner.err = nil
	if _, err := g.StreamVersion(ctx, "s"); err != nil || inner.calls != 4 {
		t.Fatalf("after the window: %v after %d calls", err, inner.calls)
	}
}

// The gate keeps the wrapped store's behaviour when nothing times out.
func TestGatedStorePassesThrough(t *testing.T) {
	m, err := memory.Open(context.Background(), persistence.BackendConfig{URL: "memory://"})
	if err != nil {
		t.Skipf("memory store: %v", err)
	}
	defer m.Close()
	g := newGatedStore(m)
	ctx := context.Background()
	if _, err := g.Append(ctx, "acc-1", 0, []persistence.EventData{{Type: "T", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Append(ctx, "acc-1", 0, []persistence.EventData{{Type: "T", Data: []byte("y")}}); !errors.Is(err, persistence.ErrConflict) {
		t.Fatalf("stale append: %v, want ErrConflict", err)
	}
	if v, err := g.StreamVersion(ctx, "acc-1"); v != 1 || err != nil {
		t.Fatalf("version %d %v", v, err)
	}
}
