package redis

import (
	"context"
	"fmt"
	"strconv"

	"granary/persistence"
)

// SaveSnapshot implements persistence.SnapshotStore with snapshot.lua. A
// snapshot claiming more events than the stream holds is rejected with
// ErrInvalid: it would make a later replay skip events.
func (s *Store) SaveSnapshot(ctx context.Context, stream string, snap persistence.Snapshot) error {
	fail := func(err error) error {
		return fmt.Errorf("save snapshot %s@%d: %w", stream, snap.Version, err)
	}
	if stream == "" {
		return fail(fmt.Errorf("empty stream name: %w", persistence.ErrInvalid))
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	if snap.Version >= maxExact {
		return fail(fmt.Errorf("version beyond %d: %w", uint64(maxExact), persistence.ErrInvalid))
	}
	p := s.PartitionOf(stream)
	key := s.keys.snapshot(p, stream)
	data := snap.Data
	if data == nil {
		data = []byte{} // go-redis would send nil as "" anyway; be explicit.
	}
	reply, err := snapshotScript.Run(ctx, s.client, []string{key, s.keys.stream(p, stream)},
		strconv.FormatUint(snap.Version, 10), data).Int64Slice()
	if err != nil {
		return fail(classify(err, key))
	}
	switch {
	case len(reply) == 1 && (reply[0] == 0 || reply[0] == 1):
		return nil
	case len(reply) == 2 && reply[0] == -1:
		return fail(fmt.Errorf("stream is at version %d: %w", reply[1], persistence.ErrInvalid))
	default:
		return fail(fmt.Errorf("unexpected script reply %v", reply))
	}
}

// LoadSnapshot implements persistence.SnapshotStore.
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (persistence.Snapshot, bool, error) {
	fail := func(err error) (persistence.Snapshot, bool, error) {
		return persistence.Snapshot{}, false, fmt.Errorf("load snapshot %s: %w", stream, err)
	}
	if stream == "" {
		return fail(fmt.Errorf("empty stream name: %w", persistence.ErrInvalid))
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	key := s.keys.snapshot(s.PartitionOf(stream), stream)
	reply, err := s.client.HMGet(ctx, key, "v", "d").Result()
	if err != nil {
		return fail(classify(err, key))
	}
	if len(reply) != 2 {
		return fail(corrupt(key, fmt.Errorf("HMGET returned %d values", len(reply))))
	}
	snap, ok, err := parseSnapshot(key, reply[0], reply[1])
	if err != nil {
		return fail(err)
	}
	return snap, ok, nil
}

// parseSnapshot reads the fields v (version) and d (data) of the snapshot
// hash key; both nil means there is none.
func parseSnapshot(key string, v, d any) (persistence.Snapshot, bool, error) {
	if v == nil && d == nil {
		return persistence.Snapshot{}, false, nil
	}
	version, err := parseCount(v)
	if err != nil {
		return persistence.Snapshot{}, false, corrupt(key, fmt.Errorf("version: %w", err))
	}
	data, ok := d.(string)
	if !ok {
		return persistence.Snapshot{}, false, corrupt(key, fmt.Errorf("data is %T", d))
	}
	snap := persistence.Snapshot{Version: version}
	if data != "" {
		snap.Data = []byte(data)
	}
	return snap, true, nil
}
