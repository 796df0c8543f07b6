package ratelimit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"granary/http/ratelimit"
	"granary/testkit"
)

// loginBackends runs f on miniredis (what dev runs on) and on a real
// redis-server (what a cluster runs on): the script must hold on both.
func loginBackends(t *testing.T, f func(t *testing.T, rdb goredis.UniversalClient, prefix string)) {
	t.Run("miniredis", func(t *testing.T) {
		mr := miniredis.RunT(t)
		rdb := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), MaxRetries: -1})
		t.Cleanup(func() { _ = rdb.Close() })
		f(t, rdb, "lt")
	})
	t.Run("redis", func(t *testing.T) {
		opt, err := goredis.ParseURL(testkit.RealRedisURL(t))
		if err != nil {
			t.Fatal(err)
		}
		rdb := goredis.NewClient(opt)
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		prefix := "lttest-" + hex.EncodeToString(b) // the server may be shared
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			iter := rdb.Scan(ctx, 0, prefix+":*", 100).Iterator()
			for iter.Next(ctx) {
				rdb.Del(ctx, iter.Val())
			}
			_ = rdb.Close()
		})
		f(t, rdb, prefix)
	})
}

func newLoginThrottle(t *testing.T, rdb goredis.UniversalClient, prefix string, lockout time.Duration) *ratelimit.LoginThrottle {
	t.Helper()
	cfg := ratelimit.DefaultLoginConfig()
	cfg.KeyPrefix, cfg.Lockout, cfg.Timeout = prefix, lockout, 2*time.Second
	th, err := ratelimit.NewLoginThrottle(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return th
}

func attempt(t *testing.T, th *ratelimit.LoginThrottle, username string) time.Duration {
	t.Helper()
	d, err := th.Attempt(context.Background(), username)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestLoginThrottleLocksAfterFiveAndGrows(t *testing.T) {
	loginBackends(t, func(t *testing.T, rdb goredis.UniversalClient, prefix string) {
		// Long enough that the few Redis calls between the two lockouts
		// cannot make the doubled one look no longer, on a busy machine.
		const lockout = time.Second
		th := newLoginThrottle(t, rdb, prefix, lockout)
		for i := range 5 {
			if d := attempt(t, th, "alice"); d != 0 {
				t.Fatalf("attempt %d refused for %v: the first 5 go through", i+1, d)
			}
		}
		first := attempt(t, th, "alice")
		if first <= 0 || first > lockout {
			t.Fatalf("6th attempt: locked for %v, want (0, %v]", first, lockout)
		}
		// Others are not locked by alice's failures.
		if d := attempt(t, th, "bob"); d != 0 {
			t.Fatalf("bob locked for %v by alice's failures", d)
		}
		// Once the lockout passes one attempt is counted, and locks for
		// twice as long.
		testkit.WaitFor(t, 5*time.Second, func() error {
			if d := attempt(t, th, "alice"); d > 0 {
				return errLocked
			}
			return nil
		})
		second := attempt(t, th, "alice")
		if second <= lockout || second > 2*lockout {
			t.Fatalf("after a further failure: locked for %v, want (%v, %v]", second, lockout, 2*lockout)
		}
	})
}

var errLocked = errorString("still locked")

type errorString string

func (e errorString) Error() string { return string(e) }

func TestLoginThrottleSuccessClears(t *testing.T) {
	loginBackends(t, func(t *testing.T, rdb goredis.UniversalClient, prefix string) {
		th := newLoginThrottle(t, rdb, prefix, time.Minute)
		for range 4 {
			attempt(t, th, "alice")
		}
		if err := th.Succeeded(context.Background(), "alice"); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if d := attempt(t, th, "alice"); d != 0 {
				t.Fatalf("attempt %d after a success refused for %v", i+1, d)
			}
		}
		if d := attempt(t, th, "alice"); d <= 0 {
			t.Fatal("6th failure after the success not locked")
		}
	})
}

// Guesses sent at once must not all pass a check made before any of them
// was recorded.
func TestLoginThrottleParallelGuesses(t *testing.T) {
	loginBackends(t, func(t *testing.T, rdb goredis.UniversalClient, prefix string) {
		th := newLoginThrottle(t, rdb, prefix, time.Minute)
		var passed atomic.Int64
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if d, err := th.Attempt(context.Background(), "alice"); err == nil && d == 0 {
					passed.Add(1)
				}
			})
		}
		wg.Wait()
		if n := passed.Load(); n != 5 {
			t.Fatalf("%d of 50 parallel guesses went through, want 5", n)
		}
	})
}

// Every key expires: attempted usernames are whatever clients send.
func TestLoginThrottleKeysExpire(t *testing.T) {
	loginBackends(t, func(t *testing.T, rdb goredis.UniversalClient, prefix string) {
		th := newLoginThrottle(t, rdb, prefix, time.Minute)
		for range 7 {
			attempt(t, th, "no-such-user")
		}
		ctx := context.Background()
		keys, err := rdb.Keys(ctx, prefix+":login:*").Result()
		if err != nil || len(keys) != 1 {
			t.Fatalf("keys %v, %v: want one", keys, err)
		}
		ttl, err := rdb.PTTL(ctx, keys[0]).Result()
		// Locked for at most the max lockout, then kept for the window.
		cfg := ratelimit.DefaultLoginConfig()
		if err != nil || ttl <= 0 || ttl > cfg.MaxLockout+cfg.Window {
			t.Fatalf("TTL %v, %v: want (0, %v]", ttl, err, cfg.MaxLockout+cfg.Window)
		}
	})
}

// A throttle that cannot count refuses: it must not be switched off by
// making Redis slow.
func TestLoginThrottleFailsClosed(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	th := newLoginThrottle(t, rdb, "lt", time.Minute)
	mr.Close()
	if _, err := th.Attempt(context.Background(), "alice"); err == nil {
		t.Fatal("Attempt with Redis down: no error")
	}
}

func TestLoginConfigValidate(t *testing.T) {
	good := ratelimit.DefaultLoginConfig()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(*ratelimit.LoginConfig){
		"MaxFailures": func(c *ratelimit.LoginConfig) { c.MaxFailures = 0 },
		"Window":      func(c *ratelimit.LoginConfig) { c.Window = 0 },
		"Lockout":     func(c *ratelimit.LoginConfig) { c.Lockout = 0 },
		"MaxLockout":  func(c *ratelimit.LoginConfig) { c.MaxLockout = c.Lockout / 2 },
		"Timeout":     func(c *ratelimit.LoginConfig) { c.Timeout = 0 },
	} {
		c := good
		f(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ratelimit.NewLoginThrottle(nil, good); err == nil {
		t.Error("nil Redis: no error")
	}
}
