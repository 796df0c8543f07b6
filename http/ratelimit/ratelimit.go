// Package ratelimit limits requests per client across every gateway of a
// cluster: the budgets live in Redis and are spent with redis_rate's GCRA
// script, so N gateways enforce one limit, not N.
//
// A Redis failure lets the request through (fails open): the limit is a
// guard against abuse, not a correctness property, and when Redis is down
// the journal (same server) already answers every change with 503. Each
// such request counts in granary_ratelimit_errors_total, and a warning is
// logged at most once per warnEvery.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"granary/http/reqlog"
	"granary/messages"
	"granary/metrics"
)

// Response headers (draft-ietf-httpapi-ratelimit-headers; Reset in
// seconds from now).
const (
	HeaderLimit     = "RateLimit-Limit"
	HeaderRemaining = "RateLimit-Remaining"
	HeaderReset     = "RateLimit-Reset"
	headerRetry     = "Retry-After"
)

// Config is the limiter's tunables.
type Config struct {
	// PerMinute is how many requests a client may make per minute, in a
	// burst or spread out; 0 turns limiting off.
	PerMinute int
	// KeyPrefix namespaces the Redis keys (the deployment's key prefix).
	KeyPrefix string
	// Timeout bounds each Redis call; past it the request goes through.
	Timeout time.Duration
}

// DefaultTimeout keeps a slow Redis from adding more than this to any
// request.
const DefaultTimeout = 250 * time.Millisecond

// Validate names the first unusable field.
func (c Config) Validate() error {
	switch {
	case c.PerMinute < 0:
		return fmt.Errorf("ratelimit: PerMinute %d must be >= 0", c.PerMinute)
	case c.Timeout <= 0:
		return fmt.Errorf("ratelimit: Timeout %v must be > 0", c.Timeout)
	}
	return nil
}

// Key is whose budget a request spends.
type Key struct {
	// By is what identifies the client: BySubject or ByAddress.
	By string
	ID string
}

// Values of Key.By.
const (
	// BySubject: the subject of a verified token.
	BySubject = "subject"
	// ByAddress: the client's address (see ClientAddr and AddressKey).
	ByAddress = "address"
)

// Limiter spends one unit of a client's budget per request. It is safe for
// concurrent use.
type Limiter struct {
	rl       *redis_rate.Limiter
	limit    redis_rate.Limit
	cfg      Config
	log      *slog.Logger
	rejected *prometheus.CounterVec
	failures prometheus.Counter
	lastWarn atomic.Int64 // unix nanos of the last "Redis failed" warning
}

// warnEvery spaces out the warnings of a Redis outage, which would
// otherwise log once per request.
const warnEvery = 10 * time.Second

// New returns a limiter spending budgets in client's Redis and registering
// its metrics on reg. It needs a client even when PerMinute is 0 only if
// limiting is to be turned on later; with 0 the middleware does nothing.
func New(client goredis.UniversalClient, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil && cfg.PerMinute > 0 {
		return nil, errors.New("ratelimit: a Redis client is required when PerMinute > 0")
	}
	l := &Limiter{
		limit: redis_rate.PerMinute(cfg.PerMinute),
		cfg:   cfg,
		log:   log,
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Name: "ratelimit_rejected_total",
			Help: "Requests refused with 429, by what identified the client (subject or address).",
		}, []string{"by"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Name: "ratelimit_errors_total",
			Help: "Requests let through unchecked because the rate-limit store failed (fail open).",
		}),
	}
	if client != nil {
		l.rl = redis_rate.NewLimiter(client)
	}
	for _, c := range []prometheus.Collector{l.rejected, l.failures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ratelimit: register metrics: %w", err)
		}
	}
	// Show both series from the start: a rate() over a series that
	// appears only with the first refusal misses that refusal.
	l.rejected.WithLabelValues(ByAddress)
	l.rejected.WithLabelValues(BySubject)
	return l, nil
}

// Enabled reports whether requests are limited at all.
func (l *Limiter) Enabled() bool { return l.cfg.PerMinute > 0 }

// Middleware spends one unit of key(c)'s budget per request: over budget it
// answers 429 rate_limited with Retry-After; otherwise the answer carries
// the RateLimit-* headers.
func (l *Limiter) Middleware(key func(echo.Context) Key) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if !l.Enabled() {
			return next
		}
		return func(c echo.Context) error {
			k := key(c)
			res, err := l.allow(c.Request().Context(), k)
			if err != nil {
				l.failures.Inc()
				l.warn(reqlog.From(c.Request().Context(), l.log), err)
				return next(c)
			}
			h := c.Response().Header()
			h.Set(HeaderLimit, strconv.Itoa(l.cfg.PerMinute))
			h.Set(HeaderRemaining, strconv.Itoa(res.Remaining))
			h.Set(HeaderReset, strconv.Itoa(ceilSeconds(res.ResetAfter)))
			if res.Allowed == 0 {
				l.rejected.WithLabelValues(k.By).Inc()
				retry := max(ceilSeconds(res.RetryAfter), 1)
				h.Set(headerRetry, strconv.Itoa(retry))
				return messages.Fail(messages.CodeRateLimited, "rate limit of %d requests per minute exceeded; retry in %d s", l.cfg.PerMinute, retry)
			}
			return next(c)
		}
	}
}

func (l *Limiter) allow(ctx context.Context, k Key) (*redis_rate.Result, error) {
	// The client's own cancellation must not count as a Redis failure, but
	// neither may a client that hangs up skip the budget: use our own
	// deadline only.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.Timeout)
	defer cancel()
	res, err := l.rl.Allow(ctx, l.redisKey(k), l.limit)
	if err != nil {
		return nil, fmt.Errorf("rate limit %s: %w", k.By, err)
	}
	return res, nil
}

// redisKey hashes the identity: subjects come from tokens and may be long,
// and neither they nor addresses belong in Redis key listings.
func (l *Limiter) redisKey(k Key) string {
	sum := sha256.Sum256([]byte(k.By + "\x00" + k.ID))
	return l.cfg.KeyPrefix + ":ratelimit:" + hex.EncodeToString(sum[:16])
}

func (l *Limiter) warn(log *slog.Logger, err error) {
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if now-last < int64(warnEvery) || !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	log.Warn("rate-limit store failed; letting requests through unchecked", "err", err, "next_warning_in", warnEvery)
}

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

// errZone: a zone names an interface of this host, which no peer address
// from the network carries.
var errZone = errors.New("zones are not allowed")

// ProxyError is a GRANARY_TRUSTED_PROXIES entry that is neither a CIDR nor
// an address.
type ProxyError struct {
	Entry string
	Err   error
}

func (e *ProxyError) Error() string {
	return fmt.Sprintf("trusted proxy %q: want a CIDR such as 10.0.0.0/8 or an address: %v", e.Entry, e.Err)
}

func (e *ProxyError) Unwrap() error { return e.Err }
