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
	"time"

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
	c, prefix := srv.connect(t)
	s, err := New(c, Options{KeyPrefix: prefix, GroupCommit: opts})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.gc.script = goredis.NewScript(tagSrc)
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

// gate holds the writers' first batch until released, and records the
// size of every batch.
type gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	sizes   []int
}

func holdFirstBatch(g gcStore) *gate {
	gt := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	g.gc.beforeSend = func(n int) {
		gt.mu.Lock()
		gt.sizes = append(gt.sizes, n)
		gt.mu.Unlock()
		first := false
		gt.once.Do(func() { first = true })
		if first {
			close(gt.entered)
			<-gt.release
		}
	}
	return gt
}

func (gt *gate) batches() []int {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	return slices.Clone(gt.sizes)
}

func waitFor(t testing.TB, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		panic("unreachable")
	}
}

// queued waits until n appends wait in the only writer's queue.
func (g gcStore) queued(t testing.TB, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		if got := len(g.gc.shards[0].queue); got != n {
			return fmt.Errorf("%d appends queued, want %d", got, n)
		}
		return nil
	})
}

// preload caches the script so that batches are not re-sent after NOSCRIPT.
func (g gcStore) preload(t testing.TB) {
	t.Helper()
	if err := g.gc.script.Load(t.Context(), g.client).Err(); err != nil {
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

// Appends that arrive while a pipeline is in flight go out together as the
// next one.
func TestGroupCommitBatches(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		g := newGCStore(t, srv, GroupCommitOptions{Shards: 1})
		g.preload(t)
		gt := holdFirstBatch(g)
		first := g.pushAsync(t.Context(), "s0", -1, 0)
		recv(t, gt.entered, "first batch")
		var more []<-chan result
		for i := 1; i <= 10; i++ {
			more = append(more, g.pushAsync(t.Context(), "s"+strconv.Itoa(i), -1, i))
		}
		g.queued(t, 10)
		close(gt.release)
		for i, ch := range append([]<-chan result{first}, more...) {
			r := recv(t, ch, "reply")
			if r.err != nil || !slices.Equal(r.val, []int64{1, 1, int64(i)}) {
				t.Fatalf("append %d: %v, %v", i, r.val, r.err)
			}
		}
		if got := gt.batches(); !slices.Equal(got, []int{1, 10}) {
			t.Fatalf("batch sizes %v, want [1 10]", got)
		}
		if p, a := g.GroupCommitStats(); p != 2 || a != 11 {
			t.Fatalf("stats: %d pipelines, %d appends; want 2, 11", p, a)
		}
	})
}

// A batch never exceeds MaxBatch, and what is left goes next.
func TestGroupCommitMaxBatch(t *testing.T) {
	g := newGCStore(t, server{"miniredis", miniredisClient}, GroupCommitOptions{Shards: 1, MaxBatch: 4})
	g.preload(t)
	gt := holdFirstBatch(g)
	var all []<-chan result
	all = append(all, g.pushAsync(t.Context(), "s", -1, 0))
	recv(t, gt.entered, "first batch")
	for i := 1; i <= 9; i++ {
		all = append(all, g.pushAsync(t.Context(), "s", -1, i))
		g.queued(t, i) // one at a time: the queue order is known
	}
	close(gt.release)
	for i, ch := range all {
		if r := recv(t, ch, "reply"); r.err != nil || r.val[2] != int64(i) {
			t.Fatalf("append %d: %v, %v", i, r.val, r.err)
		}
	}
	if got := gt.batches(); !slices.Equal(got, []int{1, 4, 4, 1}) {
		t.Fatalf("batch sizes %v, want [1 4 4 1]", got)
	}
	if got := g.list(t, "s"); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("s = %v", got)
	}
}

// A caller who gives up while its append is in flight gets its context's
// error; the append still runs, and before the caller's next append to the
// stream. One who gives up while queued gets its error and is not sent.
func TestGroupCommitCancel(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		g := newGCStore(t, srv, GroupCommitOptions{Shards: 1})
		g.preload(t)

		dead, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := g.push(dead, "s", -1, 99); !errors.Is(err, context.Canceled) {
			t.Fatalf("append with a cancelled context: %v", err)
		}

		gt := holdFirstBatch(g)
		ctxA, cancelA := context.WithCancel(t.Context())
		a := g.pushAsync(ctxA, "s", -1, 1)
		recv(t, gt.entered, "first batch")
		cancelA()
		if r := recv(t, a, "A's reply"); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("A in flight, cancelled: %v, %v", r.val, r.err)
		}

		ctxB, cancelB := context.WithCancel(t.Context())
		b := g.pushAsync(ctxB, "s", -1, 2)
		g.queued(t, 1)
		cancelB()
		if r := recv(t, b, "B's reply"); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("B queued, cancelled: %v, %v", r.val, r.err)
		}

		c := g.pushAsync(t.Context(), "s", -1, 3)
		g.queued(t, 2) // B's entry is still in the queue, abandoned
		close(gt.release)
		if r := recv(t, c, "C's reply"); r.err != nil || !slices.Equal(r.val, []int64{1, 2, 3}) {
			t.Fatalf("C: %v, %v", r.val, r.err)
		}
		if got := g.list(t, "s"); !slices.Equal(got, []int{1, 3}) {
			t.Fatalf("s = %v, want [1 3]: A then C, B never sent", got)
		}
		if got := gt.batches(); !slices.Equal(got, []int{1, 1}) {
			t.Fatalf("batch sizes %v, want [1 1]", got)
		}
	})
}

// Close fails queued appends with ErrClosed at once, stops the writers
// (goleak in TestMain checks none is left) and later appends fail too.
func TestGroupCommitClose(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		g := newGCStore(t, srv, GroupCommitOptions{Shards: 2})
		g.preload(t)
		gt := holdFirstBatch(g)
		a := g.pushAsync(t.Context(), "s", -1, 1)
		recv(t, gt.entered, "first batch")
		// The queued appends go to the held writer: same stream.
		b := g.pushAsync(t.Context(), "s", -1, 2)
		c := g.pushAsync(t.Context(), "s", -1, 3)
		waitFor(t, 10*time.Second, func() error {
			n := 0
			for _, s := range g.gc.shards {
				n += len(s.queue)
			}
			if n != 2 {
				return fmt.Errorf("%d queued", n)
			}
			return nil
		})
		closed := make(chan error, 1)
		go func() { closed <- g.Close() }()
		for _, ch := range []<-chan result{b, c} {
			if r := recv(t, ch, "queued reply"); !errors.Is(r.err, persistence.ErrClosed) {
				t.Fatalf("queued append after Close: %v, %v", r.val, r.err)
			}
		}
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) while a writer was busy", err)
		default:
		}
		close(gt.release)
		if err := recv(t, closed, "Close"); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// A was taken but Close came before it was sent.
		if r := recv(t, a, "A's reply"); !errors.Is(r.err, persistence.ErrClosed) {
			t.Fatalf("A: %v, %v", r.val, r.err)
		}
		if _, err := g.push(t.Context(), "s", -1, 4); !errors.Is(err, persistence.ErrClosed) {
			t.Fatalf("append after Close: %v", err)
		}
		if got := g.list(t, "s"); len(got) != 0 {
			t.Fatalf("s = %v, want nothing sent", got)
		}
	})
}

// A store that never appended starts no writer; closing it is immediate.
func TestGroupCommitLazy(t *testing.T) {
	g := newGCStore(t, server{"miniredis", miniredisClient}, GroupCommitOptions{})
	if g.gc.started.Load() {
		t.Fatal("writers started before the first append")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.push(t.Context(), "s", -1, 1); !errors.Is(err, persistence.ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	if g.gc.started.Load() {
		t.Fatal("writers started after Close")
	}
}

// A flushed script cache (or a restarted server) answers NOSCRIPT: the
// writer loads the script and re-sends those appends, in their order.
func TestGroupCommitNoScript(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		g := newGCStore(t, srv, GroupCommitOptions{Shards: 1})
		g.gc.script = goredis.NewScript(tagSrc + "-- " + g.prefix) // a fresh hash on a shared server
		if v, err := g.push(t.Context(), "s", 0, 1); err != nil || !slices.Equal(v, []int64{1, 1, 1}) {
			t.Fatalf("first append on a cold cache: %v, %v", v, err)
		}
		if p, a := g.GroupCommitStats(); p != 2 || a != 1 {
			t.Fatalf("stats: %d pipelines, %d appends; want 2 (NOSCRIPT, again), 1", p, a)
		}
		if err := g.client.ScriptFlush(t.Context()).Err(); err != nil {
			t.Fatalf("SCRIPT FLUSH: %v", err)
		}
		gt := holdFirstBatch(g)
		x := g.pushAsync(t.Context(), "s", 1, 2)
		recv(t, gt.entered, "first batch")
		y := g.pushAsync(t.Context(), "s", 2, 3)
		g.queued(t, 1)
		z := g.pushAsync(t.Context(), "s", 3, 4)
		g.queued(t, 2)
		close(gt.release)
		for i, ch := range []<-chan result{x, y, z} {
			if r := recv(t, ch, "reply"); r.err != nil || !slices.Equal(r.val, []int64{1, int64(i + 2), int64(i + 2)}) {
				t.Fatalf("append %d after SCRIPT FLUSH: %v, %v", i+2, r.val, r.err)
			}
		}
		if got := g.list(t, "s"); !slices.Equal(got, []int{1, 2, 3, 4}) {
			t.Fatalf("s = %v", got)
		}
		if p, a := g.GroupCommitStats(); p != 5 || a != 4 {
			t.Fatalf("stats: %d pipelines, %d appends; want 5, 4", p, a)
		}
	})
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
			_, direct := g.gc.script.Run(ctx, g.client, []string{g.key("str")}, -1, 1).Int64Slice()
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

// A pipeline lives no longer than its appends' latest deadline: one whose
// callers have all given up is not run, and the writer goes on with the
// next. (That a frozen server cannot hold a writer longer is go-redis
// honouring the pipeline's context; cmd/granary's freeze test covers it.)
func TestGroupCommitPipelineDeadline(t *testing.T) {
	g := newGCStore(t, server{"miniredis", miniredisClient}, GroupCommitOptions{Shards: 1})
	g.preload(t)
	var held atomic.Bool
	release := make(chan struct{})
	g.gc.beforeSend = func(int) {
		if held.CompareAndSwap(false, true) {
			<-release
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	a := g.pushAsync(ctx, "s", -1, 1)
	if r := recv(t, a, "reply"); !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("append past its deadline: %v, %v", r.val, r.err)
	}
	close(release) // its pipeline's deadline has passed too
	if v, err := g.push(t.Context(), "s", -1, 2); err != nil || v[2] != 2 {
		t.Fatalf("next append: %v, %v", v, err)
	}
	if got := g.list(t, "s"); !slices.Equal(got, []int{2}) {
		t.Fatalf("s = %v: the expired pipeline must not run", got)
	}
}

func TestPipelineContext(t *testing.T) {
	now := time.Now()
	at := func(d time.Duration) *pendingAppend {
		ctx, cancel := context.WithDeadline(context.Background(), now.Add(d))
		t.Cleanup(cancel)
		return &pendingAppend{ctx: ctx}
	}
	none := &pendingAppend{ctx: context.Background()}
	for _, tc := range []struct {
		name  string
		batch []*pendingAppend
		want  time.Duration
	}{
		{"latest", []*pendingAppend{at(time.Second), at(3 * time.Second), at(2 * time.Second)}, 3 * time.Second},
		{"capped", []*pendingAppend{at(time.Second), at(time.Hour)}, maxPipelineWait},
		{"no deadline", []*pendingAppend{at(time.Second), none}, maxPipelineWait},
	} {
		ctx, cancel := pipelineContext(context.Background(), tc.batch)
		d, _ := ctx.Deadline()
		cancel()
		if got := d.Sub(now); got < tc.want-time.Second || got > tc.want+time.Second {
			t.Errorf("%s: deadline in %v, want %v", tc.name, got, tc.want)
		}
	}
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
			g := newGCStore(b, server{"redis", realClient}, GroupCommitOptions{Shards: mode.shards})
			g.gc.script = goredis.NewScript(benchSrc)
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
						_, err = g.gc.script.Run(ctx, g.client, keysOf[i], body).Int64Slice()
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
