package grains

import (
	"context"

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
