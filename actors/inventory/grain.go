package inventory

import (
	"context"
	"runtime/debug"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"granary/actors/counter"
	"granary/actors/es"
	"granary/messages"
)

// Props are the props of the inventory kind.
func Props(cfg counter.Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &grain{cfg: cfg} })
}

type grain struct {
	cfg     counter.Config
	product string
	host    *es.Host[State, *messages.InventoryEvent]
}

func (g *grain) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *cluster.ClusterInit:
		g.product = msg.Identity.GetIdentity()
		g.host = es.NewHost(&codec, es.Config{Store: g.cfg.Store, SnapshotEvery: g.cfg.SnapshotEvery,
			RecentCommands: g.cfg.RecentCommands, Logger: g.cfg.Logger.With("product", g.product)}, g.product)
		ctx.SetReceiveTimeout(g.cfg.IdleTimeout)
	case *actor.ReceiveTimeout:
		ctx.Poison(ctx.Self())
	case *messages.InventoryRequest:
		ctx.Respond(g.handle(msg))
	}
}

func (g *grain) handle(req *messages.InventoryRequest) (reply *messages.InventoryReply) {
	fail := func(f *messages.Failure) *messages.InventoryReply {
		return &messages.InventoryReply{ProductId: g.product, Failure: f, ServedBy: g.cfg.MemberID}
	}
	defer func() {
		if r := recover(); r != nil {
			g.cfg.Logger.Error("inventory grain panicked; state will reload", "product", g.product, "panic", r, "stack", string(debug.Stack()))
			g.host.Invalidate()
			reply = fail(messages.Fail(messages.CodeServiceUnavailable, "inventory failed; retry"))
		}
	}()
	if g.host == nil {
		return fail(messages.Fail(messages.CodeServiceUnavailable, "inventory grain has no identity"))
	}
	now := g.cfg.Now()
	// A request past its deadline is refused unread: a saga compensates
	// only after its last attempt's deadline, so a late duplicate of a
	// reservation can never land after the release.
	if d := req.GetDeadlineUnixMs(); d > 0 && now.UnixMilli() >= d {
		return fail(messages.Fail(messages.CodeTimeout, "request expired before the inventory could handle it"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()
	out, err := g.host.Execute(ctx, req.GetCommandId(), func(s State) ([]*messages.InventoryEvent, error) {
		return Decide(s, req, now)
	})
	if err != nil {
		return fail(messages.AsFailure(err, messages.CodeValidationFailed))
	}
	return &messages.InventoryReply{ProductId: g.product, Available: out.State.Available, ServedBy: g.cfg.MemberID}
}
