package inventory

import (
	"maps"
	"slices"
	"testing"

	"granary/actors/es/estest"
	"granary/internal/leakcheck"
	"granary/messages"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// The journal outlives the code: the hex below is what the hand-written
// codec this package had before es.ProtoCodec wrote (captured by running
// it once), so records stored then must still read back the same and new
// ones must be written byte for byte alike.
var goldenEvents = []estest.Golden[*messages.InventoryEvent]{
	{Type: "StockSet", Hex: "0a057365742d3110fb9ec482ae3352020828", Event: &messages.InventoryEvent{CommandId: "set-1", OccurredAtUnixMs: 1764700000123,
		Event: &messages.InventoryEvent_Set{Set: &messages.StockSet{Available: 40}}}},
	{Type: "StockReserved", Hex: "0a0e726573657276652f736167612d3110c8a1c482ae335a0a0a06736167612d311003", Event: &messages.InventoryEvent{CommandId: "reserve/saga-1", OccurredAtUnixMs: 1764700000456,
		Event: &messages.InventoryEvent_Reserved{Reserved: &messages.StockReserved{SagaId: "saga-1", Quantity: 3}}}},
	{Type: "StockReleased", Hex: "0a0e72656c656173652f736167612d311095a4c482ae33620a0a06736167612d311003", Event: &messages.InventoryEvent{CommandId: "release/saga-1", OccurredAtUnixMs: 1764700000789,
		Event: &messages.InventoryEvent_Released{Released: &messages.StockReleased{SagaId: "saga-1", Quantity: 3}}}},
	// A commit (quantity 0) and a stock set to nothing: zero fields stay
	// unwritten, the oneof case alone names the event.
	{Type: "StockReleased", Hex: "62080a06736167612d32", Event: &messages.InventoryEvent{Event: &messages.InventoryEvent_Released{Released: &messages.StockReleased{SagaId: "saga-2"}}}},
	{Type: "StockSet", Hex: "5200", Event: &messages.InventoryEvent{Event: &messages.InventoryEvent_Set{Set: &messages.StockSet{}}}},
}

// One reservation only: proto.Marshal writes map entries in no set order,
// so bytes are comparable only for a map of at most one entry.
const goldenSnapshot = "08251001180222057365742d31220e726573657276652f736167612d312a0a0a06736167612d311003"

// A product that was never set, snapshotted: every field is zero, so
// the snapshot is no bytes at all.
const goldenEmptySnapshot = ""

func TestCodecKeepsJournalFormat(t *testing.T) {
	estest.CheckEvents(t, &codec, "inventory-p1", goldenEvents)

	s := State{Known: true, Available: 37, Held: map[string]int64{"saga-1": 3}, Version: 2}
	recent := []string{"set-1", "reserve/saga-1"}
	got, gotRecent := estest.CheckSnapshot(t, &codec, s, recent, goldenSnapshot)
	if got.Known != s.Known || got.Available != s.Available || !maps.Equal(got.Held, s.Held) || got.Version != s.Version || !slices.Equal(gotRecent, recent) {
		t.Fatalf("snapshot read back as %+v %q, want %+v %q", got, gotRecent, s, recent)
	}
	got, gotRecent = estest.CheckSnapshot(t, &codec, State{}, nil, goldenEmptySnapshot)
	if got.Known || got.Available != 0 || len(got.Held) != 0 || got.Version != 0 || len(gotRecent) != 0 {
		t.Fatalf("empty snapshot read back as %+v %q", got, gotRecent)
	}
	if codec.Stream("p1") != "inventory-p1" {
		t.Fatalf("stream %q", codec.Stream("p1"))
	}
}
