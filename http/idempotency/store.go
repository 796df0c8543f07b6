// Package idempotency makes mutating requests safe to retry: the first
// answer to a request carrying an Idempotency-Key is kept, and the same
// caller sending the same key again gets that answer back instead of a
// second execution.
//
// Records live in a Store (Redis in production, so every gateway sees
// them and they outlive the gateway that wrote them; an in-memory twin for
// a single process). Execution itself is made idempotent one layer down:
// grains drop commands whose id they have applied, and the gateway derives
// that id from the caller, route and key. That is what keeps a retry safe
// when the first attempt's member died after committing but before any
// record was stored: the retry runs, the grain recognises the command, and
// answers with its current state without recording anything new.
package idempotency

import (
	"context"
	"errors"
	"time"
)

// Response is a final answer as it is replayed.
type Response struct {
	Status int                 `json:"status"`
	Header map[string][]string `json:"header,omitempty"`
	Body   []byte              `json:"body,omitempty"`
}

// Record is what a key holds.
type Record struct {
	// Fingerprint identifies the request that claimed the key.
	Fingerprint string
	// Response is nil while the first request is still running, or died
	// running and its claim has not expired yet.
	Response *Response
	// ExpiresIn is how long the record has left; for a pending one, how
	// long until another request may claim the key.
	ExpiresIn time.Duration
}

// Pending reports whether the first request has not finished.
func (r *Record) Pending() bool { return r.Response == nil }

// Store keeps idempotency records. Every method is safe for concurrent use
// and honours ctx's deadline. An error other than ErrNotClaimed means the
// store could not be asked and the outcome is unknown.
type Store interface {
	// Claim stores a pending record of the request with fingerprint under
	// key, for pendingTTL, unless key holds a record already; atomically,
	// so of several concurrent claims exactly one wins. It returns the
	// claim's token when it stored it, else the record in the way.
	Claim(ctx context.Context, key, fingerprint string, pendingTTL time.Duration) (token string, existing *Record, err error)
	// Complete replaces the pending record of token by resp, kept for ttl.
	// It returns ErrNotClaimed when key holds no longer that claim (it
	// expired, and another request may have claimed the key since).
	Complete(ctx context.Context, key, token string, resp Response, ttl time.Duration) error
	// Release drops the pending record of token so that a retry may run
	// at once. A key that holds no longer that claim is left alone (nil).
	Release(ctx context.Context, key, token string) error
}

// ErrNotClaimed: the key is not (or no longer) held by the caller's claim.
var ErrNotClaimed = errors.New("idempotency key not held by this claim")
