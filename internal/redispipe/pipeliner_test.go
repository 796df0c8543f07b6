package redispipe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"granary/internal/leakcheck"
	"granary/internal/testnet"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// envURL names a real Redis the tests may share with others: every test
// uses keys of its own and deletes them afterwards.
const envURL = "GRANARY_REDIS_URL"

// tagSrc appends ARGV[2] (an integer tag) to the list KEYS[1] provided the
// list holds ARGV[1] elements (-1: any), and answers {1, new length, tag}
// or {0, actual length}. Its replies tell whose call ran, in which order.
const tagSrc = `
local n = redis.call('LLEN', KEYS[1])
if tonumber(ARGV[1]) >= 0 and n ~= tonumber(ARGV[1]) then
  return {0, n}
end
n = redis.call('RPUSH', KEYS[1], ARGV[2])
return {1, n, tonumber(ARGV[2])}
`

type server struct {
	name    string
	connect func(tb testing.TB) (goredis.UniversalClient, string)
}

func miniredisClient(tb testing.TB) (goredis.UniversalClient, string) {
	mr := miniredis.RunT(tb)
	c := goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
	tb.Cleanup(func() { _ = c.Close() })
	return c, "t"
}

func realClient(tb testing.TB) (goredis.UniversalClient, string) {
	url := os.Getenv(envURL)
	if url == "" {
		tb.Skipf("%s not set", envURL)
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		tb.Fatalf("%s: %v", envURL, err)
	}
	c := goredis.NewClient(opt)
	var r [6]byte
	_, _ = rand.Read(r[:])
	prefix := "redispipetest-" + hex.EncodeToString(r[:])
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		_ = c.Close()
	})
	return c, prefix
}

func forEachServer(t *testing.T, f func(t *testing.T, srv server)) {
	for _, srv := range []server{{"miniredis", miniredisClient}, {"redis", realClient}} {
		t.Run(srv.name, func(t *testing.T) {
			if srv.name == "redis" && os.Getenv(envURL) == "" {
				t.Skipf("%s not set", envURL)
			}
			f(t, srv)
		})
	}
}

// fixture is a Pipeliner on srv running its own copy of tagSrc (a script
// of its own, so that one test's SCRIPT FLUSH or Load does not touch
// another's cached hash).
type fixture struct {
	*Pipeliner
	client goredis.UniversalClient
	prefix string
	script *goredis.Script
}

func newFixture(t testing.TB, srv server, opts Options) fixture {
	c, prefix := srv.connect(t)
	src := tagSrc + "-- " + prefix
	opts.Scripts = append(opts.Scripts, src)
	p, err := New(c, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return fixture{p, c, prefix, goredis.NewScript(src)}
}

func (f fixture) key(stream string) string { return f.prefix + ":" + stream }

// push appends tag to stream through the pipeliner; want is the expected
// length, -1 for any.
func (f fixture) push(ctx context.Context, stream string, want, tag int) ([]int64, error) {
	return f.script.Run(ctx, f.Pipeliner, []string{f.key(stream)}, want, tag).Int64Slice()
}

type result struct {
	val []int64
	err error
}

func (f fixture) pushAsync(ctx context.Context, stream string, want, tag int) <-chan result {
	ch := make(chan result, 1)
	go func() {
		v, err := f.push(ctx, stream, want, tag)
		ch <- result{v, err}
	}()
	return ch
}

func (f fixture) list(t testing.TB, stream string) []int {
	t.Helper()
	raw, err := f.client.LRange(context.Background(), f.key(stream), 0, -1).Result()
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
func (f fixture) preload(t testing.TB) {
	t.Helper()
	if err := f.script.Load(t.Context(), f.client).Err(); err != nil {
		t.Fatalf("SCRIPT LOAD: %v", err)
	}
}

// queued waits until n calls wait in the first shard's queue.
func (f fixture) queued(t testing.TB, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		if got := len(f.shards[0].queue); got != n {
			return fmt.Errorf("%d calls queued, want %d", got, n)
		}
		return nil
	})
}

// gate holds the shards' first batch until released, and records the size
// of every batch.
type gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	sizes   []int
}

func holdFirstBatch(f fixture) *gate {
	gt := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	f.beforeSend = func(n int) {
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

// Every caller gets its own reply: 64 goroutines append in turn to a list
// of their own (at its expected length) and to one shared list, whose
// order keeps each caller's order.
func TestConcurrent(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		f := newFixture(t, srv, Options{})
		const clients, rounds = 64, 20
		var wg sync.WaitGroup
		lengths := make(chan int64, clients*rounds)
		errs := make(chan error, clients)
		for c := range clients {
			wg.Go(func() {
				own := "own-" + strconv.Itoa(c)
				for i := range rounds {
					tag := c*1000 + i
					got, err := f.push(t.Context(), own, i, tag)
					if err != nil || !slices.Equal(got, []int64{1, int64(i + 1), int64(tag)}) {
						errs <- fmt.Errorf("%s call %d: %v, %v", own, i, got, err)
						return
					}
					got, err = f.push(t.Context(), "hot", -1, tag)
					if err != nil || len(got) != 3 || got[0] != 1 || got[2] != int64(tag) {
						errs <- fmt.Errorf("hot call %d: %v, %v", tag, got, err)
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
				t.Fatalf("two calls answered hot length %d", n)
			}
			seen[n] = true
		}
		hot := f.list(t, "hot")
		if len(hot) != clients*rounds {
			t.Fatalf("hot holds %d tags, want %d", len(hot), clients*rounds)
		}
		last := map[int]int{}
		for _, tag := range hot {
			c, i := tag/1000, tag%1000
			if prev, ok := last[c]; ok && i <= prev {
				t.Fatalf("hot: client %d's call %d after its %d", c, i, prev)
			}
			last[c] = i
		}
		st := f.Stats()
		t.Logf("%d calls in %d pipelines", st.Calls, st.Pipelines)
		// The first call of each shard may meet a cold script cache:
		// NOSCRIPT, load, again, still one call each.
		if st.Calls != 2*clients*rounds {
			t.Fatalf("%d calls counted, want %d", st.Calls, 2*clients*rounds)
		}
	})
}

// Calls that arrive while a pipeline is in flight go out together as the
// next one.
func TestBatches(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		f := newFixture(t, srv, Options{Shards: 1})
		f.preload(t)
		gt := holdFirstBatch(f)
		first := f.pushAsync(t.Context(), "s0", -1, 0)
		recv(t, gt.entered, "first batch")
		var more []<-chan result
		for i := 1; i <= 10; i++ {
			more = append(more, f.pushAsync(t.Context(), "s"+strconv.Itoa(i), -1, i))
		}
		f.queued(t, 10)
		close(gt.release)
		for i, ch := range append([]<-chan result{first}, more...) {
			r := recv(t, ch, "reply")
			if r.err != nil || !slices.Equal(r.val, []int64{1, 1, int64(i)}) {
				t.Fatalf("call %d: %v, %v", i, r.val, r.err)
			}
		}
		if got := gt.batches(); !slices.Equal(got, []int{1, 10}) {
			t.Fatalf("batch sizes %v, want [1 10]", got)
		}
		if st := f.Stats(); st != (Stats{Pipelines: 2, Calls: 11}) {
			t.Fatalf("stats %+v, want 2 pipelines, 11 calls", st)
		}
	})
}

// A batch never exceeds MaxBatch, and what is left goes next.
func TestMaxBatch(t *testing.T) {
	f := newFixture(t, server{"miniredis", miniredisClient}, Options{Shards: 1, MaxBatch: 4})
	f.preload(t)
	gt := holdFirstBatch(f)
	var all []<-chan result
	all = append(all, f.pushAsync(t.Context(), "s", -1, 0))
	recv(t, gt.entered, "first batch")
	for i := 1; i <= 9; i++ {
		all = append(all, f.pushAsync(t.Context(), "s", -1, i))
		f.queued(t, i) // one at a time: the queue order is known
	}
	close(gt.release)
	for i, ch := range all {
		if r := recv(t, ch, "reply"); r.err != nil || r.val[2] != int64(i) {
			t.Fatalf("call %d: %v, %v", i, r.val, r.err)
		}
	}
	if got := gt.batches(); !slices.Equal(got, []int{1, 4, 4, 1}) {
		t.Fatalf("batch sizes %v, want [1 4 4 1]", got)
	}
	if got := f.list(t, "s"); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("s = %v", got)
	}
}

// A full queue holds its caller, as long as the caller's context lets it.
func TestQueueBound(t *testing.T) {
	f := newFixture(t, server{"miniredis", miniredisClient}, Options{Shards: 1, MaxBatch: 1, Queue: 2})
	f.preload(t)
	gt := holdFirstBatch(f)
	a := f.pushAsync(t.Context(), "s", -1, 0)
	recv(t, gt.entered, "first batch")
	b := f.pushAsync(t.Context(), "s", -1, 1)
	f.queued(t, 1)
	c := f.pushAsync(t.Context(), "s", -1, 2)
	f.queued(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.push(ctx, "s", -1, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call on a full queue: %v", err)
	}
	close(gt.release)
	for i, ch := range []<-chan result{a, b, c} {
		if r := recv(t, ch, "reply"); r.err != nil || r.val[2] != int64(i) {
			t.Fatalf("call %d: %v, %v", i, r.val, r.err)
		}
	}
	if got := f.list(t, "s"); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("s = %v", got)
	}
}

// A caller who gives up while its call is in flight gets its context's
// error; the call still runs, and before the caller's next call on the
// key. One who gives up while queued gets its error and is not sent.
func TestCancel(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		f := newFixture(t, srv, Options{Shards: 1})
		f.preload(t)

		dead, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := f.push(dead, "s", -1, 99); !errors.Is(err, context.Canceled) {
			t.Fatalf("call with a cancelled context: %v", err)
		}

		gt := holdFirstBatch(f)
		ctxA, cancelA := context.WithCancel(t.Context())
		a := f.pushAsync(ctxA, "s", -1, 1)
		recv(t, gt.entered, "first batch")
		cancelA()
		if r := recv(t, a, "A's reply"); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("A in flight, cancelled: %v, %v", r.val, r.err)
		}

		ctxB, cancelB := context.WithCancel(t.Context())
		b := f.pushAsync(ctxB, "s", -1, 2)
		f.queued(t, 1)
		cancelB()
		if r := recv(t, b, "B's reply"); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("B queued, cancelled: %v, %v", r.val, r.err)
		}

		c := f.pushAsync(t.Context(), "s", -1, 3)
		f.queued(t, 2) // B's entry is still in the queue, abandoned
		close(gt.release)
		if r := recv(t, c, "C's reply"); r.err != nil || !slices.Equal(r.val, []int64{1, 2, 3}) {
			t.Fatalf("C: %v, %v", r.val, r.err)
		}
		if got := f.list(t, "s"); !slices.Equal(got, []int{1, 3}) {
			t.Fatalf("s = %v, want [1 3]: A then C, B never sent", got)
		}
		if got := gt.batches(); !slices.Equal(got, []int{1, 1}) {
			t.Fatalf("batch sizes %v, want [1 1]", got)
		}
	})
}

// Close fails queued calls with ErrClosed at once, stops the shards
// (goleak in TestMain checks none is left) and later calls fail too.
func TestClose(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		f := newFixture(t, srv, Options{Shards: 2})
		f.preload(t)
		gt := holdFirstBatch(f)
		a := f.pushAsync(t.Context(), "s", -1, 1)
		recv(t, gt.entered, "first batch")
		// The queued calls go to the held shard: same key.
		b := f.pushAsync(t.Context(), "s", -1, 2)
		c := f.pushAsync(t.Context(), "s", -1, 3)
		waitFor(t, 10*time.Second, func() error {
			n := 0
			for _, s := range f.shards {
				n += len(s.queue)
			}
			if n != 2 {
				return fmt.Errorf("%d queued", n)
			}
			return nil
		})
		closed := make(chan error, 1)
		go func() { closed <- f.Close() }()
		for _, ch := range []<-chan result{b, c} {
			if r := recv(t, ch, "queued reply"); !errors.Is(r.err, ErrClosed) {
				t.Fatalf("queued call after Close: %v, %v", r.val, r.err)
			}
		}
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) while a shard was busy", err)
		default:
		}
		close(gt.release)
		if err := recv(t, closed, "Close"); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// A was taken but Close came before it was sent.
		if r := recv(t, a, "A's reply"); !errors.Is(r.err, ErrClosed) {
			t.Fatalf("A: %v, %v", r.val, r.err)
		}
		if _, err := f.push(t.Context(), "s", -1, 4); !errors.Is(err, ErrClosed) {
			t.Fatalf("call after Close: %v", err)
		}
		if got := f.list(t, "s"); len(got) != 0 {
			t.Fatalf("s = %v, want nothing sent", got)
		}
	})
}

// A pipeliner never called starts no shard; closing it is immediate.
func TestLazy(t *testing.T) {
	f := newFixture(t, server{"miniredis", miniredisClient}, Options{})
	if f.started.Load() {
		t.Fatal("shards started before the first call")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.push(t.Context(), "s", -1, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
	if f.started.Load() {
		t.Fatal("shards started after Close")
	}
}

// A flushed script cache (or a restarted server) answers NOSCRIPT: the
// shard loads the script and re-sends those calls, in their order.
func TestNoScript(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		f := newFixture(t, srv, Options{Shards: 1})
		if v, err := f.push(t.Context(), "s", 0, 1); err != nil || !slices.Equal(v, []int64{1, 1, 1}) {
			t.Fatalf("first call on a cold cache: %v, %v", v, err)
		}
		if st := f.Stats(); st != (Stats{Pipelines: 2, Calls: 1}) {
			t.Fatalf("stats %+v; want 2 pipelines (NOSCRIPT, again), 1 call", st)
		}
		if err := f.client.ScriptFlush(t.Context()).Err(); err != nil {
			t.Fatalf("SCRIPT FLUSH: %v", err)
		}
		gt := holdFirstBatch(f)
		x := f.pushAsync(t.Context(), "s", 1, 2)
		recv(t, gt.entered, "first batch")
		y := f.pushAsync(t.Context(), "s", 2, 3)
		f.queued(t, 1)
		z := f.pushAsync(t.Context(), "s", 3, 4)
		f.queued(t, 2)
		close(gt.release)
		for i, ch := range []<-chan result{x, y, z} {
			if r := recv(t, ch, "reply"); r.err != nil || !slices.Equal(r.val, []int64{1, int64(i + 2), int64(i + 2)}) {
				t.Fatalf("call %d after SCRIPT FLUSH: %v, %v", i+2, r.val, r.err)
			}
		}
		if got := f.list(t, "s"); !slices.Equal(got, []int{1, 2, 3, 4}) {
			t.Fatalf("s = %v", got)
		}
		if st := f.Stats(); st != (Stats{Pipelines: 5, Calls: 4}) {
			t.Fatalf("stats %+v; want 5 pipelines, 4 calls", st)
		}
	})
}

// A plain command that shares a pipeline with scripts answered NOSCRIPT
// runs once: only the scripts are sent again.
func TestNoScriptLeavesPlainCommandsAlone(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		f := newFixture(t, srv, Options{Shards: 1})
		ctx := t.Context()
		if _, err := f.push(ctx, "s", 0, 1); err != nil {
			t.Fatal(err)
		}
		if err := f.client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatalf("SCRIPT FLUSH: %v", err)
		}
		incr := func(key string) <-chan result {
			ch := make(chan result, 1)
			go func() {
				v, err := f.Do(ctx, []string{f.key(key)}, "INCR", f.key(key)).Int64()
				ch <- result{[]int64{v}, err}
			}()
			return ch
		}
		// The first pipeline, held, is a plain command alone; the second
		// mixes one with two script calls that will answer NOSCRIPT.
		gt := holdFirstBatch(f)
		w := incr("w")
		recv(t, gt.entered, "first batch")
		n := incr("n")
		f.queued(t, 1)
		x := f.pushAsync(ctx, "s", 1, 2)
		f.queued(t, 2)
		y := f.pushAsync(ctx, "s", 2, 3)
		f.queued(t, 3)
		close(gt.release)
		for i, ch := range []<-chan result{x, y} {
			if r := recv(t, ch, "reply"); r.err != nil || !slices.Equal(r.val, []int64{1, int64(i + 2), int64(i + 2)}) {
				t.Fatalf("script call %d after SCRIPT FLUSH: %v, %v", i+2, r.val, r.err)
			}
		}
		for _, ch := range []<-chan result{w, n} {
			if r := recv(t, ch, "INCR"); r.err != nil || r.val[0] != 1 {
				t.Fatalf("INCR: %v, %v", r.val, r.err)
			}
		}
		if v, err := f.client.Get(ctx, f.key("n")).Int(); err != nil || v != 1 {
			t.Fatalf("counter %d (%v): the plain command ran again", v, err)
		}
		if got := gt.batches(); len(got) < 2 || !slices.Equal(got[:2], []int{1, 3}) {
			t.Fatalf("batches %v; want the INCR alone, then INCR and two scripts together", got)
		}
	})
}

// A script the pipeliner does not know answers NOSCRIPT to its caller,
// and Script.Run's EVAL teaches it the source: after a flush the shard
// recovers by itself.
func TestNoScriptLearnt(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		c, prefix := srv.connect(t)
		p, err := New(c, Options{Shards: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		sc := goredis.NewScript(tagSrc + "-- learnt " + prefix)
		key := []string{prefix + ":s"}
		if v, err := sc.Run(t.Context(), p, key, 0, 1).Int64Slice(); err != nil || !slices.Equal(v, []int64{1, 1, 1}) {
			t.Fatalf("first call: %v, %v", v, err)
		}
		if st := p.Stats(); st != (Stats{Pipelines: 2, Calls: 2}) {
			t.Fatalf("stats %+v; want EVALSHA then EVAL", st)
		}
		if err := c.ScriptFlush(t.Context()).Err(); err != nil {
			t.Fatalf("SCRIPT FLUSH: %v", err)
		}
		if v, err := sc.Run(t.Context(), p, key, 1, 2).Int64Slice(); err != nil || !slices.Equal(v, []int64{1, 2, 2}) {
			t.Fatalf("call after flush: %v, %v", v, err)
		}
		if st := p.Stats(); st != (Stats{Pipelines: 4, Calls: 3}) {
			t.Fatalf("stats %+v; want NOSCRIPT and again, in the shard", st)
		}
	})
}

// Calls answer with the errors and values Script.Run on the client does.
func TestRepliesAsClient(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		f := newFixture(t, srv, Options{})
		ctx := t.Context()
		if err := f.client.Set(ctx, f.key("str"), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		_, direct := f.script.Run(ctx, f.client, []string{f.key("str")}, -1, 1).Int64Slice()
		_, piped := f.push(ctx, "str", -1, 1)
		if piped == nil || direct == nil || piped.Error() != direct.Error() {
			t.Fatalf("pipelined %v, direct %v", piped, direct)
		}
		var rerr goredis.Error
		if !errors.As(piped, &rerr) {
			t.Fatalf("%v (%T) is not a goredis.Error", piped, piped)
		}
		v, err := f.push(ctx, "s", 5, 1)
		if err != nil || !slices.Equal(v, []int64{0, 0}) {
			t.Fatalf("conflict reply %v, %v", v, err)
		}
		ro := goredis.NewScript(`return redis.call('LLEN', KEYS[1])`)
		if n, err := ro.RunRO(ctx, f.Pipeliner, []string{f.key("s")}).Int(); err != nil || n != 0 {
			t.Fatalf("RunRO: %v, %v", n, err)
		}
		if n, err := ro.EvalRO(ctx, f.Pipeliner, []string{f.key("s")}).Int(); err != nil || n != 0 {
			t.Fatalf("EvalRO: %v, %v", n, err)
		}
		if ok, err := ro.Exists(ctx, f.Pipeliner).Result(); err != nil || len(ok) != 1 {
			t.Fatalf("Exists: %v, %v", ok, err)
		}
		if n, err := f.Eval(ctx, "return 7", nil).Int(); err != nil || n != 7 {
			t.Fatalf("Eval without keys: %v, %v", n, err)
		}
	})
}

// A plain command through Do answers as the client's Do does, in the
// same pipelines as the scripts: nil as goredis.Nil, a value, an error.
func TestDoPlainCommand(t *testing.T) {
	forEachServer(t, func(t *testing.T, srv server) {
		f := newFixture(t, srv, Options{})
		ctx := t.Context()
		k := f.key("claim")
		if _, err := f.Do(ctx, []string{k}, "SET", k, "first", "NX", "GET", "PX", 60000).Text(); !errors.Is(err, goredis.Nil) {
			t.Fatalf("SET NX GET on a free key: %v, want goredis.Nil", err)
		}
		old, err := f.Do(ctx, []string{k}, "SET", k, "second", "NX", "GET", "PX", 60000).Text()
		if err != nil || old != "first" {
			t.Fatalf("SET NX GET on a held key: %q, %v; want the value in the way", old, err)
		}
		if v, err := f.client.Get(ctx, k).Result(); err != nil || v != "first" {
			t.Fatalf("the held key became %q (%v)", v, err)
		}
		if _, err := f.push(ctx, "list", -1, 1); err != nil {
			t.Fatal(err)
		}
		_, piped := f.Do(ctx, []string{f.key("list")}, "GET", f.key("list")).Result()
		_, direct := f.client.Do(ctx, "GET", f.key("list")).Result()
		if piped == nil || direct == nil || piped.Error() != direct.Error() {
			t.Fatalf("GET of a list: pipelined %v, direct %v", piped, direct)
		}
		if err := f.Do(ctx, nil).Err(); err == nil {
			t.Fatal("Do without a command did not fail")
		}
		if st := f.Stats(); st.Calls < 4 {
			t.Fatalf("stats count %d calls, want the Do calls among them", st.Calls)
		}
	})
}

// A pipeline lives no longer than its calls' latest deadline: one whose
// callers have all given up is not run, and the shard goes on with the
// next.
func TestPipelineDeadline(t *testing.T) {
	f := newFixture(t, server{"miniredis", miniredisClient}, Options{Shards: 1})
	f.preload(t)
	var held atomic.Bool
	release := make(chan struct{})
	f.beforeSend = func(int) {
		if held.CompareAndSwap(false, true) {
			<-release
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	a := f.pushAsync(ctx, "s", -1, 1)
	if r := recv(t, a, "reply"); !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("call past its deadline: %v, %v", r.val, r.err)
	}
	close(release) // its pipeline's deadline has passed too
	if v, err := f.push(t.Context(), "s", -1, 2); err != nil || v[2] != 2 {
		t.Fatalf("next call: %v, %v", v, err)
	}
	if got := f.list(t, "s"); !slices.Equal(got, []int{2}) {
		t.Fatalf("s = %v: the expired pipeline must not run", got)
	}
}

// A server that stops answering holds a caller no longer than its
// context: the reply is its context's error, in time.
func TestFrozenServer(t *testing.T) {
	addr := testnet.Blackhole(t)
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 500 * time.Millisecond, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	p, err := New(c, Options{Shards: 1, MaxWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.Eval(ctx, "return 1", []string{"k"}).Err()
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 400*time.Millisecond {
		t.Fatalf("call on a frozen server: %v after %v", err, took)
	}
}

func TestPipelineContext(t *testing.T) {
	now := time.Now()
	at := func(d time.Duration) *call {
		ctx, cancel := context.WithDeadline(context.Background(), now.Add(d))
		t.Cleanup(cancel)
		return &call{ctx: ctx}
	}
	none := &call{ctx: context.Background()}
	for _, tc := range []struct {
		name  string
		batch []*call
		want  time.Duration
	}{
		{"latest", []*call{at(time.Second), at(3 * time.Second), at(2 * time.Second)}, 3 * time.Second},
		{"capped", []*call{at(time.Second), at(time.Hour)}, DefaultMaxWait},
		{"no deadline", []*call{at(time.Second), none}, DefaultMaxWait},
	} {
		ctx, cancel := pipelineContext(context.Background(), tc.batch, DefaultMaxWait)
		d, _ := ctx.Deadline()
		cancel()
		if got := d.Sub(now); got < tc.want-time.Second || got > tc.want+time.Second {
			t.Errorf("%s: deadline in %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestHashTag(t *testing.T) {
	for key, want := range map[string]string{
		"plain":          "plain",
		"g:{p3}:s:acc-1": "p3",
		"{}x":            "{}x",
		"a{b":            "a{b",
		"a{b}{c}":        "b",
		"a{}{c}":         "a{}{c}",
	} {
		if got := hashTag(key); got != want {
			t.Errorf("hashTag(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	c, _ := miniredisClient(t)
	for _, o := range []Options{{Shards: -1}, {MaxBatch: -1}, {Queue: -1}, {Shards: 100_000}, {MaxWait: -time.Second}} {
		if _, err := New(c, o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("nil client: no error")
	}
}
