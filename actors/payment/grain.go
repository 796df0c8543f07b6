package payment

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"granary/actors/es"
	"granary/messages"
)

// kind is the payment grain: decide, append, reply.
var kind = &es.Kind[State, *messages.PaymentEvent, *messages.PaymentRequest, *messages.PaymentReply]{
	Name:  "payment",
	Codec: &codec,
	Decide: func(s State, _ string, req *messages.PaymentRequest, now time.Time) ([]*messages.PaymentEvent, error) {
		return Decide(s, req, now)
	},
	Reply: func(_ string, out es.Outcome[State], member string) *messages.PaymentReply {
		return &messages.PaymentReply{Payment: out.State.ToProto(), ServedBy: member}
	},
	Fail: func(_ string, f *messages.Failure, member string) *messages.PaymentReply {
		return &messages.PaymentReply{Failure: f, ServedBy: member}
	},
}

// Props are the props of the payment kind.
func Props(cfg es.GrainConfig) *actor.Props { return es.Props(kind, cfg) }

// Producer makes the kind's grains (the cluster shares one Props among them).
func Producer(cfg es.GrainConfig) actor.Producer { return es.Producer(kind, cfg) }
