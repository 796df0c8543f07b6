// Package counter owns counters: a named value that only goes up by
// increments or back to zero by resets, kept as events in the journal. The
// same actor runs as a cluster grain (kind "counter") and as a child of a
// counter group, whose supervisor restarts it.
package counter

import (
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/es"
	"granary/messages"
	"granary/persistence"
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

func typeOf(ev *messages.CounterEvent) string {
	switch ev.GetEvent().(type) {
	case *messages.CounterEvent_Incremented:
		return TypeIncremented
	case *messages.CounterEvent_Reset_:
		return TypeReset
	}
	return ""
}

// Codec stores counters whose stream is named by stream.
func Codec(stream func(id string) string) *es.Codec[State, *messages.CounterEvent] {
	return &es.Codec[State, *messages.CounterEvent]{
		Stream:  stream,
		Apply:   Apply,
		Version: func(s State) uint64 { return s.Version },
		Encode: func(ev *messages.CounterEvent) (persistence.EventData, error) {
			data, err := proto.Marshal(ev)
			return persistence.EventData{Type: typeOf(ev), Data: data, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())}, err
		},
		Decode: func(e persistence.Event) (*messages.CounterEvent, error) {
			var ev messages.CounterEvent
			if err := proto.Unmarshal(e.Data, &ev); err != nil || typeOf(&ev) != e.Type {
				return nil, fmt.Errorf("decode %s@%d (%s): %v: %w", e.Stream, e.Version, e.Type, err, persistence.ErrCorrupt)
			}
			return &ev, nil
		},
		CommandID: func(ev *messages.CounterEvent) string { return ev.GetCommandId() },
		EncodeSnapshot: func(s State, recent []string) ([]byte, error) {
			return proto.Marshal(&messages.CounterSnapshot{Value: s.Value, Version: s.Version, RecentCommandIds: recent})
		},
		DecodeSnapshot: func(data []byte) (State, []string, error) {
			var snap messages.CounterSnapshot
			err := proto.Unmarshal(data, &snap)
			return State{Value: snap.GetValue(), Version: snap.GetVersion()}, snap.GetRecentCommandIds(), err
		},
	}
}

// GrainStream is the journal stream of counter grain name.
func GrainStream(name string) string { return "counter-" + name }
