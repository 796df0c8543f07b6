package reminder

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"granary/persistence"
)

// DefaultKeyPrefix namespaces the schedule when NewRedis gets an empty
// prefix; it is the journal's default too.
const DefaultKeyPrefix = "granary"

var (
	//go:embed claim.lua
	claimSrc    string
	claimScript = goredis.NewScript(claimSrc)
)

// RedisStore keeps the schedule in one sorted set, <prefix>:{reminders}:due,
// scored by unix milliseconds, whose members are kind NUL id. The hash tag
// puts it in one Redis Cluster slot, which the claim script needs. The set
// holds one member per scheduled key, as many as the grains schedule.
//
// It does not own the client; every call is bounded by the caller's ctx
// only, so callers set deadlines (the Poller does).
type RedisStore struct {
	client goredis.UniversalClient
	key    string
}

var _ Store = (*RedisStore)(nil)

// NewRedis returns a store on client under keyPrefix (empty means
// DefaultKeyPrefix). The prefix must not contain '{' or '}', which would
// move the hash tag.
func NewRedis(client goredis.UniversalClient, keyPrefix string) (*RedisStore, error) {
	if client == nil {
		return nil, fmt.Errorf("reminder redis store: nil client: %w", persistence.ErrInvalid)
	}
	if strings.ContainsAny(keyPrefix, "{}") {
		return nil, fmt.Errorf("reminder redis store: key prefix %q must not contain '{' or '}': %w", keyPrefix, persistence.ErrInvalid)
	}
	if keyPrefix == "" {
		keyPrefix = DefaultKeyPrefix
	}
	return &RedisStore{client: client, key: keyPrefix + ":{reminders}:due"}, nil
}

// Set implements Store.
func (s *RedisStore) Set(ctx context.Context, key Key, at time.Time) error {
	if err := validSet(key, at); err != nil {
		return err
	}
	err := s.client.ZAdd(ctx, s.key, goredis.Z{Score: float64(at.UnixMilli()), Member: member(key)}).Err()
	if err != nil {
		return fmt.Errorf("set reminder %q: %w", key, err)
	}
	return nil
}

// Cancel implements Store.
func (s *RedisStore) Cancel(ctx context.Context, key Key) error {
	if err := validKey(key); err != nil {
		return err
	}
	if err := s.client.ZRem(ctx, s.key, member(key)).Err(); err != nil {
		return fmt.Errorf("cancel reminder %q: %w", key, err)
	}
	return nil
}

// Claim implements Store.
func (s *RedisStore) Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Due, error) {
	if err := validClaim(lease, limit); err != nil {
		return nil, err
	}
	nowMs := now.UnixMilli()
	res, err := claimScript.Run(ctx, s.client, []string{s.key},
		nowMs, nowMs+lease.Milliseconds(), limit).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("claim reminders due by %d: %w", nowMs, err)
	}
	if len(res)%2 != 0 {
		return nil, fmt.Errorf("claim reminders: odd reply of %d items", len(res))
	}
	due := make([]Due, 0, len(res)/2)
	var bad error
	for i := 0; i < len(res); i += 2 {
		key, err := parseMember(res[i])
		if err == nil {
			var at int64
			at, err = parseScore(res[i+1])
			due = append(due, Due{Key: key, At: time.UnixMilli(at)})
		}
		// A member this package did not write is leased like the rest (the
		// script cannot tell); report it, but still hand out the good ones,
		// which are leased now and would otherwise wait out the lease.
		if err != nil {
			bad = errors.Join(bad, err)
		}
	}
	if bad != nil {
		return due, fmt.Errorf("claim reminders: %w", bad)
	}
	return due, nil
}

// parseScore reads a score as Redis prints it: integral milliseconds, maybe
// in exponent form.
func parseScore(s string) (int64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("reminder score %q: not a number", s)
	}
	return int64(f), nil
}

// Next implements Store.
func (s *RedisStore) Next(ctx context.Context, key Key) (time.Time, bool, error) {
	if err := validKey(key); err != nil {
		return time.Time{}, false, err
	}
	score, err := s.client.ZScore(ctx, s.key, member(key)).Result()
	if errors.Is(err, goredis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next reminder %q: %w", key, err)
	}
	return time.UnixMilli(int64(score)), true, nil
}

// Len implements Store.
func (s *RedisStore) Len(ctx context.Context) (int64, error) {
	n, err := s.client.ZCard(ctx, s.key).Result()
	if err != nil {
		return 0, fmt.Errorf("count reminders: %w", err)
	}
	return n, nil
}
