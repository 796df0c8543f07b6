package journaltest

import (
	"context"
	"errors"
	"testing"
	"time"

	"granary/persistence"
)

func lifecycleCases() []suiteCase {
	return []suiteCase{
		{"CancelledContext", 1, testCancelled},
		{"Close", 1, testClose},
	}
}

// calls exercises every method; it returns their errors by name.
func calls(c context.Context, s persistence.Store) map[string]error {
	errs := map[string]error{}
	_, errs["Append"] = s.Append(c, "s", 0, batch("s", 0, 1))
	_, errs["ReadStream"] = s.ReadStream(c, "s", 0, 0)
	_, errs["StreamVersion"] = s.StreamVersion(c, "s")
	_, errs["ReadPartition"] = s.ReadPartition(c, 0, 0, 0)
	_, errs["Head"] = s.Head(c, 0)
	errs["SaveSnapshot"] = s.SaveSnapshot(c, "s", persistence.Snapshot{})
	_, _, errs["LoadSnapshot"] = s.LoadSnapshot(c, "s")
	errs["Ping"] = s.Ping(c)
	ref := persistence.ReadModelRef{Projection: "p", Generation: 1}
	errs["ApplyReadModel"] = s.ApplyReadModel(c, ref, 0, 1, []persistence.DocWrite{{Key: "k", Data: []byte("d")}})
	_, errs["Checkpoint"] = s.Checkpoint(c, ref)
	_, errs["ReadDocs"] = s.ReadDocs(c, ref, []string{"k"})
	_, errs["ProjectionMeta"] = s.ProjectionMeta(c, "p")
	_, _, errs["BeginRebuild"] = s.BeginRebuild(c, "p")
	errs["SwapGeneration"] = s.SwapGeneration(c, "p", 1, 2, time.Unix(1, 0))
	_, errs["DeleteGeneration"] = s.DeleteGeneration(c, ref, 1)
	errs["FinishRetire"] = s.FinishRetire(c, "p", 1)
	return errs
}

func testCancelled(t *testing.T, s persistence.Store) {
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	for name, err := range calls(c, s) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err %v, want context.Canceled", name, err)
		}
	}
	if v := mustVersion(t, s, "s"); v != 0 {
		t.Fatalf("cancelled Append stored events: version %d", v)
	}
}

func testClose(t *testing.T, s persistence.Store) {
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	mustAppend(t, s, "s", 0, batch("s", 0, 1))
	for i := range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	for name, err := range calls(ctx(t), s) {
		if !errors.Is(err, persistence.ErrClosed) {
			t.Errorf("%s after Close: err %v, want ErrClosed", name, err)
		}
	}
}
