package reminder

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
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
	//go:embed lease.lua
	leaseSrc    string
	leaseScript = goredis.NewScript(leaseSrc)
)

// RedisStore keeps the schedule in sorted sets scored by unix milliseconds,
// whose members encode the Key (see member). With one partition the set is
// <prefix>:{reminders}:due; with n, a grain's timers live in
// <prefix>:{reminders:<p>}:due, p a hash of its kind and id mod n, so that on
// a Redis Cluster the schedule spreads over as many slots as the journal
// does. Each set is one hash tag, one slot, which the claim script needs.
// The sets hold one member per scheduled key, as many as the grains
// schedule.
//
// It does not own the client; every call is bounded by the caller's ctx
// only, so callers set deadlines (the Poller does).
type RedisStore struct {
	client goredis.UniversalClient
	keys   []string // one per partition
	// legacy is the single-partition set, still claimed and cleared by a
	// partitioned store so that timers set before partitioning fire once.
	legacy string
}

var _ Store = (*RedisStore)(nil)

// MaxPartitions bounds NewRedisPartitioned's count: each claim round is one
// script per partition.
const MaxPartitions = 1024

// NewRedis returns a single-partition store on client under keyPrefix
// (empty means DefaultKeyPrefix). The prefix must not contain '{' or '}',
// which would move the hash tag.
func NewRedis(client goredis.UniversalClient, keyPrefix string) (*RedisStore, error) {
	return NewRedisPartitioned(client, keyPrefix, 1)
}

// NewRedisPartitioned is NewRedis with the schedule split into partitions
// sets. Every member claims from every partition (the lease decides who
// fires a timer), so the count may change between deployments: timers of
// the single-partition layout are still claimed, and a smaller count leaves
// the timers of the dropped partitions unclaimed, so only grow it.
func NewRedisPartitioned(client goredis.UniversalClient, keyPrefix string, partitions int) (*RedisStore, error) {
	if client == nil {
		return nil, fmt.Errorf("reminder redis store: nil client: %w", persistence.ErrInvalid)
	}
	if strings.ContainsAny(keyPrefix, "{}") {
		return nil, fmt.Errorf("reminder redis store: key prefix %q must not contain '{' or '}': %w", keyPrefix, persistence.ErrInvalid)
	}
	if partitions < 1 || partitions > MaxPartitions {
		return nil, fmt.Errorf("reminder redis store: %d partitions, want 1..%d: %w", partitions, MaxPartitions, persistence.ErrInvalid)
	}
	if keyPrefix == "" {
		keyPrefix = DefaultKeyPrefix
	}
	s := &RedisStore{client: client, legacy: keyPrefix + ":{reminders}:due"}
	if partitions == 1 {
		s.keys = []string{s.legacy}
		s.legacy = ""
		return s, nil
	}
	for p := range partitions {
		s.keys = append(s.keys, keyPrefix+":{reminders:"+strconv.Itoa(p)+"}:due")
	}
	return s, nil
}

// keyOf is the set holding key: all of a grain's timers share one.
func (s *RedisStore) keyOf(key Key) string {
	if len(s.keys) == 1 {
		return s.keys[0]
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key.Kind))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(key.ID))
	return s.keys[h.Sum32()%uint32(len(s.keys))]
}

// Set implements Store.
func (s *RedisStore) Set(ctx context.Context, key Key, at time.Time) error {
	if err := validSet(key, at); err != nil {
		return err
	}
	m := member(key)
	var err error
	if s.legacy == "" {
		err = s.client.ZAdd(ctx, s.keyOf(key), goredis.Z{Score: float64(at.UnixMilli()), Member: m}).Err()
	} else {
		// A schedule left in the legacy set would fire as well.
		_, err = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			p.ZAdd(ctx, s.keyOf(key), goredis.Z{Score: float64(at.UnixMilli()), Member: m})
			p.ZRem(ctx, s.legacy, m)
			return nil
		})
	}
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
	m := member(key)
	var err error
	if s.legacy == "" {
		err = s.client.ZRem(ctx, s.keyOf(key), m).Err()
	} else {
		_, err = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			p.ZRem(ctx, s.keyOf(key), m)
			p.ZRem(ctx, s.legacy, m)
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("cancel reminder %q: %w", key, err)
	}
	return nil
}

// Claim implements Store. With several partitions it looks (read only, one
// pipelined round trip) at the oldest due of every partition, picks the
// oldest limit of them all, and leases those with one script per partition
// in a second round trip, each still checked as due, so that it returns
// what one sorted set would. Nothing due costs the first round trip only.
func (s *RedisStore) Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Due, error) {
	if err := validClaim(lease, limit); err != nil {
		return nil, err
	}
	nowMs := now.UnixMilli()
	untilMs := nowMs + lease.Milliseconds()
	if s.legacy == "" && len(s.keys) == 1 {
		res, err := claimScript.Run(ctx, s.client, s.keys, nowMs, untilMs, limit).StringSlice()
		if err != nil {
			return nil, fmt.Errorf("claim reminders due by %d: %w", nowMs, err)
		}
		due, err := parseClaim(res)
		if err != nil {
			return due, fmt.Errorf("claim reminders: %w", err)
		}
		return due, nil
	}

	sets := s.sets()
	looks := make([]*goredis.ZSliceCmd, len(sets))
	if _, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, set := range sets {
			looks[i] = p.ZRangeByScoreWithScores(ctx, set, &goredis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(nowMs, 10), Count: int64(limit)})
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("look for reminders due by %d: %w", nowMs, err)
	}
	type pick struct {
		set    int
		member string
		at     float64
	}
	var picks []pick
	for i, l := range looks {
		for _, z := range l.Val() {
			m, _ := z.Member.(string)
			picks = append(picks, pick{i, m, z.Score})
		}
	}
	if len(picks) == 0 {
		return nil, nil
	}
	slices.SortFunc(picks, func(a, b pick) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return strings.Compare(a.member, b.member)
	})
	picks = picks[:min(limit, len(picks))]
	bySet := map[int][]any{}
	for _, p := range picks {
		if bySet[p.set] == nil {
			bySet[p.set] = []any{nowMs, untilMs}
		}
		bySet[p.set] = append(bySet[p.set], p.member)
	}
	leased, err := s.lease(ctx, sets, bySet)
	if err != nil {
		return nil, fmt.Errorf("claim reminders due by %d: %w", nowMs, err)
	}
	var due []Due
	var bad error
	for _, res := range leased {
		got, err := parseClaim(res)
		bad = errors.Join(bad, err)
		due = append(due, got...)
	}
	due = sortDue(due)
	if bad != nil {
		return due, fmt.Errorf("claim reminders: %w", bad)
	}
	return due, nil
}

// sets are every set a claim looks at: the partitions, then the legacy set.
func (s *RedisStore) sets() []string {
	if s.legacy == "" {
		return s.keys
	}
	return append(slices.Clip(s.keys), s.legacy)
}

// lease runs the lease script on each set of bySet with its arguments, in
// one pipeline, loading the script once if Redis has lost it (a missing
// script fails before it runs, so nothing was leased).
func (s *RedisStore) lease(ctx context.Context, sets []string, bySet map[int][]any) ([][]string, error) {
	for attempt := 0; ; attempt++ {
		cmds := make([]*goredis.Cmd, 0, len(bySet))
		_, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, args := range bySet {
				cmds = append(cmds, leaseScript.EvalSha(ctx, p, []string{sets[i]}, args...))
			}
			return nil
		})
		if err != nil && attempt == 0 && goredis.HasErrorPrefix(err, "NOSCRIPT") {
			if err := leaseScript.Load(ctx, s.client).Err(); err != nil {
				return nil, fmt.Errorf("load lease script: %w", err)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		out := make([][]string, len(cmds))
		for i, c := range cmds {
			if out[i], err = c.StringSlice(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
}

// parseClaim reads one script reply. A member this package did not write
// is leased like the rest (the script cannot tell); it is reported, but the
// good ones are still handed out, being leased now.
func parseClaim(res []string) ([]Due, error) {
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
		if err != nil {
			bad = errors.Join(bad, err)
		}
	}
	return due, bad
}

// sortDue orders claimed reminders as one sorted set would: time, then
// member bytes.
func sortDue(due []Due) []Due {
	slices.SortFunc(due, func(a, b Due) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(member(a.Key), member(b.Key))
	})
	return due
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
	score, err := s.client.ZScore(ctx, s.keyOf(key), member(key)).Result()
	if errors.Is(err, goredis.Nil) && s.legacy != "" {
		score, err = s.client.ZScore(ctx, s.legacy, member(key)).Result()
	}
	if errors.Is(err, goredis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next reminder %q: %w", key, err)
	}
	return time.UnixMilli(int64(score)), true, nil
}

// Len implements Store: the partitions' sizes summed, in one pipeline.
func (s *RedisStore) Len(ctx context.Context) (int64, error) {
	sets := s.sets()
	cmds := make([]*goredis.IntCmd, len(sets))
	if _, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, set := range sets {
			cmds[i] = p.ZCard(ctx, set)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("count reminders: %w", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}
