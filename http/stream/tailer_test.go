package stream_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"granary/http/stream"
	"granary/internal/leakcheck"
	"granary/persistence"
	"granary/persistence/memory"
	"granary/testkit"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func appendN(t *testing.T, j persistence.Journal, stream string, from, n int) {
	t.Helper()
	for i := range n {
		if _, err := j.Append(context.Background(), stream, uint64(from+i), []persistence.EventData{{Type: "E", Data: []byte{byte(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
}

func run(t *testing.T, tl *stream.Tailer) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); tl.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func receive(t *testing.T, s *stream.Sub) stream.Item {
	t.Helper()
	select {
	case it, ok := <-s.C:
		if !ok {
			t.Fatal("subscription closed")
		}
		return it
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received within 5s")
	}
	return stream.Item{}
}

func TestTailerDeliversNewEventsInOrderAndFilters(t *testing.T) {
	j := memory.New(2)
	appendN(t, j, "old", 0, 3) // before the tailer: not delivered
	tl := stream.NewTailer(j, 5*time.Millisecond, 10, testkit.Logger(t))
	all, err := tl.Subscribe(nil, true, 100)
	if err != nil {
		t.Fatal(err)
	}
	onlyA, _ := tl.Subscribe(func(e *persistence.Event) bool { return e.Stream == "a" }, false, 100)
	run(t, tl)
	// Wait until the tailer has read the heads, by observing a marker.
	testkit.WaitFor(t, 5*time.Second, func() error {
		appendN(t, j, "marker", int(mustVersion(t, j, "marker")), 1)
		select {
		case it := <-all.C:
			if it.Event.Stream == "marker" {
				return nil
			}
			return fmt.Errorf("got %s first", it.Event.Stream)
		case <-time.After(50 * time.Millisecond):
			return fmt.Errorf("no marker yet")
		}
	})
	for len(all.C) > 0 {
		<-all.C
	}
	appendN(t, j, "a", 0, 5)
	appendN(t, j, "b", 0, 2)
	for v := uint64(1); v <= 5; v++ {
		if it := receive(t, onlyA); it.Event.Stream != "a" || it.Event.Version != v {
			t.Fatalf("filtered subscriber got %+v, want a@%d", it.Event, v)
		}
	}
	got := map[string]int{}
	for range 7 {
		got[receive(t, all).Event.Stream]++
	}
	if got["a"] != 5 || got["b"] != 2 {
		t.Fatalf("unfiltered subscriber got %v", got)
	}
	tl.PublishTopology(stream.Topology{Members: []string{"m1"}})
	if it := receive(t, all); it.Topology == nil || it.Topology.Members[0] != "m1" {
		t.Fatalf("topology: %+v", it)
	}
	if len(onlyA.C) != 0 {
		t.Fatal("a subscriber without topology got a topology change")
	}
}

func mustVersion(t *testing.T, j persistence.Journal, s string) uint64 {
	v, err := j.StreamVersion(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSlowSubscriberIsDroppedNotWaitedFor(t *testing.T) {
	j := memory.New(1)
	tl := stream.NewTailer(j, 5*time.Millisecond, 10, testkit.Logger(t))
	slow, _ := tl.Subscribe(nil, false, 2)
	fast, _ := tl.Subscribe(nil, false, 100)
	run(t, tl)
	testkit.WaitFor(t, 5*time.Second, func() error {
		appendN(t, j, "s", int(mustVersion(t, j, "s")), 1)
		if len(fast.C) == 0 {
			return fmt.Errorf("tailer not started")
		}
		return nil
	})
	appendN(t, j, "s", int(mustVersion(t, j, "s")), 10)
	testkit.WaitFor(t, 5*time.Second, func() error {
		if len(fast.C) < 11 {
			return fmt.Errorf("fast subscriber has %d", len(fast.C))
		}
		return nil
	})
	n := 0
	for range slow.C { // closed after what fitted
		n++
	}
	if !slow.Overflowed() || n != 2 {
		t.Fatalf("slow subscriber: overflowed %v after %d items", slow.Overflowed(), n)
	}
	tl.Unsubscribe(fast)
	tl.Unsubscribe(fast) // twice is fine
	if _, ok := <-fast.C; ok {
		for range fast.C {
		}
	}
}

func TestSubscriberLimit(t *testing.T) {
	tl := stream.NewTailer(memory.New(1), time.Second, 1, testkit.Logger(t))
	if _, err := tl.Subscribe(nil, false, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := tl.Subscribe(nil, false, 1); err == nil {
		t.Fatal("a subscriber past the limit was accepted")
	}
}
