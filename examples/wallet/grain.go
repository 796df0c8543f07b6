package wallet

//go:generate protoc -I . -I ../../messages --go_out=. --go_opt=paths=source_relative wallet.proto

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"granary/actors/es"
	"granary/cluster"
	"granary/messages"
)

// codec tells es.Host how a wallet is stored.
var codec = es.Codec[State, Event]{
	Stream:         Stream,
	Apply:          Apply,
	Version:        func(s State) uint64 { return s.Version },
	Encode:         encode,
	Decode:         decode,
	CommandID:      func(ev Event) string { return ev.CommandID },
	EncodeSnapshot: encodeSnapshot,
	DecodeSnapshot: decodeSnapshot,
}

// kind is the wallet grain: load, decide, append, apply, reply. es.Props
// does all of it, drops re-sent command ids and batches a busy grain's
// appends; a grain that needs more (timers, calls to other grains) writes
// its own actor around an es.Host.
var kind = &es.Kind[State, Event, *WalletRequest, *WalletReply]{
	Name:  Kind,
	Codec: &codec,
	Decide: func(s State, _ string, req *WalletRequest, now time.Time) ([]Event, error) {
		return Decide(s, req, now)
	},
	Reply: func(id string, out es.Outcome[State], member string) *WalletReply {
		return &WalletReply{WalletId: id, Balance: out.State.Balance, Version: out.State.Version, ServedBy: member,
			Duplicate: out.Duplicate}
	},
	Fail: func(id string, f *messages.Failure, member string) *WalletReply {
		return &WalletReply{WalletId: id, Failure: f, ServedBy: member}
	},
}

// Props are the props of the wallet kind.
func Props(cfg es.GrainConfig) *actor.Props { return es.Props(kind, cfg) }

// ClusterKind registers wallets with a member: put it in
// cluster.GrainsConfig.Extra (or testkit.WithKinds). Wallets share the
// member's store and grain settings.
func ClusterKind() cluster.ExtraKind {
	return cluster.ExtraKind{Name: Kind, Props: func(_ *cluster.Member, grain es.GrainConfig) *actor.Props {
		return Props(grain)
	}}
}
