package es

import (
	"fmt"
	"runtime"
	"slices"
	"testing"

	"granary/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func TestRecentCommandsEvictsOldestFirst(t *testing.T) {
	r := newRecentCommands(3)
	for _, id := range []string{"a", "b", "", "a", "c"} {
		r.Add(id)
	}
	if got := r.IDs(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("IDs = %v, want [a b c] (empty and repeated ids ignored)", got)
	}
	r.Add("d") // evicts a
	r.Add("e") // evicts b
	if r.Has("a") || r.Has("b") || !r.Has("c") || !r.Has("d") || !r.Has("e") {
		t.Fatalf("after d, e: IDs = %v; want a and b evicted", r.IDs())
	}
	if got := r.IDs(); !slices.Equal(got, []string{"c", "d", "e"}) {
		t.Fatalf("IDs = %v, want oldest first [c d e]", got)
	}
	for i := range 10 {
		r.Add(fmt.Sprint(i))
	}
	if got := r.IDs(); !slices.Equal(got, []string{"7", "8", "9"}) || r.Len() != 3 {
		t.Fatalf("IDs = %v, want [7 8 9]", got)
	}
	// Restoring from a snapshot's ids then replaying the tail keeps order.
	s := newRecentCommands(3)
	for _, id := range append(r.IDs(), "10") {
		s.Add(id)
	}
	if got := s.IDs(); !slices.Equal(got, []string{"8", "9", "10"}) {
		t.Fatalf("restored IDs = %v, want [8 9 10]", got)
	}
}

// A grain costs what it holds: one activated for a read or a single
// command must not pay for the 1000 ids it may remember one day (issue 9:
// a preallocated map was ~50 KB per grain, 91 % of a member's heap).
func TestRecentCommandsCostWhatTheyHold(t *testing.T) {
	const grains, limit = 2000, 1000
	perGrain := func(ids int) float64 {
		keep := make([]*recentCommands, grains)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range keep {
			keep[i] = newRecentCommands(limit)
			for j := range ids {
				keep[i].Add(fmt.Sprintf("cmd-%d-%d", i, j))
			}
		}
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(keep)
		return float64(after.TotalAlloc-before.TotalAlloc) / grains
	}
	if b := perGrain(0); b > 128 {
		t.Errorf("an empty recentCommands allocates %.0f B, want ≤ 128", b)
	}
	// One id: the struct, a one-slot ring and the id itself; no map
	// (issue 10: a one-entry map was ~250 B of every idle grain).
	if b := perGrain(1); b > 160 {
		t.Errorf("a recentCommands holding 1 id allocates %.0f B, want ≤ 160", b)
	}
	// Full: bounded by the limit, whatever came through.
	r := newRecentCommands(limit)
	for i := range 5 * limit {
		r.Add(fmt.Sprint(i))
	}
	if r.Len() != limit || len(r.seen) != limit || cap(r.ring) > 2*limit {
		t.Fatalf("full: len %d, map %d, ring cap %d; want %d, %d, ≤ %d", r.Len(), len(r.seen), cap(r.ring), limit, limit, 2*limit)
	}
}

// Past scanIDs ids the ring is indexed by a map; lookups and evictions
// agree on either side of that switch.
func TestRecentCommandsAcrossTheIndexThreshold(t *testing.T) {
	const limit = 2*scanIDs + 3
	r := newRecentCommands(limit)
	for i := range 3 * limit {
		id := fmt.Sprint(i)
		r.Add(id)
		r.Add(id) // a repeat is ignored whichever way it is looked up
		if (r.seen != nil) != (r.Len() > scanIDs) {
			t.Fatalf("after %d ids: index %v with %d remembered", i+1, r.seen != nil, r.Len())
		}
		if r.seen != nil && len(r.seen) != r.Len() {
			t.Fatalf("after %d ids: index holds %d, ring %d", i+1, len(r.seen), r.Len())
		}
		for j := range i + 1 {
			want := j > i-limit
			if got := r.Has(fmt.Sprint(j)); got != want {
				t.Fatalf("after %d ids: Has(%d) = %v, want %v", i+1, j, got, want)
			}
		}
	}
	if got := r.IDs(); r.Len() != limit || got[0] != fmt.Sprint(2*limit) || got[limit-1] != fmt.Sprint(3*limit-1) {
		t.Fatalf("IDs = %v, want the last %d oldest first", got, limit)
	}
	if cap(r.ring) > 2*limit {
		t.Fatalf("ring cap %d for limit %d", cap(r.ring), limit)
	}
}
