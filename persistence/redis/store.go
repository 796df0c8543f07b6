// Package redis is the Redis backend of persistence.Store. It works with a
// single server, Sentinel or Redis Cluster (any goredis.UniversalClient):
// each partition's keys share a hash tag, and every multi-key operation is a
// Lua script over one partition, hence atomic.
//
// Durability is the server's: with appendonly yes and appendfsync always an
// acknowledged Append survives a crash; with the defaults it may lose about
// a second of writes. On Redis Cluster a master acknowledges before its
// replicas have the write, so a failover can lose acknowledged appends;
// the Store does not call WAIT.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"

	"granary/internal/redispipe"
	"granary/persistence"
)

var (
	_ persistence.Store        = (*Store)(nil)
	_ persistence.StreamLoader = (*Store)(nil)
)

// DefaultKeyPrefix namespaces keys when Options.KeyPrefix is empty.
const DefaultKeyPrefix = "granary"

// Options configure a Store.
type Options struct {
	// Partitions is the fixed partition count; 0 means 1. Changing it for
	// existing data would move streams to other partitions.
	Partitions int
	// KeyPrefix namespaces all keys; empty means DefaultKeyPrefix. It must
	// not contain '{' or '}', which would break the partition hash tags.
	KeyPrefix string
	// GroupCommit bounds the writers that send appends in pipelines (see
	// groupcommit.go); the zero value is the defaults.
	GroupCommit GroupCommitOptions
}

// Store is a persistence.Store over Redis. It is safe for concurrent use.
type Store struct {
	client     goredis.UniversalClient
	ownsClient bool
	partitions int
	keys       keys
	closed     atomic.Bool

	// Appends: through pipe unless gcOff; appendScript is append.lua
	// (tests use their own).
	pipe         *redispipe.Pipeliner
	gcOff        bool
	appendScript *goredis.Script

	// Read reply limits; tests shrink them to exercise chunked reads.
	readChunk   int
	replyBudget int
}

// New returns a Store using client, which the caller keeps owning: Close
// does not close it.
func New(client goredis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, fmt.Errorf("redis store: nil client: %w", persistence.ErrInvalid)
	}
	if opts.Partitions < 0 {
		return nil, fmt.Errorf("redis store: Partitions is %d, must be >= 1 (0 means 1): %w", opts.Partitions, persistence.ErrInvalid)
	}
	if opts.Partitions == 0 {
		opts.Partitions = 1
	}
	if strings.ContainsAny(opts.KeyPrefix, "{}") {
		return nil, fmt.Errorf("redis store: KeyPrefix %q must not contain '{' or '}': %w", opts.KeyPrefix, persistence.ErrInvalid)
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultKeyPrefix
	}
	pipe, err := newPipe(client, opts.GroupCommit, appendSrc, streamVersionSrc, putSagaSrc)
	if err != nil {
		return nil, fmt.Errorf("redis store: %w", err)
	}
	return &Store{
		client:       client,
		pipe:         pipe,
		gcOff:        opts.GroupCommit.Off,
		appendScript: appendScript,
		partitions:   opts.Partitions,
		keys:         keys{prefix: opts.KeyPrefix},
		readChunk:    readChunk,
		replyBudget:  replyBudget,
	}, nil
}

// Open is the persistence.Opener for redis:// and rediss:// URLs, single
// server or Redis Cluster (the addr= form; see NewClient, which also sets
// the timeouts). It pings the server before returning and the Store owns
// the client: Close closes it.
func Open(ctx context.Context, cfg persistence.BackendConfig) (persistence.Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	client, err := NewClient(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis store: %w: %w", err, persistence.ErrInvalid)
	}
	s, err := New(client, Options{Partitions: cfg.Partitions, KeyPrefix: cfg.KeyPrefix})
	if err == nil {
		err = s.Ping(ctx)
	}
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	s.ownsClient = true
	return s, nil
}

// Partitions implements persistence.Journal.
func (s *Store) Partitions() int { return s.partitions }

// PartitionOf implements persistence.Journal.
func (s *Store) PartitionOf(stream string) int {
	return persistence.PartitionOf(stream, s.partitions)
}

// Ping checks that the server answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// Close makes later calls fail with persistence.ErrClosed and closes the
// client if the Store owns it. Appends still queued fail with ErrClosed;
// those in flight are cancelled (their outcome is unknown); the append
// writers have exited when it returns. Closing twice is a no-op.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	_ = s.pipe.Close() // always nil
	if !s.ownsClient {
		return nil
	}
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("close redis client: %w", err)
	}
	return nil
}

// usable is checked first by every call: a cancelled call must not reach
// the server, and a closed store must say so rather than report a
// client error.
func (s *Store) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return persistence.ErrClosed
	}
	return nil
}

func (s *Store) checkPartition(p int) error {
	if p < 0 || p >= s.partitions {
		return fmt.Errorf("partition out of range [0, %d): %w", s.partitions, persistence.ErrInvalid)
	}
	return nil
}

// corruptMarker starts the error replies of the scripts' own consistency
// checks.
const corruptMarker = "GRANARY_CORRUPT"

// classify turns server errors that mean "this key does not hold what we
// wrote" into persistence.ErrCorrupt naming the key; others pass through.
func classify(err error, key string) error {
	var rerr goredis.Error
	if err == nil || errors.Is(err, goredis.Nil) || !errors.As(err, &rerr) {
		return err
	}
	if msg := err.Error(); strings.Contains(msg, "WRONGTYPE") || strings.Contains(msg, corruptMarker) {
		return corrupt(key, err)
	}
	return err
}

func corrupt(key string, err error) error {
	return fmt.Errorf("key %q: %w: %w", key, persistence.ErrCorrupt, err)
}
