package redis

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"granary/persistence"
)

// Group commit: every append of a Store goes through a few writers, each
// sending whatever is queued for it as one pipelined round trip, so a
// member under load pays one round trip per batch of appends rather than
// one per append. An idle writer sends the first append at once; appends
// that arrive while its pipeline is in flight go together in the next.
//
// A stream always goes to the same writer (a hash of its name), and a
// writer has one pipeline in flight at a time, in queue order: two appends
// to one stream reach Redis in the order they were submitted, even when
// the caller of the first gave up waiting before its reply came.

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

// Defaults and limits of GroupCommitOptions.
const (
	DefaultGroupCommitShards = 4
	DefaultGroupCommitBatch  = 128
	maxGroupCommitShards     = 256
	maxGroupCommitBatch      = 10_000
	maxGroupCommitQueue      = 100_000
)

// maxPipelineWait bounds a pipeline whose appends carry no deadline (or a
// far one), so a frozen server cannot hold a writer, and every stream
// behind it, forever.
const maxPipelineWait = 10 * time.Second

func (o GroupCommitOptions) withDefaults() (GroupCommitOptions, error) {
	switch {
	case o.Shards < 0 || o.Shards > maxGroupCommitShards:
		return o, fmt.Errorf("GroupCommit.Shards is %d, must be in [1, %d] (0 means %d): %w", o.Shards, maxGroupCommitShards, DefaultGroupCommitShards, persistence.ErrInvalid)
	case o.MaxBatch < 0 || o.MaxBatch > maxGroupCommitBatch:
		return o, fmt.Errorf("GroupCommit.MaxBatch is %d, must be in [1, %d] (0 means %d): %w", o.MaxBatch, maxGroupCommitBatch, DefaultGroupCommitBatch, persistence.ErrInvalid)
	case o.Queue < 0 || o.Queue > maxGroupCommitQueue:
		return o, fmt.Errorf("GroupCommit.Queue is %d, must be in [1, %d] (0 means 4 × MaxBatch): %w", o.Queue, maxGroupCommitQueue, persistence.ErrInvalid)
	}
	if o.Shards == 0 {
		o.Shards = DefaultGroupCommitShards
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultGroupCommitBatch
	}
	if o.Queue == 0 {
		o.Queue = 4 * o.MaxBatch
	}
	return o, nil
}

// groupCommit owns the writers of one Store. They start with the first
// append, so a Store that never appends starts no goroutine, and stop in
// Close.
type groupCommit struct {
	opts   GroupCommitOptions
	client goredis.UniversalClient
	script *goredis.Script // appendScript; tests use their own

	mu       sync.Mutex
	started  atomic.Bool
	stopped  bool
	shards   []*shard
	wg       sync.WaitGroup
	stopping chan struct{} // closed by stop
	ctx      context.Context
	cancel   context.CancelFunc // cancels the pipelines in flight

	pipelines atomic.Uint64
	appends   atomic.Uint64

	// beforeSend, when set (by tests), runs on the writer before it sends
	// a batch, with the batch's size.
	beforeSend func(n int)
}

type shard struct {
	gc    *groupCommit
	queue chan *pendingAppend
}

// pendingAppend is one caller's append. Its state moves once, from queued
// to sent (by the writer) or to abandoned (by the caller, whose context
// ended or whose store closed first); an abandoned append is never sent.
type pendingAppend struct {
	ctx   context.Context
	keys  []string
	args  []any
	state atomic.Int32
	done  chan appendReply // buffered: the writer never waits for a caller
}

const (
	queued int32 = iota
	sent
	abandoned
)

type appendReply struct {
	val []int64
	err error
}

func newGroupCommit(client goredis.UniversalClient, opts GroupCommitOptions) *groupCommit {
	ctx, cancel := context.WithCancel(context.Background())
	return &groupCommit{
		opts:     opts,
		client:   client,
		script:   appendScript,
		stopping: make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
	}
}

// GroupCommitStats reports how many pipelines the append writers have sent
// (resends after a flushed script cache included) and how many appends
// went in them; appends / pipelines is the mean batch size.
func (s *Store) GroupCommitStats() (pipelines, appends uint64) {
	return s.gc.pipelines.Load(), s.gc.appends.Load()
}

// runAppend runs append.lua with keys and args and returns its reply, with
// the errors appendScript.Run(...).Int64Slice() would return: a script
// error reply (for classify), a transport error, or ctx's error. An append
// whose ctx ends before it is sent is not sent; one whose ctx ends while
// it is in flight returns ctx's error, and its outcome is unknown. After
// Close, appends not yet sent fail with persistence.ErrClosed.
func (s *Store) runAppend(ctx context.Context, stream string, keys []string, args []any) ([]int64, error) {
	gc := s.gc
	if gc.opts.Off {
		return gc.script.Run(ctx, s.client, keys, args...).Int64Slice()
	}
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	sh, err := gc.shardOf(stream)
	if err != nil {
		return nil, err
	}
	a := &pendingAppend{ctx: ctx, keys: keys, args: args, done: make(chan appendReply, 1)}
	select {
	case sh.queue <- a:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-gc.stopping:
		return nil, persistence.ErrClosed
	}
	select {
	case r := <-a.done:
		return r.val, r.err
	case <-ctx.Done():
		// Still queued: the writer will skip it. Sent: its outcome is
		// unknown, which is what ctx's error says.
		a.state.CompareAndSwap(queued, abandoned)
		return nil, ctx.Err()
	case <-gc.stopping:
		if a.state.CompareAndSwap(queued, abandoned) {
			return nil, persistence.ErrClosed
		}
		// The writer answers every append it took before it exits.
		r := <-a.done
		return r.val, r.err
	}
}

// shardOf returns the writer of stream, starting the writers if need be.
func (gc *groupCommit) shardOf(stream string) (*shard, error) {
	if !gc.started.Load() {
		if err := gc.start(); err != nil {
			return nil, err
		}
	}
	// FNV-1a, inline: no allocation on the append path.
	h := uint32(2166136261)
	for i := 0; i < len(stream); i++ {
		h ^= uint32(stream[i])
		h *= 16777619
	}
	return gc.shards[h%uint32(len(gc.shards))], nil
}

func (gc *groupCommit) start() error {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	if gc.stopped {
		return persistence.ErrClosed
	}
	if gc.started.Load() {
		return nil
	}
	gc.shards = make([]*shard, gc.opts.Shards)
	for i := range gc.shards {
		sh := &shard{gc: gc, queue: make(chan *pendingAppend, gc.opts.Queue)}
		gc.shards[i] = sh
		gc.wg.Add(1)
		go func() {
			defer gc.wg.Done()
			sh.run()
		}()
	}
	gc.started.Store(true)
	return nil
}

// stop fails queued appends with persistence.ErrClosed, cancels the
// pipelines in flight (their appends' outcome is unknown) and waits for
// the writers to exit.
func (gc *groupCommit) stop() {
	gc.mu.Lock()
	if !gc.stopped {
		gc.stopped = true
		close(gc.stopping)
		gc.cancel()
	}
	gc.mu.Unlock()
	gc.wg.Wait()
}

func (sh *shard) run() {
	batch := make([]*pendingAppend, 0, sh.gc.opts.MaxBatch)
	for {
		// Stopping wins over a non-empty queue: nothing more is sent.
		select {
		case <-sh.gc.stopping:
			sh.drain()
			return
		default:
		}
		select {
		case <-sh.gc.stopping:
			sh.drain()
			return
		case a := <-sh.queue:
			batch = sh.take(batch[:0], a)
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case a := <-sh.queue:
				batch = sh.take(batch, a)
			default:
				break fill
			}
		}
		if len(batch) > 0 {
			sh.send(batch)
		}
		clear(batch) // let answered appends go
	}
}

// take adds a to batch unless its caller has given up.
func (sh *shard) take(batch []*pendingAppend, a *pendingAppend) []*pendingAppend {
	if err := a.ctx.Err(); err != nil {
		if a.state.CompareAndSwap(queued, abandoned) {
			a.done <- appendReply{err: err}
		}
		return batch
	}
	if !a.state.CompareAndSwap(queued, sent) {
		return batch
	}
	return append(batch, a)
}

func (sh *shard) drain() {
	for {
		select {
		case a := <-sh.queue:
			if a.state.CompareAndSwap(queued, abandoned) {
				a.done <- appendReply{err: persistence.ErrClosed}
			}
		default:
			return
		}
	}
}

// send runs batch as one pipeline and answers each append from its own
// reply. Appends the server answers NOSCRIPT (its script cache was flushed
// or it restarted) were not run, so they are sent again, in their order,
// after loading the script; failing that, with EVAL. (Should another
// client load the script between two appends of one pipeline, a later
// append of a stream could run before an earlier one that got NOSCRIPT;
// both are compare-and-append at an expected version, so the later one
// then fails as a conflict rather than storing out of order.)
func (sh *shard) send(batch []*pendingAppend) {
	gc := sh.gc
	// Whoever gave up while the batch was gathered has its context's
	// error already; it is not sent.
	live := batch[:0]
	for _, a := range batch {
		if err := a.ctx.Err(); err != nil {
			a.done <- appendReply{err: err}
			continue
		}
		live = append(live, a)
	}
	clear(batch[len(live):])
	batch = live
	if len(batch) == 0 {
		return
	}
	if gc.beforeSend != nil {
		gc.beforeSend(len(batch))
	}
	if gc.ctx.Err() != nil {
		// Closed before anything was sent.
		for _, a := range batch {
			a.done <- appendReply{err: persistence.ErrClosed}
		}
		return
	}
	ctx, cancel := pipelineContext(gc.ctx, batch)
	defer cancel()
	gc.appends.Add(uint64(len(batch)))
	rest := batch
	for round := 0; len(rest) > 0; round++ {
		if round == 1 {
			if err := gc.script.Load(ctx, gc.client).Err(); err != nil {
				for _, a := range rest {
					a.done <- appendReply{err: fmt.Errorf("load append script after NOSCRIPT: %w", err)}
				}
				return
			}
		}
		cmds := sh.exec(ctx, rest, round == 2)
		var again []*pendingAppend
		for i, a := range rest {
			if round < 2 && goredis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
				again = append(again, a)
				continue
			}
			val, err := cmds[i].Int64Slice()
			a.done <- appendReply{val: val, err: err}
		}
		rest = again
	}
}

// exec sends one pipeline of EVALSHA (or EVAL) commands, one per append.
func (sh *shard) exec(ctx context.Context, batch []*pendingAppend, eval bool) []*goredis.Cmd {
	gc := sh.gc
	gc.pipelines.Add(1)
	pipe := gc.client.Pipeline()
	hash := gc.script.Hash()
	cmds := make([]*goredis.Cmd, len(batch))
	for i, a := range batch {
		if eval {
			cmds[i] = gc.script.Eval(ctx, pipe, a.keys, a.args...)
		} else {
			cmds[i] = pipe.EvalSha(ctx, hash, a.keys, a.args...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// go-redis sets a transport error on every command; make sure no
		// command is left looking answered without a reply.
		for _, c := range cmds {
			if c.Err() == nil && c.Val() == nil {
				c.SetErr(err)
			}
		}
	}
	return cmds
}

// pipelineContext gives a pipeline the latest deadline of its appends (it
// must not cut short any of them), at most maxPipelineWait away, and ends
// it when the store closes.
func pipelineContext(parent context.Context, batch []*pendingAppend) (context.Context, context.CancelFunc) {
	limit := time.Now().Add(maxPipelineWait)
	var latest time.Time
	for _, a := range batch {
		d, ok := a.ctx.Deadline()
		if !ok {
			latest = limit
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	if latest.After(limit) {
		latest = limit
	}
	return context.WithDeadline(parent, latest)
}
