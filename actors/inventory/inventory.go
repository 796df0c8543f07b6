// Package inventory owns stock: an event-sourced grain per product. Sagas
// reserve and release units under their saga id; a reservation is held
// until its saga releases it (compensation) or commits it (order created),
// so a release gives back exactly what that saga took, once, even when the
// saga is unsure whether its reservation happened.
package inventory

import (
	"maps"
	"time"

	"granary/actors/es"
	"granary/messages"
)

// Kind is the cluster kind of inventory grains; the identity is the
// product id.
const Kind = messages.InventoryKind

// MaxQuantity bounds stock and reservation sizes.
const MaxQuantity = messages.MaxQuantity

// State is a product's stock.
type State struct {
	Known     bool // stock was ever set: the product exists
	Available int64
	Held      map[string]int64 // reservations not yet released or committed, by saga
	Version   uint64
}

// Error is a rule violation; the messages are the contract's saga errors.
type Error struct{ code, msg string }

func (e *Error) Error() string { return e.msg }

// Code is the contract error code.
func (e *Error) Code() string { return e.code }

var (
	ErrProductNotFound = &Error{messages.CodeNotFound, "product not found"}
	ErrInsufficient    = &Error{messages.CodeValidationFailed, "insufficient inventory"}
)

// Decide turns a request into events.
func Decide(s State, req *messages.InventoryRequest, now time.Time) ([]*messages.InventoryEvent, error) {
	ev := &messages.InventoryEvent{CommandId: req.GetCommandId(), OccurredAtUnixMs: now.UnixMilli()}
	switch cmd := req.GetCommand().(type) {
	case *messages.InventoryRequest_Get:
		if !s.Known {
			return nil, ErrProductNotFound
		}
		return nil, nil
	case *messages.InventoryRequest_Set:
		if a := cmd.Set.GetAvailable(); a < 0 || a > MaxQuantity {
			return nil, messages.Fail(messages.CodeValidationFailed, "available: must be between 0 and %d", MaxQuantity)
		}
		ev.Event = &messages.InventoryEvent_Set{Set: &messages.StockSet{Available: cmd.Set.GetAvailable()}}
	case *messages.InventoryRequest_Reserve:
		r := cmd.Reserve
		switch {
		case !s.Known:
			return nil, ErrProductNotFound
		case r.GetQuantity() <= 0 || r.GetQuantity() > MaxQuantity || r.GetSagaId() == "":
			return nil, messages.Fail(messages.CodeValidationFailed, "quantity: must be between 1 and %d", MaxQuantity)
		case s.Held[r.GetSagaId()] > 0:
			return nil, nil // this saga already holds its units
		case r.GetQuantity() > s.Available:
			return nil, ErrInsufficient
		}
		ev.Event = &messages.InventoryEvent_Reserved{Reserved: &messages.StockReserved{SagaId: r.GetSagaId(), Quantity: r.GetQuantity()}}
	case *messages.InventoryRequest_Release:
		held := s.Held[cmd.Release.GetSagaId()]
		if held == 0 {
			return nil, nil // never reserved, or already released: nothing to give back
		}
		if cmd.Release.GetCommit() {
			held = 0
		}
		ev.Event = &messages.InventoryEvent_Released{Released: &messages.StockReleased{SagaId: cmd.Release.GetSagaId(), Quantity: held}}
	default:
		return nil, messages.Fail(messages.CodeValidationFailed, "unknown inventory command %T", cmd)
	}
	return []*messages.InventoryEvent{ev}, nil
}

// Apply folds one stored event into the state.
func Apply(s State, _ string, ev *messages.InventoryEvent) State {
	s.Held = maps.Clone(s.Held)
	if s.Held == nil {
		s.Held = map[string]int64{}
	}
	switch e := ev.GetEvent().(type) {
	case *messages.InventoryEvent_Set:
		s.Known, s.Available = true, e.Set.GetAvailable()
	case *messages.InventoryEvent_Reserved:
		s.Available -= e.Reserved.GetQuantity()
		s.Held[e.Reserved.GetSagaId()] = e.Reserved.GetQuantity()
	case *messages.InventoryEvent_Released:
		// Quantity 0 commits: the units stay sold, the hold is dropped.
		s.Available += e.Released.GetQuantity()
		delete(s.Held, e.Released.GetSagaId())
	}
	s.Version++
	return s
}

func stream(product string) string { return "inventory-" + product }

// Event type names are stored in the journal: never rename them.
var codec = *es.ProtoCodec(es.Proto[State, *messages.InventoryEvent, *messages.InventorySnapshot]{
	Stream:  stream,
	Apply:   Apply,
	Version: func(s State) uint64 { return s.Version },
	Types: []es.EventType[*messages.InventoryEvent]{
		{Name: "StockSet", Is: func(ev *messages.InventoryEvent) bool { return ev.GetSet() != nil }},
		{Name: "StockReserved", Is: func(ev *messages.InventoryEvent) bool { return ev.GetReserved() != nil }},
		{Name: "StockReleased", Is: func(ev *messages.InventoryEvent) bool { return ev.GetReleased() != nil }},
	},
	Snapshot: func(s State, recent []string) *messages.InventorySnapshot {
		return &messages.InventorySnapshot{Available: s.Available, Known: s.Known, Version: s.Version, Held: s.Held, RecentCommandIds: recent}
	},
	Restore: func(snap *messages.InventorySnapshot) (State, []string) {
		return State{Known: snap.GetKnown(), Available: snap.GetAvailable(), Held: snap.GetHeld(), Version: snap.GetVersion()}, snap.GetRecentCommandIds()
	},
})
