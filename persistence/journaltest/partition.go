package journaltest

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"granary/persistence"
)

func partitionCases() []suiteCase {
	return []suiteCase{
		{"ReadPartitionRanges", 1, testReadPartitionRanges},
		{"HeadAndPartitioning", 4, testHead},
	}
}

// testReadPartitionRanges interleaves two streams in one partition and
// reads the log in windows.
func testReadPartitionRanges(t *testing.T, s persistence.Store) {
	mustAppend(t, s, "a", 0, batch("a", 0, 3)) // positions 1-3
	mustAppend(t, s, "b", 0, batch("b", 0, 2)) // 4-5
	mustAppend(t, s, "a", 3, batch("a", 3, 4)) // 6-9
	mustAppend(t, s, "b", 2, batch("b", 2, 1)) // 10

	log := mustReadPartition(t, s, 0, 0, 0)
	wantOwners := []string{"a@1", "a@2", "a@3", "b@1", "b@2", "a@4", "a@5", "a@6", "a@7", "b@3"}
	if len(log) != len(wantOwners) {
		t.Fatalf("log has %d events, want %d", len(log), len(wantOwners))
	}
	for i, e := range log {
		if got := fmt.Sprintf("%s@%d", e.Stream, e.Version); got != wantOwners[i] || e.Position != uint64(i+1) || e.Partition != 0 {
			t.Fatalf("position %d: %s at %d/%d, want %s", i+1, got, e.Partition, e.Position, wantOwners[i])
		}
		checkEvent(t, s, e, e.Stream, e.Version, eventData("counted", fmt.Sprintf("%s#%d", e.Stream, e.Version-1), int(e.Version-1)))
	}
	for _, c := range []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 0, span(1, 10)},
		{0, -5, span(1, 10)},
		{0, 4, span(1, 4)},
		{4, 3, span(5, 7)},
		{7, 100, span(8, 10)},
		{9, 0, span(10, 10)},
		{10, 0, nil},
		{11, 1, nil},
		{math.MaxUint64, 0, nil},
	} {
		got := positions(mustReadPartition(t, s, 0, c.after, c.limit))
		if len(got) != len(c.want) || (len(got) > 0 && !slices.Equal(got, c.want)) {
			t.Errorf("ReadPartition(after %d, limit %d) = positions %v, want %v", c.after, c.limit, got, c.want)
		}
	}
}

func testHead(t *testing.T, s persistence.Store) {
	if s.Partitions() != 4 {
		t.Fatalf("Partitions() = %d, want 4", s.Partitions())
	}
	want := make([]uint64, s.Partitions())
	for i := range 20 {
		stream := fmt.Sprintf("stream-%d", i)
		p := s.PartitionOf(stream)
		if p != persistence.PartitionOf(stream, 4) {
			t.Fatalf("PartitionOf(%q) = %d, persistence.PartitionOf says %d", stream, p, persistence.PartitionOf(stream, 4))
		}
		res := mustAppend(t, s, stream, 0, batch(stream, 0, i%3+1))
		if res.Partition != p || res.FirstPosition != want[p]+1 {
			t.Fatalf("Append(%q) = %+v, want partition %d first position %d", stream, res, p, want[p]+1)
		}
		want[p] += uint64(i%3 + 1)
		for q := range want {
			if h := mustHead(t, s, q); h != want[q] {
				t.Fatalf("after appending %q: Head(%d) = %d, want %d", stream, q, h, want[q])
			}
		}
	}
}
