// Package memory is an in-process persistence.Store: everything lives in RAM
// and is lost with the process. It serves tests and single-node development
// and behaves exactly like the Redis backend (journaltest proves it).
package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"granary/persistence"
)

var _ persistence.Store = (*Store)(nil)

// Store is a mutex-protected journal and snapshot store. It copies every
// byte slice in and out, so callers can never alias stored data.
type Store struct {
	partitions int

	mu     sync.RWMutex
	closed bool
	// logs[p][i] is the event at position i+1 of partition p. Events are
	// stored once; streams index into the logs.
	logs [][]persistence.Event
	// streams[s][v-1] is the index in logs[PartitionOf(s)] of version v.
	streams map[string][]int
	snaps   map[string]persistence.Snapshot
	sagas   map[sagaKey]persistence.SagaRecord
	// declined holds the marks of Journal.Decline until they expire.
	declined map[declinedKey]time.Time
	applied  map[declinedKey]appliedMark
	sweepAt  int
	// rm holds the projections' read models (readmodel.go).
	rm readModels
}

// New returns an empty store; partitions < 1 means 1, the same way
// persistence.PartitionOf treats it.
func New(partitions int) *Store {
	if partitions < 1 {
		partitions = 1
	}
	return &Store{
		partitions: partitions,
		logs:       make([][]persistence.Event, partitions),
		streams:    map[string][]int{},
		snaps:      map[string]persistence.Snapshot{},
		declined:   map[declinedKey]time.Time{},
		applied:    map[declinedKey]appliedMark{},
	}
}

// Open is the persistence.Opener for memory:// URLs. The rest of the URL
// is ignored: every Open returns a new, empty store.
func Open(_ context.Context, cfg persistence.BackendConfig) (persistence.Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return New(cfg.WithDefaults().Partitions), nil
}

// Partitions implements persistence.Journal.
func (s *Store) Partitions() int { return s.partitions }

// PartitionOf implements persistence.Journal.
func (s *Store) PartitionOf(stream string) int {
	return persistence.PartitionOf(stream, s.partitions)
}

// Ping reports whether the store is open.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ping memory store: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("ping memory store: %w", persistence.ErrClosed)
	}
	return nil
}

// Close drops the data; later calls fail with persistence.ErrClosed.
// Closing twice is a no-op.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.logs, s.streams, s.snaps, s.sagas = nil, nil, nil, nil
	s.rm = readModels{}
	return nil
}

// open checks what every call checks first; callers hold s.mu.
func (s *Store) open(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed {
		return persistence.ErrClosed
	}
	return nil
}

// clone copies b; empty data reads back as nil, as from Redis.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// normalize drops the monotonic reading and location so a time reads back
// the way the Redis backend stores it: seconds and nanoseconds, in UTC.
func normalize(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.Unix(t.Unix(), int64(t.Nanosecond())).UTC()
}

func copyEvent(e persistence.Event) persistence.Event {
	e.Data = clone(e.Data)
	return e
}
