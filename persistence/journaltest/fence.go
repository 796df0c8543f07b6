package journaltest

import (
	"errors"
	"testing"
	"time"

	"granary/persistence"
)

func fenceCases() []suiteCase {
	return []suiteCase{
		{"AppendNotAfter", 2, testAppendNotAfter},
		{"DeclineFencesItsCommand", 2, testDeclineFencesItsCommand},
		{"DeclineChecksTheVersion", 1, testDeclineChecksTheVersion},
		{"DeclineInvalid", 1, testDeclineInvalid},
		{"AppliedCommandIsNotStoredTwice", 1, testAppliedCommandIsNotStoredTwice},
		{"BatchRecordsEachCommand", 1, testBatchRecordsEachCommand},
		{"BatchFenceNamesItsCommand", 2, testBatchFenceNamesItsCommand},
		{"BatchFencesInvalid", 1, testBatchFencesInvalid},
		{"LargeBatch", 1, testLargeBatch},
		{"LateCopyOfAppliedIsDuplicate", 1, testLateCopyOfAppliedIsDuplicate},
	}
}

// An append that reaches the store after its caller gave up stores
// nothing: a retry may already be running.
func testAppendNotAfter(t *testing.T, s persistence.Store) {
	const stream = "fence-late"
	_, err := s.Append(ctx(t), stream, 0, batch(stream, 0, 1), persistence.NotAfter(time.Now().Add(-time.Millisecond)))
	if !errors.Is(err, persistence.ErrExpired) {
		t.Fatalf("append past its deadline: %v, want ErrExpired", err)
	}
	if v := mustVersion(t, s, stream); v != 0 {
		t.Fatalf("version %d after an expired append, want 0", v)
	}
	if h := mustHead(t, s, s.PartitionOf(stream)); h != 0 {
		t.Fatalf("partition head %d after an expired append, want 0", h)
	}
	res, err := s.Append(ctx(t), stream, 0, batch(stream, 0, 2), persistence.NotAfter(time.Now().Add(time.Minute)))
	if err != nil || res.Version != 2 {
		t.Fatalf("append within its deadline: %+v, %v", res, err)
	}
}

// A command declined at the stream's version can no longer be appended
// by anyone, whatever version they expect; other commands can.
func testDeclineFencesItsCommand(t *testing.T, s persistence.Store) {
	const stream = "fence-declined"
	mustAppend(t, s, stream, 0, batch(stream, 0, 1))
	if err := s.Decline(ctx(t), stream, 1, "cmd-1", time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("Decline: %v", err)
	}
	if v := mustVersion(t, s, stream); v != 1 {
		t.Fatalf("Decline changed the version to %d", v)
	}
	_, err := s.Append(ctx(t), stream, 1, batch(stream, 1, 1), persistence.ForCommand("cmd-1"))
	if !errors.Is(err, persistence.ErrDeclined) {
		t.Fatalf("append of a declined command: %v, want ErrDeclined", err)
	}
	// Another writer moves the stream on; the stale decision still may not land.
	if _, err := s.Append(ctx(t), stream, 1, batch(stream, 1, 1), persistence.ForCommand("cmd-2")); err != nil {
		t.Fatalf("append of another command: %v", err)
	}
	_, err = s.Append(ctx(t), stream, 2, batch(stream, 2, 1), persistence.ForCommand("cmd-1"))
	if !errors.Is(err, persistence.ErrDeclined) {
		t.Fatalf("append of a declined command at the new version: %v, want ErrDeclined", err)
	}
	// The mark belongs to its stream.
	const other = "fence-declined-other"
	if _, err := s.Append(ctx(t), other, 0, batch(other, 0, 1), persistence.ForCommand("cmd-1")); err != nil {
		t.Fatalf("same command on another stream: %v", err)
	}
	if v := mustVersion(t, s, stream); v != 2 {
		t.Fatalf("version %d, want 2", v)
	}
}

// A refusal decided on a stale view is not recorded: the caller must catch
// up and decide again.
func testDeclineChecksTheVersion(t *testing.T, s persistence.Store) {
	const stream = "fence-stale"
	mustAppend(t, s, stream, 0, batch(stream, 0, 2))
	err := s.Decline(ctx(t), stream, 1, "cmd-1", time.Now().Add(time.Minute))
	var conflict *persistence.ConflictError
	if !errors.As(err, &conflict) || conflict.Actual != 2 || conflict.Expected != 1 {
		t.Fatalf("Decline on a stale version: %v, want a conflict at 2", err)
	}
	if _, err := s.Append(ctx(t), stream, 2, batch(stream, 2, 1), persistence.ForCommand("cmd-1")); err != nil {
		t.Fatalf("a refused Decline must not fence: %v", err)
	}
	// A stream that does not exist yet is at version 0.
	if err := s.Decline(ctx(t), "fence-new", 0, "cmd-1", time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("Decline on a new stream: %v", err)
	}
}

func testDeclineInvalid(t *testing.T, s persistence.Store) {
	later := time.Now().Add(time.Minute)
	for name, call := range map[string]func() error{
		"empty stream":  func() error { return s.Decline(ctx(t), "", 0, "c", later) },
		"empty command": func() error { return s.Decline(ctx(t), "s", 0, "", later) },
		"until passed":  func() error { return s.Decline(ctx(t), "s", 0, "c", time.Now().Add(-time.Second)) },
	} {
		if err := call(); !errors.Is(err, persistence.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// A command the stream holds already is not stored again, however far the
// stream moved on since: the answer names the version it was applied at.
func testAppliedCommandIsNotStoredTwice(t *testing.T, s persistence.Store) {
	const stream = "fence-applied"
	if _, err := s.Append(ctx(t), stream, 0, batch(stream, 0, 1), persistence.ForCommand("cmd-1")); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, stream, 1, batch(stream, 1, 3))
	_, err := s.Append(ctx(t), stream, 4, batch(stream, 4, 1), persistence.ForCommand("cmd-1"))
	var dup *persistence.DuplicateError
	if !errors.As(err, &dup) || !errors.Is(err, persistence.ErrDuplicate) || dup.Version != 1 {
		t.Fatalf("re-sent command: %v, want a duplicate at version 1", err)
	}
	if v := mustVersion(t, s, stream); v != 4 {
		t.Fatalf("version %d, want 4", v)
	}
}

// A batch of several commands stores all their events at once and
// remembers each command at the version of its own last event.
func testBatchRecordsEachCommand(t *testing.T, s persistence.Store) {
	const stream = "fence-batch"
	mustAppend(t, s, stream, 0, batch(stream, 0, 1))
	res, err := s.Append(ctx(t), stream, 1, batch(stream, 1, 4), persistence.ForCommands(
		persistence.CommandFence{ID: "a", Through: 1},
		persistence.CommandFence{ID: "b", Through: 3, NotAfter: time.Now().Add(time.Minute)},
		persistence.CommandFence{ID: "c", Through: 4},
	))
	if err != nil || res.Version != 5 {
		t.Fatalf("batch of three commands: %+v, %v", res, err)
	}
	evs := mustReadStream(t, s, stream, 0, 0)
	if got := versions(evs); len(got) != 5 || got[4] != 5 {
		t.Fatalf("versions %v after the batch, want 1..5", got)
	}
	for i, e := range evs[1:] {
		checkEvent(t, s, e, stream, uint64(i+2), batch(stream, 1, 4)[i])
	}
	for id, at := range map[string]uint64{"a": 2, "b": 4, "c": 5} {
		_, err := s.Append(ctx(t), stream, 5, batch(stream, 5, 1), persistence.ForCommand(id))
		var dup *persistence.DuplicateError
		if !errors.As(err, &dup) || dup.Version != at || dup.Command != id {
			t.Errorf("re-sent %s: %v, want a duplicate at version %d", id, err, at)
		}
	}
}

// One command of a batch whose fence fails fails the whole batch, and the
// error names it, so the caller can answer it and append the rest again.
func testBatchFenceNamesItsCommand(t *testing.T, s persistence.Store) {
	const stream = "fence-batch-fail"
	if _, err := s.Append(ctx(t), stream, 0, batch(stream, 0, 1), persistence.ForCommand("applied")); err != nil {
		t.Fatal(err)
	}
	if err := s.Decline(ctx(t), stream, 1, "declined", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	three := func(second persistence.CommandFence) persistence.AppendOption {
		return persistence.ForCommands(persistence.CommandFence{ID: "x", Through: 1}, second, persistence.CommandFence{ID: "y", Through: 3})
	}
	var fe *persistence.FenceError
	_, err := s.Append(ctx(t), stream, 1, batch(stream, 1, 3), three(persistence.CommandFence{ID: "declined", Through: 2}))
	if !errors.As(err, &fe) || !errors.Is(err, persistence.ErrDeclined) || fe.Index != 1 || fe.Command != "declined" {
		t.Fatalf("batch holding a declined command: %v, want a FenceError at index 1", err)
	}
	_, err = s.Append(ctx(t), stream, 1, batch(stream, 1, 3), three(persistence.CommandFence{ID: "late", Through: 2, NotAfter: time.Now().Add(-time.Millisecond)}))
	if !errors.As(err, &fe) || !errors.Is(err, persistence.ErrExpired) || fe.Index != 1 || fe.Command != "late" {
		t.Fatalf("batch holding a late command: %v, want a FenceError at index 1", err)
	}
	var dup *persistence.DuplicateError
	_, err = s.Append(ctx(t), stream, 1, batch(stream, 1, 3), three(persistence.CommandFence{ID: "applied", Through: 2}))
	if !errors.As(err, &dup) || dup.Index != 1 || dup.Version != 1 {
		t.Fatalf("batch holding an applied command: %v, want a duplicate at index 1, version 1", err)
	}
	if v := mustVersion(t, s, stream); v != 1 {
		t.Fatalf("version %d after three failed batches, want 1", v)
	}
	if h := mustHead(t, s, s.PartitionOf(stream)); h != 1 {
		t.Fatalf("partition head %d after three failed batches, want 1", h)
	}
	// The others were not recorded: appended again without the failed one, they land.
	if _, err := s.Append(ctx(t), stream, 1, batch(stream, 1, 2), persistence.ForCommands(
		persistence.CommandFence{ID: "x", Through: 1}, persistence.CommandFence{ID: "y", Through: 2})); err != nil {
		t.Fatalf("the batch without its failed command: %v", err)
	}
}

func testBatchFencesInvalid(t *testing.T, s persistence.Store) {
	const stream = "fence-batch-invalid"
	for name, cmds := range map[string][]persistence.CommandFence{
		"empty id":     {{ID: "", Through: 1}},
		"repeated id":  {{ID: "a", Through: 1}, {ID: "a", Through: 2}},
		"out of order": {{ID: "a", Through: 2}, {ID: "b", Through: 1}},
		"past the end": {{ID: "a", Through: 3}},
		"zero events":  {{ID: "a", Through: 0}},
		"with Command": nil,
	} {
		opts := []persistence.AppendOption{persistence.ForCommands(cmds...)}
		if cmds == nil {
			opts = append(opts, persistence.ForCommand("c"), persistence.ForCommands(persistence.CommandFence{ID: "d", Through: 1}))
		}
		if _, err := s.Append(ctx(t), stream, 0, batch(stream, 0, 2), opts...); !errors.Is(err, persistence.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if v := mustVersion(t, s, stream); v != 0 {
		t.Fatalf("version %d after invalid batches, want 0", v)
	}
}

// A batch larger than a backend's internal chunks is still stored whole
// and in order.
func testLargeBatch(t *testing.T, s persistence.Store) {
	const stream, n = "large-batch", 2500
	evs := batch(stream, 0, n)
	res := mustAppend(t, s, stream, 0, evs)
	if res.Version != n {
		t.Fatalf("version %d after a batch of %d", res.Version, n)
	}
	got := mustReadStream(t, s, stream, 0, 0)
	if len(got) != n {
		t.Fatalf("read %d events, want %d", len(got), n)
	}
	for i, e := range got {
		if e.Position != res.FirstPosition+uint64(i) {
			t.Fatalf("event %d at position %d, want %d", i+1, e.Position, res.FirstPosition+uint64(i))
		}
		checkEvent(t, s, e, stream, uint64(i+1), evs[i])
	}
	if h := mustHead(t, s, s.PartitionOf(stream)); h != res.FirstPosition+n-1 {
		t.Fatalf("head %d, want %d", h, res.FirstPosition+n-1)
	}
}

// A copy of an applied command that arrives after its deadline is still
// the duplicate it is: "expired, not applied" would be false.
func testLateCopyOfAppliedIsDuplicate(t *testing.T, s persistence.Store) {
	const stream = "fence-late-duplicate"
	if _, err := s.Append(ctx(t), stream, 0, batch(stream, 0, 1), persistence.ForCommand("cmd-1")); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Second)
	var dup *persistence.DuplicateError
	_, err := s.Append(ctx(t), stream, 1, batch(stream, 1, 1), persistence.ForCommand("cmd-1"), persistence.NotAfter(past))
	if !errors.As(err, &dup) || dup.Version != 1 {
		t.Fatalf("late copy of an applied command: %v, want a duplicate at version 1", err)
	}
	_, err = s.Append(ctx(t), stream, 1, batch(stream, 1, 2), persistence.ForCommands(
		persistence.CommandFence{ID: "other", Through: 1, NotAfter: past},
		persistence.CommandFence{ID: "cmd-1", Through: 2, NotAfter: past}))
	if !errors.As(err, &dup) || dup.Index != 1 || dup.Version != 1 {
		t.Fatalf("late batch holding an applied command: %v, want a duplicate at index 1", err)
	}
}
