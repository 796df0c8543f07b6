package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"granary/internal/redispipe"
	"granary/persistence"
)

// Group commit: every append of a Store goes through a redispipe.Pipeliner,
// whose few shards each send whatever is queued for them as one pipelined
// round trip, so a member under load pays one round trip per batch of
// appends rather than one per append.
//
// A stream always goes to the same shard (a hash of its stream key, not of
// the partition's hash tag, so the streams of one partition spread over
// every shard), and a shard has one pipeline in flight at a time, in queue
// order: two appends to one stream reach Redis in the order they were
// submitted, even when the caller of the first gave up waiting before its
// reply came.

// GroupCommitOptions bound the append writers. Zero values take the
// defaults below.
type GroupCommitOptions struct {
	// Off sends every append on its own round trip, as before group
	// commit.
	Off bool
	// Shards is the number of writers, each with at most one pipeline in
	// flight (hence one connection busy); 0 means DefaultGroupCommitShards.
	Shards int
	// MaxBatch caps the appends of one pipeline; 0 means
	// DefaultGroupCommitBatch.
	MaxBatch int
	// Queue caps the appends waiting for one writer; a caller finding it
	// full waits, as long as its context lets it. 0 means 4 × MaxBatch.
	Queue int
}

// Defaults of GroupCommitOptions.
const (
	DefaultGroupCommitShards = redispipe.DefaultShards
	DefaultGroupCommitBatch  = redispipe.DefaultMaxBatch
)

// newPipe returns the append writers of client running script (append.lua;
// tests use their own). They start with the first append, so a Store that
// never appends starts no goroutine, and stop in Close.
func newPipe(client goredis.UniversalClient, o GroupCommitOptions, scripts ...string) (*redispipe.Pipeliner, error) {
	p, err := redispipe.New(client, redispipe.Options{
		Shards:         o.Shards,
		MaxBatch:       o.MaxBatch,
		Queue:          o.Queue,
		IgnoreHashTags: true,
		Scripts:        scripts,
	})
	if err != nil {
		return nil, fmt.Errorf("GroupCommit: %w: %w", err, persistence.ErrInvalid)
	}
	return p, nil
}

// GroupCommitStats reports how many pipelines the append writers have sent
// (resends after a flushed script cache included) and how many appends
// went in them; appends / pipelines is the mean batch size.
func (s *Store) GroupCommitStats() (pipelines, appends uint64) {
	st := s.pipe.Stats()
	return st.Pipelines, st.Calls
}

// runAppend runs append.lua with keys (keys[0] is stream's key, which
// picks the writer) and args and returns its reply, with the errors
// appendScript.Run(...).Int64Slice() on the client would return: a script
// error reply (for classify), a transport error, or ctx's error. An append
// whose ctx ends before it is sent is not sent; one whose ctx ends while
// it is in flight returns ctx's error, and its outcome is unknown. After
// Close, appends not yet sent fail with persistence.ErrClosed.
func (s *Store) runAppend(ctx context.Context, stream string, keys []string, args []any) ([]int64, error) {
	_ = stream // keys[0] is its key
	if s.gcOff {
		return s.appendScript.Run(ctx, s.client, keys, args...).Int64Slice()
	}
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	val, err := s.appendScript.Run(ctx, s.pipe, keys, args...).Int64Slice()
	if errors.Is(err, redispipe.ErrClosed) {
		return nil, persistence.ErrClosed
	}
	return val, err
}
