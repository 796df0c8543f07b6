package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// LoginConfig is the login throttle's tunables: after MaxFailures failed
// logins of one username, each within Window of the last (or of the end of
// its lockout), that username is locked for Lockout, doubling with every
// further failure up to MaxLockout.
type LoginConfig struct {
	// KeyPrefix namespaces the Redis keys (the deployment's key prefix).
	KeyPrefix   string
	MaxFailures int
	Window      time.Duration
	Lockout     time.Duration
	MaxLockout  time.Duration
	// Timeout bounds each Redis call; past it the login answers 503.
	Timeout time.Duration
}

// DefaultLoginConfig is the contract's throttle: 5 failures within 15
// minutes lock the username, for 30 s first, then twice as long after
// each further failure, at most an hour.
func DefaultLoginConfig() LoginConfig {
	return LoginConfig{MaxFailures: 5, Window: 15 * time.Minute, Lockout: 30 * time.Second,
		MaxLockout: time.Hour, Timeout: DefaultTimeout}
}

// Validate names the first unusable field.
func (c LoginConfig) Validate() error {
	switch {
	case c.MaxFailures < 1:
		return fmt.Errorf("login throttle: MaxFailures %d must be >= 1", c.MaxFailures)
	case c.Window < time.Millisecond:
		return fmt.Errorf("login throttle: Window %v must be >= 1ms", c.Window)
	case c.Lockout < time.Millisecond:
		return fmt.Errorf("login throttle: Lockout %v must be >= 1ms", c.Lockout)
	case c.MaxLockout < c.Lockout:
		return fmt.Errorf("login throttle: MaxLockout %v must be >= Lockout %v", c.MaxLockout, c.Lockout)
	case c.Timeout <= 0:
		return fmt.Errorf("login throttle: Timeout %v must be > 0", c.Timeout)
	}
	return nil
}

// LoginThrottle limits password guesses per username across every gateway
// sharing one Redis, whatever address they come from. Unlike Limiter it
// fails closed: a throttle that lets guesses through whenever Redis is slow
// is one an attacker can switch off.
//
// Every attempt is counted as a failure before the password is checked
// (Attempt), and a success wipes the count (Succeeded). Counting first is
// what makes the limit hold for guesses sent in parallel: checking and
// recording after the (slow) verification would let every guess in flight
// pass the check.
type LoginThrottle struct {
	rdb goredis.UniversalClient
	cfg LoginConfig
}

// NewLoginThrottle returns a throttle keeping its counts in rdb.
func NewLoginThrottle(rdb goredis.UniversalClient, cfg LoginConfig) (*LoginThrottle, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rdb == nil {
		return nil, errors.New("login throttle: a Redis client is required (counts must be shared by every gateway)")
	}
	return &LoginThrottle{rdb: rdb, cfg: cfg}, nil
}

// loginScript counts one attempt of a username unless it is locked. It
// reads the clock of Redis, so every gateway judges by one clock. The
// hash holds n (attempts not followed by a success), last (ms of the last
// counted attempt) and until (ms the lockout ends); its TTL outlasts the
// lockout by Window, after which the count would restart anyway.
//
// KEYS[1] the username's key; ARGV max failures, window ms, lockout ms,
// max lockout ms. Returns the ms left of the lockout, 0 when counted.
var loginScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local maxf, window, lock, maxlock = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 'n', 'last', 'until')
local n, last, untl = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
if now < untl then
  return untl - now
end
if now - math.max(last, untl) > window then
  n = 0
end
n = n + 1
if n >= maxf then
  local over = n - maxf
  local d = maxlock
  if over < 40 then
    d = math.min(lock * 2 ^ over, maxlock)
  end
  untl = now + d
end
redis.call('HSET', KEYS[1], 'n', n, 'last', now, 'until', untl)
redis.call('PEXPIRE', KEYS[1], math.max(untl - now, 0) + window)
return 0
`)

// Attempt counts one login attempt of username. A positive retryAfter
// means the username is locked for that long: refuse without checking the
// password (the right one included). err is a Redis failure.
func (t *LoginThrottle) Attempt(ctx context.Context, username string) (retryAfter time.Duration, err error) {
	// Our own deadline only: a client hanging up must not skip the count.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.Timeout)
	defer cancel()
	ms, err := loginScript.Run(ctx, t.rdb, []string{t.key(username)}, t.cfg.MaxFailures,
		t.cfg.Window.Milliseconds(), t.cfg.Lockout.Milliseconds(), t.cfg.MaxLockout.Milliseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("login throttle: count attempt: %w", err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// Succeeded wipes username's count after a login with the right password.
func (t *LoginThrottle) Succeeded(ctx context.Context, username string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.Timeout)
	defer cancel()
	if err := t.rdb.Del(ctx, t.key(username)).Err(); err != nil {
		return fmt.Errorf("login throttle: clear count: %w", err)
	}
	return nil
}

// key hashes the username: it is whatever the client sent (any length,
// any bytes), and attempted usernames do not belong in key listings.
func (t *LoginThrottle) key(username string) string {
	sum := sha256.Sum256([]byte("login\x00" + username))
	return t.cfg.KeyPrefix + ":login:" + hex.EncodeToString(sum[:16])
}

// RetryAfterSeconds renders a lockout for the Retry-After header: whole
// seconds, rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) int { return max(ceilSeconds(d), 1) }
