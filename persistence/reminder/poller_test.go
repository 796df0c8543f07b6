package reminder

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable Now for the Poller, so leases end when the test says.
type clock struct{ ms atomic.Int64 }

func newClock() *clock                   { c := &clock{}; c.ms.Store(base.UnixMilli()); return c }
func (c *clock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// waitFor polls cond until it returns nil, failing with its last error.
func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
		panic("unreachable")
	}
}

// start runs p until the test ends and returns a function that cancels
// it and a channel closed when Run has returned.
func start(t *testing.T, p *Poller) (stop func(), done <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	go func() { defer close(ch); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ch })
	return cancel, ch
}

func TestPollerWakesDueReminder(t *testing.T) {
	s, clk := NewMemory(), newClock()
	k := Key{Kind: "service", ID: "inst-1"}
	if err := s.Set(t.Context(), k, clk.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	woken := make(chan Due, 10)
	cs := &countingStore{Store: s}
	p := &Poller{Store: cs, Now: clk.Now, Interval: time.Millisecond, Logger: testLogger(t),
		Wake: func(ctx context.Context, d Due) error {
			woken <- d
			return s.Cancel(ctx, d.Key) // the grain's own re-arm or cancel
		}}
	start(t, p)
	// Not due yet: the poller claims round after round without waking it.
	waitFor(t, 5*time.Second, func() error {
		if cs.claims.Load() < 3 {
			return errors.New("fewer than 3 claims yet")
		}
		return nil
	})
	select {
	case d := <-woken:
		t.Fatalf("woke %v before it was due", d)
	default:
	}
	clk.Advance(time.Second)
	d := recv(t, woken, "wake")
	if d.Key != k || !d.At.Equal(base.Add(time.Second)) {
		t.Fatalf("woke %v; want %v at %v", d, k, base.Add(time.Second))
	}
	waitFor(t, 5*time.Second, func() error {
		if st := p.Stats(); st.Woken != 1 || st.Claimed != 1 {
			return errors.New("stats not yet 1 claimed, 1 woken")
		}
		return nil
	})
	if n, _ := s.Len(t.Context()); n != 0 {
		t.Fatalf("Len = %d after the grain cancelled", n)
	}
}

func TestPollerWakeErrorFiresAgainAfterLease(t *testing.T) {
	s, clk := NewMemory(), newClock()
	k := Key{Kind: "saga", ID: "t-1"}
	if err := s.Set(t.Context(), k, clk.Now()); err != nil {
		t.Fatal(err)
	}
	lease := 5 * time.Second
	calls := make(chan Due, 10)
	var n atomic.Int32
	p := &Poller{Store: s, Now: clk.Now, Interval: time.Millisecond, Lease: lease, Logger: testLogger(t),
		Wake: func(ctx context.Context, d Due) error {
			calls <- d
			if n.Add(1) == 1 {
				return errors.New("grain unreachable")
			}
			return s.Cancel(ctx, d.Key)
		}}
	start(t, p)
	recv(t, calls, "first wake")
	waitFor(t, 5*time.Second, func() error {
		if p.Stats().WakeErrors != 1 {
			return errors.New("wake error not counted yet")
		}
		return nil
	})
	at, ok, err := s.Next(t.Context(), k)
	if err != nil || !ok || !at.Equal(base.Add(lease)) {
		t.Fatalf("after a failed wake Next = %v, %v, %v; want the lease end %v", at, ok, err, base.Add(lease))
	}
	select {
	case d := <-calls:
		t.Fatalf("woke %v again within the lease", d)
	default:
	}
	clk.Advance(lease)
	d := recv(t, calls, "second wake")
	if d.Key != k {
		t.Fatalf("second wake of %v; want %v", d.Key, k)
	}
}

func TestPollerBoundsConcurrency(t *testing.T) {
	s, clk := NewMemory(), newClock()
	const reminders, limit = 20, 3
	for i := range reminders {
		if err := s.Set(t.Context(), Key{Kind: "k", ID: string(rune('a' + i))}, clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	var inFlight, peak atomic.Int32
	release := make(chan struct{})
	var seen sync.Map
	p := &Poller{Store: s, Now: clk.Now, Interval: time.Millisecond, Concurrency: limit, Batch: 64, Logger: testLogger(t),
		Wake: func(ctx context.Context, d Due) error {
			if _, dup := seen.LoadOrStore(d.Key, true); dup {
				t.Errorf("%v woken twice within its lease", d.Key)
			}
			cur := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				old := peak.Load()
				if cur <= old || peak.CompareAndSwap(old, cur) {
					break
				}
			}
			<-release
			return s.Cancel(context.WithoutCancel(ctx), d.Key)
		}}
	start(t, p)
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // runs before start's cleanup waits for Run
	waitFor(t, 5*time.Second, func() error {
		if inFlight.Load() != limit {
			return errors.New("not yet at the concurrency limit")
		}
		return nil
	})
	// With every slot busy the poller claims nothing more, so leases of
	// unwoken reminders are not running out in a queue.
	if c := p.Stats().Claimed; c != limit {
		t.Fatalf("claimed %d with %d slots busy; want %d", c, limit, limit)
	}
	releaseAll()
	waitFor(t, 5*time.Second, func() error {
		if w := p.Stats().Woken; w != reminders {
			return errors.New("not every reminder woken yet")
		}
		return nil
	})
	if pk := peak.Load(); pk > limit {
		t.Fatalf("peak %d Wake calls in flight; limit %d", pk, limit)
	}
}

func TestPollerRunWaitsForWakesInFlight(t *testing.T) {
	s, clk := NewMemory(), newClock()
	if err := s.Set(t.Context(), Key{Kind: "k", ID: "slow"}, clk.Now()); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	p := &Poller{Store: s, Now: clk.Now, Interval: time.Millisecond, Logger: testLogger(t),
		Wake: func(ctx context.Context, d Due) error {
			close(entered)
			<-release // deliberately ignores ctx: a Wake slow to notice
			return nil
		}}
	stop, done := start(t, p)
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // runs before start's cleanup waits for Run
	recv(t, entered, "wake")
	stop()
	select {
	case <-done:
		t.Fatal("Run returned while a Wake was still running")
	case <-time.After(50 * time.Millisecond):
	}
	releaseAll()
	recv(t, done, "Run to return")
}

// countingStore counts Claim calls.
type countingStore struct {
	Store
	claims atomic.Int32
}

func (c *countingStore) Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Due, error) {
	c.claims.Add(1)
	return c.Store.Claim(ctx, now, lease, limit)
}

// failingStore fails every Claim, counting them.
type failingStore struct {
	Store
	claims atomic.Int32
}

func (f *failingStore) Claim(context.Context, time.Time, time.Duration, int) ([]Due, error) {
	f.claims.Add(1)
	return nil, errors.New("connection refused")
}

// countHandler counts error records.
type countHandler struct {
	slog.Handler
	errors atomic.Int32
}

func (h *countHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.errors.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func TestPollerRateLimitsStoreErrors(t *testing.T) {
	f, clk := &failingStore{Store: NewMemory()}, newClock()
	h := &countHandler{Handler: testLogger(t).Handler()}
	p := &Poller{Store: f, Now: clk.Now, Interval: time.Millisecond, Logger: slog.New(h),
		Wake: func(context.Context, Due) error { return nil }}
	start(t, p)
	waitFor(t, 5*time.Second, func() error {
		if f.claims.Load() < 20 {
			return errors.New("fewer than 20 failed claims yet")
		}
		return nil
	})
	if n := h.errors.Load(); n != 1 {
		t.Fatalf("%d error lines for %d failures in under 30s; want 1", n, f.claims.Load())
	}
	clk.Advance(failureLogEvery)
	waitFor(t, 5*time.Second, func() error {
		if h.errors.Load() != 2 {
			return errors.New("no second line after 30s")
		}
		return nil
	})
	if st := p.Stats(); st.ClaimErrors < 20 {
		t.Fatalf("ClaimErrors = %d; want ≥ 20", st.ClaimErrors)
	}
}
