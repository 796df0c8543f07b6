package cluster

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every scheduled run happens exactly once, Schedule never waits for a
// worker, and workers are reused while work keeps coming, then all exit.
func TestWarmDispatcherRunsEverythingAndWindsDown(t *testing.T) {
	d := newWarmDispatcher(300)
	d.maxWorkers = 4
	const runs = 20000
	var done atomic.Int64
	var wg sync.WaitGroup
	wg.Add(runs)
	var spawned atomic.Int32
	for i := 0; i < runs; i++ {
		before := d.workers.Load()
		d.Schedule(func() { done.Add(1); wg.Done() })
		if d.workers.Load() > before {
			spawned.Add(1)
		}
	}
	wg.Wait()
	if got := done.Load(); got != runs {
		t.Fatalf("%d runs, want %d", got, runs)
	}
	if w := d.workers.Load(); w > d.maxWorkers {
		t.Fatalf("%d workers, bound %d", w, d.maxWorkers)
	}
	// A worker that finished waits for the next run instead of exiting.
	for deadline := time.Now().Add(5 * time.Second); ; {
		var ran sync.WaitGroup
		ran.Add(1)
		w := d.workers.Load()
		d.Schedule(ran.Done)
		ran.Wait()
		if w > 0 && d.workers.Load() == w {
			break // an idle worker took it
		}
		if time.Now().After(deadline) {
			t.Fatal("no idle worker ever took a run")
		}
	}
	for deadline := time.Now().Add(5 * time.Second); d.workers.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still alive long after the work stopped", d.workers.Load())
		}
	}
	t.Logf("%d runs, %d worker starts", runs, spawned.Load())
}

// A run that blocks (a grain waiting on storage) does not hold up others:
// past the bound, runs get goroutines of their own.
func TestWarmDispatcherNeverBlocksOnBusyWorkers(t *testing.T) {
	d := newWarmDispatcher(300)
	d.maxWorkers = 2
	release := make(chan struct{})
	var blocked sync.WaitGroup
	blocked.Add(3)
	for range 3 {
		d.Schedule(func() { blocked.Done(); <-release })
	}
	blocked.Wait() // all three run at once, one beyond the bound
	ran := make(chan struct{})
	d.Schedule(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("a run waited for busy workers")
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); d.workers.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still alive", d.workers.Load())
		}
	}
}
