package journaltest

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"granary/persistence"
)

func appendCases() []suiteCase {
	return []suiteCase{
		{"AppendAndRead", 3, testAppendAndRead},
		{"ReadStreamRanges", 1, testReadStreamRanges},
		{"UnknownStreamIsEmpty", 2, testUnknownStream},
		{"InvalidArguments", 2, testInvalid},
		{"Conflict", 1, testConflict},
		{"FieldRoundTrip", 1, testFieldRoundTrip},
		{"ReturnsCopies", 1, testCopies},
	}
}

func testAppendAndRead(t *testing.T, s persistence.Store) {
	const stream = "order-1"
	first := batch(stream, 0, 3)
	res := mustAppend(t, s, stream, 0, first)
	want := persistence.AppendResult{Version: 3, Partition: s.PartitionOf(stream), FirstPosition: 1}
	if res != want {
		t.Fatalf("first append: %+v, want %+v", res, want)
	}
	second := batch(stream, 3, 2)
	res = mustAppend(t, s, stream, 3, second)
	want = persistence.AppendResult{Version: 5, Partition: s.PartitionOf(stream), FirstPosition: 4}
	if res != want {
		t.Fatalf("second append: %+v, want %+v", res, want)
	}
	if v := mustVersion(t, s, stream); v != 5 {
		t.Fatalf("StreamVersion = %d, want 5", v)
	}

	all := append(first, second...)
	evs := mustReadStream(t, s, stream, 0, 0)
	if len(evs) != len(all) {
		t.Fatalf("read %d events, want %d", len(evs), len(all))
	}
	for i, e := range evs {
		checkEvent(t, s, e, stream, uint64(i+1), all[i])
		// Only one stream was written, so positions equal versions.
		if e.Position != uint64(i+1) {
			t.Fatalf("event %d at position %d, want %d", i+1, e.Position, i+1)
		}
	}
}

func testReadStreamRanges(t *testing.T, s persistence.Store) {
	const stream = "ranges"
	mustAppend(t, s, stream, 0, batch(stream, 0, 4))
	mustAppend(t, s, stream, 4, batch(stream, 4, 6))
	for _, c := range []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 0, span(1, 10)},
		{0, -1, span(1, 10)},
		{0, 3, span(1, 3)},
		{3, 4, span(4, 7)},
		{8, 10, span(9, 10)},
		{9, 1, span(10, 10)},
		{10, 0, nil},
		{15, 5, nil},
		{math.MaxUint64, 0, nil},
	} {
		got := versions(mustReadStream(t, s, stream, c.after, c.limit))
		if len(got) != len(c.want) || (len(got) > 0 && !slices.Equal(got, c.want)) {
			t.Errorf("ReadStream(after %d, limit %d) = versions %v, want %v", c.after, c.limit, got, c.want)
		}
	}
}

func testUnknownStream(t *testing.T, s persistence.Store) {
	if evs := mustReadStream(t, s, "nobody", 0, 0); len(evs) != 0 {
		t.Fatalf("unknown stream read %d events", len(evs))
	}
	if evs := mustReadStream(t, s, "nobody", 5, 3); len(evs) != 0 {
		t.Fatalf("unknown stream read %d events after 5", len(evs))
	}
	if v := mustVersion(t, s, "nobody"); v != 0 {
		t.Fatalf("unknown stream has version %d", v)
	}
	for p := range s.Partitions() {
		if h := mustHead(t, s, p); h != 0 {
			t.Fatalf("empty partition %d has head %d", p, h)
		}
		if evs := mustReadPartition(t, s, p, 0, 0); len(evs) != 0 {
			t.Fatalf("empty partition %d read %d events", p, len(evs))
		}
	}
	if _, ok, err := s.LoadSnapshot(ctx(t), "nobody"); err != nil || ok {
		t.Fatalf("LoadSnapshot of unknown stream: ok %v, err %v", ok, err)
	}
}

func testInvalid(t *testing.T, s persistence.Store) {
	c := ctx(t)
	one := batch("x", 0, 1)
	checks := map[string]error{}
	_, checks["Append empty batch"] = s.Append(c, "x", 0, []persistence.EventData{})
	_, checks["Append nil batch"] = s.Append(c, "x", 0, nil)
	_, checks["Append empty stream"] = s.Append(c, "", 0, one)
	_, checks["ReadStream empty stream"] = s.ReadStream(c, "", 0, 0)
	_, checks["StreamVersion empty stream"] = s.StreamVersion(c, "")
	_, checks["ReadPartition -1"] = s.ReadPartition(c, -1, 0, 0)
	_, checks["ReadPartition n"] = s.ReadPartition(c, s.Partitions(), 0, 0)
	_, checks["Head -1"] = s.Head(c, -1)
	_, checks["Head n"] = s.Head(c, s.Partitions())
	checks["SaveSnapshot empty stream"] = s.SaveSnapshot(c, "", persistence.Snapshot{Version: 0})
	_, _, checks["LoadSnapshot empty stream"] = s.LoadSnapshot(c, "")
	for name, err := range checks {
		if !errors.Is(err, persistence.ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
	if v := mustVersion(t, s, "x"); v != 0 {
		t.Fatalf("rejected appends left stream at version %d", v)
	}
	for p := range s.Partitions() {
		if h := mustHead(t, s, p); h != 0 {
			t.Fatalf("rejected appends moved partition %d to head %d", p, h)
		}
	}
}

func testConflict(t *testing.T, s persistence.Store) {
	const stream = "contested"
	mustAppend(t, s, stream, 0, batch(stream, 0, 2))
	for _, expected := range []uint64{0, 1, 3, 7, 1 << 53, math.MaxUint64} {
		_, err := s.Append(ctx(t), stream, expected, batch(stream, 2, 3))
		var ce *persistence.ConflictError
		if !errors.As(err, &ce) || !errors.Is(err, persistence.ErrConflict) {
			t.Fatalf("Append at %d: err %v, want a *ConflictError matching ErrConflict", expected, err)
		}
		if ce.Stream != stream || ce.Expected != expected || ce.Actual != 2 {
			t.Fatalf("Append at %d: %+v, want stream %q expected %d actual 2", expected, *ce, stream, expected)
		}
	}
	if v := mustVersion(t, s, stream); v != 2 {
		t.Fatalf("conflicting appends moved stream to version %d", v)
	}
	if h := mustHead(t, s, s.PartitionOf(stream)); h != 2 {
		t.Fatalf("conflicting appends moved the partition head to %d", h)
	}
	// The stream still accepts the right version.
	if res := mustAppend(t, s, stream, 2, batch(stream, 2, 1)); res.Version != 3 || res.FirstPosition != 3 {
		t.Fatalf("append after conflicts: %+v", res)
	}
}

// testFieldRoundTrip covers the edges of each field: empty type and data,
// the zero time, times far from the Unix epoch, binary data and awkward
// stream names.
func testFieldRoundTrip(t *testing.T, s persistence.Store) {
	binary := make([]byte, 512)
	for i := range binary {
		binary[i] = byte(i)
	}
	events := []persistence.EventData{
		{},
		{Type: "t|y:p{e}", Data: binary, OccurredAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
		{Type: "far", Data: []byte{0}, OccurredAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.Local)},
		{Type: "before-epoch", Data: []byte("x"), OccurredAt: time.Date(1969, 7, 20, 20, 17, 0, 5, time.UTC)},
		{Type: "monotonic", Data: []byte("now"), OccurredAt: time.Now()},
	}
	for _, stream := range []string{"plain", "a:b{c}|d e", "\x00\xff", "ünïcødé/stream", "}{"} {
		mustAppend(t, s, stream, 0, events)
		evs := mustReadStream(t, s, stream, 0, 0)
		if len(evs) != len(events) {
			t.Fatalf("%q: read %d events, want %d", stream, len(evs), len(events))
		}
		for i, e := range evs {
			checkEvent(t, s, e, stream, uint64(i+1), events[i])
		}
	}
}

func testCopies(t *testing.T, s persistence.Store) {
	const stream = "copies"
	in := []persistence.EventData{{Type: "t", Data: []byte("original")}}
	mustAppend(t, s, stream, 0, in)
	in[0].Data[0] = 'X' // the caller reuses its buffer

	first := mustReadStream(t, s, stream, 0, 0)
	if string(first[0].Data) != "original" {
		t.Fatalf("stored data changed with the caller's buffer: %q", first[0].Data)
	}
	first[0].Data[0] = 'Y'
	fromLog := mustReadPartition(t, s, s.PartitionOf(stream), 0, 0)
	fromLog[0].Data[1] = 'Z'
	again := mustReadStream(t, s, stream, 0, 0)
	if string(again[0].Data) != "original" {
		t.Fatalf("stored data changed through a returned event: %q", again[0].Data)
	}
	if string(mustReadPartition(t, s, s.PartitionOf(stream), 0, 0)[0].Data) != "original" {
		t.Fatalf("partition log changed through a returned event")
	}
}
