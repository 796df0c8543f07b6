// Package counter owns counters: a named value that only goes up by
// increments or back to zero by resets, kept as events in the journal. The
// same actor runs as a cluster grain (kind "counter") and as a child of a
// counter group, whose supervisor restarts it.
package counter

import (
	"fmt"
	"math"
	"time"

	"granary/actors/es"
	"granary/messages"
)

// Kind is the cluster kind of counter grains.
const Kind = messages.CounterKind

// MaxIncrement bounds one increment, like every amount a client sends.
const MaxIncrement = messages.MaxCounterIncrement

// NamePattern is what a counter or group name may look like; names are
// grain identities, so the gateway refuses anything else.
var NamePattern = messages.CounterNamePattern

// State is a counter folded from its events.
type State struct {
	Value   int64
	Version uint64
}

// ValidationError names the field that is out of range.
type ValidationError struct{ Field, Reason string }

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

// Code is the contract error code.
func (e *ValidationError) Code() string { return messages.CodeValidationFailed }

// Decide turns a request into events. It is pure.
func Decide(s State, req *messages.CounterRequest, now time.Time) ([]*messages.CounterEvent, error) {
	ev := &messages.CounterEvent{CommandId: req.GetCommandId(), OccurredAtUnixMs: now.UnixMilli()}
	switch cmd := req.GetCommand().(type) {
	case *messages.CounterRequest_Get:
		return nil, nil
	case *messages.CounterRequest_Increment:
		by := cmd.Increment.GetBy()
		if by < 1 || by > MaxIncrement {
			return nil, &ValidationError{"by", fmt.Sprintf("must be between 1 and %d", MaxIncrement)}
		}
		if by > math.MaxInt64-s.Value {
			return nil, &ValidationError{"by", "counter would overflow"}
		}
		ev.Event = &messages.CounterEvent_Incremented{Incremented: &messages.CounterIncremented{By: by}}
	case *messages.CounterRequest_Reset_:
		ev.Event = &messages.CounterEvent_Reset_{Reset_: &messages.CounterReset{}}
	default:
		return nil, &ValidationError{"command", fmt.Sprintf("unknown command %T", cmd)}
	}
	return []*messages.CounterEvent{ev}, nil
}

// Apply folds one stored event into the state.
func Apply(s State, _ string, ev *messages.CounterEvent) State {
	switch e := ev.GetEvent().(type) {
	case *messages.CounterEvent_Incremented:
		s.Value += e.Incremented.GetBy()
	case *messages.CounterEvent_Reset_:
		s.Value = 0
	}
	s.Version++
	return s
}

// Event type names as stored in the journal.
const (
	TypeIncremented = "CounterIncremented"
	TypeReset       = "CounterReset"
)

// codec is built once: every activation gets a copy that differs in its
// stream only, so a counter costs no more than the Codec struct itself.
var codec = es.ProtoCodec(es.Proto[State, *messages.CounterEvent, *messages.CounterSnapshot]{
	Stream:  GrainStream,
	Apply:   Apply,
	Version: func(s State) uint64 { return s.Version },
	Types: []es.EventType[*messages.CounterEvent]{
		{Name: TypeIncremented, Is: func(ev *messages.CounterEvent) bool { return ev.GetIncremented() != nil }},
		{Name: TypeReset, Is: func(ev *messages.CounterEvent) bool { return ev.GetReset_() != nil }},
	},
	Snapshot: func(s State, recent []string) *messages.CounterSnapshot {
		return &messages.CounterSnapshot{Value: s.Value, Version: s.Version, RecentCommandIds: recent}
	},
	Restore: func(snap *messages.CounterSnapshot) (State, []string) {
		return State{Value: snap.GetValue(), Version: snap.GetVersion()}, snap.GetRecentCommandIds()
	},
})

// Codec stores counters whose stream is named by stream.
func Codec(stream func(id string) string) *es.Codec[State, *messages.CounterEvent] {
	c := *codec
	c.Stream = stream
	return &c
}

// GrainStream is the journal stream of counter grain name.
func GrainStream(name string) string { return "counter-" + name }
