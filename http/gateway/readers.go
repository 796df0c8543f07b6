package gateway

import (
	"context"

	"granary/cluster/grains"
	"granary/messages"
	"granary/persistence"
)

// EventReader reads accounts' events straight from the journal (the
// events routes, at_version and streams); grains.AccountJournal is the
// implementation.
type EventReader interface {
	AccountStream(id string) string
	// DecodeAccountEvent fails, matching persistence.ErrCorrupt, on an
	// event this release cannot read.
	DecodeAccountEvent(e persistence.Event) (*messages.AccountEvent, error)
	// AccountAt is the account right after its event version: decode
	// failures match grains.ErrUnreadableEvent, a journal that ends early
	// is a *messages.Failure, anything else is storage trouble.
	AccountAt(ctx context.Context, id string, version uint64) (*messages.AccountState, error)
}

// SummaryReader reads the projections' read model; grains.ReadModel is
// the implementation.
type SummaryReader interface {
	Summary(ctx context.Context, id string) (s grains.Summary, found bool, err error)
	// WaitForVersion fails matching grains.ErrNotCaughtUp, with the
	// summary it has, when ctx ends first.
	WaitForVersion(ctx context.Context, id string, minVersion uint64) (grains.Summary, error)
	// ListAccounts pages through the summaries, owner's only unless owner
	// is ""; next is nil on the last page. A cursor outside the read
	// model is persistence.ErrInvalid.
	ListAccounts(ctx context.Context, owner string, cursor grains.AccountCursor, limit int) (sums []grains.Summary, next *grains.AccountCursor, err error)
	Projections(ctx context.Context) ([]grains.ProjectionStatus, error)
}

// SagaLister lists the saga index (persistence.Store implements it).
type SagaLister interface {
	ListSagas(ctx context.Context, f persistence.SagaFilter) ([]persistence.SagaRecord, *persistence.SagaCursor, error)
}

// registryView is the gateway's copy of the registry view, kept fresh in
// the background between Start and Close (grains.NewRouteWatcher).
type registryView interface {
	Start()
	Close()
	// Refresh reloads the view now.
	Refresh(ctx context.Context) error
	// Match is the route with the longest prefix of path.
	Match(path string) (*messages.RouteSpec, bool)
	Up(service string) []grains.Instance
	// Instances are service's instances and their last heartbeats (unix
	// ms) by instance identity.
	Instances(service string) ([]grains.Instance, map[string]int64)
	Services() []string
	Routes() []*messages.RouteSpec
	// Version is the view's version of an instance.
	Version(service, id string) (uint64, bool)
}

// withReaders fills the readers Deps left out from Store.
func (d Deps) withReaders() Deps {
	if d.Events == nil {
		d.Events = grains.AccountJournal{Journal: d.Store}
	}
	if d.Summaries == nil {
		d.Summaries = grains.ReadModel{Store: d.Store}
	}
	if d.Sagas == nil {
		d.Sagas = d.Store
	}
	return d
}
