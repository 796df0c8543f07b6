// Package countergroup owns counter groups: a grain that supervises child
// counter actors. It spawns them, broadcasts increments and resets to them,
// and restarts a child that panics (one-for-one, within a restart budget);
// a child past its budget is stopped and reported. The group's list of
// children and each child's value are events in the journal, so both
// survive restarts and member loss.
package countergroup

import (
	"fmt"
	"slices"
	"time"

	"granary/actors/es"
	"granary/messages"
)

// Kind is the cluster kind of counter groups.
const Kind = messages.CounterGroupKind

// MaxCounters bounds a group's children: clients must not grow a grain
// without limit.
const MaxCounters = 64

// State is a group folded from its events: its children, in spawn order,
// and those its supervisor stopped for good (a decision that must outlive
// the activation that took it).
type State struct {
	Counters []string
	Stopped  []string
	Version  uint64
}

// Stream is the journal stream of group name; ChildStream that of one of
// its counters. '/' cannot occur in names, so no two streams collide.
func Stream(group string) string { return "countergroup-" + group }

// ChildStream names the stream of counter in group.
func ChildStream(group string) func(counter string) string {
	return func(counter string) string { return "countergroup-" + group + "/" + counter }
}

// GroupFullError refuses a spawn past MaxCounters.
type GroupFullError struct{ Group string }

func (e *GroupFullError) Error() string {
	return fmt.Sprintf("counters: group %s already has %d counters", e.Group, MaxCounters)
}

// Code is the contract error code.
func (e *GroupFullError) Code() string { return messages.CodeValidationFailed }

// decideSpawn names the next child.
func decideSpawn(s State, group, commandID string, now time.Time) ([]*messages.CounterGroupEvent, error) {
	if len(s.Counters) >= MaxCounters {
		return nil, &GroupFullError{group}
	}
	return []*messages.CounterGroupEvent{{
		CommandId: commandID, OccurredAtUnixMs: now.UnixMilli(),
		Event: &messages.CounterGroupEvent_Spawned{Spawned: &messages.CounterSpawned{Counter: fmt.Sprintf("c%d", len(s.Counters)+1)}},
	}}, nil
}

// decideStopped records that the supervisor stopped counter, once.
func decideStopped(s State, counter, commandID string, now time.Time) []*messages.CounterGroupEvent {
	if slices.Contains(s.Stopped, counter) || !slices.Contains(s.Counters, counter) {
		return nil
	}
	return []*messages.CounterGroupEvent{{
		CommandId: commandID, OccurredAtUnixMs: now.UnixMilli(),
		Event: &messages.CounterGroupEvent_Stopped{Stopped: &messages.CounterStopped{Counter: counter}},
	}}
}

func apply(s State, _ string, ev *messages.CounterGroupEvent) State {
	switch {
	case ev.GetSpawned() != nil:
		s.Counters = append(append([]string(nil), s.Counters...), ev.GetSpawned().GetCounter())
	case ev.GetStopped() != nil:
		s.Stopped = append(append([]string(nil), s.Stopped...), ev.GetStopped().GetCounter())
	}
	s.Version++
	return s
}

// Event type names are stored in the journal: never rename them.
var codec = *es.ProtoCodec(es.Proto[State, *messages.CounterGroupEvent, *messages.CounterGroupSnapshot]{
	Stream:  Stream,
	Apply:   apply,
	Version: func(s State) uint64 { return s.Version },
	Types: []es.EventType[*messages.CounterGroupEvent]{
		{Name: "CounterSpawned", Is: func(ev *messages.CounterGroupEvent) bool { return ev.GetSpawned() != nil }},
		{Name: "CounterStopped", Is: func(ev *messages.CounterGroupEvent) bool { return ev.GetStopped() != nil }},
	},
	Snapshot: func(s State, recent []string) *messages.CounterGroupSnapshot {
		return &messages.CounterGroupSnapshot{Counters: s.Counters, Stopped: s.Stopped, Version: s.Version, RecentCommandIds: recent}
	},
	Restore: func(snap *messages.CounterGroupSnapshot) (State, []string) {
		return State{Counters: snap.GetCounters(), Stopped: snap.GetStopped(), Version: snap.GetVersion()}, snap.GetRecentCommandIds()
	},
})
