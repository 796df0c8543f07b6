package idempotency

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
)

var _ Store = (*MemoryStore)(nil)

// DefaultMemoryEntries bounds a MemoryStore by default.
const DefaultMemoryEntries = 100_000

// MemoryStore is the in-process twin of RedisStore: for a single gateway
// (dev, tests) only, since other gateways cannot see its records and they
// die with the process. It holds at most a fixed number of records (keys
// come from clients); when full it forgets the oldest, which makes an old
// key executable again (still safe: grains drop repeated command ids).
type MemoryStore struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	entries map[string]*list.Element // of *memoryEntry
	order   *list.List               // oldest claim first
	swept   time.Time                // last full sweep of expired entries
}

type memoryEntry struct {
	key         string
	fingerprint string
	token       string
	resp        *Response
	expires     time.Time
}

// NewMemoryStore returns a store of at most maxEntries records (0 means
// DefaultMemoryEntries); now is its clock (nil means time.Now).
func NewMemoryStore(maxEntries int, now func() time.Time) *MemoryStore {
	if maxEntries <= 0 {
		maxEntries = DefaultMemoryEntries
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{max: maxEntries, now: now, entries: map[string]*list.Element{}, order: list.New()}
}

// Claim implements Store.
func (s *MemoryStore) Claim(ctx context.Context, key, fingerprint string, pendingTTL time.Duration) (string, *Record, error) {
	if err := ctx.Err(); err != nil {
		return "", nil, fmt.Errorf("claim idempotency key: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if e, ok := s.live(key, now); ok {
		rec := &Record{Fingerprint: e.fingerprint, ExpiresIn: e.expires.Sub(now)}
		if e.resp != nil {
			rec.Response = cloneResponse(*e.resp)
		}
		return "", rec, nil
	}
	s.evict(now)
	token := newToken()
	s.entries[key] = s.order.PushBack(&memoryEntry{key: key, fingerprint: fingerprint, token: token, expires: now.Add(pendingTTL)})
	return token, nil, nil
}

// Complete implements Store.
func (s *MemoryStore) Complete(ctx context.Context, key, token string, resp Response, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("complete idempotency key: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	e, ok := s.live(key, now)
	if !ok || e.resp != nil || e.token != token {
		return ErrNotClaimed
	}
	e.resp = cloneResponse(resp)
	e.expires = now.Add(ttl)
	return nil
}

// Release implements Store.
func (s *MemoryStore) Release(ctx context.Context, key, token string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.live(key, s.now()); ok && e.resp == nil && e.token == token {
		s.remove(key)
	}
	return nil
}

// Len is the number of records held, expired ones not yet swept included.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// live returns key's entry unless it expired (then it is dropped).
func (s *MemoryStore) live(key string, now time.Time) (*memoryEntry, bool) {
	el, ok := s.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*memoryEntry)
	if !now.Before(e.expires) {
		s.remove(key)
		return nil, false
	}
	return e, true
}

// evict makes room for one more entry: expired ones first (a full sweep
// at most once a second, so a store kept full does not scan on every
// claim), then the oldest claims.
func (s *MemoryStore) evict(now time.Time) {
	if len(s.entries) < s.max {
		return
	}
	if now.Sub(s.swept) >= time.Second {
		s.swept = now
		for el := s.order.Front(); el != nil; {
			next := el.Next()
			if e := el.Value.(*memoryEntry); !now.Before(e.expires) {
				s.remove(e.key)
			}
			el = next
		}
	}
	for len(s.entries) >= s.max {
		s.remove(s.order.Front().Value.(*memoryEntry).key)
	}
}

func (s *MemoryStore) remove(key string) {
	if el, ok := s.entries[key]; ok {
		s.order.Remove(el)
		delete(s.entries, key)
	}
}

// cloneResponse keeps the stored answer independent of the caller's
// buffers, as the Redis store's encoding does.
func cloneResponse(r Response) *Response {
	c := Response{Status: r.Status, Body: append([]byte(nil), r.Body...)}
	if r.Header != nil {
		c.Header = make(map[string][]string, len(r.Header))
		for k, v := range r.Header {
			c.Header[k] = append([]string(nil), v...)
		}
	}
	return &c
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b)
}
