package es

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/persistence"
)

// ProtoEvent is what ProtoCodec needs of an event message: the fields
// every Granary event carries.
type ProtoEvent interface {
	proto.Message
	GetCommandId() string
	GetOccurredAtUnixMs() int64
}

// EventType names one kind of event in the journal and recognises it.
// Is is usually "this oneof case is set"; it may ask more (a required
// field), and then Decode refuses stored events without it as corrupt.
type EventType[E any] struct {
	Name string
	Is   func(E) bool
}

// Proto declares a protobuf aggregate for ProtoCodec. S is the state, E
// the event message, Snap the snapshot message.
type Proto[S any, E ProtoEvent, Snap proto.Message] struct {
	Stream  func(id string) string
	Apply   func(s S, id string, ev E) S
	Version func(s S) uint64
	// Types are every event type; an event is stored under the first
	// whose Is holds. The names are the journal's: never rename one.
	Types []EventType[E]
	// Snapshot wraps a state and its recent command ids; Restore unwraps
	// them. Restore gets a decoded message, never nil.
	Snapshot func(s S, recent []string) Snap
	Restore  func(snap Snap) (S, []string)
}

// ProtoCodec builds the Codec of a protobuf aggregate, so that each kind
// declares its event types once and gets the journal form (proto.Marshal
// under the type's name, OccurredAt from occurred_at_unix_ms), the check
// that a stored event is what its name says (Decode reports anything else
// as persistence.ErrCorrupt), CommandID and the snapshot encoding for
// free:
//
//	var codec = es.ProtoCodec(es.Proto[State, *messages.UserEvent, *messages.UserSnapshot]{
//		Stream:  func(name string) string { return "user-" + name },
//		Apply:   Apply,
//		Version: func(s State) uint64 { return s.Version },
//		Types: []es.EventType[*messages.UserEvent]{
//			{Name: "UserRegistered", Is: func(e *messages.UserEvent) bool { return e.GetRegistered() != nil }},
//			{Name: "UserIdAssigned", Is: func(e *messages.UserEvent) bool { return e.GetIdAssigned() != nil }},
//		},
//		Snapshot: func(s State, recent []string) *messages.UserSnapshot {
//			return &messages.UserSnapshot{State: s.ToProto(), RecentCommandIds: recent}
//		},
//		Restore: func(snap *messages.UserSnapshot) (State, []string) {
//			return fromProto(snap.GetState()), snap.GetRecentCommandIds()
//		},
//	})
//
// It panics on an incomplete declaration or a type name that is empty or
// declared twice: codecs are package variables, and a kind that cannot
// store its events must not start.
func ProtoCodec[S any, E ProtoEvent, Snap proto.Message](p Proto[S, E, Snap]) *Codec[S, E] {
	if p.Stream == nil || p.Apply == nil || p.Version == nil || p.Snapshot == nil || p.Restore == nil || len(p.Types) == 0 {
		panic("es.ProtoCodec: Stream, Apply, Version, Types, Snapshot and Restore are required")
	}
	byName := make(map[string]func(E) bool, len(p.Types))
	for _, t := range p.Types {
		if t.Name == "" || t.Is == nil || byName[t.Name] != nil {
			panic(fmt.Sprintf("es.ProtoCodec: event type %q is unnamed, has no Is, or is declared twice", t.Name))
		}
		byName[t.Name] = t.Is
	}
	types := append([]EventType[E](nil), p.Types...)
	// A nil generated message still knows its type: new messages are made
	// from it, so E and Snap can stay pointer types without a second
	// type parameter for what they point to.
	var e0 E
	var s0 Snap
	eventType, snapType := e0.ProtoReflect().Type(), s0.ProtoReflect().Type()
	return &Codec[S, E]{
		Stream:  p.Stream,
		Apply:   p.Apply,
		Version: p.Version,
		Encode: func(ev E) (persistence.EventData, error) {
			name := ""
			for _, t := range types {
				if t.Is(ev) {
					name = t.Name
					break
				}
			}
			if name == "" {
				return persistence.EventData{}, fmt.Errorf("encode %s: no declared event type matches it", eventType.Descriptor().FullName())
			}
			data, err := proto.Marshal(ev)
			if err != nil {
				return persistence.EventData{}, fmt.Errorf("encode %s: %w", name, err)
			}
			return persistence.EventData{Type: name, Data: data, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())}, nil
		},
		Decode: func(e persistence.Event) (E, error) {
			ev := eventType.New().Interface().(E)
			err := proto.Unmarshal(e.Data, ev)
			switch is := byName[e.Type]; {
			case err != nil:
				return e0, fmt.Errorf("decode %s@%d (%s): %v: %w", e.Stream, e.Version, e.Type, err, persistence.ErrCorrupt)
			case is == nil:
				return e0, fmt.Errorf("decode %s@%d: unknown event type %q: %w", e.Stream, e.Version, e.Type, persistence.ErrCorrupt)
			case !is(ev):
				return e0, fmt.Errorf("decode %s@%d: data is not a %s: %w", e.Stream, e.Version, e.Type, persistence.ErrCorrupt)
			}
			return ev, nil
		},
		CommandID: func(ev E) string { return ev.GetCommandId() },
		EncodeSnapshot: func(s S, recent []string) ([]byte, error) {
			data, err := proto.Marshal(p.Snapshot(s, recent))
			if err != nil {
				return nil, fmt.Errorf("encode %s: %w", snapType.Descriptor().FullName(), err)
			}
			return data, nil
		},
		DecodeSnapshot: func(data []byte) (S, []string, error) {
			snap := snapType.New().Interface().(Snap)
			if err := proto.Unmarshal(data, snap); err != nil {
				var zero S
				return zero, nil, fmt.Errorf("decode %s: %v: %w", snapType.Descriptor().FullName(), err, persistence.ErrCorrupt)
			}
			s, recent := p.Restore(snap)
			return s, recent, nil
		},
	}
}
