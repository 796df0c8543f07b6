// Package service owns stateless service instances: plain actors that every
// member runs a few of per service (auth, payments), reached through the
// load-balancing client in cluster/balancer rather than by identity. An
// instance answers every request, panics included.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"granary/messages"
)

// Handler serves one request. Returning an error means the call failed for
// infrastructure reasons; domain outcomes go in the reply.
type Handler func(ctx context.Context, req *messages.ServiceRequest) (*messages.ServiceReply, error)

// InstanceName is the actor name of instance k (1-based) of service on
// every member, so any member can address it as {member address, name}.
func InstanceName(service string, k int) string { return fmt.Sprintf("svc-%s-%d", service, k) }

// Props builds one instance of service on member memberID.
func Props(service, memberID string, k int, h Handler, log *slog.Logger) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &instance{service: service, id: InstanceName(service, k), member: memberID, handle: h,
			log: log.With("service", service, "instance", k)}
	})
}

type instance struct {
	service, id, member string
	handle              Handler
	log                 *slog.Logger
}

func (i *instance) Receive(ctx actor.Context) {
	if req, ok := ctx.Message().(*messages.ServiceRequest); ok {
		ctx.Respond(i.serve(req))
	}
}

func (i *instance) serve(req *messages.ServiceRequest) (reply *messages.ServiceReply) {
	defer func() {
		if r := recover(); r != nil {
			i.log.Error("service instance panicked", "panic", r, "stack", string(debug.Stack()))
			reply = i.fail(messages.Fail(messages.CodeServiceUnavailable, "%s instance failed", i.service))
		}
	}()
	ctx := context.Background()
	if d := req.GetDeadlineUnixMs(); d > 0 {
		if time.Now().UnixMilli() >= d {
			return i.fail(messages.Fail(messages.CodeTimeout, "request expired before %s could serve it", i.service))
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.UnixMilli(d))
		defer cancel()
	}
	out, err := i.handle(ctx, req)
	if err != nil {
		return i.fail(messages.AsFailure(err, messages.CodeServiceUnavailable))
	}
	out.ServedBy, out.Instance = i.member, i.id
	return out
}

func (i *instance) fail(f *messages.Failure) *messages.ServiceReply {
	return &messages.ServiceReply{Failure: f, ServedBy: i.member, Instance: i.id}
}

// Caller reaches grains by identity; a cluster member is one. Services use
// it to record what they did in grains.
type Caller interface {
	Call(ctx context.Context, kind, identity string, msg any) (any, error)
}
