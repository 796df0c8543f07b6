package payment

import (
	"context"
	"runtime/debug"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"granary/actors/counter"
	"granary/actors/es"
	"granary/messages"
)

// Props are the props of the payment kind.
func Props(cfg counter.Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &grain{cfg: cfg} })
}

type grain struct {
	cfg  counter.Config
	id   string
	host *es.Host[State, *messages.PaymentEvent]
}

func (g *grain) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *cluster.ClusterInit:
		g.id = msg.Identity.GetIdentity()
		g.host = es.NewHost(&codec, es.Config{Store: g.cfg.Store, SnapshotEvery: g.cfg.SnapshotEvery,
			RecentCommands: g.cfg.RecentCommands, Logger: g.cfg.Logger.With("payment", g.id)}, g.id)
		ctx.SetReceiveTimeout(g.cfg.IdleTimeout)
	case *actor.ReceiveTimeout:
		ctx.Poison(ctx.Self())
	case *messages.PaymentRequest:
		ctx.Respond(g.handle(msg))
	}
}

func (g *grain) handle(req *messages.PaymentRequest) (reply *messages.PaymentReply) {
	fail := func(f *messages.Failure) *messages.PaymentReply {
		return &messages.PaymentReply{Failure: f, ServedBy: g.cfg.MemberID}
	}
	defer func() {
		if r := recover(); r != nil {
			g.cfg.Logger.Error("payment grain panicked; state will reload", "payment", g.id, "panic", r, "stack", string(debug.Stack()))
			g.host.Invalidate()
			reply = fail(messages.Fail(messages.CodeServiceUnavailable, "payment failed; retry"))
		}
	}()
	if g.host == nil {
		return fail(messages.Fail(messages.CodeServiceUnavailable, "payment grain has no identity"))
	}
	now := g.cfg.Now()
	if d := req.GetDeadlineUnixMs(); d > 0 && now.UnixMilli() >= d {
		return fail(messages.Fail(messages.CodeTimeout, "request expired before the payment could be recorded"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()
	out, err := g.host.Execute(ctx, req.GetCommandId(), func(s State) ([]*messages.PaymentEvent, error) {
		return Decide(s, req, now)
	})
	if err != nil {
		return fail(messages.AsFailure(err, messages.CodeValidationFailed))
	}
	return &messages.PaymentReply{Payment: out.State.ToProto(), ServedBy: g.cfg.MemberID}
}
