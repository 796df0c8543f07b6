package grains

import (
	"context"
	"fmt"
	"time"

	"granary/actors/projection"
	"granary/messages"
	"granary/persistence"
)

// Summary is the AccountSummary read model of one account as the contract
// shows it; Owner is kept (not rendered) for the access check.
type Summary = projection.Summary

// ProjectionStatus is how far a projection is.
type ProjectionStatus = projection.ProjectionStatus

var (
	// ErrNotCaughtUp: the read model did not reach the wanted version in
	// time.
	ErrNotCaughtUp = projection.ErrNotCaughtUp
	// ErrUnknownProjection: no projection has that name.
	ErrUnknownProjection = projection.ErrUnknownProjection
)

// ReadModel reads the projections' documents and checkpoints straight
// from the store, wherever the projection grains run.
type ReadModel struct{ Store persistence.Store }

// Summary reads account id's summary; found is false when the read model
// has none yet. Errors are storage trouble (persistence.ErrInvalid for an
// id that cannot be a document key).
func (r ReadModel) Summary(ctx context.Context, id string) (Summary, bool, error) {
	return projection.GetSummary(ctx, r.Store, id)
}

// WaitForVersion waits until account id's summary reaches minVersion;
// past ctx it returns the summary it has and an error matching
// ErrNotCaughtUp (or the last storage error).
func (r ReadModel) WaitForVersion(ctx context.Context, id string, minVersion uint64) (Summary, error) {
	return projection.WaitForVersion(ctx, r.Store, id, minVersion)
}

// AccountCursor is where a listing of accounts goes on: after the document
// Key of partition Partition of the AccountSummary read model. The zero
// value is the start.
type AccountCursor struct {
	Partition int
	Key       string
}

// listCallTimeout bounds each storage call of a listing.
const listCallTimeout = 3 * time.Second

// ListAccounts returns up to limit (1..persistence.MaxDocBatch) account
// summaries from the live generation, partition by partition and in key
// order within one, starting after cursor: every account when owner is "",
// otherwise owner's, through the owner index. next is nil on the last
// page. Document keys do not change between generations, so a cursor
// stays good across a rebuild's swap. Errors are storage trouble, or
// persistence.ErrInvalid for a cursor outside the partitions.
func (r ReadModel) ListAccounts(ctx context.Context, owner string, cursor AccountCursor, limit int) (sums []Summary, next *AccountCursor, err error) {
	fail := func(err error) ([]Summary, *AccountCursor, error) {
		return nil, nil, fmt.Errorf("list accounts of %q after %+v: %w", owner, cursor, err)
	}
	parts := r.Store.Partitions()
	if limit < 1 || limit > persistence.MaxDocBatch || cursor.Partition < 0 || cursor.Partition >= parts {
		return fail(fmt.Errorf("limit %d or partition %d out of range: %w", limit, cursor.Partition, persistence.ErrInvalid))
	}
	cctx, cancel := context.WithTimeout(ctx, listCallTimeout)
	meta, err := r.Store.ProjectionMeta(cctx, projection.AccountSummaryName)
	cancel()
	if err != nil {
		return fail(err)
	}
	prefix := projection.SummaryKeyPrefix
	if owner != "" {
		prefix = projection.OwnerIndexPrefix(owner)
	}
	// One more than the page tells whether there is a next one; its place
	// is that of the page's last summary.
	type found struct {
		at  AccountCursor
		sum Summary
	}
	var page []found
	for p := cursor.Partition; p < parts && len(page) <= limit; p++ {
		ref := persistence.ReadModelRef{Projection: projection.AccountSummaryName, Generation: meta.Current, Partition: p}
		after := ""
		if p == cursor.Partition {
			after = cursor.Key
		}
		for len(page) <= limit {
			want := min(limit+1-len(page), persistence.MaxDocBatch)
			keys, sums, err := r.listPartition(ctx, ref, owner != "", prefix, after, want)
			if err != nil {
				return fail(err)
			}
			for i, k := range keys {
				if sums[i] != nil {
					page = append(page, found{AccountCursor{p, k}, *sums[i]})
				}
			}
			// The projection never deletes a document of the live
			// generation, so a short batch is the partition's end.
			if len(keys) < want {
				break
			}
			after = keys[len(keys)-1]
		}
	}
	if len(page) > limit {
		next = &page[limit-1].at
		page = page[:limit]
	}
	out := make([]Summary, len(page))
	for i, f := range page {
		out[i] = f.sum
	}
	return out, next, nil
}

// listPartition lists up to limit keys of one partition after after and
// the summaries they lead to (nil for an index entry whose summary is
// missing, which the projection, writing both at once, never leaves).
func (r ReadModel) listPartition(ctx context.Context, ref persistence.ReadModelRef, byIndex bool, prefix, after string, limit int) ([]string, []*Summary, error) {
	cctx, cancel := context.WithTimeout(ctx, listCallTimeout)
	keys, docs, err := r.Store.ListDocs(cctx, ref, prefix, after, limit)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	ids := keys
	if byIndex {
		ids = make([]string, len(docs))
		for i, d := range docs {
			ids[i] = string(d)
			if err := persistence.CheckDocKey(ids[i]); err != nil {
				return nil, nil, fmt.Errorf("owner index %s of %s: %v: %w", keys[i], ref, err, persistence.ErrCorrupt)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, listCallTimeout)
		docs, err = r.Store.ReadDocs(cctx, ref, ids)
		cancel()
		if err != nil {
			return nil, nil, err
		}
	}
	sums := make([]*Summary, len(keys))
	for i, d := range docs {
		if d == nil {
			continue
		}
		s, err := projection.DecodeSummary(ids[i], d)
		if err != nil {
			return nil, nil, err
		}
		sums[i] = &s
	}
	return keys, sums, nil
}

// Projections reports every projection's progress.
func (r ReadModel) Projections(ctx context.Context) ([]ProjectionStatus, error) {
	return projection.Status(ctx, r.Store)
}

// Projections calls projection grains, identified by name.
type Projections struct{ Caller Caller }

// Names are the projections there are.
func (Projections) Names() []string { return projection.Names() }

// Rebuild starts a rebuild of projection name; an unknown name is an error
// matching ErrUnknownProjection.
func (p Projections) Rebuild(ctx context.Context, name string) (*messages.ProjectionReply, error) {
	return projection.Rebuild(ctx, p.Caller, name)
}
