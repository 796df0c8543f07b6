package grains

import (
	"context"

	"granary/messages"
)

// Counters calls counter grains, identified by name.
type Counters struct{ Caller Caller }

// Send sends req (its command set) to counter name.
func (c Counters) Send(ctx context.Context, name string, req *messages.CounterRequest) (*messages.CounterReply, error) {
	req.DeadlineUnixMs = deadline(ctx)
	return call[*messages.CounterReply](ctx, c.Caller, messages.CounterKind, name, req)
}

// CounterGroups calls counter group supervisors, identified by group.
type CounterGroups struct{ Caller Caller }

// Send sends req (its command set) to group.
func (c CounterGroups) Send(ctx context.Context, group string, req *messages.CounterGroupRequest) (*messages.CounterGroupReply, error) {
	req.DeadlineUnixMs = deadline(ctx)
	return call[*messages.CounterGroupReply](ctx, c.Caller, messages.CounterGroupKind, group, req)
}

// Spawn starts a new child counter in group.
func (c CounterGroups) Spawn(ctx context.Context, group, commandID string) (*messages.CounterGroupReply, error) {
	r, err := c.Send(ctx, group, &messages.CounterGroupRequest{CommandId: commandID,
		Command: &messages.CounterGroupRequest_Spawn{Spawn: &messages.SpawnCounter{}}})
	if err != nil {
		return r, err
	}
	return r, mustHave(r.GetSpawned() != "", messages.CounterGroupKind, group)
}

// Child sends req to the child counter of group through its supervisor,
// which owns the child, and checks that the answer shows the child.
func (c CounterGroups) Child(ctx context.Context, group, counter, commandID string, req *messages.CounterRequest) (*messages.CounterGroupReply, error) {
	r, err := c.Send(ctx, group, &messages.CounterGroupRequest{CommandId: commandID,
		Command: &messages.CounterGroupRequest_Child{Child: &messages.ChildCommand{Counter: counter, Request: req}}})
	if err != nil {
		return r, err
	}
	_, ok := r.GetCounters()[counter]
	return r, mustHave(ok, messages.CounterGroupKind, group)
}
