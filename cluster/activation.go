package cluster

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// activation is the actor of one lean grain: it runs the grain and gives it
// what the cluster middleware would (its *cluster.ClusterInit after
// Started, the PID-cache cleanup at Stopped) without a receiver middleware,
// which would make Proto.Actor allocate the context's extras for every
// grain. The grain's idle timeout is kept here and checked on the member's
// sweep instead of by a timer per grain.
type activation struct {
	inner actor.Actor
	kind  *leanKind
	// idle is the grain's receive timeout when the sweep keeps it, in
	// whole sweep ticks rounded up (0: none), with idleFired set once the
	// timeout was delivered since the last message: it fires once per
	// silence and again after the next message's silence (Proto.Actor's
	// timer fires once and is then off until set again; every grain here
	// stops or ignores it, so the difference does not show). last is the
	// low 32 bits of the sweep tick of the grain's last message: only
	// differences count. Both 32-bit, so an idle activation is 32 bytes
	// (issue 10). A grain sets its timeout while it handles Started or
	// ClusterInit: only then does it see the activation's context.
	idle uint32
	last uint32
}

// idleFired marks activation.idle once its timeout was delivered.
const idleFired = 1 << 31

// supervising is an activation whose grain supervises its children:
// Proto.Actor asks the actor itself first, so the activation must be one.
type supervising struct{ activation }

func (s *supervising) HandleFailure(system *actor.ActorSystem, supervisor actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, message any) {
	s.inner.(actor.SupervisorStrategy).HandleFailure(system, supervisor, child, rs, reason, message)
}

func newActivation(k *leanKind, inner actor.Actor) actor.Actor {
	if _, ok := inner.(actor.SupervisorStrategy); ok {
		return &supervising{activation{inner: inner, kind: k}}
	}
	return &activation{inner: inner, kind: k}
}

func (a *activation) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.last = uint32(a.kind.place.tick.Load())
		a.deliver(ctx, msg)
		id := a.kind.identityOf(ctx.Self())
		a.deliver(ctx, &pcluster.ClusterInit{Identity: pcluster.NewClusterIdentity(id, a.kind.name), Cluster: a.kind.place.c})
	case idleCheck:
		a.checkIdle(ctx)
	case *actor.Stopped:
		a.inner.Receive(ctx)
		pl := a.kind.place
		pl.c.PidCache.RemoveByValue(a.kind.identityOf(ctx.Self()), a.kind.name, ctx.Self())
		ctx.Send(pl.pid, &activationStopped{kind: a.kind, pid: ctx.Self()})
	default:
		if _, quiet := msg.(actor.NotInfluenceReceiveTimeout); !quiet {
			a.last, a.idle = uint32(a.kind.place.tick.Load()), a.idle&^idleFired
		}
		a.inner.Receive(ctx)
	}
}

// checkIdle delivers *actor.ReceiveTimeout once the grain has had no
// message for at least its timeout: a message may have come just after the
// last tick the activation saw, so one whole sweep interval is not counted.
func (a *activation) checkIdle(ctx actor.Context) {
	if a.idle == 0 || a.idle&idleFired != 0 {
		return
	}
	// Ticks wrap at 32 bits; the difference is right for any silence
	// shorter than 2^32 ticks, and a timeout fires long before that.
	elapsed := uint32(a.kind.place.tick.Load()) - a.last
	if elapsed == 0 || elapsed-1 < a.idle {
		return
	}
	a.idle |= idleFired
	a.deliver(ctx, &actor.ReceiveTimeout{})
}

// deliver runs the grain on msg, which is not the message in ctx, with a
// context that reports msg and keeps the grain's receive timeout.
func (a *activation) deliver(ctx actor.Context, msg any) {
	c := &grainContext{Context: ctx, a: a, msg: msg}
	defer func() { c.msg = nil }() // a closure that kept c sees ctx's own message afterwards
	a.inner.Receive(c)
}

// grainContext is the context a grain sees while the activation hands it
// a message of its own.
type grainContext struct {
	actor.Context
	a   *activation
	msg any
}

func (c *grainContext) Message() any {
	if c.msg != nil {
		return c.msg
	}
	return c.Context.Message()
}

// SetReceiveTimeout keeps a timeout the sweep can honour within a quarter
// of it in the activation; a shorter one is Proto.Actor's own timer, and
// so is one of 2^31-1 ticks or more (about 248 days at the shortest
// sweep), which the activation's 32 bits cannot count.
func (c *grainContext) SetReceiveTimeout(d time.Duration) {
	if every := c.a.kind.place.sweepEvery; d >= 4*every && d/every < idleFired-1 {
		c.Context.CancelReceiveTimeout()
		ticks := d / every // < 2^31-1, so rounding up cannot overflow
		if d%every != 0 {
			ticks++
		}
		c.a.idle = uint32(ticks)
		return
	}
	c.a.idle = 0
	c.Context.SetReceiveTimeout(d)
}

func (c *grainContext) CancelReceiveTimeout() {
	c.a.idle = 0
	c.Context.CancelReceiveTimeout()
}

// ReceiveTimeout is the timeout set, rounded up to whole sweep ticks when
// the sweep keeps it.
func (c *grainContext) ReceiveTimeout() time.Duration {
	if ticks := c.a.idle &^ idleFired; ticks > 0 {
		return time.Duration(ticks) * c.a.kind.place.sweepEvery
	}
	return c.Context.ReceiveTimeout()
}
