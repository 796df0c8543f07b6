// Package persistence owns the storage contract of Granary: the event journal,
// the snapshot store and the errors they report. Concrete backends live in
// subpackages (memory, redis) and are proven equal by journaltest.
package persistence

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// EventData is an event as the caller hands it to Append. Data is opaque to
// the journal: the domain encodes it (protobuf in Granary).
type EventData struct {
	Type       string
	Data       []byte
	OccurredAt time.Time
}

// Event is a stored event. Version is its 1-based index in its stream;
// Partition and Position are its place in the partition's ordered log, where
// positions start at 1 and increase by exactly one per stored event.
//
// An event reads back with Data nil when it was appended with empty Data,
// and with OccurredAt in UTC without a monotonic clock reading (the zero
// time stays zero): that is what every backend can store faithfully.
type Event struct {
	Stream     string
	Version    uint64
	Partition  int
	Position   uint64
	Type       string
	Data       []byte
	OccurredAt time.Time
}

// AppendResult tells where an append landed.
type AppendResult struct {
	// Version is the stream's version after the append.
	Version uint64
	// Partition holds the stream; FirstPosition is the partition-log
	// position of the first appended event (the others follow it).
	Partition     int
	FirstPosition uint64
}

// Snapshot is a serialized state of a stream as of Version (the number of
// events folded into it).
type Snapshot struct {
	Version uint64
	Data    []byte
}

// Journal is an append-only store of event streams.
//
// Every method is safe for concurrent use and honours ctx's deadline. A
// method taking a stream reports ErrInvalid for an empty stream name, one
// taking a partition for a partition outside [0, Partitions()), and every
// method reports ErrClosed after Close. An error other than the typed ones
// (ErrInvalid, ErrClosed and those below) means the outcome is unknown to
// the caller (for Append: the events may or may not be stored) and is
// wrapped with the stream or partition it concerns.
type Journal interface {
	// Append stores events at the end of stream, atomically and all or none,
	// provided the stream's version is expectedVersion (0 for a new stream).
	// It returns a *ConflictError (matching ErrConflict) when the stream has
	// another version, and ErrInvalid for an empty batch or stream name.
	// When Append returns nil the events are stored as durably as the
	// backend is configured to store them.
	//
	// Options fence the append further, checked atomically with the
	// version (see NotAfter and ForCommand): it returns ErrExpired or
	// ErrDeclined, and stores nothing, when a fence does not hold.
	Append(ctx context.Context, stream string, expectedVersion uint64, events []EventData, opts ...AppendOption) (AppendResult, error)

	// Decline records that command was decided without events (refused)
	// while stream was at version, provided it still is; atomically, so a
	// refusal is as linearizable as an append. Until until, no Append
	// ForCommand(command) on stream succeeds: an activation that decided
	// the same command on an older view (a member that froze, then woke)
	// cannot apply what another activation already refused. It returns a
	// *ConflictError when the stream has another version (catch up and
	// decide again), ErrInvalid for an empty stream or command, or when
	// until is not in the future.
	Decline(ctx context.Context, stream string, version uint64, command string, until time.Time) error

	// ReadStream returns up to limit events of stream with Version >
	// afterVersion, in version order. limit <= 0 means all. An unknown
	// stream reads as empty. Corrupt stored data is reported as an error
	// matching ErrCorrupt, never skipped.
	ReadStream(ctx context.Context, stream string, afterVersion uint64, limit int) ([]Event, error)

	// StreamVersion returns the number of events in stream (0 if unknown).
	StreamVersion(ctx context.Context, stream string) (uint64, error)

	// ReadPartition returns up to limit events of the partition's log with
	// Position > afterPosition, in commit order. limit <= 0 means all.
	ReadPartition(ctx context.Context, partition int, afterPosition uint64, limit int) ([]Event, error)

	// Head returns the last position written in partition (0 if none).
	Head(ctx context.Context, partition int) (uint64, error)

	// Partitions is the fixed number of partitions; PartitionOf maps a
	// stream to one of them, the same way for every instance configured
	// with the same count.
	Partitions() int
	PartitionOf(stream string) int
}

// SnapshotStore keeps the latest snapshot of each stream.
type SnapshotStore interface {
	// SaveSnapshot stores snap unless a snapshot with a version >= snap.Version
	// is already stored (then it is a no-op, not an error).
	// A snapshot ahead of the stream (snap.Version > StreamVersion) is
	// refused with ErrInvalid: a replay from it would skip events.
	SaveSnapshot(ctx context.Context, stream string, snap Snapshot) error
	// LoadSnapshot returns the latest snapshot; ok is false when none exists.
	LoadSnapshot(ctx context.Context, stream string) (snap Snapshot, ok bool, err error)
}

// Store is what a backend provides: a journal, its snapshots, the saga
// index, the projections' read models, a health probe and a way to release
// its resources.
type Store interface {
	Journal
	SnapshotStore
	SagaIndex
	ReadModels
	Ping(ctx context.Context) error
	Close() error
}

var (
	// ErrConflict: the stream's version is not the expected one; another
	// writer appended first. Reload and decide again.
	ErrConflict = errors.New("version conflict")
	// ErrCorrupt: stored data could not be decoded.
	ErrCorrupt = errors.New("corrupt journal data")
	// ErrInvalid: the call's arguments are not acceptable.
	ErrInvalid = errors.New("invalid journal request")
	// ErrExpired: an append reached the store after its NotAfter time; it
	// was not stored, and never will be.
	ErrExpired = errors.New("append past its deadline")
	// ErrDeclined: an append carried a command that was declined on the
	// stream (see Journal.Decline); it was not stored.
	ErrDeclined = errors.New("command already declined")
	// ErrDuplicate: an append carried a command the stream holds already;
	// it was not stored again. The error is a *DuplicateError.
	ErrDuplicate = errors.New("command already applied")
)

// AppliedHold is how long a stream remembers that it holds a command
// (ForCommand), beyond the grains' own window of recent command ids: a
// retry may come after its first attempt's idempotency claim lapsed (30 s
// by default) on a stream busy enough to have pushed the command out of
// that window.
const AppliedHold = 2 * time.Minute

// DuplicateError says at which version a re-sent command was applied.
type DuplicateError struct {
	Stream  string
	Command string
	Version uint64
	// Index is the command's place in the batch's command fences.
	Index int
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("append %s: command %q applied already at version %d: %v", e.Stream, e.Command, e.Version, ErrDuplicate)
}

func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicate }

// AppendOption fences an append; see AppendFence.
type AppendOption func(*AppendFence)

// AppendFence is what the options of one append ask of it.
type AppendFence struct {
	// NotAfter, when set, refuses the append once the store's own clock
	// (Redis's, for the Redis backend, so members' clocks cannot disagree
	// about it) has reached it: the caller has given up by then, and a
	// retry may run, so a late write of this attempt must not land.
	NotAfter time.Time
	// Command, when set, refuses the append if the command was declined
	// on the stream, or was applied to it within AppliedHold
	// (*DuplicateError). It records the whole batch.
	Command string
	// Commands are the commands of a batch that records several (a hot
	// grain's queued commands), in order; each is fenced like Command,
	// and one that fails fails the batch (a *FenceError or
	// *DuplicateError naming it), so the caller can answer that one and
	// append the others again.
	Commands []CommandFence
}

// CommandFence is one command of a batch append.
type CommandFence struct {
	ID string
	// Through is how many events of the batch, from its first, end with
	// this command's last event: the command is applied at version
	// expected+Through. Each command's Through is greater than the one
	// before it, and the last is at most the batch's length.
	Through int
	// NotAfter, when set, refuses the batch once the store's clock has
	// reached it (a *FenceError matching ErrExpired naming this command).
	NotAfter time.Time
}

// ForCommands fences an append that records several commands.
func ForCommands(cmds ...CommandFence) AppendOption {
	return func(f *AppendFence) { f.Commands = append(f.Commands, cmds...) }
}

// CommandsOf is every command fence of a batch of n events: Command (it
// records the whole batch) and Commands. It reports ErrInvalid when they
// do not describe the batch: an empty id, an id twice, Through out of
// order or out of [1, n].
func (f AppendFence) CommandsOf(n int) ([]CommandFence, error) {
	cmds := f.Commands
	if f.Command != "" {
		if len(cmds) > 0 {
			return nil, fmt.Errorf("both Command and Commands set: %w", ErrInvalid)
		}
		return []CommandFence{{ID: f.Command, Through: n}}, nil
	}
	prev := 0
	seen := make(map[string]bool, len(cmds))
	for _, c := range cmds {
		switch {
		case c.ID == "" || seen[c.ID]:
			return nil, fmt.Errorf("command id %q empty or repeated: %w", c.ID, ErrInvalid)
		case c.Through <= prev || c.Through > n:
			return nil, fmt.Errorf("command %q ends at event %d, after %d of %d: %w", c.ID, c.Through, prev, n, ErrInvalid)
		}
		seen[c.ID], prev = true, c.Through
	}
	return cmds, nil
}

// FenceError says which command of a batch failed its fence (ErrExpired or
// ErrDeclined); nothing of the batch was stored.
type FenceError struct {
	Stream  string
	Command string
	// Index is the command's place in the batch's command fences.
	Index int
	Err   error
}

func (e *FenceError) Error() string {
	return fmt.Sprintf("append %s: command %q: %v", e.Stream, e.Command, e.Err)
}

func (e *FenceError) Unwrap() error { return e.Err }

// NotAfter fences an append by its caller's deadline.
func NotAfter(t time.Time) AppendOption { return func(f *AppendFence) { f.NotAfter = t } }

// ForCommand names the command an append records.
func ForCommand(id string) AppendOption { return func(f *AppendFence) { f.Command = id } }

// FenceOf folds options into the fence a backend checks.
func FenceOf(opts []AppendOption) AppendFence {
	var f AppendFence
	for _, o := range opts {
		o(&f)
	}
	return f
}

// ConflictError carries the versions of a failed compare-and-append.
type ConflictError struct {
	Stream   string
	Expected uint64
	Actual   uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("append %s: expected version %d, stream is at %d: %v", e.Stream, e.Expected, e.Actual, ErrConflict)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }
