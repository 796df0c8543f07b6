package journaltest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"granary/persistence"
)

func concurrencyCases() []suiteCase {
	return []suiteCase{
		{"ConcurrentWritersOneStream", 1, testConcurrentOneStream},
		{"ConcurrentWritersManyStreams", 4, testConcurrentManyStreams},
	}
}

// testConcurrentOneStream races writers on one stream with the optimistic
// loop an actor would use: read the version, append at it, retry on
// conflict. Exactly one append may win each version.
func testConcurrentOneStream(t *testing.T, s persistence.Store) {
	const (
		stream  = "hot"
		writers = 16
		each    = 50
	)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for n := range each {
				ev := persistence.EventData{Type: "w", Data: fmt.Appendf(nil, "%d/%d", w, n)}
				for {
					v, err := s.StreamVersion(ctx(t), stream)
					if err != nil {
						t.Errorf("writer %d: StreamVersion: %v", w, err)
						return
					}
					_, err = s.Append(ctx(t), stream, v, []persistence.EventData{ev})
					if err == nil {
						break
					}
					if !errors.Is(err, persistence.ErrConflict) {
						t.Errorf("writer %d: Append at %d: %v", w, v, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	evs := mustReadStream(t, s, stream, 0, 0)
	if len(evs) != writers*each {
		t.Fatalf("read %d events, want %d", len(evs), writers*each)
	}
	next := make([]int, writers) // each writer's next expected event number
	var lastPos uint64
	for i, e := range evs {
		if e.Version != uint64(i+1) {
			t.Fatalf("event %d has version %d", i, e.Version)
		}
		if e.Position <= lastPos {
			t.Fatalf("version %d at position %d, not after %d", e.Version, e.Position, lastPos)
		}
		lastPos = e.Position
		var w, n int
		if _, err := fmt.Sscanf(string(e.Data), "%d/%d", &w, &n); err != nil || w < 0 || w >= writers {
			t.Fatalf("version %d: unexpected data %q", e.Version, e.Data)
		}
		// A writer appends in order, so its events must appear in order,
		// each exactly once.
		if n != next[w] {
			t.Fatalf("version %d: writer %d event %d, want event %d", e.Version, w, n, next[w])
		}
		next[w]++
	}
	if v := mustVersion(t, s, stream); v != writers*each {
		t.Fatalf("StreamVersion = %d, want %d", v, writers*each)
	}
	if h := mustHead(t, s, s.PartitionOf(stream)); h != writers*each {
		t.Fatalf("Head = %d, want %d", h, writers*each)
	}
}

// testConcurrentManyStreams appends batches to many streams of several
// partitions at once, then checks every partition log is gapless and
// agrees with the streams.
func testConcurrentManyStreams(t *testing.T, s persistence.Store) {
	const (
		writers       = 8
		streamsPerW   = 10
		appendsPerW   = 60
		maxBatch      = 3
		wantPartition = 4
	)
	if s.Partitions() != wantPartition {
		t.Fatalf("Partitions() = %d, want %d", s.Partitions(), wantPartition)
	}
	type appended struct {
		stream string
		res    persistence.AppendResult
		n      int
	}
	var (
		mu      sync.Mutex
		written = map[string]uint64{} // stream -> version
		results []appended
		wg      sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			// Each writer owns its streams, so it knows their versions.
			local := map[string]uint64{}
			var mine []appended
			for i := range appendsPerW {
				stream := fmt.Sprintf("w%d-s%d", w, i%streamsPerW)
				n := 1 + i%maxBatch
				v := local[stream]
				res, err := s.Append(ctx(t), stream, v, batch(stream, int(v), n))
				if err != nil {
					t.Errorf("Append(%q, %d): %v", stream, v, err)
					return
				}
				if res.Version != v+uint64(n) || res.Partition != s.PartitionOf(stream) || res.FirstPosition == 0 {
					t.Errorf("Append(%q, %d, %d events) = %+v", stream, v, n, res)
					return
				}
				local[stream] = res.Version
				mine = append(mine, appended{stream, res, n})
			}
			mu.Lock()
			defer mu.Unlock()
			results = append(results, mine...)
			for k, v := range local {
				written[k] = v
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	var total uint64
	for _, v := range written {
		total += v
	}
	var inLogs uint64
	where := map[string]persistence.Event{} // "stream@version" -> event in the log
	used := 0
	for p := range s.Partitions() {
		head := mustHead(t, s, p)
		log := mustReadPartition(t, s, p, 0, 0)
		if uint64(len(log)) != head {
			t.Fatalf("partition %d: head %d but %d events", p, head, len(log))
		}
		if head > 0 {
			used++
		}
		seen := map[string]uint64{}
		for i, e := range log {
			if e.Position != uint64(i+1) || e.Partition != p || s.PartitionOf(e.Stream) != p {
				t.Fatalf("partition %d index %d: %s@%d at partition %d position %d", p, i, e.Stream, e.Version, e.Partition, e.Position)
			}
			if e.Version != seen[e.Stream]+1 {
				t.Fatalf("partition %d position %d: %s@%d follows version %d", p, e.Position, e.Stream, e.Version, seen[e.Stream])
			}
			seen[e.Stream] = e.Version
			where[fmt.Sprintf("%s@%d", e.Stream, e.Version)] = e
		}
		inLogs += head
	}
	if inLogs != total {
		t.Fatalf("partition logs hold %d events, streams %d", inLogs, total)
	}
	if used < 2 {
		t.Fatalf("only %d of %d partitions used; the test needs several", used, s.Partitions())
	}
	// A batch is atomic: its events occupy consecutive positions.
	for _, a := range results {
		for k := range a.n {
			v := a.res.Version - uint64(a.n) + uint64(k) + 1
			e := where[fmt.Sprintf("%s@%d", a.stream, v)]
			if e.Position != a.res.FirstPosition+uint64(k) {
				t.Fatalf("%q@%d at position %d, want %d (batch starting at %d)", a.stream, v, e.Position, a.res.FirstPosition+uint64(k), a.res.FirstPosition)
			}
		}
	}
	for stream, v := range written {
		evs := mustReadStream(t, s, stream, 0, 0)
		if uint64(len(evs)) != v {
			t.Fatalf("%q: read %d events, want %d", stream, len(evs), v)
		}
		for i, e := range evs {
			logged := where[fmt.Sprintf("%s@%d", stream, i+1)]
			if e.Version != uint64(i+1) || e.Position != logged.Position || string(e.Data) != string(logged.Data) {
				t.Fatalf("%q@%d: stream says position %d, log says %d", stream, i+1, e.Position, logged.Position)
			}
		}
	}
}
