// Package estest owns the check that keeps a kind's journal format: a
// kind's test lists its events and a snapshot in the bytes its codec
// wrote once (golden hex), and these helpers fail when the codec would now
// write or read them differently. The journal outlives the code, so a
// codec change that is not byte-for-byte alike strands stored records.
package estest

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/es"
	"granary/persistence"
)

// Golden is one event in its journal form: the type name and the hex of
// the bytes a codec wrote for Event (captured once, then kept).
type Golden[E es.ProtoEvent] struct {
	Type, Hex string
	Event     E
}

// CheckEvents encodes each event and compares the result with its golden
// form, then decodes the golden form and compares it with the event; data
// under another type's name, an unknown name or bytes that are no event
// must read as corrupt.
func CheckEvents[S any, E es.ProtoEvent](t testing.TB, c *es.Codec[S, E], stream string, table []Golden[E]) {
	t.Helper()
	types := map[string]bool{}
	for _, g := range table {
		types[g.Type] = true
	}
	for i, g := range table {
		data, err := c.Encode(g.Event)
		if err != nil {
			t.Fatalf("%d: encode %s: %v", i, g.Type, err)
		}
		if got := hex.EncodeToString(data.Data); data.Type != g.Type || got != g.Hex {
			t.Errorf("%d: encoded as %s %s, want %s %s", i, data.Type, got, g.Type, g.Hex)
		}
		if want := time.UnixMilli(g.Event.GetOccurredAtUnixMs()); !data.OccurredAt.Equal(want) {
			t.Errorf("%d: occurred at %v, want %v", i, data.OccurredAt, want)
		}
		stored, err := hex.DecodeString(g.Hex)
		if err != nil {
			t.Fatalf("%d: golden hex: %v", i, err)
		}
		ev, err := c.Decode(persistence.Event{Stream: stream, Version: uint64(i + 1), Type: g.Type, Data: stored})
		if err != nil {
			t.Errorf("%d: decode %s: %v", i, g.Type, err)
			continue
		}
		if !proto.Equal(ev, g.Event) || c.CommandID(ev) != g.Event.GetCommandId() {
			t.Errorf("%d: decoded %v (command %q), want %v", i, ev, c.CommandID(ev), g.Event)
		}
		for other := range types {
			if other == g.Type {
				continue
			}
			if _, err := c.Decode(persistence.Event{Stream: stream, Version: 1, Type: other, Data: stored}); !errors.Is(err, persistence.ErrCorrupt) {
				t.Errorf("%d: %s data read as %s: %v, want ErrCorrupt", i, g.Type, other, err)
			}
		}
		if _, err := c.Decode(persistence.Event{Stream: stream, Version: 1, Type: g.Type + "X", Data: stored}); !errors.Is(err, persistence.ErrCorrupt) {
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

// CheckSnapshot compares the snapshot of s with its golden form and
// returns what the golden form decodes to, for the caller to compare.
func CheckSnapshot[S, E any](t testing.TB, c *es.Codec[S, E], s S, recent []string, want string) (S, []string) {
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
