package countergroup

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
var goldenEvents = []estest.Golden[*messages.CounterGroupEvent]{
	{Type: "CounterSpawned", Hex: "0a07737061776e2d3110fb9ec482ae3352040a026331", Event: &messages.CounterGroupEvent{CommandId: "spawn-1", OccurredAtUnixMs: 1764700000123,
		Event: &messages.CounterGroupEvent_Spawned{Spawned: &messages.CounterSpawned{Counter: "c1"}}}},
	{Type: "CounterStopped", Hex: "0a0a73746f707065642f633110c8a1c482ae335a040a026331", Event: &messages.CounterGroupEvent{CommandId: "stopped/c1", OccurredAtUnixMs: 1764700000456,
		Event: &messages.CounterGroupEvent_Stopped{Stopped: &messages.CounterStopped{Counter: "c1"}}}},
	// Zero fields stay unwritten: the oneof case alone names the event.
	{Type: "CounterSpawned", Hex: "5200", Event: &messages.CounterGroupEvent{Event: &messages.CounterGroupEvent_Spawned{Spawned: &messages.CounterSpawned{}}}},
	{Type: "CounterStopped", Hex: "5a00", Event: &messages.CounterGroupEvent{Event: &messages.CounterGroupEvent_Stopped{Stopped: &messages.CounterStopped{}}}},
}

const goldenSnapshot = "0a0263310a0263320a02633310041a07737061776e2d311a07737061776e2d3222026332"

func TestCodecKeepsJournalFormat(t *testing.T) {
	estest.CheckEvents(t, &codec, "countergroup-g", goldenEvents)

	s := State{Counters: []string{"c1", "c2", "c3"}, Stopped: []string{"c2"}, Version: 4}
	recent := []string{"spawn-1", "spawn-2"}
	got, gotRecent := estest.CheckSnapshot(t, &codec, s, recent, goldenSnapshot)
	if !slices.Equal(got.Counters, s.Counters) || !slices.Equal(got.Stopped, s.Stopped) || got.Version != s.Version || !slices.Equal(gotRecent, recent) {
		t.Fatalf("snapshot read back as %+v %q, want %+v %q", got, gotRecent, s, recent)
	}
	if codec.Stream("g") != "countergroup-g" {
		t.Fatalf("stream %q", codec.Stream("g"))
	}
}
