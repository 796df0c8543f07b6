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
