package account

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"granary/actors/es"
	"granary/messages"
)

// Kind is the cluster kind name of account grains.
const Kind = messages.AccountKind

// GrainConfig is what an account grain needs from its member.
type GrainConfig = es.GrainConfig

// DefaultGrainConfig returns the defaults; Store, MemberID and Logger are
// the caller's to set.
func DefaultGrainConfig() GrainConfig {
	return GrainConfig{
		SnapshotEvery:  100,
		IdleTimeout:    5 * time.Minute,
		StoreTimeout:   3 * time.Second,
		RecentCommands: 1000,
		Now:            time.Now,
	}
}

// kind is the account grain: decide, append, reply. Its state is only ever
// what the journal holds (see es.Host): events are applied after the
// journal accepted them, and after an append whose outcome is unknown the
// grain reloads.
var kind = &es.Kind[State, *messages.AccountEvent, *messages.AccountRequest, *messages.AccountReply]{
	Name:  "account",
	Codec: &codec,
	Decide: func(s State, _ string, req *messages.AccountRequest, now time.Time) ([]*messages.AccountEvent, error) {
		return Decide(s, req, now)
	},
	Reply: func(_ string, out es.Outcome[State], member string) *messages.AccountReply {
		return &messages.AccountReply{Account: out.State.ToProto(), ServedBy: member, Duplicate: out.Duplicate}
	},
	Fail: func(_ string, f *messages.Failure, member string) *messages.AccountReply {
		return &messages.AccountReply{Failure: f, ServedBy: member}
	},
	// An opened account never stops existing or changes owner.
	Settled: func(s State, req *messages.AccountRequest) bool {
		return req.GetGet().GetAuthorizeOnly() && s.Version > 0
	},
}

// Props builds the actor props of the account kind.
func Props(cfg GrainConfig) *actor.Props { return es.Props(kind, cfg) }

// Producer makes the kind's grains (the cluster shares one Props among them).
func Producer(cfg GrainConfig) actor.Producer { return es.Producer(kind, cfg) }
