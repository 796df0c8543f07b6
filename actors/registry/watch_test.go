package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"granary/messages"
)

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// waitFor polls cond until it returns nil or the deadline passes. testkit
// has one too, but testkit imports this package.
func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ids(recs []InstanceRecord) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.InstanceID)
	}
	return out
}

func TestWatcherMatchLongestPrefix(t *testing.T) {
	v, ctx := NewMemoryView(), testCtx(t)
	must[bool](t)(v.PutRoutes(ctx, 1, []*messages.RouteSpec{
		{Name: "shop", PathPrefix: "/shop", Service: "shop"},
		{Name: "items", PathPrefix: "/shop/cart/items", Service: "items"},
		{Name: "cart", PathPrefix: "/shop/cart", Service: "cart"},
		{Name: "admin", PathPrefix: "/admin", Service: "admin"},
	}))
	w := NewWatcher(v, time.Hour, quietLog())
	if _, ok := w.Match("/shop"); ok {
		t.Fatal("a watcher that never loaded matches nothing")
	}
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/shop": "shop", "/shop/": "shop", "/shop/cartX": "shop", "/shop/cart": "cart", "/shop/cart/7": "cart",
		"/shop/cart/items": "items", "/shop/cart/items/1": "items", "/admin/x": "admin", "/shopX": "", "/": "", "/other": "",
	} {
		r, ok := w.Match(path)
		if got := r.GetName(); ok != (want != "") || got != want {
			t.Errorf("Match(%q) = %q %v, want %q", path, got, ok, want)
		}
	}
	var names []string
	for _, r := range w.Routes() {
		names = append(names, r.GetName())
	}
	if !slices.Equal(names, []string{"admin", "cart", "items", "shop"}) {
		t.Fatalf("Routes() = %v, want sorted by name", names)
	}
}

func TestWatcherInstances(t *testing.T) {
	v, ctx := NewMemoryView(), testCtx(t)
	now := time.Now()
	ttl := 10 * time.Second
	fresh := viewRecord("svc", "a-fresh", 1)
	down := viewRecord("svc", "b-down", 2)
	down.Status, down.DownReason = StatusDown, "probe"
	stale := viewRecord("svc", "c-stale", 3)
	recent := viewRecord("svc", "d-recent", 1)
	recent.RegisteredAt = now.UnixMilli() // no beat yet: the registration counts
	tomb := viewRecord("svc", "e-removed", 4)
	tomb.Removed = true
	other := viewRecord("other", "x", 1)
	for _, r := range []InstanceRecord{stale, down, fresh, recent, tomb, other} {
		must[bool](t)(v.PutInstance(ctx, r))
	}
	must[time.Time](t)(v.Beat(ctx, "svc", "a-fresh", now.Add(-ttl+time.Second)))
	must[time.Time](t)(v.Beat(ctx, "svc", "b-down", now))
	// Older than ttl + staleAfter by a margin no test run can close.
	must[time.Time](t)(v.Beat(ctx, "svc", "c-stale", now.Add(-ttl-staleAfter-time.Minute)))
	must[time.Time](t)(v.Beat(ctx, "other", "x", now))

	w := NewWatcher(v, time.Hour, quietLog())
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ids(w.Up("svc")); !slices.Equal(got, []string{"a-fresh", "d-recent"}) {
		t.Fatalf("Up = %v, want only the fresh UP instances", got)
	}
	if got := w.Up("missing"); len(got) != 0 {
		t.Fatalf("Up(missing) = %v", got)
	}
	all, beats := w.Instances("svc")
	if got := ids(all); !slices.Equal(got, []string{"a-fresh", "d-recent", "b-down", "c-stale"}) {
		t.Fatalf("Instances = %v, want UP first, tombstones left out", got)
	}
	if st := all[3]; st.Status != StatusDown || st.DownReason != "heartbeat" || st.Up() {
		t.Fatalf("a silent UP instance must read DOWN (heartbeat): %+v", st)
	}
	if all[2].DownReason != "probe" {
		t.Fatalf("a published DOWN keeps its reason: %+v", all[2])
	}
	if beats["svc/b-down"] != now.UnixMilli() {
		t.Fatalf("beats %v", beats)
	}
	if got := w.Services(); !slices.Equal(got, []string{"other", "svc"}) {
		t.Fatalf("Services = %v", got)
	}
	if ver, ok := w.Version("svc", "c-stale"); !ok || ver != 3 {
		t.Fatalf("Version = %d %v", ver, ok)
	}
	if _, ok := w.Version("svc", "e-removed"); ok {
		t.Fatal("a tombstone has no version in the copy")
	}
	// The view itself is untouched: the copy's verdict is its own.
	snap := must[Snapshot](t)(v.Load(ctx))
	for _, r := range snap.Instances {
		if r.InstanceID == "c-stale" && r.Status != StatusUp {
			t.Fatal("Refresh changed the view's record")
		}
	}
}

// flakyView fails Rev and Load while failing is set.
type flakyView struct {
	View
	failing atomic.Bool
}

var errFlaky = errors.New("view unreachable")

func (f *flakyView) Rev(ctx context.Context) (uint64, error) {
	if f.failing.Load() {
		return 0, errFlaky
	}
	return f.View.Rev(ctx)
}

func (f *flakyView) Load(ctx context.Context) (Snapshot, error) {
	if f.failing.Load() {
		return Snapshot{}, errFlaky
	}
	return f.View.Load(ctx)
}

func TestWatcherPollsAndStops(t *testing.T) {
	v := &flakyView{View: NewMemoryView()}
	ctx := testCtx(t)
	rec := viewRecord("svc", "a", 1)
	rec.RegisteredAt = time.Now().UnixMilli()
	must[bool](t)(v.PutInstance(ctx, rec))
	w := NewWatcher(v, 5*time.Millisecond, quietLog())
	w.Start()
	defer w.Close()
	if got := ids(w.Up("svc")); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("Start must load once before polling: %v", got)
	}

	b := viewRecord("svc", "b", 1)
	b.RegisteredAt = time.Now().UnixMilli()
	must[bool](t)(v.PutInstance(ctx, b))
	must[bool](t)(v.PutRoutes(ctx, 1, []*messages.RouteSpec{{Name: "r", PathPrefix: "/r", Service: "svc"}}))
	waitFor(t, 5*time.Second, func() error {
		if _, ok := w.Match("/r/1"); !ok {
			return errors.New("route not seen")
		}
		if got := ids(w.Up("svc")); !slices.Equal(got, []string{"a", "b"}) {
			return fmt.Errorf("up = %v", got)
		}
		return nil
	})

	// While the view fails, the watcher routes on its last copy.
	v.failing.Store(true)
	if err := w.Refresh(ctx); !errors.Is(err, errFlaky) {
		t.Fatalf("Refresh on a failing view: %v", err)
	}
	down := viewRecord("svc", "a", 2)
	down.Status = StatusDown
	must[bool](t)(v.PutInstance(ctx, down))
	if got := ids(w.Up("svc")); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("a failing view must leave the last copy: %v", got)
	}
	v.failing.Store(false)
	waitFor(t, 5*time.Second, func() error {
		if got := ids(w.Up("svc")); !slices.Equal(got, []string{"b"}) {
			return fmt.Errorf("up = %v after the view came back", got)
		}
		return nil
	})

	w.Close()
	w.Close() // idempotent
}

// Heartbeats do not move the revision; the watcher must still reload to
// see an instance beat again.
func TestWatcherSeesBeatsWithoutRevision(t *testing.T) {
	v, ctx := NewMemoryView(), testCtx(t)
	rec := viewRecord("svc", "a", 1)
	rec.TTLSeconds = 1
	must[bool](t)(v.PutInstance(ctx, rec)) // registered long ago, never beat
	w := NewWatcher(v, 10*time.Millisecond, quietLog())
	w.Start()
	defer w.Close()
	if got := w.Up("svc"); len(got) != 0 {
		t.Fatalf("a silent instance is not up: %v", ids(got))
	}
	rev := must[uint64](t)(v.Rev(ctx))
	must[time.Time](t)(v.Beat(ctx, "svc", "a", time.Now().Add(time.Minute)))
	if must[uint64](t)(v.Rev(ctx)) != rev {
		t.Fatal("a beat moved the revision; this test needs it not to")
	}
	waitFor(t, 3*reloadEvery+time.Second, func() error {
		if got := ids(w.Up("svc")); !slices.Equal(got, []string{"a"}) {
			return fmt.Errorf("up = %v", got)
		}
		return nil
	})
}

func TestWatcherCloseWithoutStart(t *testing.T) {
	w := NewWatcher(NewMemoryView(), time.Hour, quietLog())
	closed := make(chan struct{})
	go func() {
		w.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(time.Second):
		t.Fatal("Close of a watcher never started did not return")
	}
}
