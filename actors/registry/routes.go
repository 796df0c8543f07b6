package registry

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"granary/actors/es"
	"granary/messages"
)

func sortRoutes(rs []*messages.RouteSpec) {
	slices.SortFunc(rs, func(a, b *messages.RouteSpec) int { return strings.Compare(a.GetName(), b.GetName()) })
}

// DecideRoutes turns a route request into events. It is pure.
func DecideRoutes(t Routes, req *messages.RouteRequest, now int64) ([]*messages.RouteEvent, error) {
	ev := func(e *messages.RouteEvent) []*messages.RouteEvent {
		e.CommandId, e.OccurredAtUnixMs = req.GetCommandId(), now
		return []*messages.RouteEvent{e}
	}
	switch cmd := req.GetCommand().(type) {
	case *messages.RouteRequest_Get:
		return nil, nil
	case *messages.RouteRequest_Put:
		r, err := NormalizeRoute(cmd.Put.GetRoute())
		if err != nil {
			return nil, err
		}
		i := t.find(r.GetName())
		if i >= 0 && proto.Equal(t.Routes[i], r) {
			return nil, nil
		}
		for _, o := range t.Routes {
			if o.GetName() != r.GetName() && o.GetPathPrefix() == r.GetPathPrefix() {
				return nil, &Error{messages.CodeAlreadyExists, fmt.Sprintf("path_prefix: route %s has %s already", o.GetName(), r.GetPathPrefix())}
			}
		}
		if i < 0 && len(t.Routes) >= MaxRoutes {
			return nil, invalid("routes: at most %d", MaxRoutes)
		}
		return ev(&messages.RouteEvent{Event: &messages.RouteEvent_Put{Put: &messages.RoutePut{Route: r}}}), nil
	case *messages.RouteRequest_Delete:
		if t.find(cmd.Delete.GetName()) < 0 {
			return nil, &Error{messages.CodeNotFound, fmt.Sprintf("no route %q", cmd.Delete.GetName())}
		}
		return ev(&messages.RouteEvent{Event: &messages.RouteEvent_Deleted{Deleted: &messages.RouteDeleted{Name: cmd.Delete.GetName()}}}), nil
	}
	return nil, invalid("unknown route command %T", req.GetCommand())
}

type routeKind struct {
	cfg  Config
	host es.Config
}

// RouteProps are the props of the route_table kind.
func RouteProps(cfg Config) *actor.Props { return actor.PropsFromProducer(RouteProducer(cfg)) }

// RouteProducer makes the route_table kind's grains.
func RouteProducer(cfg Config) actor.Producer {
	k := &routeKind{cfg: cfg, host: cfg.Grain.HostConfig("routes")}
	return func() actor.Actor { return &routeGrain{kind: k} }
}

type routeGrain struct {
	kind      *routeKind
	host      *es.Host[Routes, *messages.RouteEvent]
	published uint64
}

func (g *routeGrain) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *cluster.ClusterInit:
		g.host = es.NewSharedHost(&routeCodec, &g.kind.host, msg.Identity.GetIdentity())
		ctx.SetReceiveTimeout(g.kind.cfg.Grain.IdleTimeout)
	case *actor.ReceiveTimeout:
		ctx.Poison(ctx.Self())
	case *messages.RouteRequest:
		ctx.Respond(g.serve(msg))
	}
}

func (g *routeGrain) fail(f *messages.Failure) *messages.RouteReply {
	return &messages.RouteReply{Failure: f, ServedBy: g.kind.cfg.Grain.MemberID}
}

func (g *routeGrain) serve(req *messages.RouteRequest) (reply *messages.RouteReply) {
	defer func() {
		if r := recover(); r != nil {
			g.host.Logger().Error("route table panicked; state will reload", "panic", r, "stack", string(debug.Stack()))
			g.host.Invalidate()
			reply = g.fail(messages.Fail(messages.CodeServiceUnavailable, "route table failed; retry"))
		}
	}()
	if g.host == nil {
		return g.fail(messages.Fail(messages.CodeServiceUnavailable, "route table has no identity"))
	}
	now := g.kind.cfg.Grain.Now()
	if d := req.GetDeadlineUnixMs(); d > 0 && now.UnixMilli() >= d {
		return g.fail(messages.Fail(messages.CodeTimeout, "request expired before the route table could handle it"))
	}
	c, cancel := context.WithTimeout(context.Background(), g.kind.cfg.Grain.StoreTimeout)
	defer cancel()
	var before Routes
	if g.host.Loaded() {
		before = g.host.State()
	}
	out, err := g.host.ExecuteBefore(c, req.GetCommandId(), deadlineOf(req.GetDeadlineUnixMs()), func(t Routes) ([]*messages.RouteEvent, error) {
		before = t
		return DecideRoutes(t, req, now.UnixMilli())
	})
	if err != nil {
		return g.fail(messages.AsFailure(err, messages.CodeValidationFailed))
	}
	// Every answer follows a publish of what it answers from, so a
	// publish that failed once is repaired by the next request.
	if t := out.State; t.Version > 0 && t.Version != g.published {
		if _, err := g.kind.cfg.View.PutRoutes(c, t.Version, t.Routes); err != nil {
			g.host.Logger().Warn("publishing the route table failed", "err", err)
			return g.fail(messages.Fail(messages.CodeServiceUnavailable, "stored, but the route table could not be published; retry"))
		}
		g.published = t.Version
	}
	created := false
	if p := req.GetPut(); p != nil {
		created = before.find(p.GetRoute().GetName()) < 0
	}
	return &messages.RouteReply{Routes: out.State.Routes, Version: out.State.Version, Created: created, ServedBy: g.kind.cfg.Grain.MemberID}
}

func deadlineOf(ms int64) time.Time {
	if ms > 0 {
		return time.UnixMilli(ms)
	}
	return time.Time{}
}
