package user

import (
	"context"
	"runtime/debug"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"granary/actors/counter"
	"granary/actors/es"
	"granary/messages"
)

// Props are the props of the user kind; users share the counters' storage
// settings (counter.Config is the common grain config).
func Props(cfg counter.Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &grain{cfg: cfg} })
}

type grain struct {
	cfg  counter.Config
	name string
	host *es.Host[State, *messages.UserEvent]
}

func (g *grain) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *cluster.ClusterInit:
		g.name = msg.Identity.GetIdentity()
		g.host = es.NewHost(&codec, es.Config{Store: g.cfg.Store, SnapshotEvery: g.cfg.SnapshotEvery,
			RecentCommands: g.cfg.RecentCommands, Logger: g.cfg.Logger.With("user", g.name)}, g.name)
		ctx.SetReceiveTimeout(g.cfg.IdleTimeout)
	case *actor.ReceiveTimeout:
		ctx.Poison(ctx.Self())
	case *messages.UserRequest:
		ctx.Respond(g.handle(msg))
	}
}

func (g *grain) handle(req *messages.UserRequest) (reply *messages.UserReply) {
	defer func() {
		if r := recover(); r != nil {
			g.cfg.Logger.Error("user grain panicked; state will reload", "user", g.name, "panic", r, "stack", string(debug.Stack()))
			g.host.Invalidate()
			reply = &messages.UserReply{Failure: messages.Fail(messages.CodeServiceUnavailable, "user grain failed; retry"), ServedBy: g.cfg.MemberID}
		}
	}()
	fail := func(f *messages.Failure) *messages.UserReply {
		return &messages.UserReply{Failure: f, ServedBy: g.cfg.MemberID}
	}
	if g.host == nil {
		return fail(messages.Fail(messages.CodeServiceUnavailable, "user grain has no identity"))
	}
	now := g.cfg.Now()
	if d := req.GetDeadlineUnixMs(); d > 0 && now.UnixMilli() >= d {
		return fail(messages.Fail(messages.CodeTimeout, "request expired before the user grain could handle it"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()
	out, err := g.host.Execute(ctx, req.GetCommandId(), func(s State) ([]*messages.UserEvent, error) {
		return Decide(s, g.name, req, now)
	})
	if err != nil {
		return fail(messages.AsFailure(err, messages.CodeValidationFailed))
	}
	return &messages.UserReply{User: out.State.ToProto(), ServedBy: g.cfg.MemberID}
}
