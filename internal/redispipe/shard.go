package redispipe

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

type shard struct {
	p     *Pipeliner
	queue chan *call
}

// kind is the command a call sends.
type kind uint8

const (
	evalSha kind = iota
	evalShaRO
	kindEval
	evalRO
	// command is a plain command, not a script: its args are the whole
	// command, script is empty.
	command
)

func (k kind) name() string {
	return [...]string{"evalsha", "evalsha_ro", "eval", "eval_ro", "command"}[k]
}

// call is one caller's script call. Its state moves once, from queued to
// sent (by the shard) or to abandoned (by the caller, whose context ended
// or whose pipeliner closed first); an abandoned call is never sent.
type call struct {
	ctx    context.Context
	kind   kind
	script string // SHA-1 for evalSha*, source for eval*, empty for command
	keys   []string
	args   []any
	state  atomic.Int32
	done   chan *goredis.Cmd // buffered: the shard never waits for a caller
}

const (
	queued int32 = iota
	sent
	abandoned
)

// failed is the reply of a call that got no answer from the server.
func failed(ctx context.Context, k kind, script string, err error) *goredis.Cmd {
	cmd := goredis.NewCmd(ctx, k.name(), script)
	cmd.SetErr(err)
	return cmd
}

func (c *call) fail(err error) { c.done <- failed(c.ctx, c.kind, c.script, err) }

func (sh *shard) run() {
	batch := make([]*call, 0, sh.p.opts.MaxBatch)
	for {
		// Stopping wins over a non-empty queue: nothing more is sent.
		select {
		case <-sh.p.stopping:
			sh.drain()
			return
		default:
		}
		select {
		case <-sh.p.stopping:
			sh.drain()
			return
		case c := <-sh.queue:
			batch = sh.take(batch[:0], c)
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case c := <-sh.queue:
				batch = sh.take(batch, c)
			default:
				break fill
			}
		}
		if len(batch) > 0 {
			sh.send(batch)
		}
		clear(batch) // let answered calls go
	}
}

// take adds c to batch unless its caller has given up.
func (sh *shard) take(batch []*call, c *call) []*call {
	if err := c.ctx.Err(); err != nil {
		if c.state.CompareAndSwap(queued, abandoned) {
			c.fail(err)
		}
		return batch
	}
	if !c.state.CompareAndSwap(queued, sent) {
		return batch
	}
	return append(batch, c)
}

func (sh *shard) drain() {
	for {
		select {
		case c := <-sh.queue:
			if c.state.CompareAndSwap(queued, abandoned) {
				c.fail(ErrClosed)
			}
		default:
			return
		}
	}
}

// send runs batch as one pipeline and answers each call from its own
// reply. Calls of a known script that the server answers NOSCRIPT were not
// run, so they are sent again, in their order, after loading the script;
// failing that, with EVAL. (Should another client load the script between
// two calls of one pipeline, a later call on a key could run before an
// earlier one that got NOSCRIPT; scripts that must not run out of order,
// like the journal's compare-and-append, check a version and fail rather
// than apply out of order.)
func (sh *shard) send(batch []*call) {
	p := sh.p
	// Whoever gave up while the batch was gathered has its context's
	// error already; it is not sent.
	live := batch[:0]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.fail(err)
			continue
		}
		live = append(live, c)
	}
	clear(batch[len(live):])
	batch = live
	if len(batch) == 0 {
		return
	}
	if p.beforeSend != nil {
		p.beforeSend(len(batch))
	}
	if p.ctx.Err() != nil {
		// Closed before anything was sent.
		for _, c := range batch {
			c.fail(ErrClosed)
		}
		return
	}
	ctx, cancel := pipelineContext(p.ctx, batch, p.opts.MaxWait)
	defer cancel()
	p.calls.Add(uint64(len(batch)))
	rest := batch
	for round := 0; len(rest) > 0; round++ {
		if round == 1 {
			if !sh.load(ctx, rest) {
				return
			}
		}
		cmds := sh.exec(ctx, rest, round == 2)
		var again []*call
		for i, c := range rest {
			if round < 2 && isNoScript(c, cmds[i]) {
				if _, known := p.source(c.script); known {
					again = append(again, c)
					continue
				}
			}
			c.done <- cmds[i]
		}
		rest = again
	}
}

func isNoScript(c *call, cmd *goredis.Cmd) bool {
	return (c.kind == evalSha || c.kind == evalShaRO) && goredis.HasErrorPrefix(cmd.Err(), "NOSCRIPT")
}

// load loads the scripts of calls (all known, all answered NOSCRIPT); if
// one fails to load, it answers every call and reports false.
func (sh *shard) load(ctx context.Context, calls []*call) bool {
	loaded := make(map[string]bool, 1)
	for _, c := range calls {
		if loaded[c.script] {
			continue
		}
		src, _ := sh.p.source(c.script)
		if err := sh.p.client.ScriptLoad(ctx, src).Err(); err != nil {
			err = fmt.Errorf("load script %.12s after NOSCRIPT: %w", c.script, err)
			for _, c := range calls {
				c.fail(err)
			}
			return false
		}
		loaded[c.script] = true
	}
	return true
}

// exec sends one pipeline of the calls' commands; with eval, the
// EVALSHA ones go as EVAL with their source.
func (sh *shard) exec(ctx context.Context, batch []*call, eval bool) []*goredis.Cmd {
	p := sh.p
	p.pipelines.Add(1)
	pipe := p.client.Pipeline()
	cmds := make([]*goredis.Cmd, len(batch))
	for i, c := range batch {
		k, script := c.kind, c.script
		if eval {
			switch k {
			case evalSha:
				k = kindEval
			case evalShaRO:
				k = evalRO
			}
			if k != c.kind {
				script, _ = p.source(script)
			}
		}
		switch k {
		case evalSha:
			cmds[i] = pipe.EvalSha(ctx, script, c.keys, c.args...)
		case evalShaRO:
			cmds[i] = pipe.EvalShaRO(ctx, script, c.keys, c.args...)
		case kindEval:
			cmds[i] = pipe.Eval(ctx, script, c.keys, c.args...)
		case evalRO:
			cmds[i] = pipe.EvalRO(ctx, script, c.keys, c.args...)
		case command:
			cmds[i] = pipe.Do(ctx, c.args...)
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

// pipelineContext gives a pipeline the latest deadline of its calls (it
// must not cut short any of them), at most maxWait away, and ends it when
// the pipeliner closes.
func pipelineContext(parent context.Context, batch []*call, maxWait time.Duration) (context.Context, context.CancelFunc) {
	limit := time.Now().Add(maxWait)
	var latest time.Time
	for _, c := range batch {
		d, ok := c.ctx.Deadline()
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
