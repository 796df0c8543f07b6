package saga

import (
	"time"

	"granary/messages"
)

// ActionKind is what a saga grain does next.
type ActionKind int

const (
	// Record appends Action.Event (if the journal is still at the state it
	// was decided on), then asks Next again.
	Record ActionKind = iota
	// Invoke runs step Step (its undo when Undo) with CommandID, giving up
	// at Limit (zero: the drive's own limit), and asks Next again with the
	// outcome.
	Invoke
	// Wait: nothing to do before Until (a scheduled saga's time).
	Wait
	// Pause: the saga is consistent and waits for a later drive (a
	// participant is down, or refused an undo); Reason says why.
	Pause
	// Done: the saga has finished.
	Done
)

func (k ActionKind) String() string {
	return [...]string{"record", "invoke", "wait", "pause", "done"}[k]
}

// Action is one thing a saga grain does; Next decides it.
type Action struct {
	Kind      ActionKind
	Event     *messages.SagaEvent
	Step      int
	Undo      bool
	CommandID string
	Limit     time.Time
	Until     time.Time
	Reason    string
	// Alarm marks a Pause that is a bug to look at (an undo refused).
	Alarm bool
}

// Outcome is what an Invoke came to.
type Outcome struct {
	Step int
	Undo bool
	// Err is nil on success; a domain *messages.Failure when the
	// participant refused; anything else when the outcome is unknown (the
	// attempts ran out of time).
	Err error
}

// Next decides what a saga in state s does at now (deadline is how long a
// saga may try once it runs), given the outcome of the Invoke it asked for
// last (nil when its last action was not an
// Invoke, or that outcome is of another step). It is pure: the grain
// carries its actions out, so every transition, and every money-safety
// branch, is decided here and tested without I/O (testdata/*.txt).
func Next(def *Definition, s *messages.SagaState, now time.Time, deadline time.Duration, last *Outcome) Action {
	switch s.GetStatus() {
	case StatusCompleted, StatusCompensated, StatusCancelled:
		return Action{Kind: Done}
	case StatusScheduled:
		if now.UnixMilli() < s.GetExecuteAtUnixMs() {
			return Action{Kind: Wait, Until: time.UnixMilli(s.GetExecuteAtUnixMs())}
		}
		// Its deadline counts from now, not from when it was scheduled.
		return recordEvent(&messages.SagaEvent_Released{Released: &messages.SagaReleased{DeadlineUnixMs: now.Add(deadline).UnixMilli()}})
	case StatusStarted:
		return forwardNext(def, s, now, last)
	case StatusCompensating:
		return compensateNext(def, s, last)
	}
	return Action{Kind: Pause, Reason: "unknown status " + s.GetStatus()}
}

func recordEvent(ev any) Action {
	e := &messages.SagaEvent{}
	switch v := ev.(type) {
	case *messages.SagaEvent_Released:
		e.Event = v
	case *messages.SagaEvent_StepStarted:
		e.Event = v
	case *messages.SagaEvent_StepCompleted:
		e.Event = v
	case *messages.SagaEvent_StepFailed:
		e.Event = v
	case *messages.SagaEvent_StepCompensated:
		e.Event = v
	case *messages.SagaEvent_Finished:
		e.Event = v
	}
	return Action{Kind: Record, Event: e}
}

func finished(status string) Action {
	return recordEvent(&messages.SagaEvent_Finished{Finished: &messages.SagaFinished{Status: status}})
}

func failStep(name, reason string, unknown bool) Action {
	return recordEvent(&messages.SagaEvent_StepFailed{StepFailed: &messages.SagaStepFailed{Step: name, Error: reason, OutcomeUnknown: unknown}})
}

func forwardNext(def *Definition, s *messages.SagaState, now time.Time, last *Outcome) Action {
	i := 0
	for i < len(s.Steps) && s.Steps[i].Status == StepCompleted {
		i++
	}
	if i == len(s.Steps) {
		return finished(StatusCompleted)
	}
	if i >= len(def.Steps) {
		return Action{Kind: Pause, Reason: "saga has more steps than its definition"}
	}
	step, st := def.Steps[i], s.Steps[i]
	began := st.StartedAtUnixMs > 0
	deadline := time.UnixMilli(s.GetDeadlineUnixMs())
	late := !now.Before(deadline)
	switch {
	case !began && late:
		// Never attempted: giving up is safe for any step.
		return failStep(st.Name, ErrDeadline, false)
	case !began:
		return recordEvent(&messages.SagaEvent_StepStarted{StepStarted: &messages.SagaStepStarted{Step: st.Name}})
	case last != nil && last.Step == i && !last.Undo:
		if f, domain := isDomain(last.Err); domain {
			return failStep(st.Name, f.GetDetail(), false)
		}
		if last.Err == nil {
			return recordEvent(&messages.SagaEvent_StepCompleted{StepCompleted: &messages.SagaStepCompleted{Step: st.Name}})
		}
		if !step.Forward && late {
			// Tried until the deadline without a definite answer: the step
			// may have happened, so it is undone as well.
			return failStep(st.Name, ErrDeadline, true)
		}
		return Action{Kind: Pause, Reason: "step " + st.Name + ": " + last.Err.Error()}
	case !step.Forward && late:
		// Begun, outcome unknown, past the deadline: undo it anyway. A
		// Forward step is never guessed: its undo could not tell.
		return failStep(st.Name, ErrDeadline, true)
	}
	a := Action{Kind: Invoke, Step: i, CommandID: commandID(s, st.Name, "do")}
	if !step.Forward {
		a.Limit = deadline
	}
	return a
}

func compensateNext(def *Definition, s *messages.SagaState, last *Outcome) Action {
	for i := len(s.Steps) - 1; i >= 0; i-- {
		st := s.Steps[i]
		needs := st.Status == StepCompleted || (st.Status == StepFailed && contains(s.UndoUnknown, st.Name))
		if !needs {
			continue
		}
		compensated := recordEvent(&messages.SagaEvent_StepCompensated{StepCompensated: &messages.SagaStepCompensated{Step: st.Name}})
		if i >= len(def.Steps) || def.Steps[i].Undo == nil {
			return compensated
		}
		if last == nil || last.Step != i || !last.Undo {
			return Action{Kind: Invoke, Step: i, Undo: true, CommandID: commandID(s, st.Name, "undo")}
		}
		if f, domain := isDomain(last.Err); domain {
			// An undo must not be refused; this is a bug to look at, and
			// the saga waits for it rather than losing track.
			return Action{Kind: Pause, Reason: "compensation of " + st.Name + " refused: " + f.GetDetail(), Alarm: true}
		}
		if last.Err != nil {
			return Action{Kind: Pause, Reason: "compensation of " + st.Name + ": " + last.Err.Error()}
		}
		return compensated
	}
	return finished(StatusCompensated)
}
