package auth

import (
	"crypto/sha256"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCacheSize is how many verified tokens a Verifier remembers unless
// told otherwise: a few thousand callers' worth, ~0.5 MB at most.
const DefaultCacheSize = 4096

// tokenKey is the SHA-256 of a token. The token itself is never kept: a
// heap dump of the cache yields no bearer credentials, and a key that
// differs in any byte of the token (a tampered payload, a stripped
// signature) is a different key, with no collision an attacker can find.
type tokenKey = [sha256.Size]byte

// cachedToken is what one verification proved.
type cachedToken struct {
	p Principal
	// A hit is valid while notBefore <= now < expires (Unix µs). expires is
	// the token's exp without the parser's leeway, notBefore its nbf minus
	// the leeway (the parser's own rule), so the cache never accepts a token
	// at a time the parser would refuse it.
	notBefore, expires int64
}

func (e *cachedToken) validAt(now int64) bool { return e.notBefore <= now && now < e.expires }

// tokenCache is a bounded map of verified tokens, split into shards so
// concurrent requests rarely share a lock. Each shard evicts by second
// chance (CLOCK): a hit only sets a flag (under the read lock), and an
// insert into a full shard moves the hand past flagged slots, clearing
// them, to the first unflagged or expired one. That is amortised O(1) and at
// most one turn of the shard's slots, and needs no goroutine.
type tokenCache struct {
	shards []cacheShard
	mask   uint64
}

type cacheShard struct {
	mu    sync.RWMutex
	index map[tokenKey]int32
	slots []cacheSlot // grows to limit, then slots are reused
	limit int
	hand  int
	_     [64]byte // keep neighbouring shards' locks off one cache line
}

type cacheSlot struct {
	key tokenKey
	tok cachedToken
	ref atomic.Bool // hit since the hand last passed
}

// newTokenCache holds at most size tokens; size must be positive.
func newTokenCache(size int) *tokenCache {
	// Shards only when each still holds a useful number of tokens, so a
	// small cache's bound is not spread too thin to keep anything.
	n := 1
	for n < 16 && n*2*64 <= size {
		n *= 2
	}
	c := &tokenCache{shards: make([]cacheShard, n), mask: uint64(n - 1)}
	for i := range c.shards {
		// size split exactly: the first size%n shards take one more.
		limit := size / n
		if i < size%n {
			limit++
		}
		c.shards[i] = cacheShard{index: make(map[tokenKey]int32), limit: limit}
	}
	return c
}

func (c *tokenCache) shard(k *tokenKey) *cacheShard {
	// SHA-256 output is uniform: its first bytes pick the shard.
	i := uint64(k[0]) | uint64(k[1])<<8 | uint64(k[2])<<16 | uint64(k[3])<<24
	return &c.shards[i&c.mask]
}

// get returns the principal of a token verified earlier if its entry is
// valid at now (Unix µs). The principal's Roles are a copy.
func (c *tokenCache) get(k *tokenKey, now int64) (Principal, bool) {
	s := c.shard(k)
	s.mu.RLock()
	i, ok := s.index[*k]
	if !ok {
		s.mu.RUnlock()
		return Principal{}, false
	}
	sl := &s.slots[i]
	if !sl.tok.validAt(now) {
		// Left for the hand to reclaim: an expired entry goes first.
		s.mu.RUnlock()
		return Principal{}, false
	}
	sl.ref.Store(true)
	p := sl.tok.p
	s.mu.RUnlock()
	p.Roles = slices.Clone(p.Roles)
	return p, true
}

// put remembers a verified token. now (Unix µs) lets an insert into a
// full shard take an expired slot before a live one.
func (c *tokenCache) put(k *tokenKey, tok cachedToken, now int64) {
	tok.p.Roles = slices.Clone(tok.p.Roles) // the caller keeps its own slice
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[*k]; ok { // verified concurrently by another request
		s.slots[i].tok = tok
		return
	}
	if len(s.slots) < s.limit {
		s.slots = append(s.slots, cacheSlot{key: *k, tok: tok})
		s.index[*k] = int32(len(s.slots) - 1)
		return
	}
	// Every flag the hand passes is cleared, so this ends within one turn
	// plus one slot.
	for {
		i := s.hand
		s.hand++
		if s.hand == len(s.slots) {
			s.hand = 0
		}
		sl := &s.slots[i]
		if sl.tok.validAt(now) && sl.ref.Swap(false) {
			continue
		}
		delete(s.index, sl.key)
		sl.key, sl.tok = *k, tok
		sl.ref.Store(false)
		s.index[*k] = int32(i)
		return
	}
}

// len counts the tokens held (for tests).
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.index)
		s.mu.RUnlock()
	}
	return n
}

// unixMicro is t in Unix microseconds, saturated rather than wrapped for
// times beyond int64's ±292 000 years (a token may claim any exp).
// Saturating exp downward only makes an entry expire earlier.
func unixMicro(t time.Time) int64 {
	const maxSec = math.MaxInt64/1_000_000 - 1
	switch s := t.Unix(); {
	case s > maxSec:
		return math.MaxInt64
	case s < -maxSec:
		return math.MinInt64
	}
	return t.UnixMicro()
}
