package registry

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"granary/messages"
)

// Watcher is a gateway's copy of the view: it polls the view's revision
// and reloads when it moved, so every gateway sees a change within one
// poll interval without a grain call per request.
type Watcher struct {
	view     View
	interval time.Duration
	log      *slog.Logger

	mu  sync.RWMutex
	cur *table

	loadMu  sync.Mutex // one Load at a time
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	started sync.Once
}

type table struct {
	rev    uint64
	routes []*messages.RouteSpec // longest prefix first
	byName map[string][]InstanceRecord
	up     map[string][]InstanceRecord
	beats  map[string]int64
}

// DefaultWatchInterval keeps every gateway within a fraction of the
// contract's 1 s.
const DefaultWatchInterval = 200 * time.Millisecond

// reloadEvery reloads even when the revision stands still: heartbeats do
// not move it, and a copy must see them to tell a silent instance whose
// grain has no member right now (its member died; the cluster has not
// moved it yet) from a live one. It also covers a view whose counter
// went back (a flushed Redis).
const reloadEvery = time.Second

// staleAfter is how much older than its ttl a heartbeat must be before a
// copy treats an instance as DOWN on its own: more than a reload's lag,
// so a copy never calls DOWN an instance its grain sees beating.
const staleAfter = reloadEvery + 500*time.Millisecond

// NewWatcher returns a watcher; Start begins polling.
func NewWatcher(view View, interval time.Duration, log *slog.Logger) *Watcher {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	return &Watcher{view: view, interval: interval, log: log, cur: &table{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// Start loads once (best effort) and polls until Close.
func (w *Watcher) Start() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if err := w.Refresh(ctx); err != nil {
		w.log.Warn("registry view: first load failed; retrying", "err", err)
	}
	cancel()
	w.started.Do(func() { go w.run() })
}

// Close stops polling and waits for the loop to end (at once when Start
// never ran).
func (w *Watcher) Close() {
	w.once.Do(func() { close(w.stop) })
	w.started.Do(func() { close(w.done) })
	<-w.done
}

func (w *Watcher) run() {
	defer close(w.done)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	last := time.Now()
	failing := false
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rev, err := w.view.Rev(ctx)
		if err == nil && (rev != w.rev() || time.Since(last) > reloadEvery) {
			err = w.Refresh(ctx)
			last = time.Now()
		}
		cancel()
		switch {
		case err != nil && !failing:
			w.log.Warn("registry view: reload failed; routing on the last copy", "err", err)
			failing = true
		case err == nil && failing:
			w.log.Info("registry view: reloading again")
			failing = false
		}
	}
}

func (w *Watcher) rev() uint64 {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.cur.rev
}

// Refresh reloads the view now: the gateway that made a change calls it
// before answering, so the change applies there at once.
func (w *Watcher) Refresh(ctx context.Context) error {
	w.loadMu.Lock()
	defer w.loadMu.Unlock()
	snap, err := w.view.Load(ctx)
	if err != nil {
		return err
	}
	t := &table{rev: snap.Rev, byName: map[string][]InstanceRecord{}, up: map[string][]InstanceRecord{}, beats: snap.Beats}
	slices.SortFunc(snap.Instances, func(a, b InstanceRecord) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.InstanceID, b.InstanceID))
	})
	now := time.Now().UnixMilli()
	for _, rec := range snap.Instances {
		// The grain marks a silent instance DOWN; while it cannot (no
		// member hosts it for a few seconds after its member died), the
		// heartbeat's age says so.
		beat := max(snap.Beats[InstanceIdentity(rec.Service, rec.InstanceID)], rec.RegisteredAt)
		if rec.Up() && now-beat > int64(rec.TTLSeconds)*1000+staleAfter.Milliseconds() {
			rec.Status, rec.DownReason = StatusDown, "heartbeat"
		}
		t.byName[rec.Service] = append(t.byName[rec.Service], rec)
		if rec.Up() {
			t.up[rec.Service] = append(t.up[rec.Service], rec)
		}
	}
	t.routes = slices.Clone(snap.Routes)
	slices.SortFunc(t.routes, func(a, b *messages.RouteSpec) int {
		return cmp.Or(cmp.Compare(len(b.GetPathPrefix()), len(a.GetPathPrefix())), strings.Compare(a.GetName(), b.GetName()))
	})
	w.mu.Lock()
	w.cur = t
	w.mu.Unlock()
	return nil
}

// Match returns the route whose prefix is the longest to match path.
func (w *Watcher) Match(path string) (*messages.RouteSpec, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	for _, r := range w.cur.routes {
		if Matches(r.GetPathPrefix(), path) {
			return r, true
		}
	}
	return nil, false
}

// Up returns the UP instances of service (shared: do not modify).
func (w *Watcher) Up(service string) []InstanceRecord {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.cur.up[service]
}

// Instances returns every registered instance of service, UP first, with
// its last heartbeat (unix ms).
func (w *Watcher) Instances(service string) ([]InstanceRecord, map[string]int64) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := slices.Clone(w.cur.byName[service])
	slices.SortStableFunc(out, func(a, b InstanceRecord) int {
		return cmp.Compare(boolRank(a.Up()), boolRank(b.Up()))
	})
	return out, w.cur.beats
}

func boolRank(up bool) int {
	if up {
		return 0
	}
	return 1
}

// Services lists the registered services, sorted.
func (w *Watcher) Services() []string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]string, 0, len(w.cur.byName))
	for name := range w.cur.byName {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Routes returns the route table, sorted by name.
func (w *Watcher) Routes() []*messages.RouteSpec {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := slices.Clone(w.cur.routes)
	sortRoutes(out)
	return out
}

// Version is the published version of an instance (ok false when this
// copy does not hold it).
func (w *Watcher) Version(service, id string) (uint64, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	for _, rec := range w.cur.byName[service] {
		if rec.InstanceID == id {
			return rec.Version, true
		}
	}
	return 0, false
}
