package reminder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"granary/internal/leakcheck"
	"granary/persistence"
)

const envURL = "GRANARY_REDIS_URL"

func TestMain(m *testing.M) { leakcheck.Main(m) }

type backend struct {
	name string
	open func(t *testing.T) Store
}

func backends() []backend {
	return []backend{
		{"memory", func(*testing.T) Store { return NewMemory() }},
		{"miniredis", func(t *testing.T) Store { return miniRedis(t, 1) }},
		{"miniredis-partitioned", func(t *testing.T) Store { return miniRedis(t, 4) }},
		{"redis", func(t *testing.T) Store { return realRedis(t, 1) }},
		{"redis-partitioned", func(t *testing.T) Store { return realRedis(t, 4) }},
	}
}

func miniRedis(t *testing.T, partitions int) *RedisStore {
	mr := miniredis.RunT(t)
	c := goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	s, err := NewRedisPartitioned(c, "", partitions)
	if err != nil {
		t.Fatalf("NewRedisPartitioned: %v", err)
	}
	return s
}

// realRedis uses the server in GRANARY_REDIS_URL under a random prefix
// whose keys are deleted afterwards.
func realRedis(t *testing.T, partitions int) *RedisStore {
	url := os.Getenv(envURL)
	if url == "" {
		t.Skipf("%s not set", envURL)
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatalf("%s: %v", envURL, err)
	}
	c := goredis.NewClient(opt)
	var r [6]byte
	_, _ = rand.Read(r[:])
	prefix := "granarytest-reminder-" + hex.EncodeToString(r[:])
	s, err := NewRedisPartitioned(c, prefix, partitions)
	if err != nil {
		t.Fatalf("NewRedisPartitioned: %v", err)
	}
	t.Cleanup(func() {
		// t's context is done by the time cleanups run.
		keys := append(slices.Clone(s.keys), prefix+":{reminders}:due")
		if err := c.Del(context.Background(), keys...).Err(); err != nil {
			t.Errorf("cleanup: DEL %v: %v", keys, err)
		}
		_ = c.Close()
	})
	return s
}

func TestConformance(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { runConformance(t, b.open) })
	}
}

// base is a fixed, millisecond-exact time so that tests never read the
// clock.
var base = time.UnixMilli(1_800_000_000_000)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}
func mustSet(t *testing.T, s Store, k Key, at time.Time) {
	t.Helper()
	if err := s.Set(ctx(t), k, at); err != nil {
		t.Fatalf("Set %v: %v", k, err)
	}
}
func wantNext(t *testing.T, s Store, k Key, want time.Time, wantOK bool) {
	t.Helper()
	at, ok, err := s.Next(ctx(t), k)
	if err != nil {
		t.Fatalf("Next %v: %v", k, err)
	}
	if ok != wantOK || (ok && !at.Equal(want)) {
		t.Fatalf("Next %v = %v, %v; want %v, %v", k, at, ok, want, wantOK)
	}
}
func wantLen(t *testing.T, s Store, want int64) {
	t.Helper()
	n, err := s.Len(ctx(t))
	if err != nil || n != want {
		t.Fatalf("Len = %d, %v; want %d", n, err, want)
	}
}
func claim(t *testing.T, s Store, now time.Time, lease time.Duration, limit int) []Due {
	t.Helper()
	d, err := s.Claim(ctx(t), now, lease, limit)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return d
}
func wantDue(t *testing.T, got []Due, want ...Due) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("claimed %v; want %v", got, want)
	}
	for i := range got {
		if got[i].Key != want[i].Key || !got[i].At.Equal(want[i].At) {
			t.Fatalf("claimed %v; want %v", got, want)
		}
	}
}

func runConformance(t *testing.T, open func(t *testing.T) Store) {
	t.Run("SetReplaceCancel", func(t *testing.T) {
		s := open(t)
		k := Key{Kind: "service", ID: "a"}
		wantNext(t, s, k, time.Time{}, false)
		wantLen(t, s, 0)
		mustSet(t, s, k, base)
		wantNext(t, s, k, base, true)
		mustSet(t, s, k, base.Add(time.Minute))
		wantNext(t, s, k, base.Add(time.Minute), true)
		wantLen(t, s, 1)
		mustSet(t, s, Key{Kind: "service", ID: "b"}, base)
		wantLen(t, s, 2)
		if err := s.Cancel(ctx(t), k); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		wantNext(t, s, k, time.Time{}, false)
		wantLen(t, s, 1)
		if err := s.Cancel(ctx(t), k); err != nil {
			t.Fatalf("Cancel of nothing: %v", err)
		}
	})

	t.Run("MillisecondPrecision", func(t *testing.T) {
		s := open(t)
		k := Key{Kind: "k", ID: "ms"}
		mustSet(t, s, k, base.Add(1500*time.Microsecond))
		wantNext(t, s, k, base.Add(time.Millisecond), true)
	})

	t.Run("ClaimDueOldestFirstWithLimit", func(t *testing.T) {
		s := open(t)
		a, b, c, d := Key{Kind: "k", ID: "a"}, Key{Kind: "k", ID: "b"}, Key{Kind: "k", ID: "c"}, Key{Kind: "k", ID: "d"}
		mustSet(t, s, c, base.Add(-3*time.Second))
		mustSet(t, s, a, base.Add(-1*time.Second))
		mustSet(t, s, b, base) // due exactly now
		mustSet(t, s, d, base.Add(time.Millisecond))
		lease := 10 * time.Second
		wantDue(t, claim(t, s, base, lease, 2),
			Due{c, base.Add(-3 * time.Second)}, Due{a, base.Add(-time.Second)})
		wantDue(t, claim(t, s, base, lease, 10), Due{b, base})
		wantDue(t, claim(t, s, base, lease, 10))
		wantNext(t, s, c, base.Add(lease), true)
		wantNext(t, s, d, base.Add(time.Millisecond), true)
		wantLen(t, s, 4)
	})

	t.Run("TiesByKindThenID", func(t *testing.T) {
		s := open(t)
		keys := []Key{{Kind: "b", ID: "a"}, {Kind: "a", ID: "z"}, {Kind: "a", ID: "b"}}
		for _, k := range keys {
			mustSet(t, s, k, base)
		}
		wantDue(t, claim(t, s, base, time.Second, 10),
			Due{Key{Kind: "a", ID: "b"}, base}, Due{Key{Kind: "a", ID: "z"}, base}, Due{Key{Kind: "b", ID: "a"}, base})
	})

	t.Run("LeaseHidesUntilItEnds", func(t *testing.T) {
		s := open(t)
		k := Key{Kind: "k", ID: "leased"}
		mustSet(t, s, k, base)
		lease := 5 * time.Second
		wantDue(t, claim(t, s, base, lease, 1), Due{k, base})
		wantDue(t, claim(t, s, base.Add(lease-time.Millisecond), lease, 1))
		end := base.Add(lease)
		wantDue(t, claim(t, s, end, lease, 1), Due{k, end})
		wantNext(t, s, k, end.Add(lease), true)
	})

	t.Run("SetAfterClaimReplacesLease", func(t *testing.T) {
		s := open(t)
		k := Key{Kind: "k", ID: "rearmed"}
		mustSet(t, s, k, base)
		wantDue(t, claim(t, s, base, time.Hour, 1), Due{k, base})
		mustSet(t, s, k, base.Add(time.Second))
		wantNext(t, s, k, base.Add(time.Second), true)
		wantDue(t, claim(t, s, base.Add(time.Second), time.Hour, 1), Due{k, base.Add(time.Second)})
		if err := s.Cancel(ctx(t), k); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		wantDue(t, claim(t, s, base.Add(2*time.Hour), time.Hour, 1))
	})

	t.Run("AwkwardBytesRoundTrip", func(t *testing.T) {
		s := open(t)
		keys := []Key{
			{Kind: "a:b", ID: "c/d e"},
			{Kind: "a", ID: "b:c"}, {Kind: "a:b:c", ID: "d"},
			{Kind: "kind with space", ID: "{tag}*?[x]"},
			{Kind: "ü/ñ", ID: strings.Repeat("x", MaxPartLen)},
			{Kind: "\xff\xfe", ID: "\n\r\t"},
			{Kind: "a", ID: "b", Name: "c\xffd"}, {Kind: "a", ID: "b", Name: strings.Repeat("n", MaxPartLen)},
		}
		for i, k := range keys {
			mustSet(t, s, k, base.Add(time.Duration(i)*time.Millisecond))
		}
		got := claim(t, s, base.Add(time.Second), time.Second, 100)
		want := make([]Due, len(keys))
		for i, k := range keys {
			want[i] = Due{k, base.Add(time.Duration(i) * time.Millisecond)}
			wantNext(t, s, k, base.Add(time.Second+time.Second), true)
		}
		wantDue(t, got, want...)
	})

	t.Run("InvalidRefused", func(t *testing.T) {
		s := open(t)
		bad := []Key{
			{Kind: "", ID: "id"}, {Kind: "kind", ID: ""},
			{Kind: "ki\x00nd", ID: "id"}, {Kind: "kind", ID: "i\x00d"}, {Kind: "kind", ID: "id", Name: "n\x00"},
			{Kind: strings.Repeat("k", MaxPartLen+1), ID: "id"}, {Kind: "kind", ID: strings.Repeat("i", MaxPartLen+1)},
			{Kind: "kind", ID: "id", Name: strings.Repeat("n", MaxPartLen+1)},
		}
		for _, k := range bad {
			if err := s.Set(ctx(t), k, base); !errors.Is(err, persistence.ErrInvalid) {
				t.Errorf("Set %q: %v; want ErrInvalid", k, err)
			}
			if err := s.Cancel(ctx(t), k); !errors.Is(err, persistence.ErrInvalid) {
				t.Errorf("Cancel %q: %v; want ErrInvalid", k, err)
			}
			if _, _, err := s.Next(ctx(t), k); !errors.Is(err, persistence.ErrInvalid) {
				t.Errorf("Next %q: %v; want ErrInvalid", k, err)
			}
		}
		if err := s.Set(ctx(t), Key{Kind: "k", ID: "zero"}, time.Time{}); !errors.Is(err, persistence.ErrInvalid) {
			t.Errorf("Set zero time: %v; want ErrInvalid", err)
		}
		if _, err := s.Claim(ctx(t), base, 0, 1); !errors.Is(err, persistence.ErrInvalid) {
			t.Errorf("Claim lease 0: %v; want ErrInvalid", err)
		}
		if _, err := s.Claim(ctx(t), base, time.Second, 0); !errors.Is(err, persistence.ErrInvalid) {
			t.Errorf("Claim limit 0: %v; want ErrInvalid", err)
		}
		wantLen(t, s, 0)
	})

	t.Run("NamedTimersAreApart", func(t *testing.T) {
		s := open(t)
		dflt := Key{Kind: "saga", ID: "t-1"}
		retry := Key{Kind: "saga", ID: "t-1", Name: "retry"}
		deadline := Key{Kind: "saga", ID: "t-1", Name: "deadline"}
		mustSet(t, s, dflt, base)
		mustSet(t, s, retry, base.Add(time.Millisecond))
		mustSet(t, s, deadline, base.Add(time.Hour))
		wantLen(t, s, 3)
		if err := s.Cancel(ctx(t), retry); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		wantNext(t, s, retry, time.Time{}, false)
		wantNext(t, s, deadline, base.Add(time.Hour), true)
		wantDue(t, claim(t, s, base.Add(time.Minute), 3*time.Hour, 10), Due{dflt, base})
		wantDue(t, claim(t, s, base.Add(2*time.Hour), time.Second, 10), Due{deadline, base.Add(time.Hour)})
	})

	t.Run("ManyDueAllClaimedUpToLimit", func(t *testing.T) {
		// A burst: 40 due over every partition, claimed 16 at most per call,
		// each exactly once, none lost.
		s := open(t)
		for i := range 40 {
			mustSet(t, s, Key{Kind: "k", ID: fmt.Sprintf("burst-%02d", i)}, base.Add(time.Duration(i)*time.Millisecond))
		}
		seen := map[Key]int{}
		for round := 0; len(seen) < 40; round++ {
			if round > 10 {
				t.Fatalf("after %d claims only %d of 40 claimed", round, len(seen))
			}
			got := claim(t, s, base.Add(time.Second), time.Hour, 16)
			if len(got) == 0 || len(got) > 16 {
				t.Fatalf("claim %d returned %d reminders, want 1..16", round, len(got))
			}
			for _, d := range got {
				seen[d.Key]++
			}
		}
		for k, n := range seen {
			if n != 1 {
				t.Errorf("%v claimed %d times", k, n)
			}
		}
		wantDue(t, claim(t, s, base.Add(time.Second), time.Hour, 16))
	})

	t.Run("HonoursContext", func(t *testing.T) {
		s := open(t)
		c, cancel := context.WithCancel(t.Context())
		cancel()
		if err := s.Set(c, Key{Kind: "k", ID: "ctx"}, base); err == nil {
			t.Errorf("Set with a cancelled context succeeded")
		}
		if _, err := s.Claim(c, base, time.Second, 1); err == nil {
			t.Errorf("Claim with a cancelled context succeeded")
		}
	})
}

func TestNewRedisRefusesHashTagPrefix(t *testing.T) {
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	if _, err := NewRedis(c, "a{b}"); !errors.Is(err, persistence.ErrInvalid) {
		t.Fatalf("NewRedis with braces: %v; want ErrInvalid", err)
	}
	if _, err := NewRedis(nil, ""); !errors.Is(err, persistence.ErrInvalid) {
		t.Fatalf("NewRedis(nil): %v; want ErrInvalid", err)
	}
}

// A partitioned store spreads a schedule over its sets and still fires
// what the single-partition layout stored before it, once.
func TestPartitionedStoreSpreadsAndAdoptsTheLegacySet(t *testing.T) {
	mr := miniredis.RunT(t)
	c := goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
	defer c.Close()
	old, err := NewRedis(c, "p")
	if err != nil {
		t.Fatal(err)
	}
	stale, moved := Key{Kind: "saga", ID: "old"}, Key{Kind: "saga", ID: "rearmed"}
	mustSet(t, old, stale, base)
	mustSet(t, old, moved, base)

	s, err := NewRedisPartitioned(c, "p", 8)
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, s, moved, base.Add(time.Hour)) // re-armed by its grain: out of the legacy set
	for i := range 64 {
		mustSet(t, s, Key{Kind: "k", ID: fmt.Sprint(i)}, base.Add(time.Hour))
	}
	used := 0
	for _, k := range s.keys {
		if n := c.ZCard(t.Context(), k).Val(); n > 0 {
			used++
		}
	}
	if used < 6 {
		t.Errorf("64 grains landed in %d of 8 partitions", used)
	}
	wantLen(t, s, 66)
	wantNext(t, s, stale, base, true)
	wantDue(t, claim(t, s, base.Add(time.Minute), time.Second, 10), Due{stale, base})
	if err := s.Cancel(ctx(t), stale); err != nil {
		t.Fatal(err)
	}
	wantNext(t, s, stale, time.Time{}, false)
	if n := c.ZCard(t.Context(), "p:{reminders}:due").Val(); n != 0 {
		t.Errorf("legacy set keeps %d members after cancel and re-arm", n)
	}
	// Redis forgot the scripts (a restart, SCRIPT FLUSH): the claim loads
	// them again.
	if err := c.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	wantDue(t, claim(t, s, base.Add(2*time.Hour), time.Second, 1), Due{Key{Kind: "k", ID: "0"}, base.Add(time.Hour)})
	if _, err := NewRedisPartitioned(c, "p", 0); !errors.Is(err, persistence.ErrInvalid) {
		t.Errorf("0 partitions: %v; want ErrInvalid", err)
	}
}
