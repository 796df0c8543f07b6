package auth

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var cacheSecret = []byte("cache-unit-tests-secret-0123456789abcdef")

// t0 is a whole second: exp and nbf are whole seconds on the wire.
var t0 = time.Unix(1_800_000_000, 0)

// fakeClock is a settable clock for one goroutine.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newCachedVerifier(t testing.TB, size int, clock func() time.Time) *Verifier {
	t.Helper()
	v, err := NewVerifierWithConfig(cacheSecret, VerifierConfig{CacheSize: size, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func signClaims(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(cacheSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// onlyCache makes every full verification fail (wrong secret), so whatever
// Verify still accepts came from the cache. It returns the undo.
func onlyCache(v *Verifier) func() {
	real := v.secret
	v.secret = []byte("not-the-secret-any-token-was-signed-with")
	return func() { v.secret = real }
}

func TestCacheHitReturnsSamePrincipal(t *testing.T) {
	clock := &fakeClock{t: t0}
	v := newCachedVerifier(t, 16, clock.now)
	tok, err := v.IssueFor(Principal{Subject: "usr_a", Username: "alice", Roles: []string{"admin", "ops"}}, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if n := v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d tokens after one verification, want 1", n)
	}
	defer onlyCache(v)()
	clock.t = t0.Add(30 * time.Minute)
	hit, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("cached token refused: %v", err)
	}
	if hit.Subject != first.Subject || hit.Username != first.Username || !slices.Equal(hit.Roles, first.Roles) {
		t.Fatalf("hit = %+v, first verification = %+v", hit, first)
	}
	// Callers get their own Roles: changing one does not change the cache.
	hit.Roles[0] = "viewer"
	first.Roles[1] = "viewer"
	again, err := v.Verify(tok)
	if err != nil || !slices.Equal(again.Roles, []string{"admin", "ops"}) {
		t.Fatalf("after callers changed their roles, Verify = %+v, %v", again, err)
	}
}

func TestCacheNeverServesPastExp(t *testing.T) {
	clock := &fakeClock{t: t0}
	v := newCachedVerifier(t, 16, clock.now)
	exp := t0.Add(10 * time.Second)
	tok := signClaims(t, jwt.MapClaims{"sub": "alice", "exp": exp.Unix()})
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	undo := onlyCache(v)
	clock.t = exp.Add(-time.Microsecond)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("a µs before exp, cached token refused: %v", err)
	}
	// From exp on the parser still allows the leeway; the cache does not.
	for _, at := range []time.Duration{0, time.Second, leeway - time.Second, time.Hour} {
		clock.t = exp.Add(at)
		if p, err := v.Verify(tok); err == nil {
			t.Fatalf("exp+%v: served from the cache as %+v", at, p)
		}
	}
	undo()
	// The parser decides inside the leeway, and what it accepts there is
	// not cached.
	clock.t = exp.Add(2 * time.Second)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	key := tokenKeyOf(tok)
	if _, ok := v.cache.get(&key, unixMicro(clock.t)); ok {
		t.Fatal("a token past exp is served from the cache")
	}
	clock.t = exp.Add(leeway)
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("exp+leeway: accepted, but the entry is still in the cache")
	}
}

func tokenKeyOf(tok string) tokenKey {
	return sha256.Sum256([]byte(tok))
}

// The parser allows a token from nbf-leeway on; a cached one is served no
// earlier, even when the clock steps back.
func TestCacheKeepsNotBefore(t *testing.T) {
	clock := &fakeClock{t: t0}
	v := newCachedVerifier(t, 16, clock.now)
	nbf := t0.Add(3 * time.Second) // within the leeway: accepted now
	tok := signClaims(t, jwt.MapClaims{"sub": "alice", "nbf": nbf.Unix(), "exp": t0.Add(time.Hour).Unix()})
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	defer onlyCache(v)()
	clock.t = nbf.Add(-leeway)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("at nbf-leeway: %v", err)
	}
	clock.t = nbf.Add(-leeway - time.Microsecond)
	if p, err := v.Verify(tok); err == nil {
		t.Fatalf("before nbf-leeway: served from the cache as %+v", p)
	}
}

func TestCacheKeepsOnlyAcceptedTokens(t *testing.T) {
	clock := &fakeClock{t: t0}
	v := newCachedVerifier(t, 16, clock.now)
	good := signClaims(t, jwt.MapClaims{"sub": "alice", "exp": t0.Add(time.Hour).Unix()})
	for name, tok := range map[string]string{
		"garbage":      "not-a-token",
		"expired":      signClaims(t, jwt.MapClaims{"sub": "alice", "exp": t0.Add(-time.Minute).Unix()}),
		"no sub":       signClaims(t, jwt.MapClaims{"exp": t0.Add(time.Hour).Unix()}),
		"nbf later":    signClaims(t, jwt.MapClaims{"sub": "alice", "nbf": t0.Add(time.Hour).Unix(), "exp": t0.Add(2 * time.Hour).Unix()}),
		"no signature": good[:len(good)-5],
	} {
		for range 2 {
			if p, err := v.Verify(tok); err == nil {
				t.Errorf("%s: accepted as %+v", name, p)
			}
		}
	}
	// Accepted, but only thanks to the leeway: nothing left to serve later.
	if _, err := v.Verify(signClaims(t, jwt.MapClaims{"sub": "alice", "exp": t0.Add(-2 * time.Second).Unix()})); err != nil {
		t.Fatal(err)
	}
	if n := v.cache.len(); n != 0 {
		t.Fatalf("cache holds %d tokens, want none", n)
	}
}

func TestCacheBound(t *testing.T) {
	for _, size := range []int{1, 10, 130, DefaultCacheSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			clock := &fakeClock{t: t0}
			v := newCachedVerifier(t, size, clock.now)
			const distinct = 10_000
			for i := range distinct {
				sub := fmt.Sprintf("usr_%d", i)
				tok, err := v.Issue(sub, nil, t0, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				// Twice: the second may be a hit, and must be right either way.
				for range 2 {
					if p, err := v.Verify(tok); err != nil || p.Subject != sub {
						t.Fatalf("token %d: Verify = %+v, %v", i, p, err)
					}
				}
				if n := v.cache.len(); n > size {
					t.Fatalf("after %d tokens the cache holds %d, bound %d", i+1, n, size)
				}
			}
			if n := v.cache.len(); n != size {
				t.Fatalf("after %d distinct tokens the cache holds %d, want it full (%d)", distinct, n, size)
			}
		})
	}
}

// Second chance: a full shard evicts a token not used since the hand last
// passed it, and an expired one before any live one.
func TestCacheEviction(t *testing.T) {
	now := unixMicro(t0)
	live := func(sub string) cachedToken {
		return cachedToken{p: Principal{Subject: sub}, expires: now + int64(time.Hour/time.Microsecond)}
	}
	k := func(s string) *tokenKey { key := tokenKeyOf(s); return &key }
	held := func(c *tokenCache, at int64, subs ...string) []string {
		var got []string
		for _, s := range subs {
			if _, ok := c.get(k(s), at); ok {
				got = append(got, s)
			}
		}
		return got
	}

	c := newTokenCache(3)
	if len(c.shards) != 1 {
		t.Fatalf("a 3-token cache has %d shards", len(c.shards))
	}
	for _, s := range []string{"a", "b", "c"} {
		c.put(k(s), live(s), now)
	}
	held(c, now, "a") // a used since the hand passed: b goes
	c.put(k("d"), live("d"), now)
	if got := held(c, now, "a", "b", "c", "d"); !slices.Equal(got, []string{"a", "c", "d"}) {
		t.Fatalf("after a hit on a, inserting d left %v, want [a c d]", got)
	}
	// All three were just used (held flags them): the hand clears every
	// flag in one turn and takes the slot it started at.
	c.put(k("e"), live("e"), now)
	if got := held(c, now, "a", "c", "d", "e"); len(got) != 3 || !slices.Contains(got, "e") {
		t.Fatalf("after inserting e into a used, full cache: %v", got)
	}

	c = newTokenCache(3)
	short := live("a")
	short.expires = now + 1
	c.put(k("a"), short, now)
	c.put(k("b"), live("b"), now)
	c.put(k("c"), live("c"), now)
	held(c, now, "a", "b", "c") // all used
	later := now + 2            // a has expired
	c.put(k("d"), live("d"), later)
	if got := held(c, later, "b", "c", "d"); !slices.Equal(got, []string{"b", "c", "d"}) {
		t.Fatalf("inserting d after a expired left %v, want [b c d]", got)
	}
	if n := c.len(); n != 3 {
		t.Fatalf("cache holds %d, bound 3", n)
	}
}

// Many requests verifying overlapping tokens through a cache too small for
// them all (evicting all the time): every answer is its own token's. Run
// with -race.
func TestCacheConcurrentVerify(t *testing.T) {
	v := newCachedVerifier(t, 200, nil)
	const tokens, workers, rounds = 400, 8, 3000
	toks := make([]string, tokens)
	for i := range toks {
		var err error
		if toks[i], err = v.Issue(fmt.Sprintf("usr_%d", i), []string{"ops"}, time.Now(), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				// A hot set shared by all workers plus a long tail.
				i := (r*7 + w*13) % 50
				if r%3 == 0 {
					i = (r*31 + w*101) % tokens
				}
				p, err := v.Verify(toks[i])
				if err != nil || p.Subject != fmt.Sprintf("usr_%d", i) || !slices.Equal(p.Roles, []string{"ops"}) {
					errs <- fmt.Errorf("worker %d: token %d: %+v, %v", w, i, p, err)
					return
				}
				p.Roles[0] = "scribbled" // must not reach anyone else's answer
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := v.cache.len(); n > 200 {
		t.Fatalf("cache holds %d, bound 200", n)
	}
}

func TestVerifierConfig(t *testing.T) {
	if _, err := NewVerifierWithConfig(cacheSecret, VerifierConfig{CacheSize: -1}); err == nil {
		t.Fatal("a negative cache size was accepted")
	}
	v, err := NewVerifierWithConfig(cacheSecret, VerifierConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if v.cache != nil {
		t.Fatal("CacheSize 0 still caches")
	}
	tok, err := v.Issue("alice", nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(tok); err != nil || p.Subject != "alice" {
		t.Fatalf("without a cache: Verify = %+v, %v", p, err)
	}
	if d, err := NewVerifier(cacheSecret); err != nil || d.cache == nil {
		t.Fatalf("NewVerifier has no cache: %v", err)
	}
}

func TestUnixMicroSaturates(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{t0, t0.UnixMicro()},
		{time.Unix(1<<62, 0), 1<<63 - 1},
		{time.Unix(-1<<62, 0), -1 << 63},
	} {
		if got := unixMicro(tc.t); got != tc.want {
			t.Errorf("unixMicro(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}

// BenchmarkVerify compares a full verification with a cache hit, for a
// token like the ones /auth/login issues.
func BenchmarkVerify(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"cold", 0}, {"cached", DefaultCacheSize}} {
		b.Run(bc.name, func(b *testing.B) {
			v := newCachedVerifier(b, bc.size, nil)
			tok, err := v.IssueFor(Principal{Subject: "usr_3kTMd3GLLWqAjGdu4y2ZkN", Username: "alice", Roles: []string{"ops"}}, time.Now(), time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := v.Verify(tok); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
