package memory

import (
	"context"
	"fmt"

	"granary/persistence"
)

// SaveSnapshot implements persistence.SnapshotStore. A snapshot claiming
// more events than the stream holds is rejected with ErrInvalid, as by the
// Redis backend: it would make a later replay skip events.
func (s *Store) SaveSnapshot(ctx context.Context, stream string, snap persistence.Snapshot) error {
	fail := func(err error) error {
		return fmt.Errorf("save snapshot %s@%d: %w", stream, snap.Version, err)
	}
	if stream == "" {
		return fail(fmt.Errorf("empty stream name: %w", persistence.ErrInvalid))
	}
	data := clone(snap.Data)

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(ctx); err != nil {
		return fail(err)
	}
	if v := uint64(len(s.streams[stream])); snap.Version > v {
		return fail(fmt.Errorf("stream is at version %d: %w", v, persistence.ErrInvalid))
	}
	if cur, ok := s.snaps[stream]; ok && cur.Version >= snap.Version {
		return nil
	}
	s.snaps[stream] = persistence.Snapshot{Version: snap.Version, Data: data}
	return nil
}

// LoadSnapshot implements persistence.SnapshotStore.
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (persistence.Snapshot, bool, error) {
	if stream == "" {
		return persistence.Snapshot{}, false, fmt.Errorf("load snapshot %s: empty stream name: %w", stream, persistence.ErrInvalid)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.open(ctx); err != nil {
		return persistence.Snapshot{}, false, fmt.Errorf("load snapshot %s: %w", stream, err)
	}
	snap, ok := s.snaps[stream]
	if !ok {
		return persistence.Snapshot{}, false, nil
	}
	return persistence.Snapshot{Version: snap.Version, Data: clone(snap.Data)}, true, nil
}
