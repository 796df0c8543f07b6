package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"granary/persistence"
)

// A corruption damages the seeded data with raw commands; broken names the
// calls that must then fail with persistence.ErrCorrupt.
type corruption struct {
	name    string
	damage  func(ctx context.Context, c goredis.UniversalClient, k seeded) error
	broken  []string
	noWrite bool // a failed Append must leave the keys as they were
}

// seeded names the keys of the data every corruption case starts from:
// stream "s" with versions 1-3 at positions 1-3, stream "t" with version 1
// at position 4, and a snapshot of "s" at version 2.
type seeded struct{ stream, other, events, head, snapshot string }

func corruptions() []corruption {
	return []corruption{
		{"stream entry not a position", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.LSet(ctx, k.stream, 1, "garbage").Err()
		}, []string{"ReadStream"}, false},
		{"stream entry not canonical", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.LSet(ctx, k.stream, 0, "01").Err()
		}, []string{"ReadStream"}, false},
		{"stream entry points at nothing", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.LSet(ctx, k.stream, 2, "99").Err()
		}, []string{"ReadStream", "LoadStream"}, false},
		{"stream positions out of order", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.LSet(ctx, k.stream, 1, "1").Err()
		}, []string{"ReadStream"}, false},
		{"stream entry points at another stream", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.LSet(ctx, k.stream, 2, "4").Err()
		}, []string{"ReadStream", "LoadStream"}, false},
		{"garbage body", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.HSet(ctx, k.events, "2", "\x01\xff\xff\xff").Err()
		}, []string{"ReadStream", "ReadPartition"}, false},
		{"body byte flipped", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			b, err := c.HGet(ctx, k.events, "2").Bytes()
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 1
			return c.HSet(ctx, k.events, "2", b).Err()
		}, []string{"ReadStream", "ReadPartition"}, false},
		{"body moved to another version", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			b, err := c.HGet(ctx, k.events, "1").Bytes()
			if err != nil {
				return err
			}
			return c.HSet(ctx, k.events, "2", b).Err()
		}, []string{"ReadStream"}, false},
		{"body missing from the log", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.HDel(ctx, k.events, "2").Err()
		}, []string{"ReadStream", "ReadPartition", "Append"}, true},
		{"head not a count", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.Set(ctx, k.head, "four", 0).Err()
		}, []string{"Head", "ReadPartition", "Append"}, true},
		{"head behind the log", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.Set(ctx, k.head, "2", 0).Err()
		}, []string{"Append"}, true},
		{"stream key of the wrong type", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return replace(ctx, c, k.stream, "SADD", "1", "2", "3")
		}, []string{"Append", "ReadStream", "StreamVersion", "SaveSnapshot", "LoadStream"}, true},
		{"log key of the wrong type", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return replace(ctx, c, k.events, "SET", "x")
		}, []string{"Append", "ReadStream", "ReadPartition", "LoadStream"}, true},
		{"head key of the wrong type", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return replace(ctx, c, k.head, "RPUSH", "4")
		}, []string{"Append", "Head", "ReadPartition"}, true},
		{"snapshot version not a count", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.HSet(ctx, k.snapshot, "v", "two").Err()
		}, []string{"LoadSnapshot", "SaveSnapshot", "LoadStream"}, false},
		{"snapshot without version", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.HDel(ctx, k.snapshot, "v").Err()
		}, []string{"LoadSnapshot", "SaveSnapshot", "LoadStream"}, false},
		{"snapshot without data", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.HDel(ctx, k.snapshot, "d").Err()
		}, []string{"LoadSnapshot", "LoadStream"}, false},
		{"snapshot key of the wrong type", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return replace(ctx, c, k.snapshot, "SET", "x")
		}, []string{"LoadSnapshot", "SaveSnapshot", "LoadStream"}, false},
		{"stream behind its snapshot", func(ctx context.Context, c goredis.UniversalClient, k seeded) error {
			return c.LTrim(ctx, k.stream, 0, 0).Err()
		}, []string{"LoadStream"}, false},
	}
}

// replace swaps key for one of another type, made by cmd key args...
func replace(ctx context.Context, c goredis.UniversalClient, key, cmd string, args ...any) error {
	if err := c.Del(ctx, key).Err(); err != nil {
		return err
	}
	return c.Do(ctx, append([]any{cmd, key}, args...)...).Err()
}

func seed(t *testing.T, s *Store) seeded {
	t.Helper()
	ctx := t.Context()
	if _, err := s.Append(ctx, "s", 0, []persistence.EventData{{Type: "a", Data: []byte("1")}, {Type: "a", Data: []byte("2")}, {Type: "a", Data: []byte("3")}}); err != nil {
		t.Fatalf("seed: %v", err)
	}
	if _, err := s.Append(ctx, "t", 0, []persistence.EventData{{Type: "b", Data: []byte("4")}}); err != nil {
		t.Fatalf("seed: %v", err)
	}
	if err := s.SaveSnapshot(ctx, "s", persistence.Snapshot{Version: 2, Data: []byte("s@2")}); err != nil {
		t.Fatalf("seed: %v", err)
	}
	return seeded{
		stream:   s.keys.stream(0, "s"),
		other:    s.keys.stream(0, "t"),
		events:   s.keys.events(0),
		head:     s.keys.head(0),
		snapshot: s.keys.snapshot(0, "s"),
	}
}

// reads runs every read method on the seeded data; none may panic.
func reads(ctx context.Context, s *Store) map[string]error {
	errs := map[string]error{}
	_, errs["ReadStream"] = s.ReadStream(ctx, "s", 0, 0)
	_, errs["StreamVersion"] = s.StreamVersion(ctx, "s")
	_, errs["ReadPartition"] = s.ReadPartition(ctx, 0, 0, 0)
	_, errs["Head"] = s.Head(ctx, 0)
	_, _, errs["LoadSnapshot"] = s.LoadSnapshot(ctx, "s")
	_, _, _, errs["LoadStream"] = s.LoadStream(ctx, "s", 0)
	return errs
}

// writes runs the write methods as if the seeded data were intact.
func writes(ctx context.Context, s *Store) map[string]error {
	errs := map[string]error{}
	_, errs["Append"] = s.Append(ctx, "s", 3, []persistence.EventData{{Type: "a", Data: []byte("4")}})
	errs["SaveSnapshot"] = s.SaveSnapshot(ctx, "s", persistence.Snapshot{Version: 3, Data: []byte("s@3")})
	return errs
}

// footprint describes the seeded keys' types and sizes, to prove a failed
// Append wrote nothing.
func footprint(ctx context.Context, c goredis.UniversalClient, k seeded) string {
	var b strings.Builder
	for _, key := range []string{k.stream, k.events, k.head} {
		typ := c.Type(ctx, key).Val()
		fmt.Fprintf(&b, "%s=%s", key, typ)
		switch typ {
		case "list":
			fmt.Fprintf(&b, "/%d ", c.LLen(ctx, key).Val())
		case "hash":
			fmt.Fprintf(&b, "/%d ", c.HLen(ctx, key).Val())
		case "string":
			fmt.Fprintf(&b, "/%q ", c.Get(ctx, key).Val())
		default:
			b.WriteString(" ")
		}
	}
	return b.String()
}

func TestCorruptDataIsReported(t *testing.T) {
	for _, srv := range servers() {
		t.Run(srv.name, func(t *testing.T) {
			for _, tc := range corruptions() {
				t.Run(tc.name, func(t *testing.T) {
					s, c := newStore(t, srv, 1)
					k := seed(t, s)
					for name, err := range reads(t.Context(), s) {
						if err != nil {
							t.Fatalf("before damage, %s: %v", name, err)
						}
					}
					if err := tc.damage(t.Context(), c, k); err != nil {
						t.Fatalf("damage: %v", err)
					}
					before := footprint(t.Context(), c, k)
					errs := reads(t.Context(), s)
					for name, err := range writes(t.Context(), s) {
						errs[name] = err
					}
					for _, name := range tc.broken {
						err := errs[name]
						if !errors.Is(err, persistence.ErrCorrupt) {
							t.Errorf("%s: err %v, want ErrCorrupt", name, err)
							continue
						}
						if !strings.Contains(err.Error(), "{p0}") {
							t.Errorf("%s: error %q does not name the key", name, err)
						}
						t.Logf("%s: %v", name, err)
					}
					if after := footprint(t.Context(), c, k); tc.noWrite && after != before {
						t.Errorf("failed Append changed the keys:\nbefore %s\nafter  %s", before, after)
					}
				})
			}
		})
	}
}
