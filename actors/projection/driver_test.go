package projection_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"granary/actors/projection"
	"granary/messages"
	"granary/persistence"
)

func TestDriverCatchesUpEveryPartition(t *testing.T) {
	backends(t, 4, func(t *testing.T, s persistence.Store) {
		l := newLedger()
		writeAccounts(t, s, l, rand.New(rand.NewPCG(1, 2)), "acc", 40)
		d := projection.NewDriver(projection.AccountSummary{}, driverConfig(t, s, newClock().Now))

		st := mustStatus(t, s)
		if st.Position != 0 || st.Head == 0 || st.Lag != st.Head || len(st.Partitions) != 4 || st.Generation != 1 || st.Rebuilding {
			t.Fatalf("status before: %+v", st)
		}
		stepUntilIdle(t, d)
		checkSummaries(t, s, l.want())
		st = mustStatus(t, s)
		if st.Lag != 0 || st.Position != st.Head {
			t.Fatalf("status after catch-up: %+v", st)
		}
		for _, p := range st.Partitions {
			if h, _ := s.Head(context.Background(), p.Partition); p.Head != h || p.Position != h {
				t.Fatalf("partition %+v, head %d", p, h)
			}
		}

		// New events are picked up by the next steps.
		writeAccounts(t, s, l, rand.New(rand.NewPCG(3, 4)), "more", 10)
		stepUntilIdle(t, d)
		checkSummaries(t, s, l.want())
	})
}

// Two drivers of one projection (two activations during a membership
// change) stepping at once while events arrive: every event counts once.
func TestTwoDriversApplyEachEventOnce(t *testing.T) {
	backends(t, 2, func(t *testing.T, s persistence.Store) {
		l := newLedger()
		now := newClock().Now
		var wg sync.WaitGroup
		var stop atomic.Bool
		var events [2]atomic.Int64
		for i := range 2 {
			cfg := driverConfig(t, s, now)
			cfg.StepBudget = time.Millisecond
			d := projection.NewDriver(projection.AccountSummary{}, cfg)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					res, err := d.Step(context.Background())
					if err != nil {
						t.Errorf("driver %d: %v", i, err)
						return
					}
					events[i].Add(int64(res.Events))
				}
			}()
		}
		writeAccounts(t, s, l, rand.New(rand.NewPCG(5, 6)), "acc", 30)
		// A third driver steps until it finds nothing left, still racing
		// the other two.
		stepUntilIdle(t, projection.NewDriver(projection.AccountSummary{}, driverConfig(t, s, now)))
		stop.Store(true)
		wg.Wait()
		checkSummaries(t, s, l.want())
		st := mustStatus(t, s)
		if st.Lag != 0 {
			t.Fatalf("lag %d after both drivers went idle", st.Lag)
		}
		t.Logf("events committed by driver 0: %d, driver 1: %d, journal: %d", events[0].Load(), events[1].Load(), st.Head)
	})
}

func TestRebuildSwapsAndRetires(t *testing.T) {
	backends(t, 3, func(t *testing.T, s persistence.Store) {
		l := newLedger()
		clk := newClock()
		cfg := driverConfig(t, s, clk.Now)
		d := projection.NewDriver(projection.AccountSummary{}, cfg)
		writeAccounts(t, s, l, rand.New(rand.NewPCG(7, 8)), "acc", 25)
		stepUntilIdle(t, d)
		want := l.want()

		meta, started, err := d.RequestRebuild(context.Background())
		if err != nil || !started || meta.Current != 1 || meta.Next != 2 {
			t.Fatalf("RequestRebuild = %+v, %v, %v", meta, started, err)
		}
		if _, started, _ := d.RequestRebuild(context.Background()); started {
			t.Fatal("a second request started a second rebuild")
		}
		st := mustStatus(t, s)
		if !st.Rebuilding || st.RebuildGeneration != 2 || st.RebuildPosition != 0 || st.RebuildProgress != 0 || st.Lag != 0 {
			t.Fatalf("status at rebuild start: %+v", st)
		}

		// Step by step: reads keep answering the whole time.
		cfg.StepBudget = time.Nanosecond
		small := projection.NewDriver(projection.AccountSummary{}, cfg)
		sawProgress := false
		for i := 0; ; i++ {
			checkSummaries(t, s, want)
			if _, err := small.Step(context.Background()); err != nil {
				t.Fatal(err)
			}
			st := mustStatus(t, s)
			if st.Rebuilding && st.RebuildProgress > 0 && st.RebuildProgress < 1 {
				sawProgress = true
			}
			if !st.Rebuilding {
				break
			}
			if i > 10_000 {
				t.Fatal("rebuild never finished")
			}
		}
		if !sawProgress {
			t.Fatal("status never showed a rebuild in progress")
		}
		meta, err = s.ProjectionMeta(context.Background(), projection.AccountSummaryName)
		if err != nil || meta.Current != 2 || meta.Retired != 1 || meta.Next != 0 {
			t.Fatalf("meta after swap: %+v", meta)
		}
		checkSummaries(t, s, want)

		// The old generation stays readable for the grace period, then goes.
		stepUntilIdle(t, small)
		old := persistence.ReadModelRef{Projection: projection.AccountSummaryName, Generation: 1, Partition: s.PartitionOf("account-acc0")}
		if docs, err := s.ReadDocs(context.Background(), old, []string{"acc0"}); err != nil || docs[0] == nil {
			t.Fatalf("old generation gone before its grace: %v, %v", docs, err)
		}
		clk.Advance(cfg.RetireGrace)
		stepUntilIdle(t, small)
		if m, _ := s.ProjectionMeta(context.Background(), projection.AccountSummaryName); m.Retired != 0 || m.Current != 2 {
			t.Fatalf("meta after retiring: %+v", m)
		}
		if docs, err := s.ReadDocs(context.Background(), old, []string{"acc0"}); err != nil || docs[0] != nil {
			t.Fatalf("old generation not deleted: %q, %v", docs, err)
		}
		if _, err := s.Checkpoint(context.Background(), old); !errors.Is(err, persistence.ErrGenerationRetired) {
			t.Fatalf("old checkpoint: %v, want ErrGenerationRetired", err)
		}
		checkSummaries(t, s, want)

		// The rebuilt generation keeps following the journal.
		writeAccounts(t, s, l, rand.New(rand.NewPCG(9, 10)), "new", 5)
		stepUntilIdle(t, d) // d still believes generation 1 is live
		checkSummaries(t, s, l.want())
	})
}

// A rebuild under write load: a writer appends while the driver rebuilds
// (one write per rebuild step, so they truly interleave and the rebuild
// still converges), a reader reads every summary again and again and must
// never fail or see one go back or vanish; the rebuilt model equals the
// live state.
func TestRebuildUnderWriteLoad(t *testing.T) {
	backends(t, 2, func(t *testing.T, s persistence.Store) {
		l := newLedger()
		clk := newClock()
		cfg := driverConfig(t, s, clk.Now)
		cfg.StepBudget = time.Nanosecond // one batch per partition per step
		cfg.BatchSize = 3
		cfg.RetireGrace = 0 // delete the old generation at once: the reader must cope
		d := projection.NewDriver(projection.AccountSummary{}, cfg)
		writeAccounts(t, s, l, rand.New(rand.NewPCG(11, 12)), "acc", 20)
		stepUntilIdle(t, d)

		stop := make(chan struct{})
		tokens := make(chan struct{}, 1) // a step lets one write through
		var writes, reads atomic.Int64
		var wg sync.WaitGroup
		// Stop the goroutines on every way out, before the store's cleanup.
		var once sync.Once
		halt := func() { once.Do(func() { close(stop); wg.Wait() }) }
		defer halt()
		wg.Add(2)
		go func() { // writer: more accounts, and more events on old ones
			defer wg.Done()
			r := rand.New(rand.NewPCG(13, 14))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tokens:
				}
				// One event a write, so the rebuild (a few a step) gains.
				if i%2 == 0 {
					id := fmt.Sprintf("w%d", i)
					evs, _ := decideAll([]*messages.AccountRequest{openReq("N"+id, r.Int64N(1000))}, id)
					l.appendEvents(t, s, id, evs)
				} else {
					l.deposit(t, s, fmt.Sprintf("acc%d", r.IntN(20)), 1+r.Int64N(1000))
				}
				writes.Add(1)
			}
		}()
		go func() { // reader
			defer wg.Done()
			seen := map[string]uint64{}
			for {
				for _, id := range l.ids() {
					select {
					case <-stop:
						return
					default:
					}
					got, ok, err := projection.GetSummary(context.Background(), s, id)
					reads.Add(1)
					switch {
					case err != nil:
						t.Errorf("read %s during rebuild: %v", id, err)
						return
					case !ok && seen[id] > 0:
						t.Errorf("summary of %s disappeared", id)
						return
					case ok && got.Version < seen[id]:
						t.Errorf("summary of %s went back from version %d to %d", id, seen[id], got.Version)
						return
					}
					seen[id] = got.Version
				}
			}
		}()

		if _, _, err := d.RequestRebuild(context.Background()); err != nil {
			t.Fatal(err)
		}
		steps := 0
		for ; ; steps++ {
			tokens <- struct{}{} // waits for the writer to take the last one
			if _, err := d.Step(context.Background()); err != nil {
				t.Fatal(err)
			}
			if m := d.Meta(); m.Current == 2 && m.Retired == 0 {
				break
			}
			if steps > 100_000 {
				t.Fatal("rebuild never swapped in")
			}
		}
		halt()
		during := writes.Load()
		if during < int64(steps)-1 {
			t.Fatalf("%d writes during %d rebuild steps", during, steps)
		}
		stepUntilIdle(t, d)
		checkSummaries(t, s, l.want())
		if t.Failed() {
			return
		}
		t.Logf("rebuild in %d steps raced %d writes and %d reads", steps, during, reads.Load())
	})
}

// An event the projection cannot fold stops it there: it is not skipped,
// and nothing after it is applied.
func TestUndecodableEventStopsTheProjection(t *testing.T) {
	backends(t, 1, func(t *testing.T, s persistence.Store) {
		l := newLedger()
		writeAccounts(t, s, l, rand.New(rand.NewPCG(15, 16)), "acc", 3)
		head, _ := s.Head(context.Background(), 0)
		if _, err := s.Append(context.Background(), "account-bad", 0, []persistence.EventData{{Type: "AccountOpened", Data: []byte{0xff, 0xff}}}); err != nil {
			t.Fatal(err)
		}
		d := projection.NewDriver(projection.AccountSummary{}, driverConfig(t, s, newClock().Now))
		var err error
		for range 1000 {
			if _, err = d.Step(context.Background()); err != nil {
				break
			}
		}
		if !errors.Is(err, persistence.ErrCorrupt) {
			t.Fatalf("Step: %v, want ErrCorrupt", err)
		}
		st := mustStatus(t, s)
		if st.Position > head || st.Position < head-6 {
			t.Fatalf("position %d, want just before the bad event at %d", st.Position, head+1)
		}
	})
}

// racingStore lets a test act as a second activation of the projection at
// the worst moment: right after the rebuilt generation commits its last
// batch, inject runs once.
type racingStore struct {
	persistence.Store
	next   uint64 // the rebuilt generation
	inject func()
}

func (s *racingStore) ApplyReadModel(ctx context.Context, ref persistence.ReadModelRef, expected, next uint64, docs []persistence.DocWrite) error {
	if err := s.Store.ApplyReadModel(ctx, ref, expected, next, docs); err != nil {
		return err
	}
	if head, err := s.Head(ctx, ref.Partition); err == nil && ref.Generation == s.next && next == head && s.inject != nil {
		inject := s.inject
		s.inject = nil
		inject()
	}
	return nil
}

// commitLive is what another activation does: fold the live generation's
// next events and commit them.
func commitLive(t *testing.T, s persistence.Store, ref persistence.ReadModelRef) {
	t.Helper()
	ctx := context.Background()
	cp, err := s.Checkpoint(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	events, err := s.ReadPartition(ctx, ref.Partition, cp, 100)
	if err != nil || len(events) == 0 {
		t.Fatalf("read after %d: %d events, %v", cp, len(events), err)
	}
	h := projection.AccountSummary{}
	keys := h.Keys(events)
	found, err := s.ReadDocs(ctx, ref, keys)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string][]byte{}
	for i, k := range keys {
		docs[k] = found[i]
	}
	writes, err := h.Fold(docs, events)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyReadModel(ctx, ref, cp, events[len(events)-1].Position, writes); err != nil {
		t.Fatal(err)
	}
}

// Two activations during a rebuild: while one finishes the rebuilt
// generation, the other commits a new event to the live one. The swap must
// wait until the rebuilt generation has it too, or readers would see the
// summary go back a version.
func TestSwapWaitsForALiveGenerationAhead(t *testing.T) {
	backends(t, 1, func(t *testing.T, inner persistence.Store) {
		l := newLedger()
		s := &racingStore{Store: inner}
		cfg := driverConfig(t, s, newClock().Now)
		// One batch holds the whole rebuild, so the rebuilt generation is
		// done the moment it commits it and nothing picks the injected
		// event up before the swap decision.
		cfg.BatchSize = 1000
		d := projection.NewDriver(projection.AccountSummary{}, cfg)
		writeAccounts(t, inner, l, rand.New(rand.NewPCG(3, 4)), "acc", 5)
		const id = "open1"
		opened, _ := decideAll([]*messages.AccountRequest{openReq("N"+id, 100)}, id)
		l.appendEvents(t, inner, id, opened)
		stepUntilIdle(t, d)
		meta, _, err := d.RequestRebuild(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s.next = meta.Next
		s.inject = func() {
			l.deposit(t, inner, id, 11)
			commitLive(t, inner, persistence.ReadModelRef{Projection: projection.AccountSummaryName, Generation: meta.Current, Partition: 0})
		}
		wantVersion := l.want()[id].Version + 1
		for i := 0; ; i++ {
			if _, err := d.Step(context.Background()); err != nil {
				t.Fatal(err)
			}
			if s.inject == nil { // injected: from now on readers must see the deposit
				got, ok, err := projection.GetSummary(context.Background(), inner, id)
				if err != nil || !ok || got.Version != wantVersion {
					t.Fatalf("step %d: summary of %s at version %d (%v, %v), want %d", i, id, got.Version, ok, err, wantVersion)
				}
			}
			if st := mustStatus(t, inner); !st.Rebuilding {
				break
			}
			if i > 10_000 {
				t.Fatal("rebuild never finished")
			}
		}
		if s.inject != nil {
			t.Fatal("the rebuilt generation never committed up to the head")
		}
		stepUntilIdle(t, d)
		checkSummaries(t, inner, l.want())
	})
}
