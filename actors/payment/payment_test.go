package payment_test

import (
	"regexp"
	"testing"
	"time"

	"granary/actors/payment"
	"granary/internal/leakcheck"
	"granary/messages"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// charged is the payment after saga's charge for user.
func charged(t *testing.T, id, user, saga string, amount int64) payment.State {
	t.Helper()
	evs, err := payment.Decide(payment.State{}, &messages.PaymentRequest{CommandId: "charge/" + saga, Command: &messages.PaymentRequest_Charge{
		Charge: &messages.ChargePayment{PaymentId: id, UserId: user, Amount: amount, SagaId: saga}}}, time.Now())
	if err != nil || len(evs) != 1 {
		t.Fatalf("charge: %v %v", evs, err)
	}
	return payment.Apply(payment.State{}, id, evs[0])
}

func refund(s payment.State, saga string) ([]*messages.PaymentEvent, error) {
	return payment.Decide(s, &messages.PaymentRequest{CommandId: "refund/" + saga, Command: &messages.PaymentRequest_Refund{
		Refund: &messages.RefundPayment{PaymentId: s.ID, SagaId: saga}}}, time.Now())
}

// An order that names someone else's payment id and compensates (its own
// charge was refused, or its outcome was unknown at the deadline) must not
// refund that payment: only the saga that charged it may.
func TestRefundByAnotherSagaLeavesThePaymentAlone(t *testing.T) {
	s := charged(t, "pay-mine", "alice", "o-alice", 700)
	evs, err := refund(s, "o-bob")
	if err != nil || len(evs) != 0 {
		t.Fatalf("bob's saga refunding alice's payment: events %v, err %v; want nothing and no error (its compensation must finish)", evs, err)
	}
	evs, err = refund(s, "o-alice")
	if err != nil || len(evs) != 1 || evs[0].GetRefunded() == nil {
		t.Fatalf("alice's own refund: %v %v", evs, err)
	}
	if got := payment.Apply(s, s.ID, evs[0]); got.Status != payment.StatusRefunded || got.UserID != "alice" {
		t.Fatalf("after alice's refund: %+v", got)
	}
}

// A refund that arrives before its charge leaves a tombstone, and a late
// charge of any saga is refused by it.
func TestRefundBeforeChargeRefusesTheLateCharge(t *testing.T) {
	evs, err := refund(payment.State{ID: "pay-x"}, "o-1")
	if err != nil || len(evs) != 1 {
		t.Fatalf("tombstone: %v %v", evs, err)
	}
	s := payment.Apply(payment.State{}, "pay-x", evs[0])
	for _, saga := range []string{"o-1", "o-2"} {
		_, err := payment.Decide(s, &messages.PaymentRequest{Command: &messages.PaymentRequest_Charge{
			Charge: &messages.ChargePayment{PaymentId: "pay-x", UserId: "u", Amount: 5, SagaId: saga}}}, time.Now())
		if f, ok := err.(*messages.Failure); !ok || f.GetCode() != messages.CodeAlreadyExists {
			t.Fatalf("late charge of %s after the refund: %v", saga, err)
		}
	}
}

// A charge is a no-op only for the saga and user that made it; any other
// order naming the id is refused and the record is unchanged.
func TestChargeOfATakenIDIsRefused(t *testing.T) {
	s := charged(t, "pay-mine", "alice", "o-alice", 700)
	for _, c := range []*messages.ChargePayment{
		{PaymentId: "pay-mine", UserId: "bob", Amount: 700, SagaId: "o-bob"},
		{PaymentId: "pay-mine", UserId: "bob", Amount: 700, SagaId: "o-alice"},
	} {
		evs, err := payment.Decide(s, &messages.PaymentRequest{Command: &messages.PaymentRequest_Charge{Charge: c}}, time.Now())
		if f, ok := err.(*messages.Failure); !ok || f.GetCode() != messages.CodeAlreadyExists || len(evs) != 0 {
			t.Fatalf("charge %v of alice's payment: %v %v", c, evs, err)
		}
	}
	evs, err := payment.Decide(s, &messages.PaymentRequest{Command: &messages.PaymentRequest_Charge{
		Charge: &messages.ChargePayment{PaymentId: "pay-mine", UserId: "alice", Amount: 700, SagaId: "o-alice"}}}, time.Now())
	if err != nil || len(evs) != 0 {
		t.Fatalf("alice's re-sent charge: %v %v", evs, err)
	}
}

// Ids minted for orders that chose none cannot be derived or guessed.
func TestNewIDIsUnguessable(t *testing.T) {
	shape := regexp.MustCompile(`^pay_[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := payment.NewID()
		if !shape.MatchString(id) || seen[id] {
			t.Fatalf("id %q: not pay_ + 128 random bits, or repeated", id)
		}
		seen[id] = true
	}
}
