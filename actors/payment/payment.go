// Package payment owns payment records: an event-sourced grain per payment
// id that remembers a charge and its refund, and the payments service that
// checks the amount limit and records charges and refunds in those grains.
// A refund of a charge that never arrived leaves a refunded record behind,
// so a late duplicate of that charge is refused instead of taking money.
package payment

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"granary/actors/es"
	"granary/messages"
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

// Event type names are stored in the journal: never rename them.
var codec = *es.ProtoCodec(es.Proto[State, *messages.PaymentEvent, *messages.PaymentSnapshot]{
	Stream:  func(id string) string { return "payment-" + id },
	Apply:   Apply,
	Version: func(s State) uint64 { return s.Version },
	Types: []es.EventType[*messages.PaymentEvent]{
		{Name: "PaymentCompleted", Is: func(ev *messages.PaymentEvent) bool { return ev.GetCompleted() != nil }},
		{Name: "PaymentRefunded", Is: func(ev *messages.PaymentEvent) bool { return ev.GetRefunded() != nil }},
	},
	Snapshot: func(s State, recent []string) *messages.PaymentSnapshot {
		return &messages.PaymentSnapshot{State: s.ToProto(), RecentCommandIds: recent}
	},
	Restore: func(snap *messages.PaymentSnapshot) (State, []string) {
		st := snap.GetState()
		return State{ID: st.GetPaymentId(), UserID: st.GetUserId(), Amount: st.GetAmount(), Status: st.GetStatus(),
			SagaID: st.GetSagaId(), Version: st.GetVersion()}, snap.GetRecentCommandIds()
	},
})
