package user

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"granary/actors/es"
	"granary/messages"
)

// kind is the user grain: decide, append, reply.
var kind = &es.Kind[State, *messages.UserEvent, *messages.UserRequest, *messages.UserReply]{
	Name:  "user",
	Codec: &codec,
	Decide: func(s State, username string, req *messages.UserRequest, now time.Time) ([]*messages.UserEvent, error) {
		return Decide(s, username, req, now)
	},
	Reply: func(_ string, out es.Outcome[State], member string) *messages.UserReply {
		return &messages.UserReply{User: out.State.ToProto(), ServedBy: member}
	},
	Fail: func(_ string, f *messages.Failure, member string) *messages.UserReply {
		return &messages.UserReply{Failure: f, ServedBy: member}
	},
}

// Props are the props of the user kind.
func Props(cfg es.GrainConfig) *actor.Props { return es.Props(kind, cfg) }

// Producer makes the kind's grains (the cluster shares one Props among them).
func Producer(cfg es.GrainConfig) actor.Producer { return es.Producer(kind, cfg) }
