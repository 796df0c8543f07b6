package persistence

import (
	"context"
	"time"
)

// SagaRecord is what the saga list shows of one saga. The saga's journal
// is the truth; the index is kept beside it so operators and the recovery
// sweep can find sagas without reading every stream.
type SagaRecord struct {
	Kind       string
	ID         string
	Status     string
	FailedStep string
	StartedAt  time.Time
	UpdatedAt  time.Time
}

// Open reports whether a saga with this status still has work to do.
func (r SagaRecord) Open() bool { return r.Status == "started" || r.Status == "compensating" }

// SagaFilter selects sagas to list; empty slices match everything.
type SagaFilter struct {
	Statuses []string
	Kinds    []string
	// Limit caps the answer (1..MaxSagaList).
	Limit int
	// After resumes a listing where the cursor of its previous page left
	// it; nil starts from the newest saga.
	After *SagaCursor
}

// SagaCursor is a position in the listing's order: newest StartedAt first
// (at millisecond precision), then Kind/ID in descending byte order.
type SagaCursor struct {
	StartedAt time.Time
	Kind, ID  string
}

// SagaBefore reports whether r comes after c in the listing's order (is
// listed once a listing resumed at c).
func SagaBefore(c SagaCursor, r SagaRecord) bool {
	cm, rm := c.StartedAt.UnixMilli(), r.StartedAt.UnixMilli()
	if rm != cm {
		return rm < cm
	}
	return r.Kind+"/"+r.ID < c.Kind+"/"+c.ID
}

// MaxSagaList caps one listing, and maxSagaScan (in the backends) how many
// records one listing may look at, so a filter cannot make it unbounded.
const MaxSagaList = 1000

// SagaIndex keeps a record per saga.
type SagaIndex interface {
	// PutSaga inserts or replaces the record of (Kind, ID). It keeps the
	// first StartedAt it saw. A record whose status is not open leaves the
	// set OpenSagas reads.
	PutSaga(ctx context.Context, r SagaRecord) error
	// ListSagas returns up to f.Limit matching records in the listing's
	// order (see SagaCursor), starting after f.After, and where the next
	// page starts: nil when no matching record follows. A page may be short
	// of f.Limit, even empty, and still have a next one, when the backend
	// stopped at its bound on records looked at per call.
	ListSagas(ctx context.Context, f SagaFilter) ([]SagaRecord, *SagaCursor, error)
	// OpenSagas returns up to limit open sagas whose UpdatedAt is not after
	// before, least recently updated first.
	OpenSagas(ctx context.Context, before time.Time, limit int) ([]SagaRecord, error)
}
