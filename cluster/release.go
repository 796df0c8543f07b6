package cluster

import (
	"github.com/asynkron/protoactor-go/actor"
)

// releaseOnStop works around a retention in the pinned Proto.Actor that
// kept every passivated grain (its state, mailbox and context) reachable
// (issue 9: ~24 KB per distinct id stayed allocated after all grains had
// passivated).
//
// A *actor.PID caches a pointer to its process, and so to the whole actor.
// The placement actor that spawns grains keeps its children in a PIDSet,
// whose Remove shrinks its slice without clearing the vacated slot: the
// backing array keeps a stale *PID of up to as many stopped grains as were
// ever active at once. PID.ref drops the cached pointer once it sees the
// process is dead, so each grain, once stopped (its process is already out
// of the registry), sends itself a message: that resolves its own *PID —
// the very pointer the PIDSet holds — to dead letters and clears the cache.
// What stays in the stale slot is then the PID's two strings.
func releaseOnStop(props *actor.Props) *actor.Props {
	return props.Configure(actor.WithReceiverMiddleware(func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			next(c, env)
			if _, ok := env.Message.(*actor.Stopped); ok {
				c.ActorSystem().Root.Send(c.Self(), processReleased{})
			}
		}
	}))
}

// processReleased is the message a stopped grain sends itself; it lands in
// dead letters, unlogged.
type processReleased struct{}

func (processReleased) IgnoreDeadLetterLogging() {}
