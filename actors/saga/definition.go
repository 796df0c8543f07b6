package saga

import (
	"context"
	"errors"
	"time"

	"granary/actors/es"
	"granary/actors/service"
	"granary/messages"
)

// Step is one step of a saga kind.
type Step struct {
	Name string
	// Do performs the step for saga s. A *messages.Failure with a domain
	// code fails the step and the saga compensates; any other error is an
	// infrastructure failure and the step is tried again with the same
	// command id (participants apply it once).
	Do func(ctx context.Context, p Participants, s *messages.SagaState, commandID string) error
	// Undo reverses the step; nil when there is nothing to undo. It is
	// retried until it succeeds, and must be a no-op when Do never took
	// effect (a step that timed out is undone without knowing).
	Undo func(ctx context.Context, p Participants, s *messages.SagaState, commandID string) error
	// Forward steps, once begun, only move forward: infrastructure
	// failures are retried past the deadline and only a domain failure
	// fails them. A step whose Undo cannot tell whether Do happened must be
	// Forward (giving up on a withdrawal of unknown outcome and then giving
	// the money back could create money). Any step not yet begun at the
	// deadline is given up.
	Forward bool
}

// Definition is a saga kind: its cluster kind name and steps.
type Definition struct {
	Kind  string
	Steps []Step
}

// Participants are what steps act on.
type Participants struct {
	// Call reaches grains (accounts, inventory).
	Call service.Caller
	// Services reaches the stateless services (payments).
	Services Services
}

// Services calls a stateless service by name through the member's
// balancing, circuit-breaking client; idempotent lets it retry the call
// on another instance.
type Services interface {
	Call(ctx context.Context, service string, req *messages.ServiceRequest, idempotent bool) (*messages.ServiceReply, error)
}

// Config is what a saga grain needs from its member.
type Config struct {
	es.GrainConfig
	Participants Participants
	// Deadline is how long a saga may try before it gives up and
	// compensates (steps before the point of no return only).
	Deadline time.Duration
	// StepTimeout bounds one attempt of a step.
	StepTimeout time.Duration
	// MaxDrive bounds how long one request drives a saga; past it the saga
	// is left for the next request or the recovery sweep, so a grain never
	// blocks forever on a participant that is down.
	MaxDrive time.Duration
	// Reminders wake a scheduled saga at its time, on whichever member
	// hosts it then (nil: no scheduled sagas).
	Reminders Reminders
	// Outcomes hears of every saga this member finishes, once (nil: none
	// listens).
	Outcomes Outcomes
}

// Outcomes hears how sagas end: kind, final status and the time from the
// saga's start to its end.
type Outcomes interface {
	SagaFinished(kind, status string, took time.Duration)
}

// Reminders are the durable timers a scheduled saga is woken by (see
// persistence/reminder); the cluster provides them.
type Reminders interface {
	Schedule(ctx context.Context, kind, id string, at time.Time) error
	Unschedule(ctx context.Context, kind, id string) error
}

// Defaults for Config.
const (
	DefaultDeadline    = 30 * time.Second
	DefaultStepTimeout = 2 * time.Second
	DefaultMaxDrive    = 20 * time.Second
)

// isDomain reports whether err is a participant's definite "no" (the step
// did not and will not happen) rather than an infrastructure failure
// (outcome unknown).
func isDomain(err error) (*messages.Failure, bool) {
	var f *messages.Failure
	if !errors.As(err, &f) {
		return nil, false
	}
	switch f.GetCode() {
	case messages.CodeTimeout, messages.CodeServiceUnavailable:
		return nil, false
	}
	return f, true
}

// stepError is a domain failure with the contract's short error text.
func stepError(text string) error {
	return &messages.Failure{Code: messages.CodeSagaFailed, Detail: text}
}
