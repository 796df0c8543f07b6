// Package balancer owns how callers reach stateless services: a client per
// service that picks an instance by strategy (round_robin, random,
// least_connections by real in-flight counts), guards the service with a
// circuit breaker (sony/gobreaker), bounds every call with a timeout and
// retries idempotent calls on another instance. Instances come from the
// cluster's membership, so they come and go with members.
package balancer

import (
	"fmt"
	"time"
)

// Strategy names how a client picks an instance.
type Strategy string

const (
	RoundRobin       Strategy = "round_robin"
	Random           Strategy = "random"
	LeastConnections Strategy = "least_connections"
)

// Config is one service's client configuration.
type Config struct {
	Strategy Strategy
	// CallTimeout bounds one attempt on one instance.
	CallTimeout time.Duration
	// Retries is how many other instances an idempotent call may try after
	// a timeout or an unavailable instance.
	Retries int
	// The breaker opens after FailureThreshold consecutive failures, stays
	// open for OpenTimeout, then lets HalfOpenRequests trial calls through;
	// they close it again when all succeed.
	FailureThreshold uint32
	OpenTimeout      time.Duration
	HalfOpenRequests uint32
}

// DefaultConfig is a sensible client for a CPU-bound internal service.
func DefaultConfig() Config {
	return Config{
		Strategy:         LeastConnections,
		CallTimeout:      3 * time.Second,
		Retries:          2,
		FailureThreshold: 5,
		OpenTimeout:      5 * time.Second,
		HalfOpenRequests: 1,
	}
}

// Validate names the first unusable field.
func (c Config) Validate() error {
	switch c.Strategy {
	case RoundRobin, Random, LeastConnections:
	default:
		return fmt.Errorf("balancer: unknown strategy %q (want round_robin, random or least_connections)", c.Strategy)
	}
	switch {
	case c.CallTimeout <= 0:
		return fmt.Errorf("balancer: CallTimeout %v must be > 0", c.CallTimeout)
	case c.Retries < 0:
		return fmt.Errorf("balancer: Retries %d must be >= 0", c.Retries)
	case c.FailureThreshold == 0 || c.HalfOpenRequests == 0:
		return fmt.Errorf("balancer: FailureThreshold %d and HalfOpenRequests %d must be > 0", c.FailureThreshold, c.HalfOpenRequests)
	case c.OpenTimeout <= 0:
		return fmt.Errorf("balancer: OpenTimeout %v must be > 0", c.OpenTimeout)
	}
	return nil
}
