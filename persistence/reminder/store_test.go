package reminder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"granary/persistence"
)

const envURL = "GRANARY_REDIS_URL"

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type backend struct {
	name string
	open func(t *testing.T) Store
}

func backends() []backend {
	return []backend{
		{"memory", func(*testing.T) Store { return NewMemory() }},
		{"miniredis", func(t *testing.T) Store {
			mr := miniredis.RunT(t)
			c := goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
			t.Cleanup(func() { _ = c.Close() })
			s, err := NewRedis(c, "")
			if err != nil {
				t.Fatalf("NewRedis: %v", err)
			}
			return s
		}},
		{"redis", realRedis},
	}
}

// realRedis uses the server in GRANARY_REDIS_URL under a random prefix
// whose keys are deleted afterwards.
func realRedis(t *testing.T) Store {
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
	s, err := NewRedis(c, prefix)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() {
		// t's context is done by the time cleanups run.
		if err := c.Del(context.Background(), s.key).Err(); err != nil {
			t.Errorf("cleanup: DEL %s: %v", s.key, err)
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

func runConformance(t *testing.T, open func(t *testing.T) Store) {
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		t.Cleanup(cancel)
		return c
	}
	mustSet := func(t *testing.T, s Store, k Key, at time.Time) {
		t.Helper()
		if err := s.Set(ctx(t), k, at); err != nil {
			t.Fatalf("Set %v: %v", k, err)
		}
	}
	wantNext := func(t *testing.T, s Store, k Key, want time.Time, wantOK bool) {
		t.Helper()
		at, ok, err := s.Next(ctx(t), k)
		if err != nil {
			t.Fatalf("Next %v: %v", k, err)
		}
		if ok != wantOK || (ok && !at.Equal(want)) {
			t.Fatalf("Next %v = %v, %v; want %v, %v", k, at, ok, want, wantOK)
		}
	}
	wantLen := func(t *testing.T, s Store, want int64) {
		t.Helper()
		n, err := s.Len(ctx(t))
		if err != nil || n != want {
			t.Fatalf("Len = %d, %v; want %d", n, err, want)
		}
	}
	claim := func(t *testing.T, s Store, now time.Time, lease time.Duration, limit int) []Due {
		t.Helper()
		d, err := s.Claim(ctx(t), now, lease, limit)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		return d
	}
	wantDue := func(t *testing.T, got []Due, want ...Due) {
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

	t.Run("SetReplaceCancel", func(t *testing.T) {
		s := open(t)
		k := Key{"service", "a"}
		wantNext(t, s, k, time.Time{}, false)
		wantLen(t, s, 0)
		mustSet(t, s, k, base)
		wantNext(t, s, k, base, true)
		mustSet(t, s, k, base.Add(time.Minute))
		wantNext(t, s, k, base.Add(time.Minute), true)
		wantLen(t, s, 1)
		mustSet(t, s, Key{"service", "b"}, base)
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
		k := Key{"k", "ms"}
		mustSet(t, s, k, base.Add(1500*time.Microsecond))
		wantNext(t, s, k, base.Add(time.Millisecond), true)
	})

	t.Run("ClaimDueOldestFirstWithLimit", func(t *testing.T) {
		s := open(t)
		a, b, c, d := Key{"k", "a"}, Key{"k", "b"}, Key{"k", "c"}, Key{"k", "d"}
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
		keys := []Key{{"b", "a"}, {"a", "z"}, {"a", "b"}}
		for _, k := range keys {
			mustSet(t, s, k, base)
		}
		wantDue(t, claim(t, s, base, time.Second, 10),
			Due{Key{"a", "b"}, base}, Due{Key{"a", "z"}, base}, Due{Key{"b", "a"}, base})
	})

	t.Run("LeaseHidesUntilItEnds", func(t *testing.T) {
		s := open(t)
		k := Key{"k", "leased"}
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
		k := Key{"k", "rearmed"}
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
			{"a:b", "c/d e"},
			{"a", "b:c"}, {"a:b:c", "d"},
			{"kind with space", "{tag}*?[x]"},
			{"ü/ñ", strings.Repeat("x", MaxPartLen)},
			{"\xff\xfe", "\n\r\t"},
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
			{"", "id"}, {"kind", ""},
			{"ki\x00nd", "id"}, {"kind", "i\x00d"},
			{strings.Repeat("k", MaxPartLen+1), "id"}, {"kind", strings.Repeat("i", MaxPartLen+1)},
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
		if err := s.Set(ctx(t), Key{"k", "zero"}, time.Time{}); !errors.Is(err, persistence.ErrInvalid) {
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

	t.Run("HonoursContext", func(t *testing.T) {
		s := open(t)
		c, cancel := context.WithCancel(t.Context())
		cancel()
		if err := s.Set(c, Key{"k", "ctx"}, base); err == nil {
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
