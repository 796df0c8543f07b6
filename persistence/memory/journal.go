package memory

import (
	"context"
	"fmt"
	"time"

	"granary/persistence"
)

// Append implements persistence.Journal.
func (s *Store) Append(ctx context.Context, stream string, expectedVersion uint64, events []persistence.EventData, opts ...persistence.AppendOption) (persistence.AppendResult, error) {
	fail := func(err error) (persistence.AppendResult, error) {
		return persistence.AppendResult{}, fmt.Errorf("append %s@%d: %w", stream, expectedVersion, err)
	}
	if stream == "" {
		return fail(fmt.Errorf("empty stream name: %w", persistence.ErrInvalid))
	}
	if len(events) == 0 {
		return fail(fmt.Errorf("empty batch: %w", persistence.ErrInvalid))
	}
	p := s.PartitionOf(stream)
	// Copy before locking: large payloads should not hold up readers.
	batch := make([]persistence.Event, len(events))
	for i, e := range events {
		batch[i] = persistence.Event{
			Stream:     stream,
			Partition:  p,
			Type:       e.Type,
			Data:       clone(e.Data),
			OccurredAt: normalize(e.OccurredAt),
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(ctx); err != nil {
		return fail(err)
	}
	fence := persistence.FenceOf(opts)
	cmds, err := fence.CommandsOf(len(batch))
	if err != nil {
		return fail(err)
	}
	now := time.Now()
	// The marks before the clock, as in the Redis script: a late copy of
	// an applied command is a duplicate, not "expired, not applied".
	for i, c := range cmds {
		if until, ok := s.declined[declinedKey{stream, c.ID}]; ok && now.Before(until) {
			return fail(&persistence.FenceError{Stream: stream, Command: c.ID, Index: i, Err: persistence.ErrDeclined})
		}
		if m, ok := s.applied[declinedKey{stream, c.ID}]; ok && now.Before(m.until) {
			return persistence.AppendResult{}, &persistence.DuplicateError{Stream: stream, Command: c.ID, Version: m.version, Index: i}
		}
	}
	if !fence.NotAfter.IsZero() && !now.Before(fence.NotAfter) {
		return fail(persistence.ErrExpired)
	}
	for i, c := range cmds {
		if !c.NotAfter.IsZero() && !now.Before(c.NotAfter) {
			return fail(&persistence.FenceError{Stream: stream, Command: c.ID, Index: i, Err: persistence.ErrExpired})
		}
	}
	index := s.streams[stream]
	if actual := uint64(len(index)); actual != expectedVersion {
		return persistence.AppendResult{}, &persistence.ConflictError{Stream: stream, Expected: expectedVersion, Actual: actual}
	}
	log := s.logs[p]
	first := uint64(len(log)) + 1
	for i := range batch {
		batch[i].Version = expectedVersion + uint64(i) + 1
		batch[i].Position = first + uint64(i)
		index = append(index, len(log))
		log = append(log, batch[i])
	}
	s.logs[p] = log
	s.streams[stream] = index
	if len(cmds) > 0 {
		// Sweep when the map doubled since the last sweep: amortized O(1).
		if len(s.applied) >= s.sweepAt {
			for k, m := range s.applied {
				if !now.Before(m.until) {
					delete(s.applied, k)
				}
			}
			s.sweepAt = max(1024, 2*len(s.applied))
		}
		for _, c := range cmds {
			s.applied[declinedKey{stream, c.ID}] = appliedMark{expectedVersion + uint64(c.Through), now.Add(persistence.AppliedHold)}
		}
	}
	return persistence.AppendResult{
		Version:       expectedVersion + uint64(len(batch)),
		Partition:     p,
		FirstPosition: first,
	}, nil
}

type declinedKey struct{ stream, command string }

type appliedMark struct {
	version uint64
	until   time.Time
}

// Decline implements persistence.Journal.
func (s *Store) Decline(ctx context.Context, stream string, version uint64, command string, until time.Time) error {
	fail := func(err error) error { return fmt.Errorf("decline %s on %s@%d: %w", command, stream, version, err) }
	now := time.Now()
	switch {
	case stream == "" || command == "":
		return fail(fmt.Errorf("empty stream or command: %w", persistence.ErrInvalid))
	case !until.After(now):
		return fail(fmt.Errorf("until %v is not in the future: %w", until, persistence.ErrInvalid))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(ctx); err != nil {
		return fail(err)
	}
	if actual := uint64(len(s.streams[stream])); actual != version {
		return &persistence.ConflictError{Stream: stream, Expected: version, Actual: actual}
	}
	// Marks expire like Redis keys do; sweeping on write keeps the map
	// as small as the marks still in force.
	for k, u := range s.declined {
		if !now.Before(u) {
			delete(s.declined, k)
		}
	}
	s.declined[declinedKey{stream, command}] = until
	return nil
}

// ReadStream implements persistence.Journal.
func (s *Store) ReadStream(ctx context.Context, stream string, afterVersion uint64, limit int) ([]persistence.Event, error) {
	if stream == "" {
		return nil, fmt.Errorf("read %s after %d: empty stream name: %w", stream, afterVersion, persistence.ErrInvalid)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.open(ctx); err != nil {
		return nil, fmt.Errorf("read %s after %d: %w", stream, afterVersion, err)
	}
	index := s.streams[stream]
	log := s.logs[s.PartitionOf(stream)]
	lo, hi := window(len(index), afterVersion, limit)
	var out []persistence.Event
	for _, i := range index[lo:hi] {
		out = append(out, copyEvent(log[i]))
	}
	return out, nil
}

// StreamVersion implements persistence.Journal.
func (s *Store) StreamVersion(ctx context.Context, stream string) (uint64, error) {
	if stream == "" {
		return 0, fmt.Errorf("version of %s: empty stream name: %w", stream, persistence.ErrInvalid)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.open(ctx); err != nil {
		return 0, fmt.Errorf("version of %s: %w", stream, err)
	}
	return uint64(len(s.streams[stream])), nil
}

// ReadPartition implements persistence.Journal.
func (s *Store) ReadPartition(ctx context.Context, partition int, afterPosition uint64, limit int) ([]persistence.Event, error) {
	if err := s.checkPartition(partition); err != nil {
		return nil, fmt.Errorf("read partition %d after %d: %w", partition, afterPosition, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.open(ctx); err != nil {
		return nil, fmt.Errorf("read partition %d after %d: %w", partition, afterPosition, err)
	}
	log := s.logs[partition]
	lo, hi := window(len(log), afterPosition, limit)
	var out []persistence.Event
	for _, e := range log[lo:hi] {
		out = append(out, copyEvent(e))
	}
	return out, nil
}

// Head implements persistence.Journal.
func (s *Store) Head(ctx context.Context, partition int) (uint64, error) {
	if err := s.checkPartition(partition); err != nil {
		return 0, fmt.Errorf("head of partition %d: %w", partition, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.open(ctx); err != nil {
		return 0, fmt.Errorf("head of partition %d: %w", partition, err)
	}
	return uint64(len(s.logs[partition])), nil
}

func (s *Store) checkPartition(p int) error {
	if p < 0 || p >= s.partitions {
		return fmt.Errorf("partition out of range [0, %d): %w", s.partitions, persistence.ErrInvalid)
	}
	return nil
}

// window returns the slice bounds of the entries numbered after+1 ..
// after+limit (1-based) of a sequence of n; limit <= 0 means all.
func window(n int, after uint64, limit int) (lo, hi int) {
	if after >= uint64(n) {
		return n, n
	}
	lo, hi = int(after), n
	if limit > 0 && limit < hi-lo {
		hi = lo + limit
	}
	return lo, hi
}
