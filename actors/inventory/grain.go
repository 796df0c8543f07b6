package inventory

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"granary/actors/es"
	"granary/messages"
)

// kind is the inventory grain: decide, append, reply.
var kind = &es.Kind[State, *messages.InventoryEvent, *messages.InventoryRequest, *messages.InventoryReply]{
	Name:  "inventory",
	Codec: &codec,
	Decide: func(s State, _ string, req *messages.InventoryRequest, now time.Time) ([]*messages.InventoryEvent, error) {
		return Decide(s, req, now)
	},
	Reply: func(product string, out es.Outcome[State], member string) *messages.InventoryReply {
		return &messages.InventoryReply{ProductId: product, Available: out.State.Available, ServedBy: member}
	},
	Fail: func(product string, f *messages.Failure, member string) *messages.InventoryReply {
		return &messages.InventoryReply{ProductId: product, Failure: f, ServedBy: member}
	},
}

// Props are the props of the inventory kind.
func Props(cfg es.GrainConfig) *actor.Props { return es.Props(kind, cfg) }

// Producer makes the kind's grains (the cluster shares one Props among them).
func Producer(cfg es.GrainConfig) actor.Producer { return es.Producer(kind, cfg) }
