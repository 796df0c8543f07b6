package es

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"granary/internal/warm"
	"granary/messages"
	"granary/persistence"
)

// GrainConfig is what every event-sourced grain needs from its member.
type GrainConfig struct {
	Store persistence.Store
	// SnapshotEvery: a snapshot is saved each time the version crosses a
	// multiple of it, so activation replays at most this many events.
	SnapshotEvery uint64
	// IdleTimeout passivates a grain that received nothing for this long.
	IdleTimeout time.Duration
	// StoreTimeout bounds each journal or snapshot call.
	StoreTimeout time.Duration
	// RecentCommands is how many command ids a grain remembers to drop
	// re-sent commands.
	RecentCommands int
	MemberID       string
	Logger         *slog.Logger
	Now            func() time.Time
}

// Validate names the first unusable field.
func (c GrainConfig) Validate() error {
	switch {
	case c.Store == nil || c.Logger == nil || c.Now == nil:
		return errors.New("grain config: Store, Logger and Now are required")
	case c.SnapshotEvery == 0 || c.RecentCommands <= 0:
		return errors.New("grain config: SnapshotEvery and RecentCommands must be > 0")
	case c.RecentCommands > MaxRecentCommands:
		return fmt.Errorf("grain config: RecentCommands %d is more than %d", c.RecentCommands, MaxRecentCommands)
	case c.IdleTimeout <= 0 || c.StoreTimeout <= 0:
		return fmt.Errorf("grain config: IdleTimeout %v and StoreTimeout %v must be > 0", c.IdleTimeout, c.StoreTimeout)
	}
	return nil
}

// HostConfig is the Host configuration of a grain with this config;
// logKey names the grain's id in the host's logs.
func (c GrainConfig) HostConfig(logKey string) Config {
	return Config{Store: c.Store, SnapshotEvery: c.SnapshotEvery, RecentCommands: c.RecentCommands, Logger: c.Logger, LogKey: logKey, MemberID: c.MemberID}
}

// MaxRecentCommands bounds GrainConfig.RecentCommands (a grain's window is
// counted in 32 bits).
const MaxRecentCommands = 1 << 20

// Request is what every grain request carries.
type Request interface {
	GetCommandId() string
	GetDeadlineUnixMs() int64
}

// Kind describes a simple event-sourced grain kind to Props: how it stores
// its aggregate, decides on a request, and replies. Grains with behaviour
// beyond "decide, append, reply" (sagas, counter groups) write their own
// actor around a Host.
type Kind[S, E any, Req Request, Reply any] struct {
	// Name labels logs ("inventory", "payment" …).
	Name   string
	Codec  *Codec[S, E]
	Decide func(s S, id string, req Req, now time.Time) ([]E, error)
	// Reply renders the state after a successful request; Fail renders a
	// failure. Both stamp the member id (X-Served-By).
	Reply func(id string, out Outcome[S], memberID string) Reply
	Fail  func(id string, f *messages.Failure, memberID string) Reply
	// Settled, if set, names the reads that the state a loaded grain holds
	// answers as well as the journal's latest would, because they ask only
	// what no later write changes (that an entity exists and whose it is):
	// they are decided on that state without the version check every
	// other read makes, one round trip less.
	Settled func(s S, req Req) bool
}

// Props builds the props of a simple event-sourced grain kind.
func Props[S, E any, Req Request, Reply any](k *Kind[S, E, Req, Reply], cfg GrainConfig) *actor.Props {
	return actor.PropsFromProducer(Producer(k, cfg))
}

// Producer makes the grains of a simple event-sourced grain kind.
func Producer[S, E any, Req Request, Reply any](k *Kind[S, E, Req, Reply], cfg GrainConfig) actor.Producer {
	// One copy of the configuration for all the kind's activations: at
	// 100 000 idle grains every byte of a grain counts (issue 10).
	shared := &kindConfig[S, E, Req, Reply]{kind: k, GrainConfig: cfg, host: cfg.HostConfig(k.Name), spanName: "grain " + k.Name}
	return func() actor.Actor { return &grain[S, E, Req, Reply]{cfg: shared} }
}

// kindConfig is what all the activations of a kind share; it holds the
// kind too, so that a grain holds one pointer for both.
type kindConfig[S, E any, Req Request, Reply any] struct {
	kind *Kind[S, E, Req, Reply]
	GrainConfig
	host Config
	// spanName names the span around each request (built once, not per
	// request).
	spanName string
}

// traced is a request that carries its caller's W3C traceparent.
type traced interface{ GetTraceparent() string }

type grain[S, E any, Req Request, Reply any] struct {
	cfg *kindConfig[S, E, Req, Reply]
	// host is made at ClusterInit (host.codec is nil before); it holds
	// the grain's id. Held by value: an idle grain is one allocation.
	host Host[S, E]
	// p exists only while the grain has requests to answer.
	p *pending[S, E, Req]
}

// pending is what a grain holds while answering: queue holds requests
// back, oldest first, while a batch is in flight; inflight is that batch
// and members the requests it holds.
type pending[S, E any, Req any] struct {
	queue    []queued[Req]
	inflight *Batch[S, E]
	members  []queued[Req]
	done     chan error // the result of inflight's append
}

// queued is a request waiting for its answer outside the mailbox. ctx
// carries the request's span (the caller's trace continued), ended when it
// is answered; the journal calls made for it run under it.
type queued[Req any] struct {
	req       Req
	sender    *actor.PID
	ctx       context.Context
	conflicts int
}

// batchStored tells a grain that its batch's append returned; the result
// is on the grain's done channel (so stopping can wait for it too).
type batchStored struct{ batch any }

// appenders run the grains' batch appends on warm goroutines: a fresh one
// per batch grew its stack through go-redis on every append.
var appenders = warm.New(256, warm.DefaultIdle)

// maxQueued bounds the requests one grain holds back; past it a request is
// refused at once (503), so a client flooding one id cannot grow memory.
const maxQueued = 4096

func (g *grain[S, E, Req, Reply]) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *cluster.ClusterInit:
		g.host = MakeSharedHost(g.cfg.kind.Codec, &g.cfg.host, msg.Identity.GetIdentity())
		ctx.SetReceiveTimeout(g.cfg.IdleTimeout)
	case *actor.ReceiveTimeout:
		ctx.Poison(ctx.Self())
	case Req:
		if g.p == nil {
			g.p = &pending[S, E, Req]{}
		}
		if len(g.p.queue) >= maxQueued {
			ctx.Respond(g.fail(messages.CodeServiceUnavailable, "%s %s is busy; retry", g.cfg.kind.Name, g.ident()))
			return
		}
		g.p.queue = append(g.p.queue, queued[Req]{req: msg, sender: ctx.Sender(), ctx: g.startSpan(msg)})
		g.drain(ctx)
	case *batchStored:
		if g.p == nil || g.p.inflight == nil || msg.batch != any(g.p.inflight) {
			return
		}
		g.settle(ctx, <-g.p.done)
		g.drain(ctx)
	case *actor.Stopping:
		g.stopping(ctx)
	}
}

// initialised reports whether the grain has had its ClusterInit, which
// makes its host.
func (g *grain[S, E, Req, Reply]) initialised() bool { return g.host.codec != nil }

// ident is the grain's identity ("" before its ClusterInit).
func (g *grain[S, E, Req, Reply]) ident() string {
	if !g.initialised() {
		return ""
	}
	return g.host.id
}

// stopping answers whoever still waits. The batch in flight is waited for
// (bounded), so its members get the truth; requests not yet decided get a
// dead-letter answer, on which Proto.Actor's cluster re-resolves the
// identity and re-sends them to the grain's next activation, as it does
// for requests that reached a stopped grain: a graceful leave costs
// clients no error (at worst a re-send that lands on this PID before the
// identity is released waits one attempt timeout).
func (g *grain[S, E, Req, Reply]) stopping(ctx actor.Context) {
	if g.p == nil {
		return
	}
	if g.p.inflight != nil {
		select {
		case err := <-g.p.done:
			g.settle(ctx, err)
		case <-time.After(g.cfg.StoreTimeout + time.Second):
			for _, q := range g.p.members {
				g.send(ctx, q, g.fail(messages.CodeServiceUnavailable, "%s stopped; the change may or may not be applied", g.cfg.kind.Name))
			}
			g.p.inflight, g.p.members = nil, nil
		}
	}
	for _, q := range g.p.queue {
		g.endSpan(q)
		if q.sender != nil {
			ctx.Send(q.sender, &actor.DeadLetterResponse{Target: ctx.Self()})
		}
	}
	g.p.queue = nil
}

// drain answers the queued requests while no batch is in flight: those
// that yield events are decided one after the other and appended as one
// batch, asynchronously, so the grain keeps taking requests meanwhile and
// the next round trip carries all that arrived (hot-grain batching, issue
// 10). A request that cannot join a batch (a read, a refusal, a duplicate)
// runs on its own, on stored state, once the batch before it settled.
func (g *grain[S, E, Req, Reply]) drain(ctx actor.Context) {
	for g.p.inflight == nil && len(g.p.queue) > 0 {
		if !g.initialised() || !g.host.Loaded() {
			// handle loads (or answers why it cannot) on its own.
			g.runAlone(ctx)
			continue
		}
		b := g.host.NewBatch()
		var members []queued[Req]
		for len(g.p.queue) > 0 {
			q := g.p.queue[0]
			if g.expired(q.req) {
				g.send(ctx, q, g.fail(messages.CodeTimeout, "request expired before the %s could handle it", g.cfg.kind.Name))
			} else if !g.tryAdd(b, q.req) {
				break
			} else {
				members = append(members, q)
			}
			g.p.queue = g.p.queue[1:]
		}
		if b.Len() > 0 {
			g.launch(ctx, b, members)
			return
		}
		if len(g.p.queue) > 0 {
			g.runAlone(ctx)
		}
	}
	if g.p.inflight == nil && len(g.p.queue) == 0 {
		g.p = nil // an idle grain holds nothing of its bursts
		if g.initialised() {
			g.host.ForgetLastBatch()
		}
		g.passivateIfEmpty(ctx)
	}
}

func (g *grain[S, E, Req, Reply]) runAlone(ctx actor.Context) {
	q := g.p.queue[0]
	g.p.queue = g.p.queue[1:]
	g.send(ctx, q, g.handle(q.ctx, q.req))
}

// tryAdd adds req to b if it yields events; a panicking decision is
// answered like one in handle (the host's state is untouched: decide only
// ever saw the batch's copy).
func (g *grain[S, E, Req, Reply]) tryAdd(b *Batch[S, E], req Req) (added bool) {
	defer func() {
		if r := recover(); r != nil {
			g.host.Logger().Error(g.cfg.kind.Name+" grain panicked deciding a batched command", "panic", r, "stack", string(debug.Stack()))
			added = false
		}
	}()
	now := g.cfg.Now()
	return g.host.TryAdd(b, req.GetCommandId(), deadlineOf(req), func(s S) ([]E, error) {
		return g.cfg.kind.Decide(s, g.ident(), req, now)
	})
}

// launch appends b off the actor; the grain hears back as batchStored.
func (g *grain[S, E, Req, Reply]) launch(ctx actor.Context, b *Batch[S, E], members []queued[Req]) {
	g.p.inflight, g.p.members = b, members
	if g.p.done == nil {
		g.p.done = make(chan error, 1)
	}
	store, self, root, timeout, done := g.host.Store(b), ctx.Self(), ctx.ActorSystem().Root, g.cfg.StoreTimeout, g.p.done
	// One append serves the whole batch: it runs under its first
	// request's span (the others' spans still time their own wait).
	parent := members[0].ctx
	appenders.Go(func() {
		var err error
		defer func() {
			if r := recover(); r != nil {
				// Unknown outcome, like any storage error: never a crash.
				err = fmt.Errorf("append panicked: %v", r)
			}
			done <- err
			root.Send(self, &batchStored{batch: b})
		}()
		c, cancel := context.WithTimeout(parent, timeout)
		defer cancel()
		err = store(c)
	})
}

// settle answers the members of the batch in flight, and puts back at the
// queue's head those to run again.
func (g *grain[S, E, Req, Reply]) settle(ctx actor.Context, err error) {
	parent := context.Background()
	if len(g.p.members) > 0 && g.p.members[0].ctx != nil {
		parent = g.p.members[0].ctx // the trace the append ran under
	}
	c, cancel := context.WithTimeout(parent, g.cfg.StoreTimeout)
	defer cancel()
	results := g.host.Settle(c, g.p.inflight, err)
	var again []queued[Req]
	for i, r := range results {
		q := g.p.members[i]
		switch {
		case r.Retry && r.Conflict && q.conflicts >= maxRetries:
			g.send(ctx, q, g.fail(messages.CodeServiceUnavailable, "contended by another activation; retry"))
		case r.Retry:
			if r.Conflict {
				q.conflicts++
			}
			again = append(again, q)
		case r.Err != nil:
			g.send(ctx, q, g.cfg.kind.Fail(g.ident(), messages.AsFailure(r.Err, messages.CodeServiceUnavailable), g.cfg.MemberID))
		default:
			g.send(ctx, q, g.cfg.kind.Reply(g.ident(), r.Outcome, g.cfg.MemberID))
		}
	}
	g.p.queue = append(again, g.p.queue...)
	g.p.inflight, g.p.members = nil, nil
}

func (g *grain[S, E, Req, Reply]) send(ctx actor.Context, q queued[Req], reply Reply) {
	g.endSpan(q)
	if q.sender == nil {
		ctx.ActorSystem().DeadLetter.SendUserMessage(nil, reply)
		return
	}
	ctx.Send(q.sender, reply)
}

func (g *grain[S, E, Req, Reply]) fail(code, format string, args ...any) Reply {
	return g.cfg.kind.Fail(g.ident(), messages.Fail(code, format, args...), g.cfg.MemberID)
}

func (g *grain[S, E, Req, Reply]) expired(req Req) bool {
	d := req.GetDeadlineUnixMs()
	return d > 0 && g.cfg.Now().UnixMilli() >= d
}

func deadlineOf(req Request) time.Time {
	if d := req.GetDeadlineUnixMs(); d > 0 {
		return time.UnixMilli(d)
	}
	return time.Time{}
}

// passivateIfEmpty stops a grain whose stream holds nothing (a read of an
// unknown id, a refused first command): it has nothing worth keeping warm,
// and keeping it for the idle timeout let any client grow a member's memory
// by asking for many ids (issue 9). A grain with events stays.
func (g *grain[S, E, Req, Reply]) passivateIfEmpty(ctx actor.Context) {
	if g.initialised() && g.cfg.kind.Codec.Version(g.host.State()) == 0 {
		PassivateEmpty(ctx)
	}
}

// PassivateEmpty stops the grain of ctx once it has answered. It poisons
// rather than stops so that requests already in its mailbox are answered
// first; one sent after it went is answered by a fresh activation
// (Proto.Actor's cluster re-resolves an identity whose PID is gone).
func PassivateEmpty(ctx actor.Context) { ctx.Poison(ctx.Self()) }

// handle answers every request, panics included: a panicking request would
// otherwise get no reply and its caller would wait for the timeout.
func (g *grain[S, E, Req, Reply]) handle(parent context.Context, req Req) (reply Reply) {
	fail := func(code, format string, args ...any) Reply {
		return g.cfg.kind.Fail(g.ident(), messages.Fail(code, format, args...), g.cfg.MemberID)
	}
	defer func() {
		if r := recover(); r != nil {
			g.host.Logger().Error(g.cfg.kind.Name+" grain panicked; state will reload", "panic", r, "stack", string(debug.Stack()))
			g.host.Invalidate()
			reply = fail(messages.CodeServiceUnavailable, "%s failed; retry", g.cfg.kind.Name)
		}
	}()
	if !g.initialised() {
		// Sent to the actor directly rather than through the cluster.
		return fail(messages.CodeServiceUnavailable, "%s grain has no identity", g.cfg.kind.Name)
	}
	now := g.cfg.Now()
	// A request past its deadline is refused unread: its caller gave up,
	// and a saga compensates only after its attempt's deadline, so a late
	// duplicate never lands after the compensation.
	if d := req.GetDeadlineUnixMs(); d > 0 && now.UnixMilli() >= d {
		return fail(messages.CodeTimeout, "request expired before the %s could handle it", g.cfg.kind.Name)
	}
	if g.cfg.kind.Settled != nil && g.host.Loaded() {
		if s := g.host.State(); g.cfg.kind.Settled(s, req) {
			if events, err := g.cfg.kind.Decide(s, g.ident(), req, now); len(events) == 0 {
				if err != nil {
					return g.cfg.kind.Fail(g.ident(), messages.AsFailure(err, messages.CodeValidationFailed), g.cfg.MemberID)
				}
				return g.cfg.kind.Reply(g.ident(), Outcome[S]{State: s}, g.cfg.MemberID)
			}
		}
	}
	ctx, cancel := context.WithTimeout(parent, g.cfg.StoreTimeout)
	defer cancel()
	var deadline time.Time
	if d := req.GetDeadlineUnixMs(); d > 0 {
		deadline = time.UnixMilli(d)
	}
	out, err := g.host.ExecuteBefore(ctx, req.GetCommandId(), deadline, func(s S) ([]E, error) {
		return g.cfg.kind.Decide(s, g.ident(), req, now)
	})
	if err != nil {
		return g.cfg.kind.Fail(g.ident(), messages.AsFailure(err, messages.CodeValidationFailed), g.cfg.MemberID)
	}
	return g.cfg.kind.Reply(g.ident(), out, g.cfg.MemberID)
}
