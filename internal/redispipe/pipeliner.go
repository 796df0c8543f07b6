// Package redispipe owns pipelined Lua script calls over a go-redis
// client: a Pipeliner is a goredis.Scripter, so any
// goredis.Script.Run(ctx, pipeliner, keys, args...) made from any goroutine
// is queued and sent with the others as one pipelined round trip, rather
// than on a round trip (and a pooled connection) of its own.
//
// Calls go to a few shards, each sending whatever is queued for it as one
// pipeline, with at most one pipeline in flight: an idle shard sends the
// first call at once, and calls that arrive while its pipeline is in flight
// go together in the next. A call goes to the shard of its first key (of
// that key's hash tag, if it has one, unless Options.IgnoreHashTags), so
// two calls on one key reach Redis in the order they were made, even when
// the caller of the first gave up waiting before its reply came.
//
// Each call honours its own context: one whose context ends before it is
// sent is not sent and returns the context's error; one whose context ends
// while it is in flight returns the context's error at once (its outcome
// is unknown). A pipeline is given the latest deadline of its calls, at
// most Options.MaxWait away, so a frozen server holds a shard no longer.
//
// go-redis v9.23 has an experimental AutoPipeliner doing much the same; it
// is not used because it does not honour a command's context once the
// command is enqueued: against a frozen server a request would be held
// past its deadline.
package redispipe

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

var _ goredis.Scripter = (*Pipeliner)(nil)

// ErrClosed is the error of a call made after Close, or still queued when
// Close came; such a call was not sent.
var ErrClosed = errors.New("redispipe: pipeliner closed")

// Options bound a Pipeliner. Zero values take the defaults below.
type Options struct {
	// Shards is the number of shards, each with at most one pipeline in
	// flight (hence one connection busy); 0 means DefaultShards.
	Shards int
	// MaxBatch caps the calls of one pipeline; 0 means DefaultMaxBatch.
	MaxBatch int
	// Queue caps the calls waiting for one shard; a caller finding it
	// full waits, as long as its context lets it. 0 means 4 × MaxBatch.
	Queue int
	// MaxWait bounds a pipeline whose calls carry no deadline (or a far
	// one); 0 means DefaultMaxWait.
	MaxWait time.Duration
	// IgnoreHashTags shards by the whole first key even when it has a
	// hash tag: calls on different keys of one tag may then be reordered
	// among themselves, and the calls of many keys sharing a few tags
	// spread over all shards.
	IgnoreHashTags bool
	// Scripts are the sources of the scripts a shard may load and send
	// again, in order, when the server answers NOSCRIPT (its script cache
	// was flushed or it restarted). Scripts it sees in Eval or ScriptLoad are learnt too, up
	// to maxScripts; the NOSCRIPT of an unknown script goes back to the
	// caller (Script.Run then sends it again with EVAL, maybe out of
	// order with other calls on its key). A plain command (Do) of the same
	// pipeline is never sent again, so after a NOSCRIPT it may reach
	// Redis before an earlier script call on its key.
	Scripts []string
}

// Defaults and limits of Options.
const (
	DefaultShards   = 4
	DefaultMaxBatch = 128
	DefaultMaxWait  = 10 * time.Second
	MaxShards       = 256
	MaxBatch        = 10_000
	MaxQueue        = 100_000
	maxScripts      = 64
)

// Validate names the first field out of range.
func (o Options) Validate() error {
	switch {
	case o.Shards < 0 || o.Shards > MaxShards:
		return fmt.Errorf("Shards is %d, must be in [1, %d] (0 means %d)", o.Shards, MaxShards, DefaultShards)
	case o.MaxBatch < 0 || o.MaxBatch > MaxBatch:
		return fmt.Errorf("MaxBatch is %d, must be in [1, %d] (0 means %d)", o.MaxBatch, MaxBatch, DefaultMaxBatch)
	case o.Queue < 0 || o.Queue > MaxQueue:
		return fmt.Errorf("Queue is %d, must be in [1, %d] (0 means 4 × MaxBatch)", o.Queue, MaxQueue)
	case o.MaxWait < 0:
		return fmt.Errorf("MaxWait is %v, must be positive (0 means %v)", o.MaxWait, DefaultMaxWait)
	case len(o.Scripts) > maxScripts:
		return fmt.Errorf("%d Scripts, at most %d", len(o.Scripts), maxScripts)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Shards == 0 {
		o.Shards = DefaultShards
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Queue == 0 {
		o.Queue = 4 * o.MaxBatch
	}
	if o.MaxWait == 0 {
		o.MaxWait = DefaultMaxWait
	}
	return o
}

// Pipeliner sends the script calls of many goroutines in pipelines. It is
// safe for concurrent use. Its shards start with the first call, so a
// Pipeliner that is never called starts no goroutine, and stop in Close.
type Pipeliner struct {
	opts   Options
	client goredis.UniversalClient

	mu       sync.Mutex
	started  atomic.Bool
	stopped  bool
	shards   []*shard
	wg       sync.WaitGroup
	stopping chan struct{} // closed by Close
	ctx      context.Context
	cancel   context.CancelFunc // cancels the pipelines in flight

	srcMu   sync.RWMutex
	sources map[string]string // SHA-1 → source, for NOSCRIPT

	pipelines atomic.Uint64
	calls     atomic.Uint64

	// beforeSend, when set (by tests), runs on the shard before it sends
	// a batch, with the batch's size.
	beforeSend func(n int)
}

// New returns a Pipeliner over client, which the caller keeps owning.
func New(client goredis.UniversalClient, opts Options) (*Pipeliner, error) {
	if client == nil {
		return nil, errors.New("redispipe: nil client")
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("redispipe: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pipeliner{
		opts:     opts.withDefaults(),
		client:   client,
		stopping: make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		sources:  make(map[string]string, len(opts.Scripts)),
	}
	for _, src := range opts.Scripts {
		p.sources[sha1Hex(src)] = src
	}
	return p, nil
}

// Stats count what a Pipeliner has sent.
type Stats struct {
	// Pipelines counts round trips, resends after NOSCRIPT included.
	Pipelines uint64
	// Calls counts the calls sent (once each); Calls / Pipelines is the
	// mean batch size.
	Calls uint64
}

// Stats reports what has been sent so far.
func (p *Pipeliner) Stats() Stats {
	return Stats{Pipelines: p.pipelines.Load(), Calls: p.calls.Load()}
}

// EvalSha implements goredis.Scripter through a pipeline.
func (p *Pipeliner) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *goredis.Cmd {
	return p.do(ctx, evalSha, sha1, keys, args)
}

// EvalShaRO implements goredis.Scripter through a pipeline.
func (p *Pipeliner) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *goredis.Cmd {
	return p.do(ctx, evalShaRO, sha1, keys, args)
}

// Eval implements goredis.Scripter through a pipeline; the script is
// learnt for NOSCRIPT recovery.
func (p *Pipeliner) Eval(ctx context.Context, script string, keys []string, args ...any) *goredis.Cmd {
	p.learn(sha1Hex(script), script)
	return p.do(ctx, kindEval, script, keys, args)
}

// EvalRO implements goredis.Scripter through a pipeline; the script is
// learnt for NOSCRIPT recovery.
func (p *Pipeliner) EvalRO(ctx context.Context, script string, keys []string, args ...any) *goredis.Cmd {
	p.learn(sha1Hex(script), script)
	return p.do(ctx, evalRO, script, keys, args)
}

// Do sends one plain command (args, the command's name first) in the
// pipeline of keys, the keys the command names (they pick the shard, as a
// script's keys do). It is for commands that need no script to be atomic,
// like SET … NX GET: a script call costs the server several times the
// command it wraps.
func (p *Pipeliner) Do(ctx context.Context, keys []string, args ...any) *goredis.Cmd {
	if len(args) == 0 {
		return failed(ctx, command, "", errors.New("redispipe: Do without a command"))
	}
	return p.do(ctx, command, "", keys, args)
}

// ScriptExists implements goredis.Scripter: straight to the client.
func (p *Pipeliner) ScriptExists(ctx context.Context, hashes ...string) *goredis.BoolSliceCmd {
	return p.client.ScriptExists(ctx, hashes...)
}

// ScriptLoad implements goredis.Scripter: straight to the client; the
// script is learnt for NOSCRIPT recovery.
func (p *Pipeliner) ScriptLoad(ctx context.Context, script string) *goredis.StringCmd {
	cmd := p.client.ScriptLoad(ctx, script)
	if cmd.Err() == nil {
		p.learn(cmd.Val(), script)
	}
	return cmd
}

// Close fails queued calls with ErrClosed, cancels the pipelines in flight
// (their calls' outcome is unknown) and waits for the shards to exit.
// Later calls fail with ErrClosed. Closing twice is a no-op; it always
// returns nil.
func (p *Pipeliner) Close() error {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		// Cancel first: a caller told ErrClosed on seeing stopping must
		// find a batch that holds its shard's next calls unsent too (the
		// shard checks the context before sending), never sent after.
		p.cancel()
		close(p.stopping)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func (p *Pipeliner) learn(sha, src string) {
	p.srcMu.RLock()
	_, known := p.sources[sha]
	full := len(p.sources) >= maxScripts
	p.srcMu.RUnlock()
	if known || full {
		return
	}
	p.srcMu.Lock()
	if len(p.sources) < maxScripts {
		p.sources[sha] = src
	}
	p.srcMu.Unlock()
}

func (p *Pipeliner) source(sha string) (string, bool) {
	p.srcMu.RLock()
	defer p.srcMu.RUnlock()
	src, ok := p.sources[sha]
	return src, ok
}

func sha1Hex(src string) string {
	h := sha1.Sum([]byte(src))
	return hex.EncodeToString(h[:])
}

// do queues one call on its shard and waits for its reply, its context's
// end or Close.
func (p *Pipeliner) do(ctx context.Context, kind kind, script string, keys []string, args []any) *goredis.Cmd {
	if err := ctx.Err(); err != nil {
		return failed(ctx, kind, script, err)
	}
	sh, err := p.shardOf(keys)
	if err != nil {
		return failed(ctx, kind, script, err)
	}
	c := &call{ctx: ctx, kind: kind, script: script, keys: keys, args: args, done: make(chan *goredis.Cmd, 1)}
	select {
	case sh.queue <- c:
	case <-ctx.Done():
		return failed(ctx, kind, script, ctx.Err())
	case <-p.stopping:
		return failed(ctx, kind, script, ErrClosed)
	}
	select {
	case r := <-c.done:
		return r
	case <-ctx.Done():
		// Still queued: the shard will skip it. Sent: its outcome is
		// unknown, which is what ctx's error says.
		c.state.CompareAndSwap(queued, abandoned)
		return failed(ctx, kind, script, ctx.Err())
	case <-p.stopping:
		if c.state.CompareAndSwap(queued, abandoned) {
			return failed(ctx, kind, script, ErrClosed)
		}
		// The shard answers every call it took before it exits.
		return <-c.done
	}
}

// shardOf returns the shard of keys, starting the shards if need be.
// Calls without keys all go to the first shard.
func (p *Pipeliner) shardOf(keys []string) (*shard, error) {
	if !p.started.Load() {
		if err := p.start(); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 || len(p.shards) == 1 {
		return p.shards[0], nil
	}
	k := keys[0]
	if !p.opts.IgnoreHashTags {
		k = hashTag(k)
	}
	// FNV-1a, inline: no allocation on the call path.
	h := uint32(2166136261)
	for i := 0; i < len(k); i++ {
		h ^= uint32(k[i])
		h *= 16777619
	}
	return p.shards[h%uint32(len(p.shards))], nil
}

// hashTag is the part of key Redis Cluster hashes: between the first '{'
// and the next '}' if that is not empty, else the whole key.
func hashTag(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j == i+1 {
					return key
				}
				return key[i+1 : j]
			}
		}
		return key
	}
	return key
}

func (p *Pipeliner) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return ErrClosed
	}
	if p.started.Load() {
		return nil
	}
	p.shards = make([]*shard, p.opts.Shards)
	for i := range p.shards {
		sh := &shard{p: p, queue: make(chan *call, p.opts.Queue)}
		p.shards[i] = sh
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			sh.run()
		}()
	}
	p.started.Store(true)
	return nil
}
