package idempotency

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"granary/internal/redispipe"
)

var _ Store = (*RedisStore)(nil)

var (
	//go:embed complete.lua
	completeLua    string
	completeScript = goredis.NewScript(completeLua)
	//go:embed release.lua
	releaseLua    string
	releaseScript = goredis.NewScript(releaseLua)
)

// RedisStore keeps records in Redis, one string key per record with the
// record's TTL, so every gateway sees them and they outlive the gateway
// that wrote them. Each operation is atomic: a claim is one SET … NX GET
// (Redis 7.0 or later), completion and release are Lua scripts.
//
// Values: "P|<token>|<fingerprint>" while pending,
// "D|<fingerprint>|<response JSON>" once final.
type RedisStore struct {
	client goredis.UniversalClient
	// pipe, when set, sends the scripts of all requests in pipelines (see
	// NewPipelinedRedisStore); nil, or closed, they go to client.
	pipe   *redispipe.Pipeliner
	prefix string
}

// NewRedisStore keeps records under "<prefix>:idempotency:<key>"; the
// caller keeps owning client. Each operation is a round trip of its own.
func NewRedisStore(client goredis.UniversalClient, prefix string) (*RedisStore, error) {
	if client == nil {
		return nil, errors.New("idempotency: nil Redis client")
	}
	return &RedisStore{client: client, prefix: prefix + ":idempotency:"}, nil
}

// NewPipelinedRedisStore is NewRedisStore whose operations, from all
// requests, go to Redis together in pipelines (a redispipe.Pipeliner over
// client with its defaults): one round trip per batch rather than per
// operation. Every operation still honours its own ctx, so a frozen Redis
// fails it within its deadline. Close stops the pipeline's goroutines
// (started by the first operation).
func NewPipelinedRedisStore(client goredis.UniversalClient, prefix string) (*RedisStore, error) {
	s, err := NewRedisStore(client, prefix)
	if err != nil {
		return nil, err
	}
	if s.pipe, err = redispipe.New(client, redispipe.Options{Scripts: []string{completeLua, releaseLua}}); err != nil {
		return nil, fmt.Errorf("idempotency: %w", err)
	}
	return s, nil
}

// Close stops the pipeline of a NewPipelinedRedisStore, cancelling the
// operations in flight (their outcome is unknown, as for a lost
// connection). The store stays usable: operations queued at Close and
// later ones go to Redis one round trip each, so requests a gateway is
// still draining when it closes its store finish. It never fails, and
// does nothing for a NewRedisStore.
func (s *RedisStore) Close() error {
	if s.pipe == nil {
		return nil
	}
	return s.pipe.Close()
}

// run runs script through the pipeline if there is one and it is open,
// else on the client.
func (s *RedisStore) run(ctx context.Context, script *goredis.Script, keys []string, args ...any) *goredis.Cmd {
	if s.pipe != nil {
		cmd := script.Run(ctx, s.pipe, keys, args...)
		if !errors.Is(cmd.Err(), redispipe.ErrClosed) {
			return cmd
		}
		// Refused unsent: the store was closed.
	}
	return script.Run(ctx, s.client, keys, args...)
}

// do sends a plain command through the pipeline if there is one and it
// is open, else on the client.
func (s *RedisStore) do(ctx context.Context, key string, args ...any) *goredis.Cmd {
	if s.pipe != nil {
		cmd := s.pipe.Do(ctx, []string{key}, args...)
		if !errors.Is(cmd.Err(), redispipe.ErrClosed) {
			return cmd
		}
	}
	return s.client.Do(ctx, args...)
}

// Claim implements Store. It is one SET … NX GET rather than a script:
// every keyed request claims, and a script call costs Redis several
// times the SET it would wrap (issue 10). Only a claim that finds a record
// in the way asks for that record's TTL, in a second command; should the
// record expire between the two (or that command fail), it is still the
// record that was in the way, with no time left.
func (s *RedisStore) Claim(ctx context.Context, key, fingerprint string, pendingTTL time.Duration) (string, *Record, error) {
	rkey := s.prefix + key
	token := newToken()
	raw, err := s.do(ctx, rkey, "SET", rkey, pendingPrefix(token)+fingerprint, "NX", "GET", "PX", pendingTTL.Milliseconds()).Text()
	switch {
	case errors.Is(err, goredis.Nil):
		return token, nil, nil
	case err != nil:
		return "", nil, fmt.Errorf("claim idempotency key %s: %w", rkey, err)
	}
	rec, err := decodeRecord(raw)
	if err != nil {
		return "", nil, fmt.Errorf("claim idempotency key %s: %w", rkey, err)
	}
	// The record is read; its TTL is only a hint, so a failure to read it
	// (the store's time used up by the SET) leaves no time rather than
	// failing a claim that has its answer.
	if pttl, err := s.do(ctx, rkey, "PTTL", rkey).Int64(); err == nil {
		rec.ExpiresIn = time.Duration(max(pttl, 0)) * time.Millisecond
	}
	return "", rec, nil
}

// Complete implements Store.
func (s *RedisStore) Complete(ctx context.Context, key, token string, resp Response, ttl time.Duration) error {
	rkey := s.prefix + key
	body, err := json.Marshal(resp)
	if err != nil {
		return fmt.Errorf("complete idempotency key %s: encode response: %w", rkey, err)
	}
	n, err := s.run(ctx, completeScript, []string{rkey}, pendingPrefix(token), string(body), ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("complete idempotency key %s: %w", rkey, err)
	}
	if n == 0 {
		return ErrNotClaimed
	}
	return nil
}

// Release implements Store.
func (s *RedisStore) Release(ctx context.Context, key, token string) error {
	rkey := s.prefix + key
	if err := s.run(ctx, releaseScript, []string{rkey}, pendingPrefix(token)).Err(); err != nil {
		return fmt.Errorf("release idempotency key %s: %w", rkey, err)
	}
	return nil
}

func pendingPrefix(token string) string { return "P|" + token + "|" }

// ErrCorruptRecord: a key under the store's prefix holds something this
// store did not write.
var ErrCorruptRecord = errors.New("idempotency record unreadable")

func decodeRecord(raw string) (*Record, error) {
	kind, rest, ok := strings.Cut(raw, "|")
	if !ok {
		return nil, ErrCorruptRecord
	}
	switch kind {
	case "P":
		_, fp, ok := strings.Cut(rest, "|")
		if !ok {
			return nil, ErrCorruptRecord
		}
		return &Record{Fingerprint: fp}, nil
	case "D":
		fp, body, ok := strings.Cut(rest, "|")
		if !ok {
			return nil, ErrCorruptRecord
		}
		var resp Response
		if err := json.Unmarshal([]byte(body), &resp); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorruptRecord, err)
		}
		return &Record{Fingerprint: fp, Response: &resp}, nil
	}
	return nil, ErrCorruptRecord
}
