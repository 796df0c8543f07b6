package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"granary/persistence"
)

// storeDownWindow is how long the store is taken as down after one of its
// calls timed out: grain calls in that window fail at once instead of each
// waiting out the store timeout again.
const storeDownWindow = time.Second

// errStoreDown is what a call gets while the store is taken as down. The
// outcome is known (nothing was sent), but it is not one of the typed
// errors, so callers treat it as storage trouble: a 503, never a refusal.
var errStoreDown = errors.New("storage did not answer in time a moment ago; not tried")

// gatedStore fails the journal and snapshot calls of grains fast for
// storeDownWindow after any of them timed out (issue 9, item 7). Without
// it, a frozen Redis made each queued re-send of a grain call wait out the
// store timeout in turn, so the caller got a 504 after 8 s instead of a
// 503 within its call timeout. Everything else passes straight through.
type gatedStore struct {
	persistence.Store
	now       func() time.Time
	downUntil atomic.Int64 // unix nanoseconds; 0 = up
}

var _ persistence.StreamLoader = (*gatedStore)(nil)

func newGatedStore(s persistence.Store) *gatedStore {
	return &gatedStore{Store: s, now: time.Now}
}

// enter reports errStoreDown while the store is taken as down.
func (g *gatedStore) enter() error {
	if g.now().UnixNano() < g.downUntil.Load() {
		return errStoreDown
	}
	return nil
}

// leave marks the store down when err is a timeout.
func (g *gatedStore) leave(err error) error {
	var ne net.Error
	if err != nil && (errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())) {
		g.downUntil.Store(g.now().Add(storeDownWindow).UnixNano())
	}
	return err
}

func (g *gatedStore) Append(ctx context.Context, stream string, expected uint64, events []persistence.EventData, opts ...persistence.AppendOption) (persistence.AppendResult, error) {
	if err := g.enter(); err != nil {
		return persistence.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	res, err := g.Store.Append(ctx, stream, expected, events, opts...)
	return res, g.leave(err)
}

func (g *gatedStore) Decline(ctx context.Context, stream string, version uint64, command string, until time.Time) error {
	if err := g.enter(); err != nil {
		return fmt.Errorf("decline on %s: %w", stream, err)
	}
	return g.leave(g.Store.Decline(ctx, stream, version, command, until))
}

func (g *gatedStore) ReadStream(ctx context.Context, stream string, after uint64, limit int) ([]persistence.Event, error) {
	if err := g.enter(); err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	evs, err := g.Store.ReadStream(ctx, stream, after, limit)
	return evs, g.leave(err)
}

func (g *gatedStore) StreamVersion(ctx context.Context, stream string) (uint64, error) {
	if err := g.enter(); err != nil {
		return 0, fmt.Errorf("version of %s: %w", stream, err)
	}
	v, err := g.Store.StreamVersion(ctx, stream)
	return v, g.leave(err)
}

func (g *gatedStore) SaveSnapshot(ctx context.Context, stream string, snap persistence.Snapshot) error {
	if err := g.enter(); err != nil {
		return fmt.Errorf("save snapshot %s: %w", stream, err)
	}
	return g.leave(g.Store.SaveSnapshot(ctx, stream, snap))
}

// LoadStream implements persistence.StreamLoader: the activation's one
// round trip stays one through the gate.
func (g *gatedStore) LoadStream(ctx context.Context, stream string, limit int) (persistence.Snapshot, bool, []persistence.Event, error) {
	if err := g.enter(); err != nil {
		return persistence.Snapshot{}, false, nil, fmt.Errorf("load %s: %w", stream, err)
	}
	s, ok, evs, err := persistence.LoadStream(ctx, g.Store, stream, limit)
	return s, ok, evs, g.leave(err)
}

func (g *gatedStore) LoadSnapshot(ctx context.Context, stream string) (persistence.Snapshot, bool, error) {
	if err := g.enter(); err != nil {
		return persistence.Snapshot{}, false, fmt.Errorf("load snapshot %s: %w", stream, err)
	}
	s, ok, err := g.Store.LoadSnapshot(ctx, stream)
	return s, ok, g.leave(err)
}
