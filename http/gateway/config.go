// Package gateway owns Granary's HTTP edge: the Echo server, its routes, and
// the handlers that bind a request, call a grain and render its answer.
// Errors go to the problem package; tokens are checked by the auth package.
package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"granary/cluster"
	"granary/cluster/balancer"
	"granary/http/auth"
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
	}
}

// Validate names the first unusable field.
func (c Config) Validate() error {
	for name, d := range map[string]time.Duration{
		"CallTimeout": c.CallTimeout, "TokenTTL": c.TokenTTL, "ReadHeaderTimeout": c.ReadHeaderTimeout,
		"ReadTimeout": c.ReadTimeout, "WriteTimeout": c.WriteTimeout, "IdleTimeout": c.IdleTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("gateway: %s %v must be > 0", name, d)
		}
	}
	if c.BodyLimit <= 0 {
		return fmt.Errorf("gateway: BodyLimit %d must be > 0", c.BodyLimit)
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
}

func (d Deps) validate() error {
	if d.Member == nil || d.Store == nil || d.Verifier == nil || d.Logger == nil || d.Services == nil {
		return errors.New("gateway: Member, Store, Verifier, Logger and Services are required")
	}
	return nil
}
