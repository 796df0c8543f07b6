// Package gateway owns Granary's HTTP edge: the Echo server, its routes, and
// the handlers that bind a request, call a grain and render its answer.
// Errors go to the problem package; tokens are checked by the auth package.
package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"granary/cluster"
	"granary/cluster/balancer"
	"granary/http/auth"
	"granary/http/idempotency"
	"granary/http/ratelimit"
	"granary/persistence"
)

// Config is the gateway's tunables.
type Config struct {
	// CallTimeout bounds each request's grain calls (504 past it).
	CallTimeout time.Duration
	// TokenTTL is the validity of tokens issued by /auth/login.
	TokenTTL time.Duration
	// BodyLimit is the largest request body accepted (413 past it).
	BodyLimit int64
	// Server timeouts; ReadHeaderTimeout is the slowloris guard.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// RateLimit is requests per minute per client (token subject, else
	// address); 0 turns limiting off. Above 0 it needs Deps.Redis.
	RateLimit int
	// TrustedProxies are the peers whose X-Forwarded-For is believed when
	// working out a client's address; nobody else's is.
	TrustedProxies []netip.Prefix
	// KeyPrefix namespaces the gateway's Redis keys (rate-limit budgets,
	// idempotency records), as the journal's prefix namespaces its own.
	KeyPrefix string
	// IdempotencyTTL keeps the answer to a request with an
	// Idempotency-Key; IdempotencyPendingTTL is how long the first such
	// request holds its key (see idempotency.Config.PendingTTL).
	IdempotencyTTL        time.Duration
	IdempotencyPendingTTL time.Duration
	// SummaryWait is how long a summary read with min_version waits for
	// the read model to reach it (504 past it); the contract says 5 s.
	SummaryWait time.Duration
	// Login throttles password guesses per username across the gateways
	// sharing Deps.Redis (its KeyPrefix is KeyPrefix's).
	Login ratelimit.LoginConfig
	// StreamsPerSubject is how many SSE streams one token subject may hold
	// open on this gateway (429 past it), so that one user cannot take
	// the stream capacity of everyone else.
	StreamsPerSubject int
	// StreamWriteTimeout cuts a stream whose client stops reading: a write
	// (event or heartbeat) that has not gone through within it ends the
	// stream. StreamHeartbeat is how often an idle stream sends a comment.
	StreamWriteTimeout time.Duration
	StreamHeartbeat    time.Duration
}

// DefaultConfig returns the contract's defaults.
func DefaultConfig() Config {
	return Config{
		CallTimeout:       5 * time.Second,
		TokenTTL:          time.Hour,
		BodyLimit:         1 << 20,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		KeyPrefix:         "granary",
		// Longer than CallTimeout, with room for the handler's own work.
		IdempotencyTTL:        24 * time.Hour,
		IdempotencyPendingTTL: 30 * time.Second,
		SummaryWait:           5 * time.Second,
		Login:                 ratelimit.DefaultLoginConfig(),
		StreamsPerSubject:     8,
		StreamWriteTimeout:    30 * time.Second,
		StreamHeartbeat:       15 * time.Second,
	}
}

// Validate names the first unusable field.
func (c Config) Validate() error {
	for name, d := range map[string]time.Duration{
		"CallTimeout": c.CallTimeout, "TokenTTL": c.TokenTTL, "ReadHeaderTimeout": c.ReadHeaderTimeout,
		"ReadTimeout": c.ReadTimeout, "WriteTimeout": c.WriteTimeout, "IdleTimeout": c.IdleTimeout,
		"IdempotencyTTL": c.IdempotencyTTL, "IdempotencyPendingTTL": c.IdempotencyPendingTTL,
		"SummaryWait": c.SummaryWait, "StreamWriteTimeout": c.StreamWriteTimeout, "StreamHeartbeat": c.StreamHeartbeat,
	} {
		if d <= 0 {
			return fmt.Errorf("gateway: %s %v must be > 0", name, d)
		}
	}
	switch {
	case c.BodyLimit <= 0:
		return fmt.Errorf("gateway: BodyLimit %d must be > 0", c.BodyLimit)
	case c.StreamsPerSubject < 1:
		return fmt.Errorf("gateway: StreamsPerSubject %d must be >= 1", c.StreamsPerSubject)
	case c.RateLimit < 0:
		return fmt.Errorf("gateway: RateLimit %d must be >= 0 (0 = off)", c.RateLimit)
	case c.IdempotencyPendingTTL <= c.CallTimeout:
		// A first request still waiting on its grain would lose its claim
		// and a duplicate would run beside it.
		return fmt.Errorf("gateway: IdempotencyPendingTTL %v must be longer than CallTimeout %v", c.IdempotencyPendingTTL, c.CallTimeout)
	}
	if err := c.Login.Validate(); err != nil {
		return fmt.Errorf("gateway: Login: %w", err)
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			return fmt.Errorf("gateway: TrustedProxies holds an invalid prefix %v", p)
		}
	}
	return nil
}

// Deps are the running parts the gateway talks to.
type Deps struct {
	Member   *cluster.Member
	Store    persistence.Store
	Verifier *auth.Verifier
	Logger   *slog.Logger
	// Services reaches the stateless services (auth, payments).
	Services *balancer.Set
	// Redis holds what all gateways of a cluster share: rate-limit budgets,
	// login throttles and idempotency records. Nil keeps idempotency
	// records in this process only (one gateway: dev, tests), allows no
	// rate limit, and makes /auth/login answer 503 (its throttle fails
	// closed).
	Redis goredis.UniversalClient
	// Idempotency overrides where idempotency records are kept (default: a
	// RedisStore on Redis, else an in-memory store).
	Idempotency idempotency.Store
	// Metrics is the process's registry (metrics.NewRegistry): /metrics
	// serves it, and other parts (service breakers, see
	// metrics.RegisterBreaker) register on it too. One gateway per
	// registry: its metrics are registered once. Nil gives the gateway a
	// registry of its own.
	Metrics *prometheus.Registry
	// Events, Summaries and Sagas read the journal, the read model and
	// the saga index; nil reads them from Store.
	Events    EventReader
	Summaries SummaryReader
	Sagas     SagaLister
}

func (d Deps) validate(cfg Config) error {
	if d.Member == nil || d.Store == nil || d.Verifier == nil || d.Logger == nil || d.Services == nil {
		return errors.New("gateway: Member, Store, Verifier, Logger and Services are required")
	}
	if cfg.RateLimit > 0 && d.Redis == nil {
		return fmt.Errorf("gateway: RateLimit %d needs Redis: budgets must be shared by every gateway", cfg.RateLimit)
	}
	return nil
}
