package counter_test

import (
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/counter"
	"granary/actors/es"
	"granary/messages"
	"granary/persistence"
)

// The journal outlives the code: the hex below is what the hand-written
// codec this package had before es.ProtoCodec wrote (captured by running
// it once), so records stored then must still read back the same and new
// ones must be written byte for byte alike.
var goldenEvents = []golden[*messages.CounterEvent]{
	{"CounterIncremented", "0a05696e632d3110fb9ec482ae3352020805", &messages.CounterEvent{CommandId: "inc-1", OccurredAtUnixMs: 1764700000123,
		Event: &messages.CounterEvent_Incremented{Incremented: &messages.CounterIncremented{By: 5}}}},
	{"CounterReset", "0a0772657365742d3110c8a1c482ae335a00", &messages.CounterEvent{CommandId: "reset-1", OccurredAtUnixMs: 1764700000456,
		Event: &messages.CounterEvent_Reset_{Reset_: &messages.CounterReset{}}}},
	// Zero fields stay unwritten: the oneof case alone names the event.
	{"CounterIncremented", "5200", &messages.CounterEvent{Event: &messages.CounterEvent_Incremented{Incremented: &messages.CounterIncremented{}}}},
	{"CounterReset", "5a00", &messages.CounterEvent{Event: &messages.CounterEvent_Reset_{Reset_: &messages.CounterReset{}}}},
}

const goldenSnapshot = "081110041a05696e632d311a0772657365742d31"

func TestCodecKeepsJournalFormat(t *testing.T) {
	// The stream function names streams only; grains and group children
	// store the same bytes.
	for _, stream := range []func(string) string{counter.GrainStream, func(id string) string { return "countergroup-g/" + id }} {
		codec := counter.Codec(stream)
		checkEvents(t, codec, stream("c1"), goldenEvents)

		s := counter.State{Value: 17, Version: 4}
		recent := []string{"inc-1", "reset-1"}
		got, gotRecent := checkSnapshot(t, codec, s, recent, goldenSnapshot)
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
