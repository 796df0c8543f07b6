package es

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"granary/messages"
	"granary/persistence"
	"granary/persistence/memory"
)

// spyStore is a memory store that records the journal reads and appends
// the hosts make, so a test can tell a snapshot load from a full replay
// and one batch append from several.
type spyStore struct {
	persistence.Store
	mu       sync.Mutex
	reads    []uint64 // afterVersion of each ReadStream
	appends  []int    // batch length of each Append
	versions int      // StreamVersion calls
}

func (s *spyStore) StreamVersion(ctx context.Context, stream string) (uint64, error) {
	s.mu.Lock()
	s.versions++
	s.mu.Unlock()
	return s.Store.StreamVersion(ctx, stream)
}

func (s *spyStore) versionChecks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.versions
}

func (s *spyStore) ReadStream(ctx context.Context, stream string, after uint64, limit int) ([]persistence.Event, error) {
	s.mu.Lock()
	s.reads = append(s.reads, after)
	s.mu.Unlock()
	return s.Store.ReadStream(ctx, stream, after, limit)
}

func (s *spyStore) Append(ctx context.Context, stream string, expected uint64, events []persistence.EventData, opts ...persistence.AppendOption) (persistence.AppendResult, error) {
	s.mu.Lock()
	s.appends = append(s.appends, len(events))
	s.mu.Unlock()
	return s.Store.Append(ctx, stream, expected, events, opts...)
}

// forget clears what was recorded so far.
func (s *spyStore) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads, s.appends = nil, nil
}

func (s *spyStore) recorded() (reads []uint64, appends []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reads), slices.Clone(s.appends)
}

func newSpy(t *testing.T) *spyStore {
	s := &spyStore{Store: memory.New(1)}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testConfig(store persistence.Store) Config {
	return Config{Store: store, SnapshotEvery: 3, RecentCommands: 100, Logger: slog.New(slog.DiscardHandler), LogKey: "tally"}
}

// inc decides an increment by by.
func inc(cmd string, by int64) func(tally) ([]*messages.CounterEvent, error) {
	return func(tally) ([]*messages.CounterEvent, error) {
		return []*messages.CounterEvent{incremented(cmd, by)}, nil
	}
}

func read(tally) ([]*messages.CounterEvent, error) { return nil, nil }

// mustNotDecide fails the test when a command is decided (again).
func mustNotDecide(t *testing.T) func(tally) ([]*messages.CounterEvent, error) {
	return func(s tally) ([]*messages.CounterEvent, error) {
		t.Helper()
		t.Errorf("decided on %+v; want the command answered without deciding", s)
		return nil, errors.New("decided")
	}
}

// journal is the stream's events as (command id, by) pairs, checking
// that their versions are 1, 2, … with no gap or fork.
func journal(t *testing.T, store persistence.Store, id string) []string {
	t.Helper()
	events, err := store.ReadStream(context.Background(), tallyCodec.Stream(id), 0, 0)
	if err != nil {
		t.Fatalf("read journal: %v", err)
	}
	var out []string
	for i, e := range events {
		if e.Version != uint64(i+1) {
			t.Fatalf("journal event %d has version %d", i, e.Version)
		}
		ev, err := tallyCodec.Decode(e)
		if err != nil {
			t.Fatalf("journal event %d: %v", e.Version, err)
		}
		out = append(out, ev.GetCommandId())
	}
	return out
}

func execute(t *testing.T, h *Host[tally, *messages.CounterEvent], cmd string, decide func(tally) ([]*messages.CounterEvent, error)) Outcome[tally] {
	t.Helper()
	out, err := h.Execute(context.Background(), cmd, decide)
	if err != nil {
		t.Fatalf("Execute(%s): %v", cmd, err)
	}
	return out
}

func failureCode(err error) string {
	var f *messages.Failure
	if errors.As(err, &f) {
		return f.GetCode()
	}
	return ""
}

func TestExecuteAppendsThenApplies(t *testing.T) {
	store := newSpy(t)
	h := NewHost(tallyCodec, testConfig(store), "a")
	if h.Loaded() {
		t.Fatal("a new host is loaded before any call")
	}
	if out := execute(t, h, "c1", inc("c1", 2)); out.Duplicate || out.State != (tally{2, 1}) {
		t.Fatalf("first command = %+v, want state {2 1}", out)
	}
	if out := execute(t, h, "c2", inc("c2", 3)); out.State != (tally{5, 2}) || h.State() != out.State {
		t.Fatalf("second command = %+v (host %+v), want {5 2}", out, h.State())
	}
	if got := journal(t, store, "a"); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Fatalf("journal = %v, want [c1 c2]", got)
	}
}

func TestDecideErrorStoresNothing(t *testing.T) {
	store := newSpy(t)
	h := NewHost(tallyCodec, testConfig(store), "a")
	execute(t, h, "c1", inc("c1", 1))
	refused := errors.New("over the limit")
	out, err := h.Execute(context.Background(), "c2", func(tally) ([]*messages.CounterEvent, error) { return nil, refused })
	if !errors.Is(err, refused) || out.State != (tally{1, 1}) {
		t.Fatalf("refused command = %+v, %v; want {1 1} and the domain error as it is", out, err)
	}
	if got := journal(t, store, "a"); !slices.Equal(got, []string{"c1"}) {
		t.Fatalf("journal = %v, want only [c1]", got)
	}
	// The refusal is fenced in the journal: a re-send decided on a view
	// where it would pass cannot apply it afterwards.
	_, err = h.Execute(context.Background(), "c2", inc("c2", 1))
	if failureCode(err) != messages.CodeServiceUnavailable {
		t.Fatalf("re-sent refused command err = %v, want %s (already refused)", err, messages.CodeServiceUnavailable)
	}
	if got := journal(t, store, "a"); !slices.Equal(got, []string{"c1"}) {
		t.Fatalf("journal after re-send = %v, want only [c1]", got)
	}
}

func TestDuplicateAnswersTheStateItsCommandLeft(t *testing.T) {
	store := newSpy(t)
	h := NewHost(tallyCodec, testConfig(store), "a")
	execute(t, h, "c1", inc("c1", 1))
	execute(t, h, "c2", inc("c2", 10))
	execute(t, h, "c3", inc("c3", 100))
	for cmd, want := range map[string]tally{"c1": {1, 1}, "c2": {11, 2}, "c3": {111, 3}} {
		if out := execute(t, h, cmd, mustNotDecide(t)); !out.Duplicate || out.State != want {
			t.Errorf("re-sent %s = %+v, want duplicate with %+v", cmd, out, want)
		}
	}
	if h.State() != (tally{111, 3}) || len(journal(t, store, "a")) != 3 {
		t.Fatalf("after re-sends: host %+v, journal %v; want {111 3} and nothing added", h.State(), journal(t, store, "a"))
	}
}

// A command older than the host's window of recent ids is still caught,
// by the journal's own fence, and answered with the state it left.
func TestDuplicateBeyondTheRecentWindow(t *testing.T) {
	store := newSpy(t)
	cfg := testConfig(store)
	cfg.RecentCommands = 1
	h := NewHost(tallyCodec, cfg, "a")
	execute(t, h, "c1", inc("c1", 1))
	execute(t, h, "c2", inc("c2", 10)) // evicts c1 from the window
	if out := execute(t, h, "c1", inc("c1", 1)); !out.Duplicate || out.State != (tally{1, 1}) {
		t.Fatalf("re-sent c1 = %+v, want duplicate with {1 1}", out)
	}
	if got := journal(t, store, "a"); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Fatalf("journal = %v, want [c1 c2]", got)
	}
}

// Two activations of one aggregate (a membership change): the one behind
// catches up and decides again on the newer state instead of forking.
func TestConflictCatchesUpAndDecidesAgain(t *testing.T) {
	store := newSpy(t)
	a := NewHost(tallyCodec, testConfig(store), "x")
	b := NewHost(tallyCodec, testConfig(store), "x")
	execute(t, b, "", read) // b is loaded at version 0
	execute(t, a, "a1", inc("a1", 5))

	var seen []tally
	double := func(s tally) ([]*messages.CounterEvent, error) {
		seen = append(seen, s)
		return []*messages.CounterEvent{incremented("b1", s.Value)}, nil
	}
	if out := execute(t, b, "b1", double); out.State != (tally{10, 2}) {
		t.Fatalf("b's command = %+v, want {10 2} (doubling a's 5)", out)
	}
	if !slices.Equal(seen, []tally{{0, 0}, {5, 1}}) {
		t.Fatalf("b decided on %v, want [{0 0} {5 1}]: once stale, once caught up", seen)
	}
	if got := journal(t, store, "x"); !slices.Equal(got, []string{"a1", "b1"}) {
		t.Fatalf("journal = %v, want [a1 b1]", got)
	}
	// b caught up with a1's id too: a re-send of it to b is a duplicate.
	if out := execute(t, b, "a1", mustNotDecide(t)); !out.Duplicate || out.State != (tally{5, 1}) {
		t.Fatalf("a1 re-sent to b = %+v, want duplicate with {5 1}", out)
	}
}

func TestReadFreshensAStaleHost(t *testing.T) {
	store := newSpy(t)
	a := NewHost(tallyCodec, testConfig(store), "x")
	b := NewHost(tallyCodec, testConfig(store), "x")
	execute(t, b, "", read)
	execute(t, a, "a1", inc("a1", 7))
	if out := execute(t, b, "", read); out.State != (tally{7, 1}) {
		t.Fatalf("read on the stale host = %+v, want a's write {7 1}", out)
	}
	// A refusal rests on the fresh view as well: decided again on it.
	var seen []tally
	refuse := func(s tally) ([]*messages.CounterEvent, error) {
		seen = append(seen, s)
		return nil, errors.New("no")
	}
	execute(t, a, "a2", inc("a2", 1))
	if _, err := b.Execute(context.Background(), "b1", refuse); err == nil || err.Error() != "no" {
		t.Fatalf("refusal err = %v, want the domain error", err)
	}
	if !slices.Equal(seen, []tally{{7, 1}, {8, 2}}) {
		t.Fatalf("refusal decided on %v, want [{7 1} {8 2}]", seen)
	}
}

// A read on a state loaded by that same call needs no version check: the
// load read the journal a moment ago. Later reads check, as above.
func TestReadRightAfterLoadChecksNoVersion(t *testing.T) {
	store := newSpy(t)
	a := NewHost(tallyCodec, testConfig(store), "x")
	execute(t, a, "a1", inc("a1", 7))
	b := NewHost(tallyCodec, testConfig(store), "x")
	if out := execute(t, b, "", read); out.State != (tally{7, 1}) || store.versionChecks() != 0 {
		t.Fatalf("first read = %+v after %d version checks, want {7 1} after none", out, store.versionChecks())
	}
	execute(t, a, "a2", inc("a2", 1))
	if out := execute(t, b, "", read); out.State != (tally{8, 2}) || store.versionChecks() == 0 {
		t.Fatalf("second read = %+v after no version check, want {8 2} after one or more", out)
	}
	checks := store.versionChecks()
	b.Invalidate()
	if out := execute(t, b, "", read); out.State != (tally{8, 2}) || store.versionChecks() != checks {
		t.Fatalf("read after Invalidate = %+v after %d more version checks, want {8 2} after none", out, store.versionChecks()-checks)
	}
}

func TestInvalidateReloads(t *testing.T) {
	store := newSpy(t)
	a := NewHost(tallyCodec, testConfig(store), "x")
	b := NewHost(tallyCodec, testConfig(store), "x")
	ctx := context.Background()
	if err := a.Load(ctx); err != nil {
		t.Fatal(err)
	}
	execute(t, b, "b1", inc("b1", 4))
	// Loaded: Load trusts what it holds.
	if err := a.Load(ctx); err != nil || a.State() != (tally{}) {
		t.Fatalf("Load of a loaded host = %+v, %v; want it unchanged", a.State(), err)
	}
	a.Invalidate()
	if a.Loaded() {
		t.Fatal("Loaded after Invalidate")
	}
	if err := a.Load(ctx); err != nil || !a.Loaded() || a.State() != (tally{4, 1}) {
		t.Fatalf("Load after Invalidate = %+v (loaded %v), %v; want {4 1}", a.State(), a.Loaded(), err)
	}
}

func TestSnapshotsEverySnapshotEveryAndLoadsFromThem(t *testing.T) {
	store := newSpy(t)
	ctx := context.Background()
	h := NewHost(tallyCodec, testConfig(store), "s")
	cmds := []string{"c1", "c2", "c3", "c4", "c5", "c6", "c7"}
	want := tally{}
	for i, cmd := range cmds {
		want = tally{want.Value + int64(i+1), want.Version + 1}
		execute(t, h, cmd, inc(cmd, int64(i+1)))
		snap, ok, err := store.LoadSnapshot(ctx, "tally-s")
		wantAt := uint64(i+1) / 3 * 3
		if err != nil || ok != (wantAt > 0) || snap.Version != wantAt {
			t.Fatalf("after %d events: snapshot at %d (ok %v, %v), want at %d", i+1, snap.Version, ok, err, wantAt)
		}
	}
	snap, _, _ := store.LoadSnapshot(ctx, "tally-s")
	s, recent, err := tallyCodec.DecodeSnapshot(snap.Data)
	if err != nil || s != (tally{1 + 2 + 3 + 4 + 5 + 6, 6}) || !slices.Equal(recent, cmds[:6]) {
		t.Fatalf("snapshot = %+v, recent %v, %v; want {21 6}, %v", s, recent, err, cmds[:6])
	}

	store.forget()
	fresh := NewHost(tallyCodec, testConfig(store), "s")
	if err := fresh.Load(ctx); err != nil || fresh.State() != want {
		t.Fatalf("fresh host = %+v, %v; want %+v", fresh.State(), err, want)
	}
	if reads, _ := store.recorded(); len(reads) == 0 || reads[0] != 6 {
		t.Fatalf("fresh host read the journal after versions %v, want a replay from the snapshot's 6", reads)
	}
	// The snapshot carried the ids of commands it folded: a re-send of
	// c1 (replayed by nobody) is caught without deciding it again.
	if out := execute(t, fresh, "c1", mustNotDecide(t)); !out.Duplicate || out.State != (tally{1, 1}) {
		t.Fatalf("c1 re-sent after reload = %+v, want duplicate with {1 1}", out)
	}
	if len(journal(t, store, "s")) != 7 {
		t.Fatal("the re-send was stored")
	}
}

// A snapshot that does not decode is only a lost shortcut.
func TestUnreadableSnapshotReplaysEverything(t *testing.T) {
	store := newSpy(t)
	ctx := context.Background()
	h := NewHost(tallyCodec, testConfig(store), "s")
	for _, cmd := range []string{"c1", "c2", "c3", "c4"} {
		execute(t, h, cmd, inc(cmd, 1))
	}
	// Overwrite the snapshot at 3 with garbage at 4 (the newest wins).
	if err := store.SaveSnapshot(ctx, "tally-s", persistence.Snapshot{Version: 4, Data: []byte{0xff, 0xff}}); err != nil {
		t.Fatal(err)
	}
	fresh := NewHost(tallyCodec, testConfig(store), "s")
	if err := fresh.Load(ctx); err != nil || fresh.State() != (tally{4, 4}) {
		t.Fatalf("fresh host = %+v, %v; want {4 4} replayed from the journal", fresh.State(), err)
	}
}

func TestExecuteBeforeAPastDeadlineStoresNothing(t *testing.T) {
	store := newSpy(t)
	h := NewHost(tallyCodec, testConfig(store), "a")
	execute(t, h, "c1", inc("c1", 1))
	out, err := h.ExecuteBefore(context.Background(), "c2", time.Now().Add(-time.Second), inc("c2", 5))
	if failureCode(err) != messages.CodeTimeout || out.State != (tally{}) {
		t.Fatalf("expired command = %+v, %v; want %s and no state", out, err, messages.CodeTimeout)
	}
	if got := journal(t, store, "a"); !slices.Equal(got, []string{"c1"}) {
		t.Fatalf("journal = %v, want only [c1]", got)
	}
	// Nothing was stored, so the host still holds the journal's state
	// and the command may run again under a new deadline.
	if !h.Loaded() || h.State() != (tally{1, 1}) {
		t.Fatalf("host after expiry = %+v (loaded %v), want {1 1}", h.State(), h.Loaded())
	}
	if out := execute(t, h, "c2", inc("c2", 5)); out.Duplicate || out.State != (tally{6, 2}) {
		t.Fatalf("c2 retried = %+v, want {6 2}", out)
	}
}

// A refusal decided after its deadline (a slow load) cannot be fenced in
// the journal any more; it is a timeout, not a storage failure.
func TestExecuteBeforeARefusalPastItsDeadlineIsATimeout(t *testing.T) {
	store := newSpy(t)
	h := NewHost(tallyCodec, testConfig(store), "a")
	execute(t, h, "c1", inc("c1", 1))
	refuse := func(tally) ([]*messages.CounterEvent, error) { return nil, errors.New("no") }
	_, err := h.ExecuteBefore(context.Background(), "c2", time.Now().Add(-5*time.Second), refuse)
	if failureCode(err) != messages.CodeTimeout {
		t.Fatalf("late refusal err = %v, want %s", err, messages.CodeTimeout)
	}
	if !h.Loaded() || h.State() != (tally{1, 1}) {
		t.Fatalf("host after a late refusal = %+v (loaded %v), want {1 1} still trusted", h.State(), h.Loaded())
	}
	// Nothing was decided for good: the command may still be applied.
	if out := execute(t, h, "c2", inc("c2", 5)); out.State != (tally{6, 2}) {
		t.Fatalf("c2 retried = %+v, want {6 2}", out)
	}
}

func TestBatchStoresCommandsInOneAppend(t *testing.T) {
	store := newSpy(t)
	ctx := context.Background()
	cfg := testConfig(store)
	cfg.SnapshotEvery = 100
	h := NewHost(tallyCodec, cfg, "b")
	execute(t, h, "c0", inc("c0", 1000))
	store.forget()

	b := h.NewBatch()
	for i, cmd := range []string{"c1", "c2", "c3"} {
		if !h.TryAdd(b, cmd, time.Time{}, inc(cmd, int64(i+1))) {
			t.Fatalf("TryAdd(%s) refused", cmd)
		}
	}
	for what, add := range map[string]func() bool{
		"no id":           func() bool { return h.TryAdd(b, "", time.Time{}, inc("", 1)) },
		"id in the batch": func() bool { return h.TryAdd(b, "c2", time.Time{}, inc("c2", 1)) },
		"recent id":       func() bool { return h.TryAdd(b, "c0", time.Time{}, inc("c0", 1)) },
		"a refusal": func() bool {
			return h.TryAdd(b, "c4", time.Time{}, func(tally) ([]*messages.CounterEvent, error) { return nil, errors.New("no") })
		},
		"a read": func() bool { return h.TryAdd(b, "c5", time.Time{}, read) },
	} {
		if add() {
			t.Errorf("TryAdd of %s was added; want it run on its own", what)
		}
	}
	if b.Len() != 3 {
		t.Fatalf("batch holds %d commands, want 3", b.Len())
	}
	settled := h.Settle(ctx, b, h.Store(b)(ctx))
	want := []tally{{1001, 2}, {1003, 3}, {1006, 4}}
	for i, s := range settled {
		if s.Err != nil || s.Retry || s.Outcome.Duplicate || s.Outcome.State != want[i] {
			t.Errorf("command %d settled as %+v, want state %+v", i+1, s, want[i])
		}
	}
	if _, appends := store.recorded(); !slices.Equal(appends, []int{3}) {
		t.Fatalf("appends = %v, want one of 3 events", appends)
	}
	if got := journal(t, store, "b"); !slices.Equal(got, []string{"c0", "c1", "c2", "c3"}) {
		t.Fatalf("journal = %v", got)
	}
	// A re-send of a batch's command gets the state it left.
	if out := execute(t, h, "c2", mustNotDecide(t)); !out.Duplicate || out.State != (tally{1003, 3}) {
		t.Fatalf("c2 re-sent = %+v, want duplicate with {1003 3}", out)
	}
}

func TestBatchConflictCatchesUpAndRetriesAll(t *testing.T) {
	store := newSpy(t)
	ctx := context.Background()
	h := NewHost(tallyCodec, testConfig(store), "b")
	other := NewHost(tallyCodec, testConfig(store), "b")
	execute(t, h, "", read)
	b := h.NewBatch()
	if !h.TryAdd(b, "c1", time.Time{}, inc("c1", 1)) || !h.TryAdd(b, "c2", time.Time{}, inc("c2", 2)) {
		t.Fatal("TryAdd refused")
	}
	execute(t, other, "o1", inc("o1", 50))
	for i, s := range h.Settle(ctx, b, h.Store(b)(ctx)) {
		if !s.Retry || !s.Conflict || s.Err != nil {
			t.Errorf("command %d settled as %+v, want a retry after a conflict", i+1, s)
		}
	}
	if h.State() != (tally{50, 1}) {
		t.Fatalf("host after the conflict = %+v, want caught up at {50 1}", h.State())
	}
	if got := journal(t, store, "b"); !slices.Equal(got, []string{"o1"}) {
		t.Fatalf("journal = %v, want only [o1]", got)
	}
}

// loaderSpy is a store with its own LoadStream, which it counts.
type loaderSpy struct {
	*spyStore
	loads atomic.Int32
}

func (l *loaderSpy) LoadStream(ctx context.Context, stream string, limit int) (persistence.Snapshot, bool, []persistence.Event, error) {
	l.loads.Add(1)
	snap, ok, err := l.Store.LoadSnapshot(ctx, stream)
	if err != nil {
		return snap, ok, nil, err
	}
	evs, err := l.Store.ReadStream(ctx, stream, snap.Version, limit)
	return snap, ok, evs, err
}

// A store that reads the snapshot and its tail in one call (Redis: one
// round trip) is asked once per activation; ReadStream only for what a
// long tail holds beyond one batch, and a snapshot that does not decode.
func TestLoadIsOneCallOnAStreamLoader(t *testing.T) {
	spy := newSpy(t)
	store := &loaderSpy{spyStore: spy}
	writer := NewHost(tallyCodec, testConfig(spy), "l")
	for i := range 5 {
		execute(t, writer, fmt.Sprint("c", i), inc(fmt.Sprint("c", i), 1))
	}
	spy.forget()
	h := NewHost(tallyCodec, testConfig(store), "l")
	if out := execute(t, h, "", read); out.State != (tally{5, 5}) {
		t.Fatalf("loaded %+v, want {5 5}", out.State)
	}
	if reads, _ := spy.recorded(); store.loads.Load() != 1 || len(reads) != 0 || spy.versionChecks() != 0 {
		t.Fatalf("activation: %d LoadStream, ReadStream after %v, %d version checks; want one LoadStream and nothing else",
			store.loads.Load(), reads, spy.versionChecks())
	}

	// A tail of more than one batch is read on with ReadStream.
	long := make([]persistence.EventData, replayBatch+10)
	for i := range long {
		data, err := tallyCodec.Encode(incremented(fmt.Sprint("b", i), 1))
		if err != nil {
			t.Fatal(err)
		}
		long[i] = data
	}
	if _, err := spy.Append(context.Background(), tallyCodec.Stream("l"), 5, long); err != nil {
		t.Fatal(err)
	}
	snap, _, err := spy.LoadSnapshot(context.Background(), tallyCodec.Stream("l"))
	if err != nil {
		t.Fatal(err)
	}
	spy.forget()
	h = NewHost(tallyCodec, testConfig(store), "l")
	if out := execute(t, h, "", read); out.State != (tally{int64(5 + len(long)), uint64(5 + len(long))}) {
		t.Fatalf("loaded %+v after a long tail", out.State)
	}
	if reads, _ := spy.recorded(); store.loads.Load() != 2 || len(reads) != 1 || reads[0] != snap.Version+replayBatch {
		t.Fatalf("long tail: %d LoadStream in all, ReadStream after %v; want a second LoadStream, then one read after %d",
			store.loads.Load(), reads, snap.Version+replayBatch)
	}
}
