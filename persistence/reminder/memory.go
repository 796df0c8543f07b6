package reminder

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// MemoryStore is the in-process twin of RedisStore, for tests and the
// single-process dev mode; its schedule dies with the process.
//
// It holds one entry per key that is scheduled, so it is exactly as large as
// the grains using it make it — the same as the Redis sorted set — and keys
// are bounded in size by validation. Claim scans every entry (O(n)), which is
// fine for what the twin is for and not meant for millions of reminders.
type MemoryStore struct {
	mu  sync.Mutex
	due map[Key]int64 // unix ms
}

var _ Store = (*MemoryStore)(nil)

// NewMemory returns an empty MemoryStore.
func NewMemory() *MemoryStore { return &MemoryStore{due: make(map[Key]int64)} }

// Set implements Store.
func (s *MemoryStore) Set(ctx context.Context, key Key, at time.Time) error {
	if err := validSet(key, at); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.due[key] = at.UnixMilli()
	return nil
}

// Cancel implements Store.
func (s *MemoryStore) Cancel(ctx context.Context, key Key) error {
	if err := validKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.due, key)
	return nil
}

// Claim implements Store.
func (s *MemoryStore) Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Due, error) {
	if err := validClaim(lease, limit); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	nowMs := now.UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []Due
	for k, at := range s.due {
		if at <= nowMs {
			due = append(due, Due{Key: k, At: time.UnixMilli(at)})
		}
	}
	// The same order as a sorted set's: score, then member bytes.
	slices.SortFunc(due, func(a, b Due) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(member(a.Key), member(b.Key))
	})
	if len(due) > limit {
		due = due[:limit]
	}
	until := nowMs + lease.Milliseconds()
	for _, d := range due {
		s.due[d.Key] = until
	}
	return due, nil
}

// Next implements Store.
func (s *MemoryStore) Next(ctx context.Context, key Key) (time.Time, bool, error) {
	if err := validKey(key); err != nil {
		return time.Time{}, false, err
	}
	if err := ctx.Err(); err != nil {
		return time.Time{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.due[key]
	if !ok {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(at), true, nil
}

// Len implements Store.
func (s *MemoryStore) Len(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.due)), nil
}
