package counter_test

import (
	"slices"
	"testing"

	"granary/actors/counter"
	"granary/actors/es/estest"
	"granary/messages"
)

// The journal outlives the code: the hex below is what the hand-written
// codec this package had before es.ProtoCodec wrote (captured by running
// it once), so records stored then must still read back the same and new
// ones must be written byte for byte alike.
var goldenEvents = []estest.Golden[*messages.CounterEvent]{
	{Type: "CounterIncremented", Hex: "0a05696e632d3110fb9ec482ae3352020805", Event: &messages.CounterEvent{CommandId: "inc-1", OccurredAtUnixMs: 1764700000123,
		Event: &messages.CounterEvent_Incremented{Incremented: &messages.CounterIncremented{By: 5}}}},
	{Type: "CounterReset", Hex: "0a0772657365742d3110c8a1c482ae335a00", Event: &messages.CounterEvent{CommandId: "reset-1", OccurredAtUnixMs: 1764700000456,
		Event: &messages.CounterEvent_Reset_{Reset_: &messages.CounterReset{}}}},
	// Zero fields stay unwritten: the oneof case alone names the event.
	{Type: "CounterIncremented", Hex: "5200", Event: &messages.CounterEvent{Event: &messages.CounterEvent_Incremented{Incremented: &messages.CounterIncremented{}}}},
	{Type: "CounterReset", Hex: "5a00", Event: &messages.CounterEvent{Event: &messages.CounterEvent_Reset_{Reset_: &messages.CounterReset{}}}},
}

const goldenSnapshot = "081110041a05696e632d311a0772657365742d31"

func TestCodecKeepsJournalFormat(t *testing.T) {
	// The stream function names streams only; grains and group children
	// store the same bytes.
	for _, stream := range []func(string) string{counter.GrainStream, func(id string) string { return "countergroup-g/" + id }} {
		codec := counter.Codec(stream)
		estest.CheckEvents(t, codec, stream("c1"), goldenEvents)

		s := counter.State{Value: 17, Version: 4}
		recent := []string{"inc-1", "reset-1"}
		got, gotRecent := estest.CheckSnapshot(t, codec, s, recent, goldenSnapshot)
		if got != s || !slices.Equal(gotRecent, recent) {
			t.Fatalf("snapshot read back as %+v %q, want %+v %q", got, gotRecent, s, recent)
		}
		if codec.Stream("c1") != stream("c1") {
			t.Fatalf("stream %q, want %q", codec.Stream("c1"), stream("c1"))
		}
	}
	if counter.GrainStream("c1") != "counter-c1" {
		t.Fatalf("grain stream %q", counter.GrainStream("c1"))
	}
	if counter.TypeIncremented != "CounterIncremented" || counter.TypeReset != "CounterReset" {
		t.Fatalf("event type names changed: %q %q", counter.TypeIncremented, counter.TypeReset)
	}
}
