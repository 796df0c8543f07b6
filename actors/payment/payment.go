// Package payment owns payment records: an event-sourced grain per payment
// id that remembers a charge and its refund, and the payments service that
// checks the amount limit and records charges and refunds in those grains.
// A refund of a charge that never arrived leaves a refunded record behind,
// so a late duplicate of that charge is refused instead of taking money.
package payment

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/es"
	"granary/messages"
	"granary/persistence"
)

// Kind is the cluster kind of payment grains.
const Kind = messages.PaymentKind

// Statuses of a payment record.
const (
	StatusCompleted = "completed"
	StatusRefunded  = "refunded"
)

// NewID mints the payment id of an order whose caller chose none: 128 bits
// from crypto/rand, so nobody can take it before the order charges it (an
// id derived from the order id could be charged first by anyone, failing
// that order with "payment id already used").
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return "pay_" + hex.EncodeToString(b)
}

// State is a payment record.
type State struct {
	ID      string
	UserID  string
	Amount  int64
	Status  string // "" when nothing happened yet
	SagaID  string
	Version uint64
}

// ToProto renders the state for the wire.
func (s State) ToProto() *messages.PaymentState {
	return &messages.PaymentState{PaymentId: s.ID, UserId: s.UserID, Amount: s.Amount, Status: s.Status, SagaId: s.SagaID, Version: s.Version}
}

// Decide turns a request into events.
func Decide(s State, req *messages.PaymentRequest, now time.Time) ([]*messages.PaymentEvent, error) {
	ev := &messages.PaymentEvent{CommandId: req.GetCommandId(), OccurredAtUnixMs: now.UnixMilli()}
	switch cmd := req.GetCommand().(type) {
	case *messages.PaymentRequest_Get:
		if s.Status == "" || s.Amount == 0 {
			return nil, messages.Fail(messages.CodeNotFound, "payment not found")
		}
		return nil, nil
	case *messages.PaymentRequest_Charge:
		c := cmd.Charge
		switch {
		case c.GetAmount() <= 0:
			return nil, messages.Fail(messages.CodeValidationFailed, "amount: must be positive")
		case s.Status == StatusCompleted && s.SagaID == c.GetSagaId() && s.UserID == c.GetUserId():
			return nil, nil // this saga's charge, already taken
		case s.Status == StatusCompleted:
			return nil, messages.Fail(messages.CodeAlreadyExists, "payment id already used")
		case s.Status == StatusRefunded:
			return nil, messages.Fail(messages.CodeAlreadyExists, "payment was refunded")
		}
		ev.Event = &messages.PaymentEvent_Completed{Completed: &messages.PaymentCompleted{UserId: c.GetUserId(), Amount: c.GetAmount(), SagaId: c.GetSagaId()}}
	case *messages.PaymentRequest_Refund:
		switch {
		case s.Status == StatusRefunded:
			return nil, nil
		case s.Status == StatusCompleted && s.SagaID != cmd.Refund.GetSagaId():
			// Another order's charge: this saga's own charge never landed
			// here (it was refused as "already used", or it is late and
			// will be), so there is nothing of its own to give back. Refusing
			// would leave its compensation stuck; refunding would let any
			// order naming someone's payment id undo that payment.
			return nil, nil
		}
		ev.Event = &messages.PaymentEvent_Refunded{Refunded: &messages.PaymentRefunded{}}
	default:
		return nil, messages.Fail(messages.CodeValidationFailed, "unknown payment command %T", cmd)
	}
	return []*messages.PaymentEvent{ev}, nil
}

// Apply folds one stored event into the state.
func Apply(s State, id string, ev *messages.PaymentEvent) State {
	s.ID = id
	switch e := ev.GetEvent().(type) {
	case *messages.PaymentEvent_Completed:
		s.UserID, s.Amount, s.SagaID, s.Status = e.Completed.GetUserId(), e.Completed.GetAmount(), e.Completed.GetSagaId(), StatusCompleted
	case *messages.PaymentEvent_Refunded:
		s.Status = StatusRefunded
	}
	s.Version++
	return s
}

func typeOf(ev *messages.PaymentEvent) string {
	switch ev.GetEvent().(type) {
	case *messages.PaymentEvent_Completed:
		return "PaymentCompleted"
	case *messages.PaymentEvent_Refunded:
		return "PaymentRefunded"
	}
	return ""
}

var codec = es.Codec[State, *messages.PaymentEvent]{
	Stream:  func(id string) string { return "payment-" + id },
	Apply:   Apply,
	Version: func(s State) uint64 { return s.Version },
	Encode: func(ev *messages.PaymentEvent) (persistence.EventData, error) {
		data, err := proto.Marshal(ev)
		return persistence.EventData{Type: typeOf(ev), Data: data, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())}, err
	},
	Decode: func(e persistence.Event) (*messages.PaymentEvent, error) {
		var ev messages.PaymentEvent
		if err := proto.Unmarshal(e.Data, &ev); err != nil || typeOf(&ev) != e.Type {
			return nil, fmt.Errorf("decode %s@%d (%s): %v: %w", e.Stream, e.Version, e.Type, err, persistence.ErrCorrupt)
		}
		return &ev, nil
	},
	CommandID: func(ev *messages.PaymentEvent) string { return ev.GetCommandId() },
	EncodeSnapshot: func(s State, recent []string) ([]byte, error) {
		return proto.Marshal(&messages.PaymentSnapshot{State: s.ToProto(), RecentCommandIds: recent})
	},
	DecodeSnapshot: func(data []byte) (State, []string, error) {
		var snap messages.PaymentSnapshot
		err := proto.Unmarshal(data, &snap)
		st := snap.GetState()
		return State{ID: st.GetPaymentId(), UserID: st.GetUserId(), Amount: st.GetAmount(), Status: st.GetStatus(),
			SagaID: st.GetSagaId(), Version: st.GetVersion()}, snap.GetRecentCommandIds(), err
	},
}
