package countergroup

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"granary/actors/counter"
	"granary/actors/es"
	"granary/messages"
)

// Config is a group's: its children are counters configured by Counter.
type Config struct {
	Counter counter.Config
	// A child may be restarted MaxRestarts times within RestartWindow;
	// one more failure stops it.
	MaxRestarts   int
	RestartWindow time.Duration
}

// DefaultSupervision is the restart budget: 3 restarts within 10 s.
func DefaultSupervision() (int, time.Duration) { return 3, 10 * time.Second }

// Props are the props of the counter-group cluster kind.
func Props(cfg Config) *actor.Props { return actor.PropsFromProducer(Producer(cfg)) }

// Producer makes the counter-group kind's grains.
func Producer(cfg Config) actor.Producer {
	return func() actor.Actor {
		return &Group{cfg: cfg, strategy: actor.NewOneForOneStrategy(cfg.MaxRestarts, cfg.RestartWindow, actor.DefaultDecider)}
	}
}

// Group is the supervisor grain. It is its children's SupervisorStrategy
// (Proto.Actor asks the parent actor first), so it can count restarts
// before handing the decision to a one-for-one strategy.
type Group struct {
	cfg      Config
	strategy actor.SupervisorStrategy
	name     string
	log      *slog.Logger
	host     *es.Host[State, *messages.CounterGroupEvent]
	children map[string]*actor.PID
	stopped  map[string]bool
	restarts map[string]int32
	last     map[string]int64 // last value each child reported
	waits    map[string][]*wait
	// stopping: the group itself is stopping (passivation, shutdown), so
	// its children stop with it; that is no supervisor decision.
	stopping bool
}

var _ actor.SupervisorStrategy = (*Group)(nil)

// HandleFailure records the failure and lets one-for-one decide.
func (g *Group) HandleFailure(system *actor.ActorSystem, supervisor actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, message any) {
	name := g.nameOf(child)
	g.restarts[name]++
	g.log.Warn("child counter failed; supervisor decides", "counter", name, "reason", reason, "failures", rs.FailureCount()+1)
	g.strategy.HandleFailure(system, supervisor, child, rs, reason, message)
}

// Receive is the actor's entry point.
func (g *Group) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
	case *cluster.ClusterInit:
		g.init(msg.Identity.GetIdentity())
		ctx.SetReceiveTimeout(g.cfg.Counter.IdleTimeout)
	case *actor.ReceiveTimeout:
		ctx.Poison(ctx.Self())
	case *actor.Stopping:
		g.stopping = true
	case *actor.Stopped:
		g.log.Debug("counter group stopped")
	case *actor.Terminated:
		g.onChildStopped(msg.GetWho())
	case *messages.CounterGroupRequest:
		g.handle(ctx, msg)
	}
}

func (g *Group) init(name string) {
	g.name = name
	g.log = g.cfg.Counter.Logger.With("group", name, "member", g.cfg.Counter.MemberID)
	g.host = es.NewHost(&codec, es.Config{
		Store: g.cfg.Counter.Store, SnapshotEvery: g.cfg.Counter.SnapshotEvery,
		RecentCommands: g.cfg.Counter.RecentCommands, Logger: g.log,
	}, name)
	g.children = map[string]*actor.PID{}
	g.stopped = map[string]bool{}
	g.restarts = map[string]int32{}
	g.last = map[string]int64{}
	g.waits = map[string][]*wait{}
}

func (g *Group) nameOf(pid *actor.PID) string {
	for name, p := range g.children {
		if p.Equal(pid) {
			return name
		}
	}
	return pid.GetId()
}

func (g *Group) onChildStopped(pid *actor.PID) {
	name := g.nameOf(pid)
	if _, ours := g.children[name]; !ours {
		return
	}
	delete(g.children, name)
	if g.stopping {
		// Stopped along with the group (passivation, shutdown): normal.
		g.log.Debug("child counter stopped with its group", "counter", name)
		return
	}
	g.stopped[name] = true
	for _, w := range slices.Clone(g.waits[name]) {
		g.settle(w, name+" (stopped by its supervisor)")
	}
	g.log.Error("child counter stopped by its supervisor after exhausting its restart budget", "counter", name,
		"max_restarts", g.cfg.MaxRestarts, "window", g.cfg.RestartWindow)
	g.recordStopped(name)
}

// recordStopped stores the supervisor's decision in the group's stream, so
// a later activation keeps the child stopped and reports it. When the
// store fails the decision holds for this activation only (logged).
func (g *Group) recordStopped(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.Counter.StoreTimeout)
	defer cancel()
	now := g.cfg.Counter.Now()
	_, err := g.host.Execute(ctx, "supervisor-stopped/"+name, func(s State) ([]*messages.CounterGroupEvent, error) {
		return decideStopped(s, name, "supervisor-stopped/"+name, now), nil
	})
	if err != nil {
		g.log.Warn("recording that a child counter was stopped failed; a new activation would restart it", "counter", name, "err", err)
	}
}

// isStopped: stopped by the supervisor in this activation or a former one.
func (g *Group) isStopped(name string) bool {
	return g.stopped[name] || slices.Contains(g.host.State().Stopped, name)
}

// ensureChildren spawns a child for every counter of the state that is
// neither running nor stopped (after activation, or after a spawn).
func (g *Group) ensureChildren(ctx actor.Context) {
	for _, name := range g.host.State().Counters {
		if g.children[name] != nil || g.isStopped(name) {
			continue
		}
		props := counter.ChildProps(g.cfg.Counter, name, ChildStream(g.name))
		pid, err := ctx.SpawnNamed(props, name)
		if err != nil {
			g.log.Error("spawning child counter failed", "counter", name, "err", err)
			continue
		}
		g.children[name] = pid
	}
}

func (g *Group) handle(ctx actor.Context, req *messages.CounterGroupRequest) {
	sender := ctx.Sender()
	respond := func(r *messages.CounterGroupReply) {
		r.Group, r.ServedBy = g.name, g.cfg.Counter.MemberID
		ctx.Send(sender, r)
	}
	defer func() {
		if r := recover(); r != nil {
			g.log.Error("counter group panicked; state will reload", "panic", r, "stack", string(debug.Stack()))
			g.host.Invalidate()
			respond(&messages.CounterGroupReply{Failure: messages.Fail(messages.CodeServiceUnavailable, "counter group failed; retry")})
		}
	}()
	if g.host == nil {
		respond(&messages.CounterGroupReply{Failure: messages.Fail(messages.CodeServiceUnavailable, "counter group has no identity")})
		return
	}
	now := g.cfg.Counter.Now()
	if d := req.GetDeadlineUnixMs(); d > 0 && now.UnixMilli() >= d {
		respond(&messages.CounterGroupReply{Failure: messages.Fail(messages.CodeTimeout, "request expired before the group could handle it")})
		return
	}
	storeCtx, cancel := context.WithTimeout(context.Background(), g.cfg.Counter.StoreTimeout)
	defer cancel()

	if _, ok := req.GetCommand().(*messages.CounterGroupRequest_Spawn); ok {
		out, err := g.host.Execute(storeCtx, req.GetCommandId(), func(s State) ([]*messages.CounterGroupEvent, error) {
			return decideSpawn(s, g.name, req.GetCommandId(), now)
		})
		if err != nil {
			respond(&messages.CounterGroupReply{Failure: messages.AsFailure(err, messages.CodeValidationFailed)})
			return
		}
		g.ensureChildren(ctx)
		// A re-sent spawn names the counter the first attempt created.
		spawned := out.State.Counters[len(out.State.Counters)-1]
		respond(&messages.CounterGroupReply{Spawned: spawned, Counters: g.values()})
		return
	}

	if err := g.host.Load(storeCtx); err != nil {
		g.log.Error("loading counter group failed", "err", err)
		respond(&messages.CounterGroupReply{Failure: messages.Fail(messages.CodeServiceUnavailable, "storage unavailable")})
		return
	}
	if len(g.host.State().Counters) == 0 {
		respond(&messages.CounterGroupReply{Failure: messages.Fail(messages.CodeNotFound, "counter group %q not found", g.name)})
		return
	}
	g.ensureChildren(ctx)

	switch cmd := req.GetCommand().(type) {
	case *messages.CounterGroupRequest_Get:
		g.gather(ctx, func(string) *messages.CounterRequest {
			return &messages.CounterRequest{Command: &messages.CounterRequest_Get{Get: &messages.GetCounter{}}}
		}, respond)
	case *messages.CounterGroupRequest_Broadcast:
		var command func() *messages.CounterRequest
		switch cmd.Broadcast.GetCommand() {
		case "increment":
			command = func() *messages.CounterRequest {
				return &messages.CounterRequest{Command: &messages.CounterRequest_Increment{Increment: &messages.IncrementCounter{By: 1}}}
			}
		case "reset":
			command = func() *messages.CounterRequest {
				return &messages.CounterRequest{Command: &messages.CounterRequest_Reset_{Reset_: &messages.ResetCounter{}}}
			}
		default:
			respond(&messages.CounterGroupReply{Failure: messages.Fail(messages.CodeValidationFailed, `command: must be "increment" or "reset"`)})
			return
		}
		g.gather(ctx, func(child string) *messages.CounterRequest {
			r := command()
			// Per-child ids: a re-sent broadcast is applied once per child.
			if req.GetCommandId() != "" {
				r.CommandId = req.GetCommandId() + "/" + child
			}
			return r
		}, respond)
	case *messages.CounterGroupRequest_Child:
		g.child(ctx, req, cmd.Child, respond)
	case *messages.CounterGroupRequest_Crash:
		pid := g.children[cmd.Crash.GetCounter()]
		if pid == nil {
			respond(&messages.CounterGroupReply{Failure: messages.Fail(messages.CodeNotFound, "no running counter %q", cmd.Crash.GetCounter())})
			return
		}
		ctx.Send(pid, &messages.CrashCounter{Counter: cmd.Crash.GetCounter()})
		respond(g.report(nil))
	default:
		respond(&messages.CounterGroupReply{Failure: messages.Fail(messages.CodeValidationFailed, "unknown command %T", cmd)})
	}
}

// child sends one request to one child. A child the supervisor stopped
// answers a read with its last value and refuses a change: it is not
// running, and nothing will apply the change.
func (g *Group) child(ctx actor.Context, req *messages.CounterGroupRequest, cmd *messages.ChildCommand, respond func(*messages.CounterGroupReply)) {
	name := cmd.GetCounter()
	creq := cmd.GetRequest()
	switch {
	case !slices.Contains(g.host.State().Counters, name):
		respond(&messages.CounterGroupReply{Failure: messages.Fail(messages.CodeNotFound, "counter %q not found in group %q", name, g.name)})
		return
	case creq.GetCommand() == nil:
		respond(&messages.CounterGroupReply{Failure: messages.Fail(messages.CodeValidationFailed, "no command for counter %q", name)})
		return
	case g.children[name] == nil:
		if _, read := creq.GetCommand().(*messages.CounterRequest_Get); read && g.isStopped(name) {
			respond(g.report(nil))
			return
		}
		respond(&messages.CounterGroupReply{Failure: messages.Fail(messages.CodeServiceUnavailable, "counter %q is not running (stopped by its supervisor); not applied", name)})
		return
	}
	g.gatherFrom(ctx, []string{name}, func(string) *messages.CounterRequest {
		r := &messages.CounterRequest{Command: creq.GetCommand(), CommandId: req.GetCommandId(), DeadlineUnixMs: req.GetDeadlineUnixMs()}
		return r
	}, respond)
}

// batch is one gather in progress: it answers once every child asked has
// replied, failed or stopped.
type batch struct {
	pending int
	failed  []string
	respond func(*messages.CounterGroupReply)
}

// wait is one child's part of a batch; done guards against counting it
// twice (a reply racing the child's termination).
type wait struct {
	b    *batch
	name string
	done bool
}

// gather sends each running child its request and answers once all have
// replied. It awaits with ReenterAfter, never blocking the mailbox: a
// child's restart needs this actor to process the failure. A child that is
// stopped meanwhile drops its mailbox, so onChildStopped settles its waits.
func (g *Group) gather(ctx actor.Context, reqFor func(child string) *messages.CounterRequest, respond func(*messages.CounterGroupReply)) {
	names := make([]string, 0, len(g.children))
	for name := range g.children {
		names = append(names, name)
	}
	slices.Sort(names)
	g.gatherFrom(ctx, names, reqFor, respond)
}

// gatherFrom is gather for the running children named.
func (g *Group) gatherFrom(ctx actor.Context, names []string, reqFor func(child string) *messages.CounterRequest, respond func(*messages.CounterGroupReply)) {
	if len(names) == 0 {
		respond(g.report(nil))
		return
	}
	b := &batch{pending: len(names), respond: respond}
	for _, name := range names {
		w := &wait{b: b, name: name}
		g.waits[name] = append(g.waits[name], w)
		f := ctx.RequestFuture(g.children[name], reqFor(name), 2*g.cfg.Counter.StoreTimeout)
		ctx.ReenterAfter(f, func(res any, err error) {
			reply, ok := res.(*messages.CounterReply)
			switch {
			case err != nil || !ok:
				g.settle(w, fmt.Sprintf("%s (%v)", name, err))
			case reply.GetFailure() != nil:
				g.settle(w, fmt.Sprintf("%s (%s)", name, reply.GetFailure().GetDetail()))
			default:
				g.last[name] = reply.GetValue()
				g.settle(w, "")
			}
		})
	}
}

// settle marks one child's part of a batch done, with failure "" on success.
func (g *Group) settle(w *wait, failure string) {
	if w.done {
		return
	}
	w.done = true
	g.waits[w.name] = slices.DeleteFunc(g.waits[w.name], func(x *wait) bool { return x == w })
	if failure != "" {
		w.b.failed = append(w.b.failed, failure)
	}
	if w.b.pending--; w.b.pending == 0 {
		w.b.respond(g.report(w.b.failed))
	}
}

func (g *Group) values() map[string]int64 {
	out := make(map[string]int64, len(g.host.State().Counters))
	for _, name := range g.host.State().Counters {
		out[name] = g.last[name]
	}
	return out
}

func (g *Group) report(failed []string) *messages.CounterGroupReply {
	r := &messages.CounterGroupReply{Counters: g.values(), Restarts: map[string]int32{}}
	for _, name := range g.host.State().Counters {
		if g.isStopped(name) {
			r.Stopped = append(r.Stopped, name)
		}
	}
	slices.Sort(r.Stopped)
	for name, n := range g.restarts {
		r.Restarts[name] = n
	}
	if len(failed) > 0 {
		slices.Sort(failed)
		r.Failure = messages.Fail(messages.CodeServiceUnavailable, "counters did not answer: %v", failed)
	}
	return r
}
