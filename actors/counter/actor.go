package counter

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"granary/actors/es"
	"granary/messages"
)

// Config is what a counter needs from its member.
type Config = es.GrainConfig

// GrainProps are the props of the counter cluster kind: the name comes from
// the grain's identity.
func GrainProps(cfg Config) *actor.Props { return actor.PropsFromProducer(GrainProducer(cfg)) }

// GrainProducer makes the counter kind's grains.
func GrainProducer(cfg Config) actor.Producer {
	return func() actor.Actor { return &Actor{cfg: cfg, stream: GrainStream} }
}

// ChildProps are the props of a counter child named name whose events live
// in stream(name); its supervisor is its parent's.
func ChildProps(cfg Config, name string, stream func(string) string) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &Actor{cfg: cfg, stream: stream, name: name} })
}

// Actor is one counter. A restart (after a panic) builds a new Actor that
// reloads the value from the journal, so supervision never loses it.
type Actor struct {
	cfg    Config
	stream func(string) string
	name   string
	grain  bool // a cluster grain, not a group's child
	host   *es.Host[State, *messages.CounterEvent]
}

// Receive is the actor's entry point.
func (a *Actor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		if a.name != "" { // a group child: its name is known up front
			a.init()
		}
	case *cluster.ClusterInit:
		a.name, a.grain = msg.Identity.GetIdentity(), true
		a.init()
		ctx.SetReceiveTimeout(a.cfg.IdleTimeout)
	case *actor.ReceiveTimeout:
		ctx.Poison(ctx.Self())
	case *messages.CrashCounter:
		// Deliberately not recovered: the supervisor must see it.
		panic(fmt.Sprintf("counter %s: crash injected", a.name))
	case *messages.CounterRequest:
		ctx.Respond(a.handle(msg))
		// A counter grain nobody ever incremented holds nothing: stop it
		// now rather than after the idle timeout (issue 9). Group children
		// live as long as their group.
		if a.grain && a.host != nil && a.host.State().Version == 0 {
			es.PassivateEmpty(ctx)
		}
	}
}

func (a *Actor) init() {
	log := a.cfg.Logger.With("counter", a.name, "member", a.cfg.MemberID)
	a.host = es.NewHost(Codec(a.stream), es.Config{
		Store: a.cfg.Store, SnapshotEvery: a.cfg.SnapshotEvery, RecentCommands: a.cfg.RecentCommands, Logger: log,
	}, a.name)
}

func (a *Actor) handle(req *messages.CounterRequest) (reply *messages.CounterReply) {
	defer func() {
		if r := recover(); r != nil {
			a.cfg.Logger.Error("counter panicked; state will reload", "counter", a.name, "panic", r, "stack", string(debug.Stack()))
			a.host.Invalidate()
			reply = a.fail(messages.Fail(messages.CodeServiceUnavailable, "counter failed; retry"))
		}
	}()
	if a.host == nil {
		return a.fail(messages.Fail(messages.CodeServiceUnavailable, "counter has no identity"))
	}
	now := a.cfg.Now()
	if d := req.GetDeadlineUnixMs(); d > 0 && now.UnixMilli() >= d {
		return a.fail(messages.Fail(messages.CodeTimeout, "request expired before the counter could handle it"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.StoreTimeout)
	defer cancel()
	out, err := a.host.Execute(ctx, req.GetCommandId(), func(s State) ([]*messages.CounterEvent, error) {
		return Decide(s, req, now)
	})
	if err != nil {
		return a.fail(messages.AsFailure(err, messages.CodeValidationFailed))
	}
	return &messages.CounterReply{Name: a.name, Value: out.State.Value, ServedBy: a.cfg.MemberID}
}

func (a *Actor) fail(f *messages.Failure) *messages.CounterReply {
	return &messages.CounterReply{Name: a.name, Failure: f, ServedBy: a.cfg.MemberID}
}
