// Package account owns the account aggregate: its state, the rules that turn
// commands into events (decide.go), how events change the state (apply.go),
// and the grain that hosts one account in the cluster (grain.go). The
// aggregate itself does no I/O and never reads the clock.
package account

import (
	"crypto/sha256"
	"encoding/hex"

	"granary/messages"
)

const (
	// MaxAmount bounds every amount a client may send (10^15 minor units).
	MaxAmount = messages.MaxAmount
	// MaxBalance keeps balances far from int64 overflow.
	MaxBalance int64 = 1_000_000_000_000_000_000
)

// State is an account as folded from its events. The zero State is an
// account that was never opened.
type State struct {
	ID        string
	Number    string
	Owner     string
	OwnerName string
	Balance   int64
	Version   uint64
	Closed    bool
	// The times are Unix milliseconds (0: never), as the events carry
	// them: a time.Time is 24 bytes, and 100 000 idle accounts each hold
	// two (issue 10).
	OpenedAtMs     int64
	LastActivityMs int64
}

// Opened reports whether the account exists.
func (s State) Opened() bool { return s.Version > 0 }

// IDFor derives an account's id from its number. Deriving it (instead of
// drawing a random id) makes the number unique for free: a second open of
// the same number lands on the same stream, whose expected-version-0 append
// the journal refuses.
func IDFor(accountNumber string) string {
	sum := sha256.Sum256([]byte(accountNumber))
	return "acc_" + hex.EncodeToString(sum[:12])
}

// StreamFor is the journal stream of account id.
func StreamFor(id string) string { return "account-" + id }

// ToProto renders the state for the wire.
func (s State) ToProto() *messages.AccountState {
	return &messages.AccountState{
		Id:                 s.ID,
		AccountNumber:      s.Number,
		Owner:              s.Owner,
		OwnerName:          s.OwnerName,
		Balance:            s.Balance,
		Version:            s.Version,
		Closed:             s.Closed,
		OpenedAtUnixMs:     s.OpenedAtMs,
		LastActivityUnixMs: s.LastActivityMs,
	}
}

// FromProto is the inverse of ToProto.
func FromProto(p *messages.AccountState) State {
	return State{
		ID:             p.GetId(),
		Number:         p.GetAccountNumber(),
		Owner:          p.GetOwner(),
		OwnerName:      p.GetOwnerName(),
		Balance:        p.GetBalance(),
		Version:        p.GetVersion(),
		Closed:         p.GetClosed(),
		OpenedAtMs:     p.GetOpenedAtUnixMs(),
		LastActivityMs: p.GetLastActivityUnixMs(),
	}
}
