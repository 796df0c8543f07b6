package saga

import (
	"context"
	"log/slog"
	"time"

	"granary/actors/service"
	"granary/messages"
	"granary/persistence"
)

// Sweeper finds sagas that are not finished and drives them on, so that no
// saga depends on its client retrying. Every member runs one; two sweeps
// reaching the same saga meet in its one grain, which drives it once.
type Sweeper struct {
	Index persistence.SagaIndex
	Call  service.Caller
	// Interval between sweeps; Grace skips sagas updated more recently
	// (their driver is probably still at work); Batch caps one sweep.
	Interval, Grace time.Duration
	Batch           int
	Logger          *slog.Logger
}

// Run sweeps at once and then every Interval, until ctx ends.
func (w Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		w.Sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep resumes each open saga not updated within Grace; it returns how
// many it resumed.
func (w Sweeper) Sweep(ctx context.Context) int {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	open, err := w.Index.OpenSagas(lctx, time.Now().Add(-w.Grace), w.Batch)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			w.Logger.Warn("saga sweep: listing open sagas failed", "err", err)
		}
		return 0
	}
	resumed := 0
	for _, r := range open {
		if ctx.Err() != nil {
			return resumed
		}
		cctx, cancel := context.WithTimeout(ctx, DefaultMaxDrive+5*time.Second)
		res, err := w.Call.Call(cctx, r.Kind, r.ID, &messages.SagaRequest{Command: &messages.SagaRequest_Resume{Resume: &messages.ResumeSaga{}}})
		cancel()
		if err != nil {
			w.Logger.Warn("saga sweep: resume failed", "saga", r.Kind+"/"+r.ID, "err", err)
			continue
		}
		if reply, ok := res.(*messages.SagaReply); ok {
			if reply.GetFailure().GetCode() == messages.CodeNotFound {
				// Indexed, then its member died before the journal had it:
				// the grain closed the record as it answered.
				continue
			}
			w.Logger.Info("saga sweep resumed a saga", "saga", r.Kind+"/"+r.ID, "status", reply.GetSaga().GetStatus())
			if s := reply.GetSaga(); Finished(s) {
				// The index missed the saga's last write (its store call
				// failed when it finished): close the record, or every
				// sweep resumes it again.
				if err := w.Index.PutSaga(ctx, record(s)); err != nil {
					w.Logger.Warn("saga sweep: closing a finished saga's record failed", "saga", r.Kind+"/"+r.ID, "err", err)
				}
			}
		}
		resumed++
	}
	return resumed
}
