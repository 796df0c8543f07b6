package payment

import (
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/es"
	"granary/messages"
	"granary/persistence"
)

// The journal outlives the code: the hex below is what the hand-written
// codec this package had before es.ProtoCodec wrote (captured by running
// it once), so records stored then must still read back the same and new
// ones must be written byte for byte alike.
var goldenEvents = []golden[*messages.PaymentEvent]{
	{"PaymentCompleted", "0a0d6368617267652f736167612d3110fb9ec482ae3352120a057573725f6110b9601a06736167612d31", &messages.PaymentEvent{CommandId: "charge/saga-1", OccurredAtUnixMs: 1764700000123,
		Event: &messages.PaymentEvent_Completed{Completed: &messages.PaymentCompleted{UserId: "usr_a", Amount: 12345, SagaId: "saga-1"}}}},
	{"PaymentRefunded", "0a0d726566756e642f736167612d3110c8a1c482ae335a00", &messages.PaymentEvent{CommandId: "refund/saga-1", OccurredAtUnixMs: 1764700000456,
		Event: &messages.PaymentEvent_Refunded{Refunded: &messages.PaymentRefunded{}}}},
	// No command id, and an event at the epoch: zero fields stay unwritten.
	{"PaymentRefunded", "5a00", &messages.PaymentEvent{Event: &messages.PaymentEvent_Refunded{Refunded: &messages.PaymentRefunded{}}}},
}

const goldenSnapshot = "0a250a057061795f3112057573725f6118b9602208726566756e6465642a06736167612d313002120d6368617267652f736167612d31120d726566756e642f736167612d31"

func TestCodecKeepsJournalFormat(t *testing.T) {
	checkEvents(t, &codec, "payment-pay_1", goldenEvents)

	s := State{ID: "pay_1", UserID: "usr_a", Amount: 12345, Status: StatusRefunded, SagaID: "saga-1", Version: 2}
	recent := []string{"charge/saga-1", "refund/saga-1"}
	got, gotRecent := checkSnapshot(t, &codec, s, recent, goldenSnapshot)
	if got != s || !slices.Equal(gotRecent, recent) {
		t.Fatalf("snapshot read back as %+v %q, want %+v %q", got, gotRecent, s, recent)
	}
	if codec.Stream("pay_1") != "payment-pay_1" {
		t.Fatalf("stream %q", codec.Stream("pay_1"))
	}
}

type golden[E es.ProtoEvent] struct {
	typ, hex string
	ev       E
}

// checkEvents encodes each event and compares the result with its golden
// form, then decodes the golden form and compares it with the event; data
// under another type's name, an unknown name or bytes that are no event
// must read as corrupt.
func checkEvents[S any, E es.ProtoEvent](t *testing.T, c *es.Codec[S, E], stream string, table []golden[E]) {
	t.Helper()
	types := map[string]bool{}
	for _, g := range table {
		types[g.typ] = true
	}
	for i, g := range table {
		data, err := c.Encode(g.ev)
		if err != nil {
			t.Fatalf("%d: encode %s: %v", i, g.typ, err)
		}
		if got := hex.EncodeToString(data.Data); data.Type != g.typ || got != g.hex {
			t.Errorf("%d: encoded as %s %s, want %s %s", i, data.Type, got, g.typ, g.hex)
		}
		if want := time.UnixMilli(g.ev.GetOccurredAtUnixMs()); !data.OccurredAt.Equal(want) {
			t.Errorf("%d: occurred at %v, want %v", i, data.OccurredAt, want)
		}
		stored, err := hex.DecodeString(g.hex)
		if err != nil {
			t.Fatalf("%d: golden hex: %v", i, err)
		}
		ev, err := c.Decode(persistence.Event{Stream: stream, Version: uint64(i + 1), Type: g.typ, Data: stored})
		if err != nil {
			t.Errorf("%d: decode %s: %v", i, g.typ, err)
			continue
		}
		if !proto.Equal(ev, g.ev) || c.CommandID(ev) != g.ev.GetCommandId() {
			t.Errorf("%d: decoded %v (command %q), want %v", i, ev, c.CommandID(ev), g.ev)
		}
		for other := range types {
			if other == g.typ {
				continue
			}
			if _, err := c.Decode(persistence.Event{Stream: stream, Version: 1, Type: other, Data: stored}); !errors.Is(err, persistence.ErrCorrupt) {
				t.Errorf("%d: %s data read as %s: %v, want ErrCorrupt", i, g.typ, other, err)
			}
		}
		if _, err := c.Decode(persistence.Event{Stream: stream, Version: 1, Type: g.typ + "X", Data: stored}); !errors.Is(err, persistence.ErrCorrupt) {
			t.Errorf("%d: unknown type read as %v, want ErrCorrupt", i, err)
		}
	}
	for typ := range types {
		for _, bad := range [][]byte{nil, {0xff, 0xff, 0xff}} {
			if _, err := c.Decode(persistence.Event{Stream: stream, Version: 1, Type: typ, Data: bad}); !errors.Is(err, persistence.ErrCorrupt) {
				t.Errorf("%x read as %s: %v, want ErrCorrupt", bad, typ, err)
			}
		}
	}
}

// checkSnapshot compares the snapshot of s with its golden form and
// returns what the golden form decodes to, for the caller to compare.
func checkSnapshot[S, E any](t *testing.T, c *es.Codec[S, E], s S, recent []string, want string) (S, []string) {
	t.Helper()
	data, err := c.EncodeSnapshot(s, recent)
	if err != nil {
		t.Fatalf("encode snapshot: %v", err)
	}
	if got := hex.EncodeToString(data); got != want {
		t.Errorf("snapshot encoded as %s, want %s", got, want)
	}
	stored, err := hex.DecodeString(want)
	if err != nil {
		t.Fatalf("golden hex: %v", err)
	}
	got, gotRecent, err := c.DecodeSnapshot(stored)
	if err != nil {
		t.Fatalf("decode snapshot: %v", err)
	}
	if c.Version(got) != c.Version(s) {
		t.Errorf("snapshot version %d, want %d", c.Version(got), c.Version(s))
	}
	if _, _, err := c.DecodeSnapshot([]byte{0xff, 0xff}); err == nil {
		t.Error("a garbage snapshot must not decode")
	}
	return got, gotRecent
}
