package journaltest

import (
	"bytes"
	"fmt"
	"testing"

	"granary/persistence"
)

func sizeCases() []suiteCase {
	return []suiteCase{
		{"LargeStream", 2, testLargeStream},
		{"LargeEvents", 1, testLargeEvents},
	}
}

// testLargeStream makes reads cross any chunking a backend does.
func testLargeStream(t *testing.T, s persistence.Store) {
	const (
		stream = "long"
		total  = 20000
		size   = 500
	)
	for from := 0; from < total; from += size {
		mustAppend(t, s, stream, uint64(from), batch(stream, from, size))
	}
	all := mustReadStream(t, s, stream, 0, 0)
	if len(all) != total {
		t.Fatalf("read %d events, want %d", len(all), total)
	}
	for i, e := range all {
		if e.Version != uint64(i+1) || e.Position != uint64(i+1) || string(e.Data) != fmt.Sprintf("%s#%d", stream, i) {
			t.Fatalf("index %d: %s@%d at %d with %q", i, e.Stream, e.Version, e.Position, e.Data)
		}
	}
	for _, c := range []struct {
		after      uint64
		limit      int
		first, len int
	}{
		{19990, 0, 19991, 10},
		{5000, 2500, 5001, 2500},
		{999, 1001, 1000, 1001},
		{1000, 1000, 1001, 1000},
		{0, total + 1, 1, total},
	} {
		evs := mustReadStream(t, s, stream, c.after, c.limit)
		if len(evs) != c.len || evs[0].Version != uint64(c.first) || evs[len(evs)-1].Version != uint64(c.first+c.len-1) {
			t.Fatalf("ReadStream(after %d, limit %d): %d events from %d", c.after, c.limit, len(evs), evs[0].Version)
		}
	}
	p := s.PartitionOf(stream)
	if h := mustHead(t, s, p); h != total {
		t.Fatalf("Head = %d, want %d", h, total)
	}
	log := mustReadPartition(t, s, p, 0, 0)
	if len(log) != total || log[total-1].Position != total {
		t.Fatalf("partition log has %d events", len(log))
	}
	if tail := mustReadPartition(t, s, p, total-1500, 1200); len(tail) != 1200 || tail[0].Position != total-1499 {
		t.Fatalf("partition tail: %d events", len(tail))
	}
}

// testLargeEvents stores events of several MiB, alone and in a batch.
func testLargeEvents(t *testing.T, s persistence.Store) {
	const stream = "big"
	const mib = 1 << 20
	payload := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i*7) + byte(i>>10)
		}
		return b
	}
	events := []persistence.EventData{
		{Type: "one", Data: payload(mib, 1)},
		{Type: "two", Data: payload(mib, 2)},
		{Type: "three", Data: payload(mib+13, 3)},
		{Type: "four", Data: payload(4*mib, 4)},
	}
	mustAppend(t, s, stream, 0, events[:3])
	mustAppend(t, s, stream, 3, events[3:])
	check := func(what string, evs []persistence.Event) {
		t.Helper()
		if len(evs) != len(events) {
			t.Fatalf("%s: %d events, want %d", what, len(evs), len(events))
		}
		for i, e := range evs {
			if e.Type != events[i].Type || !bytes.Equal(e.Data, events[i].Data) {
				t.Fatalf("%s: event %d differs (%d bytes, want %d)", what, i+1, len(e.Data), len(events[i].Data))
			}
		}
	}
	check("ReadStream", mustReadStream(t, s, stream, 0, 0))
	check("ReadPartition", mustReadPartition(t, s, 0, 0, 0))
	if evs := mustReadStream(t, s, stream, 3, 1); len(evs) != 1 || !bytes.Equal(evs[0].Data, events[3].Data) {
		t.Fatalf("reading the last big event alone failed")
	}
}
