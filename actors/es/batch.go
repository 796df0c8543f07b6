package es

import (
	"context"
	"errors"
	"fmt"
	"time"

	"granary/messages"
	"granary/persistence"
)

// Batch is commands decided one after the other on top of the host's
// state, to be appended as one journal batch: while a hot grain's append
// is in flight its next commands queue up, and the next round trip carries
// all of them instead of one (issue 10). Each command keeps its own fence
// in the journal (persistence.ForCommands), so a batch never records a
// command the journal would have refused on its own.
type Batch[S, E any] struct {
	base   uint64
	state  S
	stream string
	data   []persistence.EventData
	events []E
	cmds   []persistence.CommandFence
	// ends[i] is how many of events end with command i's last event.
	ends []int
}

// Len is how many commands the batch holds.
func (b *Batch[S, E]) Len() int { return len(b.cmds) }

// NewBatch starts a batch on the current state. The host must be loaded,
// and its state must not change until the batch is settled: the grain
// holds every other request back meanwhile.
func (h *Host[S, E]) NewBatch() *Batch[S, E] {
	return &Batch[S, E]{base: h.codec.Version(h.state), state: h.state, stream: h.codec.Stream(h.id)}
}

// maxBatchEvents bounds one batch; a grain's queue beyond it waits for the
// next round trip.
const maxBatchEvents = 256

// TryAdd decides a command on the batch's state (the host's plus the
// events of the commands before it) and adds it when it yields events. It
// adds nothing and reports false when the command must run on its own
// once the batch is stored: it has no id (nothing would fence it), its id
// is recent or already in the batch (a duplicate, answered with the state
// it left), decide refused it or it is a read (a refusal or a read must
// rest on stored state, not on events that may yet fail), or the batch is
// full.
func (h *Host[S, E]) TryAdd(b *Batch[S, E], commandID string, deadline time.Time, decide func(S) ([]E, error)) bool {
	if commandID == "" || h.recent.Has(commandID) || len(b.events) >= maxBatchEvents {
		return false
	}
	for _, c := range b.cmds {
		if c.ID == commandID {
			return false
		}
	}
	events, err := decide(b.state)
	if err != nil || len(events) == 0 || len(b.events)+len(events) > maxBatchEvents && len(b.cmds) > 0 {
		return false
	}
	data := make([]persistence.EventData, len(events))
	for i, ev := range events {
		d, err := h.codec.Encode(ev)
		if err != nil {
			return false // ExecuteBefore reports it on its own
		}
		data[i] = d
	}
	st := b.state
	for _, ev := range events {
		st = h.codec.Apply(st, h.id, ev)
	}
	b.state = st
	b.data = append(b.data, data...)
	b.events = append(b.events, events...)
	b.cmds = append(b.cmds, persistence.CommandFence{ID: commandID, Through: len(b.events), NotAfter: deadline})
	b.ends = append(b.ends, len(b.events))
	return true
}

// Store returns the append of b, safe to run off the actor: it touches
// nothing of the host.
func (h *Host[S, E]) Store(b *Batch[S, E]) func(ctx context.Context) error {
	store, stream, base, data, cmds := h.cfg.Store, b.stream, b.base, b.data, b.cmds
	return func(ctx context.Context) error {
		if _, err := store.Append(ctx, stream, base, data, persistence.ForCommands(cmds...)); err != nil {
			return fmt.Errorf("append %d commands to %s@%d: %w", len(cmds), stream, base, err)
		}
		return nil
	}
}

// ForgetLastBatch drops what the host keeps of its last stored batch (the
// state each of its commands left, for answering their re-sends without a
// replay); the grain calls it when it goes idle, so an idle grain holds
// nothing of its bursts.
func (h *Host[S, E]) ForgetLastBatch() { h.last = nil }

// lastAnswer is the state commandID left if it was in the last batch.
func (h *Host[S, E]) lastAnswer(commandID string) (S, bool) {
	if h.last != nil {
		for i, c := range h.last.cmds {
			if c.ID == commandID {
				return h.last.answers[i].Outcome.State, true
			}
		}
	}
	var zero S
	return zero, false
}

// Settled is what became of one command of a batch.
type Settled[S any] struct {
	Outcome Outcome[S]
	Err     error
	// Retry: nothing of the command was stored and nothing was decided
	// about it; run it again (on its own or in the next batch).
	Retry bool
	// Conflict: retried because another activation wrote first; the
	// grain bounds how often that may happen to one command.
	Conflict bool
}

// Settle applies the result of b's append (err from Store's function) and
// says per command what to answer. On success each command is answered
// with the state right after its own events. When one command's fence
// failed, that command is answered and the others retried; on a conflict
// (another activation wrote) the host catches up and all are retried; when
// the outcome is unknown all are told so and the state reloads on next use.
func (h *Host[S, E]) Settle(ctx context.Context, b *Batch[S, E], err error) []Settled[S] {
	if err != nil || h.codec.Version(h.state) != b.base {
		return h.settleFailed(ctx, b, err)
	}
	// The common path stays small: a grain's mailbox runs on a fresh
	// goroutine each time, and a large frame here made most of them grow
	// their stack (5 % of a member's CPU under load).
	out := make([]Settled[S], len(b.cmds))
	start := 0
	for i, c := range b.cmds {
		for _, ev := range b.events[start:b.ends[i]] {
			h.state = h.codec.Apply(h.state, h.id, ev)
		}
		start = b.ends[i]
		h.recent.Add(c.ID)
		out[i].Outcome.State = h.state
	}
	h.last = &lastBatch[S]{cmds: b.cmds, answers: out}
	if b.base/h.cfg.SnapshotEvery != h.codec.Version(h.state)/h.cfg.SnapshotEvery {
		h.snapshot(ctx)
	}
	return out
}

// settleFailed is Settle for a batch that was not stored, or whose outcome
// is unknown.
//
//go:noinline
func (h *Host[S, E]) settleFailed(ctx context.Context, b *Batch[S, E], err error) []Settled[S] {
	out := make([]Settled[S], len(b.cmds))
	all := func(s Settled[S]) []Settled[S] {
		for i := range out {
			out[i] = s
		}
		return out
	}
	if h.codec.Version(h.state) != b.base {
		// Not reachable while the grain holds requests back; refuse to
		// apply events on a state they were not decided on.
		h.loaded = false
		h.log().ErrorContext(ctx, "batch settled on a state that moved", "base", b.base, "state_version", h.codec.Version(h.state))
		return all(Settled[S]{Err: messages.Fail(messages.CodeServiceUnavailable, "storage unavailable; the change may or may not be applied")})
	}
	var fence *persistence.FenceError
	var dup *persistence.DuplicateError
	switch {
	case errors.As(err, &fence) && fence.Index >= 0 && fence.Index < len(out):
		for i := range out {
			out[i] = Settled[S]{Retry: true}
		}
		if errors.Is(err, persistence.ErrExpired) {
			out[fence.Index] = Settled[S]{Err: messages.Fail(messages.CodeTimeout, "request expired before it could be stored; not applied")}
		} else {
			// Declined by another activation on a newer view: its answer
			// stands, and this activation is stale.
			h.loaded = false
			h.log().WarnContext(ctx, "command was refused by another activation", "command", fence.Command)
			out[fence.Index] = Settled[S]{Err: messages.Fail(messages.CodeServiceUnavailable, "request was already refused; not applied")}
		}
		return out
	case errors.As(err, &dup) && dup.Index >= 0 && dup.Index < len(out):
		for i := range out {
			out[i] = Settled[S]{Retry: true}
		}
		st, serr := h.stateAt(ctx, dup.Version)
		if serr != nil {
			h.loaded = false
			h.log().ErrorContext(ctx, "reading the state a duplicate left failed", "err", serr)
			out[dup.Index] = Settled[S]{Err: messages.Fail(messages.CodeServiceUnavailable, "storage unavailable")}
		} else {
			out[dup.Index] = Settled[S]{Outcome: Outcome[S]{State: st, Duplicate: true}}
		}
		return out
	case errors.Is(err, persistence.ErrConflict):
		h.log().WarnContext(ctx, "batch append conflict; catching up with the journal", "err", err)
		if rerr := h.replay(ctx); rerr != nil {
			h.loaded = false
			h.log().ErrorContext(ctx, "catch-up after conflict failed", "err", rerr)
			return all(Settled[S]{Err: messages.Fail(messages.CodeServiceUnavailable, "storage unavailable")})
		}
		return all(Settled[S]{Retry: true, Conflict: true})
	default:
		h.loaded = false
		h.log().ErrorContext(ctx, "batch append failed", "commands", len(b.cmds), "err", err)
		return all(Settled[S]{Err: messages.Fail(messages.CodeServiceUnavailable, "storage unavailable; the change may or may not be applied")})
	}
}
