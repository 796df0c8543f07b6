package redis

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"granary/persistence"
)

// tagScript is the mechanics of append.lua without its data: it appends
// ARGV[2] (an integer tag) to the list KEYS[1] provided the list holds
// ARGV[1] elements (-1: any), and answers {1, new length, tag} or
// {0, actual length}. Its replies tell whose append ran, in which order.
const tagSrc = `
local n = redis.call('LLEN', KEYS[1])
if tonumber(ARGV[1]) >= 0 and n ~= tonumber(ARGV[1]) then
  return {0, n}
end
n = redis.call('RPUSH', KEYS[1], ARGV[2])
return {1, n, tonumber(ARGV[2])}
`

// gcStore is a store on srv whose writers run tagScript (a script of its
// own, so that one test's SCRIPT FLUSH or Load does not touch another's
// cached hash).
type gcStore struct {
	*Store
	client goredis.UniversalClient
	prefix string
}

func newGCStore(t testing.TB, srv server, opts GroupCommitOptions) gcStore {
	return newScriptStore(t, srv, opts, tagSrc)
}

// newScriptStore is a store whose appends run src instead of append.lua.
func newScriptStore(t testing.TB, srv server, opts GroupCommitOptions, src string) gcStore {
	c, prefix := srv.connect(t)
	s, err := New(c, Options{KeyPrefix: prefix, GroupCommit: opts})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// New's writers never started: nothing to stop.
	if s.pipe, err = newPipe(c, opts, src); err != nil {
		t.Fatal(err)
	}
	s.appendScript = goredis.NewScript(src)
	t.Cleanup(func() { _ = s.Close() })
	return gcStore{s, c, s.keys.prefix}
}

func (g gcStore) key(stream string) string { return g.prefix + ":gc:" + stream }

// push appends tag to stream through the writers; want is the expected
// length, -1 for any.
func (g gcStore) push(ctx context.Context, stream string, want, tag int) ([]int64, error) {
	return g.runAppend(ctx, stream, []string{g.key(stream)}, []any{want, tag})
}

func (g gcStore) list(t testing.TB, stream string) []int {
	t.Helper()
	raw, err := g.client.LRange(context.Background(), g.key(stream), 0, -1).Result()
	if err != nil {
		t.Fatalf("LRANGE %s: %v", stream, err)
	}
	out := make([]int, len(raw))
	for i, r := range raw {
		if out[i], err = strconv.Atoi(r); err != nil {
			t.Fatalf("%s[%d] = %q", stream, i, r)
		}
	}
	return out
}

// preload caches the script so that batches are not re-sent after NOSCRIPT.
func (g gcStore) preload(t testing.TB) {
	t.Helper()
	if err := g.appendScript.Load(t.Context(), g.client).Err(); err != nil {
		t.Fatalf("SCRIPT LOAD: %v", err)
	}
}

type result struct {
	val []int64
	err error
}

func (g gcStore) pushAsync(ctx context.Context, stream string, want, tag int) <-chan result {
	ch := make(chan result, 1)
	go func() {
		v, err := g.push(ctx, stream, want, tag)
		ch <- result{v, err}
	}()
	return ch
}

func forEachServer(t *testing.T, f func(t *testing.T, srv server)) {
	for _, srv := range servers() {
		t.Run(srv.name, func(t *testing.T) {
			if srv.name == "redis" && os.Getenv(envURL) == "" {
				t.Skipf("%s not set", envURL)
			}
			f(t, srv)
		})
	}
}

// Every caller gets its own reply: 64 goroutines append in turn to a
// stream of their own (at its expected length) and to one shared stream.
func TestGroupCommitConcurrent(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		g := newGCStore(t, srv, GroupCommitOptions{})
		const clients, rounds = 64, 20
		var wg sync.WaitGroup
		lengths := make(chan int64, clients*rounds)
		errs := make(chan error, clients)
		for c := range clients {
			wg.Go(func() {
				own := "own-" + strconv.Itoa(c)
				for i := range rounds {
					tag := c*1000 + i
					got, err := g.push(t.Context(), own, i, tag)
					if err != nil || !slices.Equal(got, []int64{1, int64(i + 1), int64(tag)}) {
						errs <- fmt.Errorf("%s append %d: %v, %v", own, i, got, err)
						return
					}
					got, err = g.push(t.Context(), "hot", -1, tag)
					if err != nil || len(got) != 3 || got[0] != 1 || got[2] != int64(tag) {
						errs <- fmt.Errorf("hot append %d: %v, %v", tag, got, err)
						return
					}
					lengths <- got[1]
				}
			})
		}
		wg.Wait()
		close(errs)
		close(lengths)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}
		seen := map[int64]bool{}
		for n := range lengths {
			if seen[n] {
				t.Fatalf("two appends answered hot length %d", n)
			}
			seen[n] = true
		}
		hot := g.list(t, "hot")
		if len(hot) != clients*rounds {
			t.Fatalf("hot holds %d tags, want %d", len(hot), clients*rounds)
		}
		last := map[int]int{}
		for _, tag := range hot {
			c, i := tag/1000, tag%1000
			if prev, ok := last[c]; ok && i <= prev {
				t.Fatalf("hot: client %d's append %d after its %d", c, i, prev)
			}
			last[c] = i
		}
		for c := range clients {
			own := g.list(t, "own-"+strconv.Itoa(c))
			for i, tag := range own {
				if tag != c*1000+i {
					t.Fatalf("own-%d = %v", c, own)
				}
			}
		}
		pipelines, appends := g.GroupCommitStats()
		t.Logf("%d appends in %d pipelines", appends, pipelines)
		if appends != 2*clients*rounds {
			t.Fatalf("%d appends counted, want %d", appends, 2*clients*rounds)
		}
	})
}

// A closed store's appends fail with persistence.ErrClosed and send
// nothing (the writers' Close and lazy start are redispipe's, tested
// there; goleak in TestMain checks no writer outlives its store).
func TestGroupCommitClosed(t *testing.T) {
	g := newGCStore(t, server{"miniredis", miniredisClient}, GroupCommitOptions{})
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.push(t.Context(), "s", -1, 1); !errors.Is(err, persistence.ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	if st := g.pipe.Stats(); st.Pipelines != 0 {
		t.Fatalf("%d pipelines sent after Close", st.Pipelines)
	}
	// The writers' own ErrClosed (of appends they refused, unsent) reads
	// as persistence's.
	h := newGCStore(t, server{"miniredis", miniredisClient}, GroupCommitOptions{})
	_ = h.pipe.Close()
	if _, err := h.push(t.Context(), "s", -1, 1); !errors.Is(err, persistence.ErrClosed) {
		t.Fatalf("append on closed writers: %v", err)
	}
}

// runAppend answers with the errors Script.Run does, so classify and
// journal.go's reply checks see no difference.
func TestGroupCommitErrorsAsScriptRun(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		for _, opts := range []GroupCommitOptions{{}, {Off: true}} {
			g := newGCStore(t, srv, opts)
			ctx := t.Context()
			if err := g.client.Set(ctx, g.key("str"), "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
			_, direct := g.appendScript.Run(ctx, g.client, []string{g.key("str")}, -1, 1).Int64Slice()
			_, grouped := g.push(ctx, "str", -1, 1)
			if grouped == nil || direct == nil || grouped.Error() != direct.Error() {
				t.Fatalf("Off=%v: runAppend says %v, Script.Run %v", opts.Off, grouped, direct)
			}
			if err := classify(grouped, g.key("str")); !errors.Is(err, persistence.ErrCorrupt) {
				t.Fatalf("Off=%v: classify(%v) = %v, want ErrCorrupt", opts.Off, grouped, err)
			}
			v, err := g.push(ctx, "s", 5, 1)
			if err != nil || !slices.Equal(v, []int64{0, 0}) {
				t.Fatalf("Off=%v: conflict reply %v, %v", opts.Off, v, err)
			}
		}
	})
}

func TestGroupCommitOptionsValidate(t *testing.T) {
	c, _ := miniredisClient(t)
	for _, o := range []GroupCommitOptions{{Shards: -1}, {MaxBatch: -1}, {Queue: -1}, {Shards: 100_000}} {
		if _, err := New(c, Options{GroupCommit: o}); !errors.Is(err, persistence.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", o, err)
		}
	}
}

// benchSrc costs Redis about what append.lua does for one event: the
// checks and the writes of a compare-and-append to a stream and its
// partition log (without the version check, so any stream takes it).
const benchSrc = `
redis.call('LLEN', KEYS[1])
local head = tonumber(redis.call('GET', KEYS[3]) or '0')
redis.call('HLEN', KEYS[2])
head = head + 1
local pos = string.format('%d', head)
redis.call('HSET', KEYS[2], pos, ARGV[1])
redis.call('RPUSH', KEYS[1], pos)
redis.call('SET', KEYS[3], pos)
return {1, redis.call('LLEN', KEYS[1]), head}
`

// BenchmarkGroupCommit: 64 appenders over 1000 streams (8 partitions),
// each append on its own round trip (Script.Run) or through the writers.
// Real Redis only: miniredis answers in-process, which says nothing of
// round trips.
func BenchmarkGroupCommit(b *testing.B) {
	if os.Getenv(envURL) == "" {
		b.Skipf("%s not set", envURL)
	}
	const appenders, streams, partitions = 64, 1000, 8
	for _, mode := range []struct {
		name   string
		shards int // 0: direct Script.Run
	}{{"direct", 0}, {"group/shards=1", 1}, {"group/shards=4", 4}, {"group/shards=16", 16}} {
		b.Run(mode.name, func(b *testing.B) {
			g := newScriptStore(b, server{"redis", realClient}, GroupCommitOptions{Shards: mode.shards}, benchSrc)
			g.preload(b)
			body := string(make([]byte, 256))
			keysOf := make([][]string, streams)
			for i := range keysOf {
				p := i % partitions
				keysOf[i] = []string{g.keys.stream(p, "b"+strconv.Itoa(i)), g.keys.events(p), g.keys.head(p)}
			}
			var next atomic.Uint64
			b.SetParallelism(max(1, appenders/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					i := int(next.Add(1) % streams)
					var err error
					if mode.shards == 0 {
						_, err = g.appendScript.Run(ctx, g.client, keysOf[i], body).Int64Slice()
					} else {
						_, err = g.runAppend(ctx, "b"+strconv.Itoa(i), keysOf[i], []any{body})
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			if p, a := g.GroupCommitStats(); p > 0 {
				b.ReportMetric(float64(a)/float64(p), "appends/pipeline")
			}
		})
	}
}
