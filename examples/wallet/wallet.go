// Package wallet is a worked example of a grain kind of your own, hosted by
// Granary's members next to its built-in kinds: an event-sourced wallet
// holding a balance in minor units, credited and debited, never below zero.
//
// Copy the package, rename it, and replace Decide and Apply with your own
// rules. What each file shows:
//
//   - wallet.proto / wallet.pb.go: the requests and replies. They must be
//     protobuf, because a call reaches whichever member hosts the grain.
//   - wallet.go (this file): the pure core (Decide, Apply) and how its
//     events are stored (JSON here; the journal stores any bytes).
//   - grain.go: the grain kind, built on es.Kind, and the cluster.ExtraKind
//     that registers it with a member.
//   - example_test.go: the kind in a testkit cluster, using only exported
//     APIs.
package wallet

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"granary/messages"
	"granary/persistence"
)

// Kind is the cluster kind of wallet grains; the identity is the wallet id.
const Kind = "wallet"

// MaxAmount bounds one credit or debit.
const MaxAmount int64 = 1_000_000_000_000

// State is a wallet folded from its events.
type State struct {
	Balance int64  `json:"balance"`
	Version uint64 `json:"version"`
}

// InsufficientFundsError refuses a debit larger than the balance.
type InsufficientFundsError struct{ Balance, Requested int64 }

func (e *InsufficientFundsError) Error() string {
	return fmt.Sprintf("insufficient funds: balance %d, requested %d", e.Balance, e.Requested)
}

// Code is the contract error code a caller sees in the reply's failure.
func (e *InsufficientFundsError) Code() string { return messages.CodeInsufficientFunds }

// Event type names as stored in the journal: never rename one once written.
const (
	TypeCredited = "WalletCredited"
	TypeDebited  = "WalletDebited"
)

// Event is one stored change. Type says which; Amount is in minor units.
type Event struct {
	Type       string `json:"-"` // kept as the journal's event type
	CommandID  string `json:"command_id"`
	Amount     int64  `json:"amount"`
	OccurredAt int64  `json:"occurred_at_unix_ms"`
}

// Decide turns a request into events. It is pure: no I/O, and the clock is
// the caller's.
func Decide(s State, req *WalletRequest, now time.Time) ([]Event, error) {
	ev := Event{CommandID: req.GetCommandId(), OccurredAt: now.UnixMilli()}
	switch cmd := req.GetCommand().(type) {
	case *WalletRequest_Get:
		return nil, nil
	case *WalletRequest_Credit:
		a := cmd.Credit.GetAmount()
		if err := checkAmount(a); err != nil {
			return nil, err
		}
		if a > math.MaxInt64-s.Balance {
			return nil, messages.Fail(messages.CodeValidationFailed, "amount: balance would overflow")
		}
		ev.Type, ev.Amount = TypeCredited, a
	case *WalletRequest_Debit:
		a := cmd.Debit.GetAmount()
		if err := checkAmount(a); err != nil {
			return nil, err
		}
		if a > s.Balance {
			return nil, &InsufficientFundsError{Balance: s.Balance, Requested: a}
		}
		ev.Type, ev.Amount = TypeDebited, a
	default:
		return nil, messages.Fail(messages.CodeValidationFailed, "command: unknown wallet command %T", cmd)
	}
	return []Event{ev}, nil
}

func checkAmount(a int64) error {
	if a < 1 || a > MaxAmount {
		return messages.Fail(messages.CodeValidationFailed, "amount: must be between 1 and %d", MaxAmount)
	}
	return nil
}

// Apply folds one stored event into the state.
func Apply(s State, _ string, ev Event) State {
	switch ev.Type {
	case TypeCredited:
		s.Balance += ev.Amount
	case TypeDebited:
		s.Balance -= ev.Amount
	}
	s.Version++
	return s
}

// Stream names a wallet's journal stream. The prefix is this kind's own:
// streams of different kinds must never share a name.
func Stream(id string) string { return "wallet-" + id }

func encode(ev Event) (persistence.EventData, error) {
	data, err := json.Marshal(ev)
	if err != nil {
		return persistence.EventData{}, fmt.Errorf("encode %s: %w", ev.Type, err)
	}
	return persistence.EventData{Type: ev.Type, Data: data, OccurredAt: time.UnixMilli(ev.OccurredAt)}, nil
}

// decode reports anything it cannot read as persistence.ErrCorrupt, as the
// Host expects, so a bad event is never folded in.
func decode(e persistence.Event) (Event, error) {
	var ev Event
	if e.Type != TypeCredited && e.Type != TypeDebited {
		return ev, fmt.Errorf("decode %s@%d: unknown type %q: %w", e.Stream, e.Version, e.Type, persistence.ErrCorrupt)
	}
	if err := json.Unmarshal(e.Data, &ev); err != nil {
		return ev, fmt.Errorf("decode %s@%d (%s): %v: %w", e.Stream, e.Version, e.Type, err, persistence.ErrCorrupt)
	}
	ev.Type = e.Type
	return ev, nil
}

// snapshot is a stored state with the command ids the grain remembers, so
// a re-sent command is still dropped after a reload.
type snapshot struct {
	State  State    `json:"state"`
	Recent []string `json:"recent_command_ids"`
}

func encodeSnapshot(s State, recent []string) ([]byte, error) {
	return json.Marshal(snapshot{State: s, Recent: recent})
}

func decodeSnapshot(data []byte) (State, []string, error) {
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return State{}, nil, fmt.Errorf("decode wallet snapshot: %w", err)
	}
	return snap.State, snap.Recent, nil
}
