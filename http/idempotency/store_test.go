package idempotency_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"granary/http/idempotency"
	"granary/internal/leakcheck"
	"granary/testkit"
)

func TestMain(m *testing.M) { leakcheck.Main(m, testkit.LeakOptions()...) }

// runStoreSuite is the contract every Store implementation must meet.
func runStoreSuite(t *testing.T, newStore func(t *testing.T) (idempotency.Store, func(time.Duration))) {
	ctx := context.Background()
	resp := idempotency.Response{Status: 201, Header: map[string][]string{"Location": {"/x/1"}, "Content-Type": {"application/json"}}, Body: []byte(`{"id":"1","note":"a|b"}`)}

	t.Run("claim, complete, replay", func(t *testing.T) {
		s, _ := newStore(t)
		token, rec, err := s.Claim(ctx, "k", "fp1", time.Minute)
		if err != nil || rec != nil || token == "" {
			t.Fatalf("first claim: token %q, record %+v, err %v", token, rec, err)
		}
		_, rec, err = s.Claim(ctx, "k", "fp1", time.Minute)
		if err != nil || rec == nil || !rec.Pending() || rec.Fingerprint != "fp1" || rec.ExpiresIn <= 0 || rec.ExpiresIn > time.Minute {
			t.Fatalf("claim while pending: %+v, %v", rec, err)
		}
		if err := s.Complete(ctx, "k", token, resp, time.Hour); err != nil {
			t.Fatal(err)
		}
		_, rec, err = s.Claim(ctx, "k", "fp2", time.Minute)
		if err != nil || rec == nil || rec.Pending() || rec.Fingerprint != "fp1" {
			t.Fatalf("claim after completion: %+v, %v", rec, err)
		}
		if got := rec.Response; got.Status != 201 || string(got.Body) != string(resp.Body) ||
			fmt.Sprint(got.Header) != fmt.Sprint(resp.Header) {
			t.Fatalf("stored %+v, want %+v", got, resp)
		}
		if rec.ExpiresIn <= time.Minute || rec.ExpiresIn > time.Hour {
			t.Fatalf("completed record expires in %v, want the final TTL", rec.ExpiresIn)
		}
		// A completed record is final: the token no longer completes it.
		if err := s.Complete(ctx, "k", token, resp, time.Hour); !errors.Is(err, idempotency.ErrNotClaimed) {
			t.Fatalf("second Complete: %v, want ErrNotClaimed", err)
		}
	})

	t.Run("keys are independent", func(t *testing.T) {
		s, _ := newStore(t)
		if _, _, err := s.Claim(ctx, "a", "fp", time.Minute); err != nil {
			t.Fatal(err)
		}
		if tok, rec, err := s.Claim(ctx, "b", "fp", time.Minute); err != nil || rec != nil || tok == "" {
			t.Fatalf("claim of another key: %q %+v %v", tok, rec, err)
		}
	})

	t.Run("release lets the key be claimed again", func(t *testing.T) {
		s, _ := newStore(t)
		token, _, _ := s.Claim(ctx, "k", "fp", time.Minute)
		if err := s.Release(ctx, "k", "not-the-token"); err != nil {
			t.Fatal(err)
		}
		if _, rec, _ := s.Claim(ctx, "k", "fp", time.Minute); rec == nil {
			t.Fatal("a foreign token released the claim")
		}
		if err := s.Release(ctx, "k", token); err != nil {
			t.Fatal(err)
		}
		if tok, rec, err := s.Claim(ctx, "k", "fp", time.Minute); err != nil || rec != nil || tok == token {
			t.Fatalf("claim after release: %q %+v %v", tok, rec, err)
		}
		if err := s.Complete(ctx, "k", token, resp, time.Hour); !errors.Is(err, idempotency.ErrNotClaimed) {
			t.Fatalf("Complete with a released token: %v, want ErrNotClaimed", err)
		}
	})

	t.Run("release leaves a completed record", func(t *testing.T) {
		s, _ := newStore(t)
		token, _, _ := s.Claim(ctx, "k", "fp", time.Minute)
		if err := s.Complete(ctx, "k", token, resp, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := s.Release(ctx, "k", token); err != nil {
			t.Fatal(err)
		}
		if _, rec, _ := s.Claim(ctx, "k", "fp", time.Minute); rec == nil || rec.Pending() {
			t.Fatalf("record after Release of a completed key: %+v", rec)
		}
	})

	t.Run("an expired claim frees the key", func(t *testing.T) {
		s, advance := newStore(t)
		stale, _, _ := s.Claim(ctx, "k", "fp", 30*time.Millisecond)
		advance(31 * time.Millisecond)
		var fresh string
		testkit.WaitFor(t, 5*time.Second, func() error {
			tok, rec, err := s.Claim(ctx, "k", "fp", time.Minute)
			if err != nil {
				return err
			}
			if rec != nil {
				return fmt.Errorf("still held, %v left", rec.ExpiresIn)
			}
			fresh = tok
			return nil
		})
		// The first request's late answer must not overwrite the claim of
		// the one running now.
		if err := s.Complete(ctx, "k", stale, resp, time.Hour); !errors.Is(err, idempotency.ErrNotClaimed) {
			t.Fatalf("Complete with an expired claim: %v, want ErrNotClaimed", err)
		}
		if err := s.Complete(ctx, "k", fresh, resp, time.Hour); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("one concurrent claim wins", func(t *testing.T) {
		s, _ := newStore(t)
		const n = 20
		var wg sync.WaitGroup
		won := make(chan string, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, rec, err := s.Claim(ctx, "k", "fp", time.Minute)
				if err != nil {
					t.Error(err)
				}
				if rec == nil {
					won <- tok
				}
			}()
		}
		wg.Wait()
		close(won)
		if len(won) != 1 {
			t.Fatalf("%d claims won, want exactly 1", len(won))
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		s, _ := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, _, err := s.Claim(cctx, "k", "fp", time.Minute); err == nil {
			t.Fatal("Claim with a cancelled context succeeded")
		}
	})
}

// The suite's second value moves the store's clock forward (real Redis
// keeps real time: there the suite waits instead).
func TestMemoryStore(t *testing.T) {
	runStoreSuite(t, func(*testing.T) (idempotency.Store, func(time.Duration)) {
		var mu sync.Mutex
		now := time.Now()
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
		return idempotency.NewMemoryStore(0, clock), advance
	})
}

func TestRedisStore(t *testing.T) {
	runStoreSuite(t, func(t *testing.T) (idempotency.Store, func(time.Duration)) {
		rdb, prefix, advance := testRedis(t)
		s, err := idempotency.NewRedisStore(rdb, prefix)
		if err != nil {
			t.Fatal(err)
		}
		return s, advance
	})
}

// testRedis is GRANARY_REDIS_URL's server when set, else an embedded one,
// with a key prefix of the test's own (removed at the end), and a way to
// move the embedded server's clock.
func testRedis(t *testing.T) (goredis.UniversalClient, string, func(time.Duration)) {
	t.Helper()
	var rdb *goredis.Client
	advance := func(time.Duration) {}
	if url := os.Getenv(testkit.RedisURLEnv); url != "" {
		opt, err := goredis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		rdb = goredis.NewClient(opt)
	} else {
		mr := miniredis.RunT(t)
		rdb = goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
		advance = mr.FastForward
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "idemtest-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+":*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		_ = rdb.Close()
	})
	return rdb, prefix, advance
}

// The in-memory twin holds a bounded number of records however many keys
// clients send.
func TestMemoryStoreBounded(t *testing.T) {
	now := time.Unix(0, 0)
	s := idempotency.NewMemoryStore(3, func() time.Time { return now })
	ctx := context.Background()
	for i := range 10 {
		if _, _, err := s.Claim(ctx, fmt.Sprint("k", i), "fp", time.Hour); err != nil {
			t.Fatal(err)
		}
		if s.Len() > 3 {
			t.Fatalf("%d records after %d claims, want at most 3", s.Len(), i+1)
		}
	}
	// The newest keys survive; the oldest were forgotten.
	if _, rec, _ := s.Claim(ctx, "k9", "fp", time.Hour); rec == nil {
		t.Fatal("newest key forgotten")
	}
	if tok, rec, _ := s.Claim(ctx, "k0", "fp", time.Hour); rec != nil || tok == "" {
		t.Fatal("oldest key still held")
	}
	// Expired records make room before live ones are evicted.
	now = now.Add(2 * time.Hour)
	for _, k := range []string{"x", "y", "z"} {
		if _, rec, _ := s.Claim(ctx, k, "fp", time.Hour); rec != nil {
			t.Fatalf("%s: %+v", k, rec)
		}
	}
	if s.Len() != 3 {
		t.Fatalf("%d records, want 3", s.Len())
	}
}
