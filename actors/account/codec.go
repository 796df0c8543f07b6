package account

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/es"
	"granary/messages"
	"granary/persistence"
)

// codec is how accounts live in the journal.
var codec = es.Codec[State, *messages.AccountEvent]{
	Stream:    StreamFor,
	Apply:     Apply,
	Version:   func(s State) uint64 { return s.Version },
	Encode:    encodeEvent,
	Decode:    DecodeEvent,
	CommandID: func(ev *messages.AccountEvent) string { return ev.GetCommandId() },
	EncodeSnapshot: func(s State, recent []string) ([]byte, error) {
		return proto.Marshal(&messages.AccountSnapshot{State: s.ToProto(), RecentCommandIds: recent})
	},
	DecodeSnapshot: func(data []byte) (State, []string, error) {
		var snap messages.AccountSnapshot
		if err := proto.Unmarshal(data, &snap); err != nil {
			return State{}, nil, err
		}
		return FromProto(snap.GetState()), snap.GetRecentCommandIds(), nil
	},
}

func encodeEvent(ev *messages.AccountEvent) (persistence.EventData, error) {
	data, err := proto.Marshal(ev)
	if err != nil {
		return persistence.EventData{}, err
	}
	return persistence.EventData{Type: TypeOf(ev), Data: data, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())}, nil
}

// DecodeEvent reads an account event from its journal form.
func DecodeEvent(e persistence.Event) (*messages.AccountEvent, error) {
	var ev messages.AccountEvent
	if err := proto.Unmarshal(e.Data, &ev); err != nil {
		return nil, fmt.Errorf("decode %s@%d: %v: %w", e.Stream, e.Version, err, persistence.ErrCorrupt)
	}
	if TypeOf(&ev) != e.Type {
		return nil, fmt.Errorf("decode %s@%d: type %q does not match payload %q: %w", e.Stream, e.Version, e.Type, TypeOf(&ev), persistence.ErrCorrupt)
	}
	return &ev, nil
}
