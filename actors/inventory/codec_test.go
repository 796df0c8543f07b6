package inventory

import (
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"granary/actors/es"
	"granary/messages"
	"granary/persistence"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The journal outlives the code: the hex below is what the hand-written
// codec this package had before es.ProtoCodec wrote (captured by running
// it once), so records stored then must still read back the same and new
// ones must be written byte for byte alike.
var goldenEvents = []golden[*messages.InventoryEvent]{
	{"StockSet", "0a057365742d3110fb9ec482ae3352020828", &messages.InventoryEvent{CommandId: "set-1", OccurredAtUnixMs: 1764700000123,
		Event: &messages.InventoryEvent_Set{Set: &messages.StockSet{Available: 40}}}},
	{"StockReserved", "0a0e726573657276652f736167612d3110c8a1c482ae335a0a0a06736167612d311003", &messages.InventoryEvent{CommandId: "reserve/saga-1", OccurredAtUnixMs: 1764700000456,
		Event: &messages.InventoryEvent_Reserved{Reserved: &messages.StockReserved{SagaId: "saga-1", Quantity: 3}}}},
	{"StockReleased", "0a0e72656c656173652f736167612d311095a4c482ae33620a0a06736167612d311003", &messages.InventoryEvent{CommandId: "release/saga-1", OccurredAtUnixMs: 1764700000789,
		Event: &messages.InventoryEvent_Released{Released: &messages.StockReleased{SagaId: "saga-1", Quantity: 3}}}},
	// A commit (quantity 0) and a stock set to nothing: zero fields stay
	// unwritten, the oneof case alone names the event.
	{"StockReleased", "62080a06736167612d32", &messages.InventoryEvent{Event: &messages.InventoryEvent_Released{Released: &messages.StockReleased{SagaId: "saga-2"}}}},
	{"StockSet", "5200", &messages.InventoryEvent{Event: &messages.InventoryEvent_Set{Set: &messages.StockSet{}}}},
}

// One reservation only: proto.Marshal writes map entries in no set order,
// so bytes are comparable only for a map of at most one entry.
const goldenSnapshot = "08251001180222057365742d31220e726573657276652f736167612d312a0a0a06736167612d311003"

// A product that was never set, snapshotted: every field is zero, so
// the snapshot is no bytes at all.
const goldenEmptySnapshot = ""

func TestCodecKeepsJournalFormat(t *testing.T) {
	checkEvents(t, &codec, "inventory-p1", goldenEvents)

	s := State{Known: true, Available: 37, Held: map[string]int64{"saga-1": 3}, Version: 2}
	recent := []string{"set-1", "reserve/saga-1"}
	got, gotRecent := checkSnapshot(t, &codec, s, recent, goldenSnapshot)
	if got.Known != s.Known || got.Available != s.Available || !maps.Equal(got.Held, s.Held) || got.Version != s.Version || !slices.Equal(gotRecent, recent) {
		t.Fatalf("snapshot read back as %+v %q, want %+v %q", got, gotRecent, s, recent)
	}
	got, gotRecent = checkSnapshot(t, &codec, State{}, nil, goldenEmptySnapshot)
	if got.Known || got.Available != 0 || len(got.Held) != 0 || got.Version != 0 || len(gotRecent) != 0 {
		t.Fatalf("empty snapshot read back as %+v %q", got, gotRecent)
	}
	if codec.Stream("p1") != "inventory-p1" {
		t.Fatalf("stream %q", codec.Stream("p1"))
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
