package persistence

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// BackendConfig selects and configures a backend. It is what an operator
// writes; each backend interprets URL itself.
type BackendConfig struct {
	// URL picks the backend by its scheme (redis://, rediss://, memory://)
	// and tells it where its data lives.
	URL string
	// Partitions is the fixed partition count; 0 means 1. It must never
	// change once data is written, since PartitionOf depends on it.
	Partitions int
	// KeyPrefix namespaces the backend's keys so several deployments can
	// share one server; empty means the backend's default.
	KeyPrefix string
}

// Validate reports the first unacceptable field by name, wrapped in
// ErrInvalid. It does not check that the scheme is registered; Open does.
func (c BackendConfig) Validate() error {
	if c.URL == "" {
		return fmt.Errorf("backend config: URL is empty: %w", ErrInvalid)
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		// url.Error repeats the URL, which may hold a password.
		return fmt.Errorf("backend config: URL does not parse: %w", ErrInvalid)
	}
	// "host:port" parses as scheme "host"; insist on scheme://.
	if u.Scheme == "" || u.Opaque != "" {
		return fmt.Errorf("backend config: URL must start with a scheme and :// (e.g. redis:// or memory://): %w", ErrInvalid)
	}
	if c.Partitions < 0 {
		return fmt.Errorf("backend config: Partitions is %d, must be >= 1 (0 means 1): %w", c.Partitions, ErrInvalid)
	}
	// Redis Cluster hashes only the first {...} of a key; braces in the
	// prefix would move every key off its partition's hash tag.
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		return fmt.Errorf("backend config: KeyPrefix %q must not contain '{' or '}': %w", c.KeyPrefix, ErrInvalid)
	}
	return nil
}

// WithDefaults returns c with zero fields replaced by their defaults.
func (c BackendConfig) WithDefaults() BackendConfig {
	if c.Partitions == 0 {
		c.Partitions = 1
	}
	return c
}

// Opener builds a Store from a validated config with defaults applied. It
// owns what it opens: the returned Store's Close releases it.
type Opener func(ctx context.Context, cfg BackendConfig) (Store, error)

// registry is the only package-level mutable state: backends are plugged in
// by the program (cmd/granary), not by the backends' own init functions, so
// a binary links only what it registers.
var registry = struct {
	sync.Mutex
	openers map[string]Opener
}{openers: map[string]Opener{}}

// Register makes open available to Open for URLs with the given scheme
// (case-insensitive, without "://"). It panics on an empty scheme, a nil
// opener or a scheme registered twice: those are programming errors found
// at startup.
func Register(scheme string, open Opener) {
	scheme = strings.ToLower(scheme)
	if scheme == "" || strings.Contains(scheme, ":") {
		panic(fmt.Sprintf("persistence: Register: invalid scheme %q", scheme))
	}
	if open == nil {
		panic(fmt.Sprintf("persistence: Register: nil opener for scheme %q", scheme))
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.openers[scheme]; dup {
		panic(fmt.Sprintf("persistence: Register called twice for scheme %q", scheme))
	}
	registry.openers[scheme] = open
}

// Schemes returns the registered schemes, sorted.
func Schemes() []string {
	registry.Lock()
	defer registry.Unlock()
	out := make([]string, 0, len(registry.openers))
	for s := range registry.openers {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Open validates cfg, applies defaults and opens the backend registered for
// the URL's scheme. An unknown scheme is an ErrInvalid error listing the
// registered ones.
func Open(ctx context.Context, cfg BackendConfig) (Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	u, _ := url.Parse(cfg.URL) // Validate parsed it already.
	scheme := strings.ToLower(u.Scheme)

	registry.Lock()
	open, ok := registry.openers[scheme]
	registry.Unlock()
	if !ok {
		known := strings.Join(Schemes(), ", ")
		if known == "" {
			known = "none"
		}
		return nil, fmt.Errorf("open backend: unknown scheme %q (registered: %s): %w", scheme, known, ErrInvalid)
	}
	s, err := open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s backend: %w", scheme, err)
	}
	return s, nil
}
