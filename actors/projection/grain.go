package projection

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/scheduler"

	"granary/messages"
)

// maxBackoff caps the pause after failed steps (storage down).
const maxBackoff = 5 * time.Second

// tick makes the grain step. It never leaves the process, so it is a plain
// Go value; each is a fresh pointer so a stale one can be told apart.
type tick struct{}

// Props builds the actor props of the projection kind.
func Props(cfg Config) *actor.Props { return actor.PropsFromProducer(Producer(cfg)) }

// Producer makes the projection kind's grains.
func Producer(cfg Config) actor.Producer { return func() actor.Actor { return &Grain{cfg: cfg} } }

// Grain runs one projection, named by its identity. Once activated it never
// passivates: it steps, then schedules its next step (at once while work
// waits, after PollInterval when caught up, backing off after failures).
// Its only timer is cancelled when it stops, so nothing outlives it.
type Grain struct {
	cfg    Config
	log    *slog.Logger
	driver *Driver
	sched  *scheduler.TimerScheduler
	// pending is the one tick the grain waits for; any other (a timer of
	// an earlier incarnation firing late) is dropped, so there is never
	// more than one step chain.
	pending     *tick
	cancelTimer scheduler.CancelFunc
	failures    int
	lastErr     string
}

// Receive is the actor's entry point.
func (g *Grain) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
	case *cluster.ClusterInit:
		g.init(ctx, msg.Identity.GetIdentity())
	case *actor.ReceiveTimeout:
		ctx.Poison(ctx.Self())
	case *actor.Stopping:
		g.stopTimer()
		if g.driver != nil {
			g.log.Info("projection stopping")
		}
	case *actor.Restarting:
		g.stopTimer()
	case *tick:
		g.onTick(ctx, msg)
	case *messages.ProjectionRequest:
		ctx.Respond(g.handle(msg))
	}
}

func (g *Grain) init(ctx actor.Context, name string) {
	g.log = g.cfg.Logger.With("projection", name, "member", g.cfg.MemberID)
	h := handlerFor(name)
	if h == nil {
		// Never keep a grain per unknown name alive, since names can come
		// from requests; but let it answer the request that activated it
		// (and re-sends of it) before it goes.
		g.log.Warn("no projection by that name; the grain answers not_found and passivates")
		ctx.SetReceiveTimeout(time.Second)
		return
	}
	cfg := g.cfg
	cfg.Logger = g.cfg.Logger.With("member", g.cfg.MemberID)
	g.driver = NewDriver(h, cfg)
	g.sched = scheduler.NewTimerScheduler(ctx.ActorSystem().Root)
	g.log.Info("projection activated")
	g.schedule(ctx, 0)
}

func (g *Grain) schedule(ctx actor.Context, delay time.Duration) {
	t := &tick{}
	g.pending = t
	if delay <= 0 {
		// Through the mailbox, so requests queued meanwhile go first.
		ctx.Send(ctx.Self(), t)
		return
	}
	g.cancelTimer = g.sched.SendOnce(delay, ctx.Self(), t)
}

func (g *Grain) stopTimer() {
	if g.cancelTimer != nil {
		g.cancelTimer()
		g.cancelTimer = nil
	}
	g.pending = nil
}

func (g *Grain) onTick(ctx actor.Context, t *tick) {
	if t != g.pending || g.driver == nil {
		return
	}
	g.pending, g.cancelTimer = nil, nil
	if ctx.ActorSystem().IsStopped() {
		// A member stopped without handing over (Stop(false), a crash in
		// tests) leaves its actors in place; unlike passive grains this
		// one would go on working on its own, so it ends itself.
		g.log.Info("member stopped; projection stops")
		ctx.Stop(ctx.Self())
		return
	}
	res, err := g.step()
	delay := g.cfg.PollInterval
	switch {
	case err != nil:
		g.failures++
		delay = min(g.cfg.PollInterval<<min(g.failures, 10), maxBackoff)
		if msg := err.Error(); msg != g.lastErr {
			g.log.Error("projection step failed; retrying", "err", err, "failures", g.failures, "retry_in", delay)
			g.lastErr = msg
		} else {
			g.log.Debug("projection step failed again", "failures", g.failures, "retry_in", delay)
		}
	default:
		if g.failures > 0 {
			g.log.Info("projection recovered", "after_failures", g.failures)
			g.failures, g.lastErr = 0, ""
		}
		if res.More {
			delay = 0
		}
	}
	g.schedule(ctx, delay)
}

// step runs one driver step; a panic is an error like any other, so the
// step chain goes on (the commits are compare-and-set: nothing half done
// can be kept).
func (g *Grain) step() (res StepResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("projection step panicked: %v", r)
			g.log.Error("projection step panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	return g.driver.Step(context.Background())
}

// handle answers every request, panics included.
func (g *Grain) handle(req *messages.ProjectionRequest) (reply *messages.ProjectionReply) {
	defer func() {
		if r := recover(); r != nil {
			g.log.Error("projection request panicked", "panic", r, "stack", string(debug.Stack()))
			reply = g.fail(messages.Fail(messages.CodeServiceUnavailable, "projection grain failed; retry"))
		}
	}()
	if g.driver == nil {
		return g.fail(messages.Fail(messages.CodeNotFound, "no such projection"))
	}
	if d := req.GetDeadlineUnixMs(); d > 0 && g.cfg.Now().UnixMilli() >= d {
		return g.fail(messages.Fail(messages.CodeTimeout, "request expired before the projection could handle it"))
	}
	switch req.GetCommand().(type) {
	case *messages.ProjectionRequest_Ping:
		return g.state()
	case *messages.ProjectionRequest_Rebuild:
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
		defer cancel()
		_, started, err := g.driver.RequestRebuild(ctx)
		if err != nil {
			g.log.Error("projection rebuild request failed", "err", err)
			return g.fail(messages.Fail(messages.CodeServiceUnavailable, "storage unavailable; retry"))
		}
		reply := g.state()
		reply.RebuildStarted = started
		return reply
	default:
		return g.fail(messages.Fail(messages.CodeValidationFailed, "unknown projection command %T", req.GetCommand()))
	}
}

func (g *Grain) state() *messages.ProjectionReply {
	meta := g.driver.Meta()
	return &messages.ProjectionReply{ServedBy: g.cfg.MemberID, Generation: meta.Current,
		RebuildGeneration: meta.Next, LastError: g.lastErr}
}

func (g *Grain) fail(f *messages.Failure) *messages.ProjectionReply {
	return &messages.ProjectionReply{Failure: f, ServedBy: g.cfg.MemberID}
}
