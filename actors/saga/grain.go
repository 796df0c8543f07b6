package saga

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"go.opentelemetry.io/otel/attribute"

	"granary/actors/es"
	"granary/internal/tracing"
	"granary/messages"
	"granary/persistence"
)

// Props are the props of a saga kind.
func Props(def *Definition, cfg Config) *actor.Props {
	return actor.PropsFromProducer(Producer(def, cfg))
}

// Producer makes the grains of a saga kind.
func Producer(def *Definition, cfg Config) actor.Producer {
	codec := codecFor(def)
	return func() actor.Actor { return &grain{def: def, cfg: cfg, codec: codec} }
}

type grain struct {
	def   *Definition
	cfg   Config
	codec *es.Codec[*messages.SagaState, *messages.SagaEvent]
	id    string
	host  *es.Host[*messages.SagaState, *messages.SagaEvent]
	// A drive runs while driving: a step in flight runs off the mailbox,
	// so the grain answers reads meanwhile; waiters (Start and Resume
	// callers) are answered when the drive ends.
	driving bool
	until   time.Time
	last    *Outcome
	waiters []*actor.PID
	// inflight numbers the step in flight, so a late stepDone of an
	// earlier drive is ignored; cancelStep ends it when the grain stops.
	inflight   uint64
	cancelStep context.CancelFunc
	// timed: a reminder may be armed for this saga (set by a pause, or
	// this drive was woken by one), so finishing must drop it.
	timed bool
	// traceparent is the trace of the request that last reached the saga:
	// its steps' calls continue it (a drive woken by a reminder continues
	// the last one seen by this activation, or none).
	traceparent string
	// indexed is the record this activation last wrote to the saga index,
	// at indexedAt (see reindex).
	indexed   persistence.SagaRecord
	indexedAt time.Time
}

// indexRefresh is how stale a running saga's updated_at may be in the
// index while its status stays the same (see reindex).
const indexRefresh = time.Second

// maxWaiters bounds the callers one saga holds answers for; more are
// answered at once with the saga as it is (202 at the gateway).
const maxWaiters = 64

// stepDone is a step's outcome, sent by the goroutine that ran it.
type stepDone struct {
	n       uint64
	outcome Outcome
}

func (g *grain) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *cluster.ClusterInit:
		g.id = msg.Identity.GetIdentity()
		g.host = es.NewHost(g.codec, g.cfg.HostConfig("saga"), g.id)
		ctx.SetReceiveTimeout(g.cfg.IdleTimeout)
	case *actor.ReceiveTimeout:
		// A saga with work left stays active: it passivates only when done
		// or when its driver gave up for now (the sweep will wake it).
		if !g.driving {
			ctx.Poison(ctx.Self())
		}
	case *messages.SagaRequest:
		if reply := g.handle(ctx, msg); reply != nil {
			ctx.Respond(reply)
		}
	case *stepDone:
		if g.driving && msg.n == g.inflight {
			g.last = &msg.outcome
			g.step(ctx)
		}
	case *actor.Stopping:
		// A step in flight is abandoned (its participant applies its
		// command id once, whoever drives next); waiters get the saga as
		// it stands, which the gateway answers as "still at work".
		if g.cancelStep != nil {
			g.cancelStep()
		}
		if g.driving {
			g.endDrive(ctx, nil)
		}
	}
}

// handle answers req, or returns nil when the answer waits for the drive.
func (g *grain) handle(ctx actor.Context, req *messages.SagaRequest) (reply *messages.SagaReply) {
	fail := func(f *messages.Failure) *messages.SagaReply {
		return &messages.SagaReply{Failure: f, ServedBy: g.cfg.MemberID}
	}
	defer func() {
		if r := recover(); r != nil {
			g.cfg.Logger.Error("saga grain panicked; state will reload", "saga", g.id, "panic", r, "stack", string(debug.Stack()))
			g.host.Invalidate()
			reply = fail(messages.Fail(messages.CodeServiceUnavailable, "saga failed; retry"))
		}
	}()
	if tp := req.GetTraceparent(); tp != "" {
		g.traceparent = tp
	}
	if g.host == nil {
		return fail(messages.Fail(messages.CodeServiceUnavailable, "saga grain has no identity"))
	}
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()
	// A read that checks the journal's version: another activation (a
	// membership change) may have started or moved this saga since this
	// one loaded, and "not found" from a stale view would be false.
	if _, err := g.host.Execute(sctx, "", func(*messages.SagaState) ([]*messages.SagaEvent, error) { return nil, nil }); err != nil {
		g.cfg.Logger.Error("loading saga failed", "saga", g.id, "err", err)
		return fail(messages.Fail(messages.CodeServiceUnavailable, "storage unavailable"))
	}
	switch cmd := req.GetCommand().(type) {
	case *messages.SagaRequest_Get:
		if g.host.State().GetVersion() == 0 {
			return fail(messages.Fail(messages.CodeNotFound, "%s %q not found", g.def.Kind, g.id))
		}
	case *messages.SagaRequest_Start:
		if g.host.State().GetVersion() == 0 {
			if err := g.start(cmd.Start); err != nil {
				return fail(messages.AsFailure(err, messages.CodeServiceUnavailable))
			}
		}
		return g.join(ctx)
	case *messages.SagaRequest_Resume:
		if g.host.State().GetVersion() == 0 {
			// Indexed, then its member died before the journal had it:
			// nothing happened, so its record is closed, here rather than
			// by the sweep that asked. Written by this grain, the close is
			// ordered with a Start that a client's retry sends next; the
			// sweep's own write could land after that start, closing the
			// record of a running saga (and index writes that repeat a
			// status are skipped).
			now := g.cfg.Now()
			ghost := persistence.SagaRecord{Kind: g.def.Kind, ID: g.id, Status: StatusCompensated, StartedAt: now, UpdatedAt: now}
			if err := g.index(sctx, ghost, now); err != nil {
				g.cfg.Logger.Warn("closing the index record of a saga that never started failed", "saga", g.id, "err", err)
				return fail(messages.Fail(messages.CodeNotFound, "%s %q not found", g.def.Kind, g.id))
			}
			// Another activation (a membership change) may have started it
			// meanwhile: look again, and reopen the record if so. Its own
			// write after its first append (see start) covers the close
			// landing before that append.
			if _, err := g.host.Execute(sctx, "", func(*messages.SagaState) ([]*messages.SagaEvent, error) { return nil, nil }); err == nil &&
				g.host.State().GetVersion() > 0 {
				if err := g.index(sctx, record(g.host.State()), g.cfg.Now()); err != nil {
					g.cfg.Logger.Warn("reopening the index record of a saga started elsewhere failed", "saga", g.id, "err", err)
				}
				g.timed = true
				return g.join(ctx)
			}
			return fail(messages.Fail(messages.CodeNotFound, "%s %q not found", g.def.Kind, g.id))
		}
		g.timed = true // a reminder's (or the sweep's) wake: drop it once done
		return g.join(ctx)
	case *messages.SagaRequest_Cancel:
		if err := g.cancel(); err != nil {
			return fail(messages.AsFailure(err, messages.CodeServiceUnavailable))
		}
	default:
		return fail(messages.Fail(messages.CodeValidationFailed, "unknown saga command %T", cmd))
	}
	return &messages.SagaReply{Saga: g.host.State(), ServedBy: g.cfg.MemberID}
}

// start records the saga: first in the index (so the sweep finds it even
// if we die before the journal has it), then in its journal.
func (g *grain) start(in *messages.StartSaga) error {
	now := g.cfg.Now()
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()
	rec := record(&messages.SagaState{Kind: g.def.Kind, Id: g.id, Status: StatusStarted,
		StartedAtUnixMs: now.UnixMilli(), UpdatedAtUnixMs: now.UnixMilli()})
	if err := g.index(ctx, rec, now); err != nil {
		return err
	}
	started := &messages.SagaStarted{Kind: g.def.Kind, DeadlineUnixMs: now.Add(g.cfg.Deadline).UnixMilli(),
		Order: in.GetOrder(), Transfer: in.GetTransfer()}
	if at := in.GetTransfer().GetExecuteAtUnixMs(); at > 0 {
		if g.cfg.Reminders == nil {
			return messages.Fail(messages.CodeServiceUnavailable, "scheduled %s needs durable timers, which this member lacks", g.def.Kind)
		}
		started.ExecuteAtUnixMs = at
		rec.Status = StatusScheduled
		// The timer first: a saga recorded without one would never run. A
		// timer without a saga (the journal write below failed) finds
		// nothing when it fires and is dropped.
		if err := g.cfg.Reminders.Schedule(ctx, g.def.Kind, g.id, time.UnixMilli(at)); err != nil {
			return messages.Fail(messages.CodeServiceUnavailable, "the %s's timer could not be set; retry", g.def.Kind)
		}
		if err := g.index(ctx, rec, now); err != nil {
			return err
		}
	}
	// With what Next decides on it (the first step's start), as a drive
	// would record it right after. Indexed again once stored, whatever
	// reindex says: a sweep's close of this id as a ghost, by another
	// activation, may have landed between the index write above and this
	// append.
	g.indexedAt = time.Time{}
	return g.recordAll(func(s *messages.SagaState, now time.Time) []*messages.SagaEvent {
		if s.GetVersion() > 0 {
			return nil
		}
		return g.records(s, &messages.SagaEvent{Event: &messages.SagaEvent_Started{Started: started}}, now)
	})
}

// record appends the event next(state) returns (nil: nothing to do), then
// refreshes the index. It decides on the journal's latest state, so two
// activations driving one saga record each transition once.
func (g *grain) record(next func(*messages.SagaState) *messages.SagaEvent) error {
	return g.recordAll(func(s *messages.SagaState, _ time.Time) []*messages.SagaEvent {
		if ev := next(s); ev != nil {
			return []*messages.SagaEvent{ev}
		}
		return nil
	})
}

// recordAll is record for the events next(state, now) returns, stamped
// with now, appended together (all or none) and indexed once.
func (g *grain) recordAll(next func(*messages.SagaState, time.Time) []*messages.SagaEvent) error {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()
	now := g.cfg.Now()
	var finished *messages.SagaFinished
	_, err := g.host.Execute(ctx, "", func(s *messages.SagaState) ([]*messages.SagaEvent, error) {
		evs := next(s, now) // again after a conflict: only the last decision is stored
		finished = nil
		for _, ev := range evs {
			ev.OccurredAtUnixMs = now.UnixMilli()
			if f := ev.GetFinished(); f != nil {
				finished = f
			}
		}
		return evs, nil
	})
	if err != nil {
		return err
	}
	if finished != nil && g.cfg.Outcomes != nil {
		// Recorded once: only the activation whose append stored the end
		// gets here with it.
		s := g.host.State()
		g.cfg.Outcomes.SagaFinished(strings.TrimSuffix(s.GetKind(), "_saga"), finished.GetStatus(),
			now.Sub(time.UnixMilli(s.GetStartedAtUnixMs())))
	}
	if rec := record(g.host.State()); g.reindex(rec, now) {
		if err := g.index(ctx, rec, now); err != nil {
			// The journal is the truth; the sweep rewrites the index later.
			g.cfg.Logger.Warn("saga index not updated", "saga", g.id, "err", err)
		}
	}
	return nil
}

// index writes rec to the saga index and remembers it.
func (g *grain) index(ctx context.Context, rec persistence.SagaRecord, now time.Time) error {
	if err := g.cfg.Store.PutSaga(ctx, rec); err != nil {
		return fmt.Errorf("index saga %s: %w", g.id, err)
	}
	g.indexed, g.indexedAt = rec, now
	return nil
}

// reindex reports whether the index needs rec: unless it holds the same
// status and failed step, written by this activation within
// indexRefresh. A saga's record changed at every step, which cost a
// transfer four index writes where three tell the same (before and after
// its start, and its end); statuses only move forward, so no other
// activation's write of a status meanwhile is one this write would
// correct (but a ghost's close, see start and handle).
// A running saga's updated_at in the index thus lags by up to
// indexRefresh, and the sweep (whose grace is far longer) still sees it
// as at work.
func (g *grain) reindex(rec persistence.SagaRecord, now time.Time) bool {
	last := g.indexed
	return rec.Kind != last.Kind || rec.ID != last.ID || rec.Status != last.Status || rec.FailedStep != last.FailedStep ||
		now.Sub(g.indexedAt) >= indexRefresh
}

// join makes the caller wait for the drive's end (starting one if none
// runs); nil means its answer will be sent then.
func (g *grain) join(ctx actor.Context) *messages.SagaReply {
	sender := ctx.Sender()
	if sender == nil || len(g.waiters) >= maxWaiters {
		if !g.driving {
			g.beginDrive(ctx)
		}
		return &messages.SagaReply{Saga: g.host.State(), ServedBy: g.cfg.MemberID}
	}
	g.waiters = append(g.waiters, sender)
	if !g.driving {
		g.beginDrive(ctx)
	}
	return nil
}

func (g *grain) beginDrive(ctx actor.Context) {
	g.driving, g.until, g.last = true, g.cfg.Now().Add(g.cfg.MaxDrive), nil
	g.step(ctx)
}

// step carries out what Next decides until the saga finishes, waits,
// pauses, MaxDrive passes, or a step is invoked: that runs off the
// mailbox and its stepDone brings the grain back here.
func (g *grain) step(ctx actor.Context) {
	defer func() {
		if r := recover(); r != nil {
			g.cfg.Logger.Error("saga grain panicked driving; state will reload", "saga", g.id, "panic", r, "stack", string(debug.Stack()))
			g.host.Invalidate()
			g.endDrive(ctx, messages.Fail(messages.CodeServiceUnavailable, "saga failed; retry"))
		}
	}()
	for g.cfg.Now().Before(g.until) {
		s := g.host.State()
		a := Next(g.def, s, g.cfg.Now(), g.cfg.Deadline, g.last)
		switch a.Kind {
		case Done:
			g.endDrive(ctx, nil)
			return
		case Wait:
			g.endDrive(ctx, g.arm(s))
			return
		case Pause:
			log := g.cfg.Logger.Warn
			if a.Alarm {
				log = g.cfg.Logger.Error
			}
			log("saga paused; it resumes on the next request or sweep", "saga", g.id, "reason", a.Reason)
			g.endDrive(ctx, nil)
			return
		case Record:
			// Only onto the state it was decided on: another activation
			// that moved the saga meanwhile is decided on afresh.
			version, first := s.GetVersion(), a.Event
			if err := g.recordAll(func(latest *messages.SagaState, now time.Time) []*messages.SagaEvent {
				if latest.GetVersion() != version {
					return nil
				}
				return g.records(latest, first, now)
			}); err != nil {
				g.cfg.Logger.Warn("saga paused; it resumes on the next request or sweep", "saga", g.id, "err", err)
				g.endDrive(ctx, nil)
				return
			}
			g.last = nil
		case Invoke:
			g.invoke(ctx, s, a)
			return
		}
	}
	g.endDrive(ctx, nil)
}

// maxRecords bounds the events one append of a drive records.
const maxRecords = 8

// records is first and the Records Next decides after it, each on the
// state the ones before leave, up to the next action that is not a
// Record: one append instead of one per event. A step's completion and
// the next step's start (or the saga's end) are decided at the same
// moment, so storing them together changes no outcome, only the round
// trips (a transfer's six saga events take three appends instead of
// six). Not past an Invoke: a step starts only once its start is stored.
func (g *grain) records(s *messages.SagaState, first *messages.SagaEvent, now time.Time) []*messages.SagaEvent {
	evs := []*messages.SagaEvent{first}
	for len(evs) < maxRecords {
		// Stamped as recordAll stamps them: Next may read the times.
		evs[len(evs)-1].OccurredAtUnixMs = now.UnixMilli()
		s = g.codec.Apply(s, g.id, evs[len(evs)-1])
		a := Next(g.def, s, now, g.cfg.Deadline, nil)
		if a.Kind != Record {
			break
		}
		evs = append(evs, a.Event)
	}
	return evs
}

// invoke runs one step (with its retries) on its own goroutine.
func (g *grain) invoke(ctx actor.Context, s *messages.SagaState, a Action) {
	limit := g.until
	if !a.Limit.IsZero() && a.Limit.Before(limit) {
		limit = a.Limit
	}
	step := g.def.Steps[a.Step]
	do := step.Do
	if a.Undo {
		do = step.Undo
	}
	g.inflight++
	n, self, root := g.inflight, ctx.Self(), ctx.ActorSystem().Root
	sctx, cancel := context.WithCancel(context.Background())
	g.cancelStep = cancel
	sctx, span := tracing.Start(tracing.WithTraceparent(sctx, g.traceparent), "saga.step")
	if span.IsRecording() {
		span.SetName("saga.step " + g.def.Kind + " " + step.Name)
		span.SetAttributes(attribute.String("granary.saga", g.id), attribute.Bool("granary.saga.undo", a.Undo))
	}
	go func() {
		defer cancel()
		defer span.End()
		var err error
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("step panicked: %v", r) // unknown outcome, like a timeout
			}
			root.Send(self, &stepDone{n: n, outcome: Outcome{Step: a.Step, Undo: a.Undo, Err: err}})
		}()
		err = g.attempt(sctx, limit, func(c context.Context) error {
			return do(c, g.cfg.Participants, s, a.CommandID)
		})
	}()
}

// endDrive answers the waiters: with the saga as it stands, or failure.
func (g *grain) endDrive(ctx actor.Context, failure error) {
	g.driving, g.last = false, nil
	g.inflight++ // a stepDone still on its way belongs to no drive
	g.disarm()
	g.retryLater()
	reply := &messages.SagaReply{Saga: g.host.State(), ServedBy: g.cfg.MemberID}
	if failure != nil {
		reply = &messages.SagaReply{Failure: messages.AsFailure(failure, messages.CodeServiceUnavailable), ServedBy: g.cfg.MemberID}
	}
	for _, w := range g.waiters {
		ctx.Send(w, reply)
	}
	g.waiters = nil
}

// pauseRetry is how soon a paused saga is driven again (by its reminder,
// on whichever member hosts it then): a participant that was down gets a
// second and the saga does not wait for the recovery sweep.
const pauseRetry = time.Second

// retryLater arms the reminder of a saga that paused with work left, at
// pauseRetry or its deadline if sooner (where its next decision changes).
// The sweep remains the safety net when the timer cannot be set.
func (g *grain) retryLater() {
	s := g.host.State()
	if g.cfg.Reminders == nil || Finished(s) || s.GetStatus() == StatusScheduled || s.GetVersion() == 0 {
		return
	}
	now := g.cfg.Now()
	at := now.Add(pauseRetry)
	if d := time.UnixMilli(s.GetDeadlineUnixMs()); s.GetStatus() == StatusStarted && d.After(now) && d.Before(at) {
		at = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()
	if err := g.cfg.Reminders.Schedule(ctx, g.def.Kind, g.id, at); err != nil {
		g.cfg.Logger.Warn("arming a paused saga's timer failed; the sweep will resume it", "saga", g.id, "err", err)
		return
	}
	g.timed = true
}

// arm (re)sets a scheduled saga's reminder to its time; arming it again
// on every request and sweep repairs one whose first arming failed.
func (g *grain) arm(s *messages.SagaState) error {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()
	if err := g.cfg.Reminders.Schedule(ctx, g.def.Kind, g.id, time.UnixMilli(s.GetExecuteAtUnixMs())); err != nil {
		return messages.Fail(messages.CodeServiceUnavailable, "the %s's timer could not be set; retry", g.def.Kind)
	}
	return nil
}

// disarm drops the reminder of a scheduled saga that has finished (its
// wake would find nothing to do).
func (g *grain) disarm() {
	s := g.host.State()
	if !Finished(s) || g.cfg.Reminders == nil || (s.GetExecuteAtUnixMs() == 0 && !g.timed) {
		return
	}
	g.timed = false
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()
	if err := g.cfg.Reminders.Unschedule(ctx, g.def.Kind, g.id); err != nil {
		g.cfg.Logger.Warn("dropping a finished saga's timer failed; it fires once for nothing", "saga", g.id, "err", err)
	}
}

// cancel cancels a scheduled saga; one that already ran (or is running)
// cannot be, and says what it is.
func (g *grain) cancel() error {
	s := g.host.State()
	if s.GetVersion() == 0 {
		return messages.Fail(messages.CodeNotFound, "%s %q not found", g.def.Kind, g.id)
	}
	var status string
	err := g.record(func(s *messages.SagaState) *messages.SagaEvent {
		status = s.GetStatus()
		if status != StatusScheduled {
			return nil
		}
		return &messages.SagaEvent{Event: &messages.SagaEvent_Finished{Finished: &messages.SagaFinished{Status: StatusCancelled}}}
	})
	if err != nil {
		return err
	}
	if status != StatusScheduled && status != StatusCancelled {
		return messages.Fail(messages.CodeVersionConflict, "the %s is %s: only a scheduled one can be cancelled", g.def.Kind, status)
	}
	g.disarm() // cancelled again (a re-sent cancel) answers as the first did
	return nil
}

// attempt calls try until it succeeds, fails for a domain reason, or limit
// passes; each try gets StepTimeout (participants refuse it after that, so
// no late duplicate lands once we give up).
func (g *grain) attempt(parent context.Context, limit time.Time, try func(ctx context.Context) error) error {
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(parent, g.cfg.StepTimeout)
		err := try(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if _, domain := isDomain(err); domain {
			return err
		}
		g.cfg.Logger.Warn("saga step attempt failed; retrying", "saga", g.id, "err", err)
		if !g.cfg.Now().Add(backoff).Before(limit) {
			return err
		}
		// Backoff between attempts, off the mailbox; a stopping grain
		// ends it.
		select {
		case <-parent.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

func stepOf(s *messages.SagaState, name string) *messages.SagaStep {
	for _, st := range s.GetSteps() {
		if st.Name == name {
			return st
		}
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// commandID names a step's command to its participant: the same for every
// attempt of one saga's step, so it is applied once.
func commandID(s *messages.SagaState, step, phase string) string {
	return s.GetKind() + "/" + s.GetId() + "/" + step + "/" + phase
}
