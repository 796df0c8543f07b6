package es

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/messages"
	"granary/persistence"
)

// tally is the test aggregate: a counter, stored as counter events.
type tally struct {
	Value   int64
	Version uint64
}

func applyTally(s tally, _ string, ev *messages.CounterEvent) tally {
	if inc := ev.GetIncremented(); inc != nil {
		s.Value += inc.GetBy()
	}
	if ev.GetReset_() != nil {
		s.Value = 0
	}
	s.Version++
	return s
}

var tallyCodec = ProtoCodec(Proto[tally, *messages.CounterEvent, *messages.CounterSnapshot]{
	Stream:  func(id string) string { return "tally-" + id },
	Apply:   applyTally,
	Version: func(s tally) uint64 { return s.Version },
	Types: []EventType[*messages.CounterEvent]{
		{Name: "CounterIncremented", Is: func(ev *messages.CounterEvent) bool { return ev.GetIncremented() != nil }},
		{Name: "CounterReset", Is: func(ev *messages.CounterEvent) bool { return ev.GetReset_() != nil }},
	},
	Snapshot: func(s tally, recent []string) *messages.CounterSnapshot {
		return &messages.CounterSnapshot{Value: s.Value, Version: s.Version, RecentCommandIds: recent}
	},
	Restore: func(snap *messages.CounterSnapshot) (tally, []string) {
		return tally{Value: snap.GetValue(), Version: snap.GetVersion()}, snap.GetRecentCommandIds()
	},
})

func incremented(cmd string, by int64) *messages.CounterEvent {
	return &messages.CounterEvent{CommandId: cmd, OccurredAtUnixMs: 1_700_000_000_123,
		Event: &messages.CounterEvent_Incremented{Incremented: &messages.CounterIncremented{By: by}}}
}

func TestProtoCodecRoundTripsEachType(t *testing.T) {
	reset := &messages.CounterEvent{CommandId: "c2", OccurredAtUnixMs: 42, Event: &messages.CounterEvent_Reset_{Reset_: &messages.CounterReset{}}}
	for _, tc := range []struct {
		ev   *messages.CounterEvent
		name string
	}{{incremented("c1", 7), "CounterIncremented"}, {reset, "CounterReset"}} {
		data, err := tallyCodec.Encode(tc.ev)
		if err != nil {
			t.Fatalf("Encode(%v): %v", tc.ev, err)
		}
		if data.Type != tc.name || !data.OccurredAt.Equal(time.UnixMilli(tc.ev.GetOccurredAtUnixMs())) {
			t.Fatalf("Encode(%v) = type %q at %v, want %q at %d ms", tc.ev, data.Type, data.OccurredAt, tc.name, tc.ev.GetOccurredAtUnixMs())
		}
		got, err := tallyCodec.Decode(persistence.Event{Stream: "tally-x", Version: 1, Type: data.Type, Data: data.Data})
		if err != nil {
			t.Fatalf("Decode(%s): %v", tc.name, err)
		}
		if !proto.Equal(got, tc.ev) || tallyCodec.CommandID(got) != tc.ev.GetCommandId() {
			t.Fatalf("Decode(%s) = %v (command %q), want %v", tc.name, got, tallyCodec.CommandID(got), tc.ev)
		}
	}
}

func TestProtoCodecDecodeReportsCorruption(t *testing.T) {
	inc, err := tallyCodec.Encode(incremented("c1", 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		e    persistence.Event
		want string
	}{
		{"undecodable data", persistence.Event{Type: "CounterIncremented", Data: []byte{0xff, 0xff, 0xff}}, "CounterIncremented"},
		{"name of another type", persistence.Event{Type: "CounterReset", Data: inc.Data}, "not a CounterReset"},
		{"undeclared name", persistence.Event{Type: "CounterDoubled", Data: inc.Data}, `unknown event type "CounterDoubled"`},
		// Empty data decodes to an event with no case set.
		{"no case set", persistence.Event{Type: "CounterIncremented"}, "not a CounterIncremented"},
	} {
		tc.e.Stream, tc.e.Version = "tally-x", 3
		ev, err := tallyCodec.Decode(tc.e)
		if !errors.Is(err, persistence.ErrCorrupt) || ev != nil {
			t.Errorf("%s: Decode = %v, %v; want nil and ErrCorrupt", tc.what, ev, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "tally-x@3") || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: error %q should name tally-x@3 and %q", tc.what, msg, tc.want)
		}
	}
}

func TestProtoCodecEncodeRefusesAnUndeclaredEvent(t *testing.T) {
	// No oneof case set: none of the declared types matches.
	if data, err := tallyCodec.Encode(&messages.CounterEvent{CommandId: "c1"}); err == nil {
		t.Fatalf("Encode of an event with no declared type = %+v, want an error", data)
	}
	// A codec that declares only some of the cases refuses the others.
	partial := ProtoCodec(Proto[tally, *messages.CounterEvent, *messages.CounterSnapshot]{
		Stream: tallyCodec.Stream, Apply: applyTally, Version: tallyCodec.Version,
		Types:    []EventType[*messages.CounterEvent]{{Name: "CounterReset", Is: func(ev *messages.CounterEvent) bool { return ev.GetReset_() != nil }}},
		Snapshot: func(tally, []string) *messages.CounterSnapshot { return &messages.CounterSnapshot{} },
		Restore:  func(*messages.CounterSnapshot) (tally, []string) { return tally{}, nil },
	})
	if _, err := partial.Encode(incremented("c1", 1)); err == nil {
		t.Fatal("Encode of an undeclared case succeeded")
	}
}

func TestProtoCodecSnapshotRoundTrip(t *testing.T) {
	data, err := tallyCodec.EncodeSnapshot(tally{Value: -5, Version: 9}, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	s, recent, err := tallyCodec.DecodeSnapshot(data)
	if err != nil || s != (tally{Value: -5, Version: 9}) || !slices.Equal(recent, []string{"a", "b"}) {
		t.Fatalf("DecodeSnapshot = %+v, %v, %v; want {-5 9}, [a b]", s, recent, err)
	}
	if _, _, err := tallyCodec.DecodeSnapshot([]byte{0xff, 0xff}); !errors.Is(err, persistence.ErrCorrupt) {
		t.Fatalf("DecodeSnapshot(garbage) err = %v, want ErrCorrupt", err)
	}
}

func TestProtoCodecPanicsOnABadDeclaration(t *testing.T) {
	is := func(ev *messages.CounterEvent) bool { return ev.GetReset_() != nil }
	full := Proto[tally, *messages.CounterEvent, *messages.CounterSnapshot]{
		Stream: tallyCodec.Stream, Apply: applyTally, Version: tallyCodec.Version,
		Types:    []EventType[*messages.CounterEvent]{{Name: "CounterReset", Is: is}},
		Snapshot: func(tally, []string) *messages.CounterSnapshot { return &messages.CounterSnapshot{} },
		Restore:  func(*messages.CounterSnapshot) (tally, []string) { return tally{}, nil },
	}
	for what, breakIt := range map[string]func(p *Proto[tally, *messages.CounterEvent, *messages.CounterSnapshot]){
		"no Apply":        func(p *Proto[tally, *messages.CounterEvent, *messages.CounterSnapshot]) { p.Apply = nil },
		"no types":        func(p *Proto[tally, *messages.CounterEvent, *messages.CounterSnapshot]) { p.Types = nil },
		"unnamed type":    func(p *Proto[tally, *messages.CounterEvent, *messages.CounterSnapshot]) { p.Types[0].Name = "" },
		"type without Is": func(p *Proto[tally, *messages.CounterEvent, *messages.CounterSnapshot]) { p.Types[0].Is = nil },
		"name declared twice": func(p *Proto[tally, *messages.CounterEvent, *messages.CounterSnapshot]) {
			p.Types = append(p.Types, EventType[*messages.CounterEvent]{Name: "CounterReset", Is: is})
		},
	} {
		p := full
		p.Types = slices.Clone(full.Types)
		breakIt(&p)
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: ProtoCodec did not panic", what)
				}
			}()
			ProtoCodec(p)
		}()
	}
}
