package payment

import (
	"slices"
	"testing"

	"granary/actors/es/estest"
	"granary/messages"
)

// The journal outlives the code: the hex below is what the hand-written
// codec this package had before es.ProtoCodec wrote (captured by running
// it once), so records stored then must still read back the same and new
// ones must be written byte for byte alike.
var goldenEvents = []estest.Golden[*messages.PaymentEvent]{
	{Type: "PaymentCompleted", Hex: "0a0d6368617267652f736167612d3110fb9ec482ae3352120a057573725f6110b9601a06736167612d31", Event: &messages.PaymentEvent{CommandId: "charge/saga-1", OccurredAtUnixMs: 1764700000123,
		Event: &messages.PaymentEvent_Completed{Completed: &messages.PaymentCompleted{UserId: "usr_a", Amount: 12345, SagaId: "saga-1"}}}},
	{Type: "PaymentRefunded", Hex: "0a0d726566756e642f736167612d3110c8a1c482ae335a00", Event: &messages.PaymentEvent{CommandId: "refund/saga-1", OccurredAtUnixMs: 1764700000456,
		Event: &messages.PaymentEvent_Refunded{Refunded: &messages.PaymentRefunded{}}}},
	// No command id, and an event at the epoch: zero fields stay unwritten.
	{Type: "PaymentRefunded", Hex: "5a00", Event: &messages.PaymentEvent{Event: &messages.PaymentEvent_Refunded{Refunded: &messages.PaymentRefunded{}}}},
}

const goldenSnapshot = "0a250a057061795f3112057573725f6118b9602208726566756e6465642a06736167612d313002120d6368617267652f736167612d31120d726566756e642f736167612d31"

func TestCodecKeepsJournalFormat(t *testing.T) {
	estest.CheckEvents(t, &codec, "payment-pay_1", goldenEvents)

	s := State{ID: "pay_1", UserID: "usr_a", Amount: 12345, Status: StatusRefunded, SagaID: "saga-1", Version: 2}
	recent := []string{"charge/saga-1", "refund/saga-1"}
	got, gotRecent := estest.CheckSnapshot(t, &codec, s, recent, goldenSnapshot)
	if got != s || !slices.Equal(gotRecent, recent) {
		t.Fatalf("snapshot read back as %+v %q, want %+v %q", got, gotRecent, s, recent)
	}
	if codec.Stream("pay_1") != "payment-pay_1" {
		t.Fatalf("stream %q", codec.Stream("pay_1"))
	}
}
