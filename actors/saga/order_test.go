package saga_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/payment"
	"granary/actors/saga"
	"granary/messages"
	"granary/persistence"
)

// journalSaga writes a saga's journal as a member that died mid-way left it.
func journalSaga(t *testing.T, store persistence.Store, kind, id string, evs ...*messages.SagaEvent) {
	t.Helper()
	types := map[string]string{"started": "SagaStarted", "step_started": "SagaStepStarted", "step_completed": "SagaStepCompleted"}
	var batch []persistence.EventData
	for _, ev := range evs {
		data, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		which := ev.ProtoReflect().WhichOneof(ev.ProtoReflect().Descriptor().Oneofs().ByName("event")).Name()
		batch = append(batch, persistence.EventData{Type: types[string(which)], Data: data, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())})
	}
	if _, err := store.Append(context.Background(), saga.Stream(kind)(id), 0, batch); err != nil {
		t.Fatal(err)
	}
}

// Bob's order names Alice's payment id and its charge has no definite
// outcome at the deadline, so the saga undoes it: that refund must leave
// Alice's payment as it was, and Bob's saga must still end compensated.
func TestOrderNamingAnothersPaymentCannotRefundIt(t *testing.T) {
	e := newEnv(t)
	e.setStock("p", 10)
	alice := e.order("o-alice", "p", 1, 700) // payment "pay-o-alice", user alice
	expect(t, alice, "completed", "", "", "reserve_inventory=completed() process_payment=completed() create_order=completed() ")

	now := time.Now()
	at := now.Add(-time.Minute).UnixMilli()
	journalSaga(t, e.c.Store, saga.OrderKind, "o-bob",
		&messages.SagaEvent{OccurredAtUnixMs: at, Event: &messages.SagaEvent_Started{Started: &messages.SagaStarted{
			Kind: saga.OrderKind, DeadlineUnixMs: now.Add(-time.Second).UnixMilli(),
			Order: &messages.OrderInput{OrderId: "o-bob", UserId: "bob", ProductId: "p", Quantity: 1, Amount: 700, PaymentId: "pay-o-alice"}}}},
		&messages.SagaEvent{OccurredAtUnixMs: at, Event: &messages.SagaEvent_StepStarted{StepStarted: &messages.SagaStepStarted{Step: saga.StepReserveInventory}}},
		&messages.SagaEvent{OccurredAtUnixMs: at, Event: &messages.SagaEvent_StepCompleted{StepCompleted: &messages.SagaStepCompleted{Step: saga.StepReserveInventory}}},
		&messages.SagaEvent{OccurredAtUnixMs: at, Event: &messages.SagaEvent_StepStarted{StepStarted: &messages.SagaStepStarted{Step: saga.StepProcessPayment}}},
	)
	bob := call[*messages.SagaReply](e, saga.OrderKind, "o-bob", &messages.SagaRequest{Command: &messages.SagaRequest_Resume{Resume: &messages.ResumeSaga{}}}).GetSaga()
	expect(t, bob, "compensated", saga.StepProcessPayment, saga.ErrDeadline,
		"reserve_inventory=compensated() process_payment=failed(saga deadline exceeded) create_order=pending() ")
	p := e.payment("pay-o-alice").GetPayment()
	if p.GetStatus() != payment.StatusCompleted || p.GetUserId() != "alice" || p.GetAmount() != 700 || p.GetSagaId() != "o-alice" {
		t.Fatalf("alice's payment after bob's order compensated: %v (want completed, alice, 700)", p)
	}
	if got := e.stock("p"); got != 9 {
		t.Fatalf("stock %d, want 9 (alice's unit only)", got)
	}
}
