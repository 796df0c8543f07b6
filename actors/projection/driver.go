package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"granary/persistence"
)

// progressEvery spaces the rebuild progress lines in the log.
const progressEvery = 5 * time.Second

// Driver runs one projection against a store: it catches the live
// generation up with the journal, builds a requested rebuild beside it,
// swaps it in once it has caught up, and deletes the generation it
// replaced. It is not safe for concurrent use (it lives in one actor). Two
// Drivers of one projection, as two activations during a membership
// change, are safe together: every commit is a compare-and-set of the
// checkpoint, so whichever commits second redoes its batch from the other's
// checkpoint.
type Driver struct {
	h   Handler
	cfg Config
	log *slog.Logger
	// meta is the projection's generations as the last step read them.
	meta persistence.ProjectionMeta
	// cps holds the checkpoints this driver last read or committed, so an
	// idle step costs one journal read per partition. It is only a guess
	// at the expected checkpoint (the commit checks it), is dropped on a
	// conflict, and is reset whenever the generations change: at most two
	// generations' worth of partitions.
	cps          map[persistence.ReadModelRef]uint64
	lastProgress time.Time
}

// StepResult tells the caller when to step again.
type StepResult struct {
	// More: work is waiting; step again at once rather than after
	// PollInterval.
	More bool
	// Events is how many events this step committed.
	Events int
}

// NewDriver returns a driver of h; cfg must be valid.
func NewDriver(h Handler, cfg Config) *Driver {
	return &Driver{h: h, cfg: cfg, log: cfg.Logger.With("projection", h.Name()),
		cps: map[persistence.ReadModelRef]uint64{}}
}

// Meta returns the generations as the last step (or rebuild request) read
// them.
func (d *Driver) Meta() persistence.ProjectionMeta { return d.meta }

func (d *Driver) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d.cfg.StoreTimeout)
}

func (d *Driver) ref(gen uint64, p int) persistence.ReadModelRef {
	return persistence.ReadModelRef{Projection: d.h.Name(), Generation: gen, Partition: p}
}

// Step does a bounded amount of work (about StepBudget): retire, catch up,
// rebuild, swap. An error leaves everything committed so far in place;
// stepping again later resumes from the stored checkpoints.
func (d *Driver) Step(ctx context.Context) (StepResult, error) {
	var res StepResult
	// The budget is elapsed work, hence the real (monotonic) clock; cfg.Now
	// stamps what is stored.
	deadline := time.Now().Add(d.cfg.StepBudget)
	meta, err := d.readMeta(ctx)
	if err != nil {
		return res, err
	}
	liveDone, n, err := d.catchUp(ctx, meta.Current, deadline)
	res.Events += n
	if err != nil {
		return res, err
	}
	res.More = !liveDone
	// After the live catch-up, so that a delete that keeps failing never
	// holds the live read model back.
	if meta.Retired != 0 {
		more, err := d.retire(ctx, meta)
		if err != nil {
			return res, err
		}
		res.More = res.More || more
	}
	if meta.Next == 0 {
		return res, nil
	}
	// The live generation went first, so a rebuilt generation caught up
	// in this same step is at least as far along: the swap never moves a
	// reader backwards.
	nextDone, n, err := d.catchUp(ctx, meta.Next, deadline)
	res.Events += n
	if err != nil {
		return res, err
	}
	d.logProgress(ctx, meta)
	switch {
	case !nextDone:
		res.More = true
	case liveDone && meta.Retired == 0:
		// Another activation (the cluster can briefly run two) may have
		// moved the live generation past the rebuilt one since this one
		// caught up; swapping then would show readers an older summary.
		ahead, err := d.liveAhead(ctx, meta)
		if err != nil {
			return res, err
		}
		if ahead {
			res.More = true
			return res, nil
		}
		if err := d.swap(ctx, meta); err != nil {
			return res, err
		}
		// Step again at once: the new live generation carries on from its
		// own checkpoints.
		res.More = true
	default:
		// Caught up, but the live generation is not, or the previous
		// rebuild's old generation is still being deleted.
		res.More = res.More || !liveDone
	}
	return res, nil
}

// liveAhead reports whether the live generation's stored checkpoint is
// past the rebuilt one's in some partition (read from the store, not the
// cache: the other activation's commits are the point), or the meta moved
// on meanwhile; either way, no swap now.
func (d *Driver) liveAhead(ctx context.Context, meta persistence.ProjectionMeta) (bool, error) {
	for p := range d.cfg.Store.Partitions() {
		var cps [2]uint64
		for i, gen := range []uint64{meta.Current, meta.Next} {
			cctx, cancel := d.call(ctx)
			cp, err := d.cfg.Store.Checkpoint(cctx, d.ref(gen, p))
			cancel()
			if errors.Is(err, persistence.ErrGenerationRetired) {
				// Swapped by another activation already: the next step
				// reads the new meta.
				return true, nil
			}
			if err != nil {
				return false, fmt.Errorf("projection %s: %w", d.ref(gen, p), err)
			}
			cps[i] = cp
		}
		if cps[0] > cps[1] {
			return true, nil
		}
	}
	return false, nil
}

func (d *Driver) readMeta(ctx context.Context) (persistence.ProjectionMeta, error) {
	cctx, cancel := d.call(ctx)
	defer cancel()
	meta, err := d.cfg.Store.ProjectionMeta(cctx, d.h.Name())
	if err != nil {
		return meta, fmt.Errorf("projection %s: %w", d.h.Name(), err)
	}
	if meta != d.meta {
		clear(d.cps)
	}
	d.meta = meta
	return meta, nil
}

// catchUp commits batches of gen's partitions, a batch per partition per
// round, until every partition has reached the journal's head or the
// deadline passed. done means every partition read less than a full batch
// in this call, i.e. reached the head as it was when read.
func (d *Driver) catchUp(ctx context.Context, gen uint64, deadline time.Time) (done bool, events int, err error) {
	pending := make([]int, d.cfg.Store.Partitions())
	for p := range pending {
		pending[p] = p
	}
	for len(pending) > 0 {
		var behind []int
		for _, p := range pending {
			n, full, err := d.commitBatch(ctx, d.ref(gen, p))
			events += n
			switch {
			case errors.Is(err, persistence.ErrGenerationRetired):
				// Swapped out under us (another activation): the next
				// step reads the new meta.
				return false, events, nil
			case errors.Is(err, persistence.ErrCheckpointConflict):
				// Another activation committed first; go on from its
				// checkpoint in the next round.
				d.log.Debug("projection checkpoint conflict; another activation is running", "generation", gen, "partition", p, "err", err)
				behind = append(behind, p)
			case err != nil:
				return false, events, err
			case full:
				behind = append(behind, p)
			}
		}
		pending = behind
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
	}
	return len(pending) == 0, events, nil
}

// commitBatch folds the next batch of ref's partition and commits it with
// the checkpoint. full reports a full batch: more may be waiting.
func (d *Driver) commitBatch(ctx context.Context, ref persistence.ReadModelRef) (n int, full bool, err error) {
	cp, err := d.checkpoint(ctx, ref)
	if err != nil {
		return 0, false, err
	}
	cctx, cancel := d.call(ctx)
	events, err := d.cfg.Store.ReadPartition(cctx, ref.Partition, cp, d.cfg.BatchSize)
	cancel()
	if err != nil {
		return 0, false, fmt.Errorf("projection %s: %w", ref, err)
	}
	if len(events) == 0 {
		return 0, false, nil
	}
	last := events[len(events)-1].Position
	if events[0].Position != cp+1 || last != cp+uint64(len(events)) {
		return 0, false, fmt.Errorf("projection %s: read positions %d..%d after checkpoint %d: %w", ref, events[0].Position, last, cp, persistence.ErrCorrupt)
	}
	docs := map[string][]byte{}
	if keys := d.h.Keys(events); len(keys) > 0 {
		cctx, cancel := d.call(ctx)
		found, err := d.cfg.Store.ReadDocs(cctx, ref, keys)
		cancel()
		if err != nil {
			return 0, false, fmt.Errorf("projection %s: %w", ref, err)
		}
		for i, k := range keys {
			docs[k] = found[i]
		}
	}
	writes, err := d.h.Fold(docs, events)
	if err != nil {
		return 0, false, fmt.Errorf("projection %s after %d: %w", ref, cp, err)
	}
	cctx, cancel = d.call(ctx)
	err = d.cfg.Store.ApplyReadModel(cctx, ref, cp, last, writes)
	cancel()
	if err != nil {
		// Whatever happened (conflict, or an outcome unknown), read the
		// checkpoint again next time.
		delete(d.cps, ref)
		return 0, false, err
	}
	d.cps[ref] = last
	return len(events), len(events) == d.cfg.BatchSize, nil
}

func (d *Driver) checkpoint(ctx context.Context, ref persistence.ReadModelRef) (uint64, error) {
	if cp, ok := d.cps[ref]; ok {
		return cp, nil
	}
	cctx, cancel := d.call(ctx)
	defer cancel()
	cp, err := d.cfg.Store.Checkpoint(cctx, ref)
	if err != nil {
		return 0, err
	}
	d.cps[ref] = cp
	return cp, nil
}

// RequestRebuild starts a rebuild, or joins the one running.
func (d *Driver) RequestRebuild(ctx context.Context) (persistence.ProjectionMeta, bool, error) {
	cctx, cancel := d.call(ctx)
	defer cancel()
	meta, started, err := d.cfg.Store.BeginRebuild(cctx, d.h.Name())
	if err != nil {
		return meta, false, err
	}
	d.meta = meta
	if started {
		d.log.Info("projection rebuild started", "generation", meta.Next, "live_generation", meta.Current)
	}
	return meta, started, nil
}

func (d *Driver) swap(ctx context.Context, meta persistence.ProjectionMeta) error {
	cctx, cancel := d.call(ctx)
	defer cancel()
	err := d.cfg.Store.SwapGeneration(cctx, d.h.Name(), meta.Current, meta.Next, d.cfg.Now())
	switch {
	case errors.Is(err, persistence.ErrMetaConflict):
		// Another activation swapped first.
		d.log.Debug("projection generation swap lost to another activation", "err", err)
		return nil
	case err != nil:
		return err
	}
	d.log.Info("projection rebuild caught up; swapped in", "generation", meta.Next, "retired_generation", meta.Current,
		"delete_after", d.cfg.RetireGrace)
	return nil
}

// retire deletes a bounded batch of the retired generation per partition,
// once the grace after the swap has passed. more reports that deleting
// goes on.
func (d *Driver) retire(ctx context.Context, meta persistence.ProjectionMeta) (more bool, err error) {
	if d.cfg.Now().Sub(meta.RetiredAt) < d.cfg.RetireGrace {
		return false, nil
	}
	all := true
	for p := range d.cfg.Store.Partitions() {
		cctx, cancel := d.call(ctx)
		done, err := d.cfg.Store.DeleteGeneration(cctx, d.ref(meta.Retired, p), d.cfg.RetireBatch)
		cancel()
		if err != nil {
			return false, err
		}
		all = all && done
	}
	if !all {
		return true, nil
	}
	cctx, cancel := d.call(ctx)
	defer cancel()
	if err := d.cfg.Store.FinishRetire(cctx, d.h.Name(), meta.Retired); err != nil {
		return false, err
	}
	d.log.Info("projection retired generation deleted", "generation", meta.Retired)
	return false, nil
}

// logProgress logs a rebuild's position every progressEvery.
func (d *Driver) logProgress(ctx context.Context, meta persistence.ProjectionMeta) {
	now := d.cfg.Now()
	if now.Sub(d.lastProgress) < progressEvery {
		return
	}
	d.lastProgress = now
	st, err := statusAt(ctx, d.cfg.Store, d.h.Name(), meta, d.cfg.StoreTimeout)
	if err != nil {
		d.log.Debug("projection rebuild progress unknown", "err", err)
		return
	}
	d.log.Info("projection rebuild progress", "generation", meta.Next, "position", st.RebuildPosition,
		"head", st.Head, "progress", fmt.Sprintf("%.1f%%", 100*st.RebuildProgress))
}
