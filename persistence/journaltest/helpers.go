package journaltest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"granary/persistence"
)

// epoch is a fixed, non-UTC time with nanoseconds, so tests see whether a
// backend keeps the instant and reports it in UTC.
var epoch = time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.FixedZone("CET", 3600))

func eventData(typ, data string, i int) persistence.EventData {
	return persistence.EventData{Type: typ, Data: []byte(data), OccurredAt: epoch.Add(time.Duration(i) * time.Millisecond)}
}

// batch returns n events whose data names stream and number from+i.
func batch(stream string, from, n int) []persistence.EventData {
	out := make([]persistence.EventData, n)
	for i := range out {
		out[i] = eventData("counted", fmt.Sprintf("%s#%d", stream, from+i), from+i)
	}
	return out
}

func mustAppend(t *testing.T, s persistence.Store, stream string, expected uint64, events []persistence.EventData) persistence.AppendResult {
	t.Helper()
	res, err := s.Append(ctx(t), stream, expected, events)
	if err != nil {
		t.Fatalf("Append(%q, %d, %d events): %v", stream, expected, len(events), err)
	}
	return res
}

func mustReadStream(t *testing.T, s persistence.Store, stream string, after uint64, limit int) []persistence.Event {
	t.Helper()
	evs, err := s.ReadStream(ctx(t), stream, after, limit)
	if err != nil {
		t.Fatalf("ReadStream(%q, %d, %d): %v", stream, after, limit, err)
	}
	return evs
}

func mustReadPartition(t *testing.T, s persistence.Store, p int, after uint64, limit int) []persistence.Event {
	t.Helper()
	evs, err := s.ReadPartition(ctx(t), p, after, limit)
	if err != nil {
		t.Fatalf("ReadPartition(%d, %d, %d): %v", p, after, limit, err)
	}
	return evs
}

func mustHead(t *testing.T, s persistence.Store, p int) uint64 {
	t.Helper()
	h, err := s.Head(ctx(t), p)
	if err != nil {
		t.Fatalf("Head(%d): %v", p, err)
	}
	return h
}

func mustVersion(t *testing.T, s persistence.Store, stream string) uint64 {
	t.Helper()
	v, err := s.StreamVersion(ctx(t), stream)
	if err != nil {
		t.Fatalf("StreamVersion(%q): %v", stream, err)
	}
	return v
}

// checkEvent compares a read event with what was appended.
func checkEvent(t *testing.T, s persistence.Store, got persistence.Event, stream string, version uint64, want persistence.EventData) {
	t.Helper()
	if got.Stream != stream || got.Version != version {
		t.Fatalf("event is %q@%d, want %q@%d", got.Stream, got.Version, stream, version)
	}
	if p := s.PartitionOf(stream); got.Partition != p {
		t.Fatalf("%q@%d: partition %d, want %d", stream, version, got.Partition, p)
	}
	if got.Type != want.Type {
		t.Fatalf("%q@%d: type %q, want %q", stream, version, got.Type, want.Type)
	}
	if !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("%q@%d: data %s, want %s", stream, version, short(got.Data), short(want.Data))
	}
	if len(want.Data) == 0 && got.Data != nil {
		t.Fatalf("%q@%d: empty data reads back as %#v, want nil", stream, version, got.Data)
	}
	if !got.OccurredAt.Equal(want.OccurredAt) {
		t.Fatalf("%q@%d: occurred at %v, want %v", stream, version, got.OccurredAt, want.OccurredAt)
	}
	if !want.OccurredAt.IsZero() && got.OccurredAt.Location() != time.UTC {
		t.Fatalf("%q@%d: occurred at in %v, want UTC", stream, version, got.OccurredAt.Location())
	}
	if want.OccurredAt.IsZero() && got.OccurredAt != (time.Time{}) {
		t.Fatalf("%q@%d: zero time reads back as %#v", stream, version, got.OccurredAt)
	}
}

// versions lists the versions of evs, for compact failure messages.
func versions(evs []persistence.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Version
	}
	return out
}

func positions(evs []persistence.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Position
	}
	return out
}

// span returns from, from+1, ..., to (empty when to < from).
func span(from, to uint64) []uint64 {
	out := []uint64{}
	for v := from; v <= to && to >= from; v++ {
		out = append(out, v)
	}
	return out
}

func short(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%q... (%d bytes)", b[:40], len(b))
	}
	return fmt.Sprintf("%q", b)
}
