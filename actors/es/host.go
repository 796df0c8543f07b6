// Package es owns what every event-sourced grain does the same way: load
// the latest snapshot and replay the journal's tail, decide against the
// current state, append at the expected version, apply only what the
// journal accepted, drop re-sent commands, and catch up instead of forking
// when another activation wrote first.
package es

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"granary/messages"
	"granary/persistence"
)

// Codec tells a Host how one aggregate is stored. S is the state, E the
// event type. Every function must be pure.
type Codec[S, E any] struct {
	// Stream names the journal stream of an aggregate id.
	Stream func(id string) string
	// Apply folds a stored event into the state; Version reads how many
	// events a state has folded.
	Apply   func(s S, id string, ev E) S
	Version func(s S) uint64
	// Encode/Decode convert events to and from their journal form; Decode
	// reports undecodable data as persistence.ErrCorrupt.
	Encode func(ev E) (persistence.EventData, error)
	Decode func(e persistence.Event) (E, error)
	// CommandID is the id of the command that caused ev ("" when none).
	CommandID func(ev E) string
	// EncodeSnapshot/DecodeSnapshot store a state together with the recent
	// command ids, so duplicates are still caught after a reload.
	EncodeSnapshot func(s S, recent []string) ([]byte, error)
	DecodeSnapshot func(data []byte) (S, []string, error)
}

// Config is what a Host needs from its grain.
type Config struct {
	Store          persistence.Store
	SnapshotEvery  uint64
	RecentCommands int
	Logger         *slog.Logger
	// LogKey (with the aggregate id as its value), MemberID and the stream
	// are added to Logger the first time the host logs: a With per
	// activated grain cost more than its state (issue 10), and most grains
	// never log.
	LogKey, MemberID string
}

// maxRetries bounds how often one command is decided again after the
// journal turned out to be ahead of this activation.
const maxRetries = 3

// replayBatch bounds one journal read while catching up.
const replayBatch = 1000

// Host keeps one aggregate's state in step with its journal stream. It is
// not safe for concurrent use: it lives inside one actor.
type Host[S, E any] struct {
	codec *Codec[S, E]
	cfg   *Config // shared by every host of a kind
	id    string
	state S
	// last is the last stored batch's commands and the state each left,
	// kept while the grain is busy (see ForgetLastBatch): re-sends of a
	// batch's commands are answered from it instead of a fold of the
	// journal. A pointer, so an idle host holds one word of it.
	last   *lastBatch[S]
	recent recentCommands
	loaded bool
}

// lastBatch is what Host.last holds.
type lastBatch[S any] struct {
	cmds    []persistence.CommandFence
	answers []Settled[S]
}

// NewHost returns a host for aggregate id; nothing is loaded until the
// first Execute or Load.
func NewHost[S, E any](codec *Codec[S, E], cfg Config, id string) *Host[S, E] {
	return NewSharedHost(codec, &cfg, id)
}

// NewSharedHost is NewHost for hosts that share one cfg, which must not
// change afterwards: a grain kind's thousands of activations need not
// each carry a copy.
func NewSharedHost[S, E any](codec *Codec[S, E], cfg *Config, id string) *Host[S, E] {
	h := MakeSharedHost(codec, cfg, id)
	return &h
}

// MakeSharedHost is NewSharedHost as a value, for a grain that holds its
// host in its own struct: one allocation per activation instead of two.
// The host must not be copied once used.
func MakeSharedHost[S, E any](codec *Codec[S, E], cfg *Config, id string) Host[S, E] {
	return Host[S, E]{codec: codec, cfg: cfg, id: id, recent: recentCommands{limit: int32(cfg.RecentCommands)}}
}

// Logger is the host's logger, with its grain's attributes and stream.
func (h *Host[S, E]) Logger() *slog.Logger { return h.log() }

// log is built on each use, not kept: it is for the rare lines (errors,
// debug), and a kept logger cost every idle grain a word and ~300 B.
func (h *Host[S, E]) log() *slog.Logger {
	attrs := make([]any, 0, 6)
	if h.cfg.LogKey != "" {
		attrs = append(attrs, h.cfg.LogKey, h.id)
	}
	if h.cfg.MemberID != "" {
		attrs = append(attrs, "member", h.cfg.MemberID)
	}
	return h.cfg.Logger.With(append(attrs, "stream", h.codec.Stream(h.id))...)
}

// State is the aggregate as of the last event this host applied.
func (h *Host[S, E]) State() S { return h.state }

// Invalidate forgets the state; the next call reloads it from the journal.
// Call it whenever the state may differ from the journal (a panic midway).
func (h *Host[S, E]) Invalidate() { h.loaded = false }

// Loaded reports whether the state was loaded and is trusted.
func (h *Host[S, E]) Loaded() bool { return h.loaded }

// Outcome is the result of Execute.
type Outcome[S any] struct {
	State S
	// Duplicate: the command id was already applied; nothing was recorded.
	Duplicate bool
}

// Execute runs one command: decide turns the current state into the events
// to append (none for a read) or a domain error. The events are stored at
// the state's version and applied once stored. Domain errors are returned
// as they are; storage trouble is a *messages.Failure with
// CodeServiceUnavailable (after which the state is reloaded on next use).
func (h *Host[S, E]) Execute(ctx context.Context, commandID string, decide func(S) ([]E, error)) (Outcome[S], error) {
	return h.ExecuteBefore(ctx, commandID, time.Time{}, decide)
}

// declineHold is how long a refusal fences its command when the command
// has no deadline: longer than any member stays frozen in practice.
const declineHold = 10 * time.Minute

// declineMargin keeps a refusal's fence a little past its deadline, for
// the difference between this member's clock and the store's.
const declineMargin = time.Second

// ExecuteBefore is Execute for a command whose caller gives up at deadline
// (zero: never). The journal refuses its events once the deadline passed,
// so an attempt that ran late (a frozen member waking up) cannot commit
// after its caller was told "timed out" and may have retried. A refusal of
// a command with an id is recorded in the journal at the version it was
// decided at (Journal.Decline), so no other activation deciding the same
// command on an older view can apply it afterwards: every definite answer
// agrees with the journal.
func (h *Host[S, E]) ExecuteBefore(ctx context.Context, commandID string, deadline time.Time, decide func(S) ([]E, error)) (Outcome[S], error) {
	// A state this very call loads is as fresh as the version check a read
	// makes (one more round trip on every activation's first call).
	loadedNow := !h.loaded
	if err := h.Load(ctx); err != nil {
		h.log().ErrorContext(ctx, "activation failed", "err", err)
		return Outcome[S]{}, messages.Fail(messages.CodeServiceUnavailable, "storage unavailable")
	}
	for attempt := 0; ; attempt++ {
		if commandID != "" && h.recent.Has(commandID) {
			// The answer to a re-sent command is the state that command
			// left, not today's: later writes by others are not its result.
			st, err := h.stateAfter(ctx, commandID)
			if err != nil {
				h.log().ErrorContext(ctx, "reading the state a duplicate left failed", "err", err)
				return Outcome[S]{}, messages.Fail(messages.CodeServiceUnavailable, "storage unavailable")
			}
			return Outcome[S]{State: st, Duplicate: true}, nil
		}
		events, err := decide(h.state)
		if err != nil && commandID != "" && !deadline.IsZero() && !time.Now().Before(deadline.Add(declineMargin)) {
			// The journal takes no fence that has lapsed already (it
			// reported ErrInvalid, which read as "storage unavailable"
			// and reloaded the grain). Answer as an expired append is
			// answered: no verdict a later attempt could contradict.
			return Outcome[S]{}, messages.Fail(messages.CodeTimeout, "request expired before its refusal could be recorded; not applied")
		}
		if err != nil && commandID != "" {
			behind, derr := h.decline(ctx, commandID, deadline)
			switch {
			case derr != nil:
				h.loaded = false
				h.log().ErrorContext(ctx, "recording a refusal failed", "err", derr)
				return Outcome[S]{}, messages.Fail(messages.CodeServiceUnavailable, "storage unavailable")
			case !behind:
				return Outcome[S]{State: h.state}, err
			case attempt >= maxRetries:
				return Outcome[S]{}, messages.Fail(messages.CodeServiceUnavailable, "contended by another activation; retry")
			}
			continue
		}
		if err != nil || len(events) == 0 {
			if attempt == 0 && loadedNow {
				return Outcome[S]{State: h.state}, err
			}
			// A read must not rest on a stale view: another activation
			// (membership change) may have written since we loaded. One
			// LLEN tells; catch up and decide again if so.
			behind, ferr := h.freshen(ctx)
			if ferr != nil {
				h.loaded = false
				h.log().ErrorContext(ctx, "checking the journal's version failed", "err", ferr)
				return Outcome[S]{}, messages.Fail(messages.CodeServiceUnavailable, "storage unavailable")
			}
			if behind && attempt < maxRetries {
				continue
			}
			return Outcome[S]{State: h.state}, err
		}
		err = h.append(ctx, events, appendFence(commandID, deadline)...)
		switch {
		case err == nil:
			return Outcome[S]{State: h.state}, nil
		case errors.Is(err, persistence.ErrExpired):
			// Nothing was stored, and nothing of this attempt ever will be.
			return Outcome[S]{}, messages.Fail(messages.CodeTimeout, "request expired before it could be stored; not applied")
		case errors.Is(err, persistence.ErrDuplicate):
			// Applied before, but so long ago that this activation's window
			// of recent ids no longer holds it (a retry after its first
			// attempt's member died): answer the state it left.
			var dup *persistence.DuplicateError
			errors.As(err, &dup)
			st, serr := h.stateAt(ctx, dup.Version)
			if serr != nil {
				h.loaded = false
				h.log().ErrorContext(ctx, "reading the state a duplicate left failed", "err", serr)
				return Outcome[S]{}, messages.Fail(messages.CodeServiceUnavailable, "storage unavailable")
			}
			return Outcome[S]{State: st, Duplicate: true}, nil
		case errors.Is(err, persistence.ErrDeclined):
			// Another activation refused this command on a newer view; its
			// answer stands. This one is stale: reload on next use.
			h.loaded = false
			h.log().WarnContext(ctx, "command was refused by another activation", "command", commandID)
			return Outcome[S]{}, messages.Fail(messages.CodeServiceUnavailable, "request was already refused; not applied")
		case !errors.Is(err, persistence.ErrConflict):
			// The append may or may not be stored: forget what we hold.
			h.loaded = false
			h.log().ErrorContext(ctx, "append failed", "err", err)
			return Outcome[S]{}, messages.Fail(messages.CodeServiceUnavailable, "storage unavailable; the change may or may not be applied")
		}
		if attempt >= maxRetries {
			return Outcome[S]{}, messages.Fail(messages.CodeServiceUnavailable, "contended by another activation; retry")
		}
		// Another activation wrote first (membership change): catch up
		// with its events and decide again.
		h.log().WarnContext(ctx, "append conflict; catching up with the journal", "err", err)
		if err := h.replay(ctx); err != nil {
			h.loaded = false
			h.log().ErrorContext(ctx, "catch-up after conflict failed", "err", err)
			return Outcome[S]{}, messages.Fail(messages.CodeServiceUnavailable, "storage unavailable")
		}
	}
}

func appendFence(commandID string, deadline time.Time) []persistence.AppendOption {
	var opts []persistence.AppendOption
	if commandID != "" {
		opts = append(opts, persistence.ForCommand(commandID))
	}
	if !deadline.IsZero() {
		opts = append(opts, persistence.NotAfter(deadline))
	}
	return opts
}

// decline records the refusal of commandID at the state's version. When
// the journal is ahead it catches up instead and reports behind, so the
// caller decides again on the newer view.
func (h *Host[S, E]) decline(ctx context.Context, commandID string, deadline time.Time) (behind bool, err error) {
	until := time.Now().Add(declineHold)
	if !deadline.IsZero() {
		until = deadline.Add(declineMargin)
	}
	stream, mine := h.codec.Stream(h.id), h.codec.Version(h.state)
	err = h.cfg.Store.Decline(ctx, stream, mine, commandID, until)
	var conflict *persistence.ConflictError
	switch {
	case err == nil:
		return false, nil
	case !errors.As(err, &conflict):
		return false, fmt.Errorf("decline %s on %s: %w", commandID, stream, err)
	case conflict.Actual < mine:
		return false, fmt.Errorf("%s: journal at version %d behind state at %d: %w", stream, conflict.Actual, mine, persistence.ErrCorrupt)
	}
	h.log().WarnContext(ctx, "journal is ahead of this activation; catching up before refusing", "state_version", mine, "journal_version", conflict.Actual)
	return true, h.replay(ctx)
}

// Load rebuilds the state from the latest snapshot plus the journal's tail,
// unless it is already loaded.
func (h *Host[S, E]) Load(ctx context.Context) error {
	if h.loaded {
		return nil
	}
	var zero S
	h.state = zero
	h.recent = recentCommands{limit: int32(h.cfg.RecentCommands)}
	h.ForgetLastBatch()
	stream := h.codec.Stream(h.id)
	// The snapshot and the events after it in one round trip.
	snap, ok, tail, err := persistence.LoadStream(ctx, h.cfg.Store, stream, replayBatch)
	if err != nil {
		return fmt.Errorf("load %s: %w", stream, err)
	}
	more := len(tail) == replayBatch // may be followed by more
	if ok {
		s, recent, err := h.codec.DecodeSnapshot(snap.Data)
		if err != nil || h.codec.Version(s) != snap.Version {
			// A snapshot is only a shortcut: replay everything instead.
			h.log().WarnContext(ctx, "ignoring unreadable snapshot", "version", snap.Version, "err", err)
			tail, more = nil, true
		} else {
			h.state = s
			for _, id := range recent {
				h.recent.Add(id)
			}
		}
	}
	from := h.codec.Version(h.state)
	if err := h.applyAll(stream, tail); err != nil {
		return err
	}
	if more {
		if err := h.replay(ctx); err != nil {
			return err
		}
	}
	h.loaded = true
	// A long replay means no snapshot was near (written before snapshots
	// existed, or a save failed): save one now so the next load is short.
	replayed := h.codec.Version(h.state) - from
	if replayed > h.cfg.SnapshotEvery {
		h.snapshot(ctx)
	}
	if h.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		// Guarded: building the logger costs an idle grain ~300 B.
		h.log().DebugContext(ctx, "activated", "version", h.codec.Version(h.state), "replayed", replayed)
	}
	return nil
}

// append stores events at the state's version and applies them once stored.
func (h *Host[S, E]) append(ctx context.Context, events []E, opts ...persistence.AppendOption) error {
	stream := h.codec.Stream(h.id)
	batch := make([]persistence.EventData, len(events))
	for i, ev := range events {
		data, err := h.codec.Encode(ev)
		if err != nil {
			return fmt.Errorf("encode %s event: %w", stream, err)
		}
		batch[i] = data
	}
	before := h.codec.Version(h.state)
	if _, err := h.cfg.Store.Append(ctx, stream, before, batch, opts...); err != nil {
		return fmt.Errorf("append %s@%d: %w", stream, before, err)
	}
	for _, ev := range events {
		h.state = h.codec.Apply(h.state, h.id, ev)
		h.recent.Add(h.codec.CommandID(ev))
	}
	if before/h.cfg.SnapshotEvery != h.codec.Version(h.state)/h.cfg.SnapshotEvery {
		h.snapshot(ctx)
	}
	return nil
}

// snapshot is best effort: a missing snapshot only costs replay time.
func (h *Host[S, E]) snapshot(ctx context.Context) {
	v := h.codec.Version(h.state)
	data, err := h.codec.EncodeSnapshot(h.state, h.recent.IDs())
	if err == nil {
		err = h.cfg.Store.SaveSnapshot(ctx, h.codec.Stream(h.id), persistence.Snapshot{Version: v, Data: data})
	}
	if err != nil {
		h.log().WarnContext(ctx, "snapshot not saved", "version", v, "err", err)
	}
}

// stateAfter returns the state right after the last event of commandID:
// the current state when that event is the last one (the common re-send),
// else a fold of the journal up to it. Duplicates come with faults and
// with re-sends under load (a batch's commands but its last one land
// here), so the search starts with the most recent events.
func (h *Host[S, E]) stateAfter(ctx context.Context, commandID string) (S, error) {
	if st, ok := h.lastAnswer(commandID); ok {
		return st, nil
	}
	stream, cur := h.codec.Stream(h.id), h.codec.Version(h.state)
	// The remembered ids are those of the last RecentCommands commands;
	// a generous window of events holds their last events.
	for _, window := range []uint64{recentWindow, uint64(4 * max(h.cfg.RecentCommands, 1))} {
		from := uint64(0)
		if cur > window {
			from = cur - window
		}
		tail, err := h.cfg.Store.ReadStream(ctx, stream, from, 0)
		if err != nil {
			return h.state, fmt.Errorf("read %s after %d: %w", stream, from, err)
		}
		var at uint64
		for _, e := range tail {
			if e.Version > cur {
				break
			}
			ev, err := h.codec.Decode(e)
			if err != nil {
				return h.state, err
			}
			if h.codec.CommandID(ev) == commandID {
				at = e.Version
			}
		}
		switch {
		case at == cur:
			return h.state, nil
		case at > 0:
			return h.stateAt(ctx, at)
		case from == 0:
			// Not found at all (remembered from an old snapshot): the
			// current state is the best answer there is.
			return h.state, nil
		}
	}
	return h.state, nil
}

// recentWindow is the first, small window stateAfter searches.
const recentWindow = 256

// stateAt folds the journal up to version at, from the latest snapshot
// when that is not past at.
func (h *Host[S, E]) stateAt(ctx context.Context, at uint64) (S, error) {
	stream := h.codec.Stream(h.id)
	var st S
	snap, ok, err := h.cfg.Store.LoadSnapshot(ctx, stream)
	if err != nil {
		return h.state, fmt.Errorf("load snapshot %s: %w", stream, err)
	}
	if ok && snap.Version <= at {
		if s, _, err := h.codec.DecodeSnapshot(snap.Data); err == nil && h.codec.Version(s) == snap.Version {
			st = s
		}
	}
	for v := h.codec.Version(st); v < at; {
		events, err := h.cfg.Store.ReadStream(ctx, stream, v, int(min(at-v, replayBatch)))
		if err != nil {
			return h.state, fmt.Errorf("replay %s after %d: %w", stream, v, err)
		}
		if len(events) == 0 {
			return h.state, fmt.Errorf("replay %s: no event after %d: %w", stream, v, persistence.ErrCorrupt)
		}
		for _, e := range events {
			ev, err := h.codec.Decode(e)
			if err != nil {
				return h.state, err
			}
			st = h.codec.Apply(st, h.id, ev)
			v = e.Version
		}
	}
	return st, nil
}

// freshen catches up when the journal holds events this activation has not
// seen, and reports whether it had to.
func (h *Host[S, E]) freshen(ctx context.Context) (bool, error) {
	stream := h.codec.Stream(h.id)
	v, err := h.cfg.Store.StreamVersion(ctx, stream)
	if err != nil {
		return false, fmt.Errorf("version of %s: %w", stream, err)
	}
	mine := h.codec.Version(h.state)
	switch {
	case v == mine:
		return false, nil
	case v < mine:
		return false, fmt.Errorf("%s: journal at version %d behind state at %d: %w", stream, v, mine, persistence.ErrCorrupt)
	}
	h.log().WarnContext(ctx, "journal is ahead of this activation; catching up", "state_version", mine, "journal_version", v)
	return true, h.replay(ctx)
}

// replay applies every stored event after the state's version.
func (h *Host[S, E]) replay(ctx context.Context) error {
	stream := h.codec.Stream(h.id)
	for {
		v := h.codec.Version(h.state)
		events, err := h.cfg.Store.ReadStream(ctx, stream, v, replayBatch)
		if err != nil {
			return fmt.Errorf("replay %s after %d: %w", stream, v, err)
		}
		if err := h.applyAll(stream, events); err != nil {
			return err
		}
		if len(events) < replayBatch {
			return nil
		}
	}
}

// applyAll applies events, which must follow the state's version one by
// one.
func (h *Host[S, E]) applyAll(stream string, events []persistence.Event) error {
	for _, e := range events {
		if e.Version != h.codec.Version(h.state)+1 {
			return fmt.Errorf("replay %s: event version %d after %d: %w", stream, e.Version, h.codec.Version(h.state), persistence.ErrCorrupt)
		}
		ev, err := h.codec.Decode(e)
		if err != nil {
			return err
		}
		h.state = h.codec.Apply(h.state, h.id, ev)
		h.recent.Add(h.codec.CommandID(ev))
	}
	return nil
}
