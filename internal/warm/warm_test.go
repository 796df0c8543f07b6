package warm

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every scheduled run happens exactly once, Schedule never waits for a
// worker, and workers are reused while work keeps coming, then all exit.
func TestPoolRunsEverythingAndWindsDown(t *testing.T) {
	d := New(4, DefaultIdle)
	const runs = 20000
	var done atomic.Int64
	var wg sync.WaitGroup
	wg.Add(runs)
	var spawned atomic.Int32
	for i := 0; i < runs; i++ {
		before := int32(d.Workers())
		d.Go(func() { done.Add(1); wg.Done() })
		if int32(d.Workers()) > before {
			spawned.Add(1)
		}
	}
	wg.Wait()
	if got := done.Load(); got != runs {
		t.Fatalf("%d runs, want %d", got, runs)
	}
	if w := int32(d.Workers()); w > 4 {
		t.Fatalf("%d workers, bound 4", w)
	}
	// A worker that finished waits for the next run instead of exiting.
	for deadline := time.Now().Add(5 * time.Second); ; {
		var ran sync.WaitGroup
		ran.Add(1)
		w := int32(d.Workers())
		d.Go(ran.Done)
		ran.Wait()
		if w > 0 && int32(d.Workers()) == w {
			break // an idle worker took it
		}
		if time.Now().After(deadline) {
			t.Fatal("no idle worker ever took a run")
		}
	}
	for deadline := time.Now().Add(5 * time.Second); int32(d.Workers()) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still alive long after the work stopped", int32(d.Workers()))
		}
	}
	t.Logf("%d runs, %d worker starts", runs, spawned.Load())
}

// A run that blocks (a grain waiting on storage) does not hold up others:
// past the bound, runs get goroutines of their own.
func TestPoolNeverBlocksOnBusyWorkers(t *testing.T) {
	d := New(2, DefaultIdle)
	release := make(chan struct{})
	var blocked sync.WaitGroup
	blocked.Add(3)
	for range 3 {
		d.Go(func() { blocked.Done(); <-release })
	}
	blocked.Wait() // all three run at once, one beyond the bound
	ran := make(chan struct{})
	d.Go(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("a run waited for busy workers")
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); int32(d.Workers()) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still alive", int32(d.Workers()))
		}
	}
}

// Quiesce ends idle workers at once, long before their idle timer, and
// reports a worker that is still busy at its deadline.
func TestQuiesceEndsIdleWorkersAndReportsBusyOnes(t *testing.T) {
	d := New(4, time.Hour)
	var ran sync.WaitGroup
	ran.Add(3)
	for range 3 {
		d.Go(ran.Done)
	}
	ran.Wait()
	if d.Workers() == 0 {
		t.Fatal("no worker alive after three runs")
	}
	if err := Quiesce(5 * time.Second); err != nil {
		t.Fatalf("quiesce with only idle workers: %v", err)
	}
	if w := d.Workers(); w != 0 {
		t.Fatalf("%d workers alive after quiesce", w)
	}

	release := make(chan struct{})
	started := make(chan struct{})
	d.Go(func() { close(started); <-release })
	<-started
	if err := Quiesce(50 * time.Millisecond); err == nil {
		t.Fatal("quiesce reported nothing while a worker was busy")
	}
	close(release)
	if err := Quiesce(5 * time.Second); err != nil {
		t.Fatalf("quiesce after the busy run ended: %v", err)
	}
	// The pool still works after quiescing.
	done := make(chan struct{})
	d.Go(func() { close(done) })
	<-done
	if err := Quiesce(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// nil is how Quiesce ends a worker, so Go refuses it rather than lose the
// call and a worker silently.
func TestGoRefusesNil(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Go(nil) did not panic")
		}
	}()
	New(1, DefaultIdle).Go(nil)
}
