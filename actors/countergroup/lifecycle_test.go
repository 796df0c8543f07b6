package countergroup_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"granary/actors/account"
	"granary/actors/countergroup"
	"granary/testkit"
)

// recorder is a slog.Handler that keeps every record (and passes it on to
// the test log), so a test can check what was logged at which level.
type recorder struct {
	mu   *sync.Mutex
	recs *[]slog.Record
	next slog.Handler
}

func newRecorder(t *testing.T) (*slog.Logger, func() []slog.Record) {
	r := &recorder{mu: &sync.Mutex{}, recs: &[]slog.Record{}, next: testkit.Logger(t).Handler()}
	return slog.New(r), func() []slog.Record {
		r.mu.Lock()
		defer r.mu.Unlock()
		return slices.Clone(*r.recs)
	}
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(ctx context.Context, rec slog.Record) error {
	r.mu.Lock()
	*r.recs = append(*r.recs, rec.Clone())
	r.mu.Unlock()
	return r.next.Handle(ctx, rec)
}
func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{mu: r.mu, recs: r.recs, next: r.next.WithAttrs(as)}
}
func (r *recorder) WithGroup(n string) slog.Handler {
	return &recorder{mu: r.mu, recs: r.recs, next: r.next.WithGroup(n)}
}

// Issue 9, item 7: a group passivating stops its children with it; that
// is normal and must not be logged as the supervisor giving up on them.
func TestPassivatingGroupLogsNoError(t *testing.T) {
	log, records := newRecorder(t)
	c := testkit.NewCluster(t, 1, func(c *testkit.Cluster) { c.Log = log },
		testkit.WithGrainConfig(func(g *account.GrainConfig) { g.IdleTimeout = 300 * time.Millisecond }))
	g := &groupClient{t: t, m: c.Member(0), name: "idle"}
	g.call(spawn())
	g.call(spawn())
	g.call(broadcast("increment"))

	testkit.WaitFor(t, 10*time.Second, func() error {
		for _, r := range records() {
			if r.Level >= slog.LevelError || r.Message == "counter group stopped" {
				return nil
			}
		}
		return fmt.Errorf("group has not passivated yet")
	})
	for _, r := range records() {
		if r.Level >= slog.LevelError {
			t.Errorf("passivation logged %s %q", r.Level, r.Message)
		}
	}
}

// Issue 9, item 7: the supervisor's "stopped" decision is durable: after
// the group is activated again (here on a new member, same journal) the
// child is still stopped, reported, and not restarted.
func TestStoppedChildStaysStoppedAfterReactivation(t *testing.T) {
	store := testkit.NewStore(t)
	first := testkit.NewCluster(t, 1, testkit.WithStore(store))
	g := &groupClient{t: t, m: first.Member(0), name: "budget"}
	g.call(spawn())
	g.call(spawn())
	g.call(broadcast("increment"))
	budget, _ := countergroup.DefaultSupervision()
	for range budget + 1 {
		g.call(crash("c2"))
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if r := g.call(get()); !slices.Equal(r.GetStopped(), []string{"c2"}) {
			return fmt.Errorf("stopped %v restarts %v", r.GetStopped(), r.GetRestarts())
		}
		return nil
	})
	first.Kill(0)

	second := testkit.NewCluster(t, 1, testkit.WithStore(store))
	g.m = second.Member(0)
	if r := g.call(get()); !slices.Equal(r.GetStopped(), []string{"c2"}) {
		t.Fatalf("after reactivation: stopped %v, want [c2]", r.GetStopped())
	}
	r := g.call(broadcast("increment"))
	if r.GetFailure() != nil || r.GetCounters()["c1"] != 2 || !slices.Equal(r.GetStopped(), []string{"c2"}) {
		t.Fatalf("broadcast after reactivation: %v (c1 counts on, c2 stays stopped)", r)
	}
}
