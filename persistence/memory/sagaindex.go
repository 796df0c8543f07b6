package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"granary/persistence"
)

type sagaKey struct{ kind, id string }

// PutSaga implements persistence.SagaIndex.
func (s *Store) PutSaga(ctx context.Context, r persistence.SagaRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(ctx); err != nil {
		return fmt.Errorf("put saga %s/%s: %w", r.Kind, r.ID, err)
	}
	if s.sagas == nil {
		s.sagas = map[sagaKey]persistence.SagaRecord{}
	}
	k := sagaKey{r.Kind, r.ID}
	if old, ok := s.sagas[k]; ok && !old.StartedAt.IsZero() {
		r.StartedAt = old.StartedAt
	}
	r.StartedAt, r.UpdatedAt = normalize(r.StartedAt), normalize(r.UpdatedAt)
	s.sagas[k] = r
	return nil
}

// ListSagas implements persistence.SagaIndex.
func (s *Store) ListSagas(ctx context.Context, f persistence.SagaFilter) ([]persistence.SagaRecord, *persistence.SagaCursor, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.open(ctx); err != nil {
		return nil, nil, fmt.Errorf("list sagas: %w", err)
	}
	var out []persistence.SagaRecord
	for _, r := range s.sagas {
		if (len(f.Statuses) == 0 || slices.Contains(f.Statuses, r.Status)) && (len(f.Kinds) == 0 || slices.Contains(f.Kinds, r.Kind)) &&
			(f.After == nil || persistence.SagaBefore(*f.After, r)) {
			out = append(out, r)
		}
	}
	// The order of Redis's ZREVRANGE over (StartedAt ms, kind/id).
	slices.SortFunc(out, func(a, b persistence.SagaRecord) int {
		return cmp.Or(cmp.Compare(b.StartedAt.UnixMilli(), a.StartedAt.UnixMilli()), cmp.Compare(b.Kind+"/"+b.ID, a.Kind+"/"+a.ID))
	})
	limit := max(1, min(f.Limit, persistence.MaxSagaList))
	if len(out) <= limit {
		return out, nil, nil
	}
	last := out[limit-1]
	return out[:limit], &persistence.SagaCursor{StartedAt: last.StartedAt, Kind: last.Kind, ID: last.ID}, nil
}

// OpenSagas implements persistence.SagaIndex.
func (s *Store) OpenSagas(ctx context.Context, before time.Time, limit int) ([]persistence.SagaRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.open(ctx); err != nil {
		return nil, fmt.Errorf("open sagas: %w", err)
	}
	var out []persistence.SagaRecord
	for _, r := range s.sagas {
		if r.Open() && !r.UpdatedAt.After(before) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b persistence.SagaRecord) int {
		return cmp.Or(a.UpdatedAt.Compare(b.UpdatedAt), cmp.Compare(a.Kind+"/"+a.ID, b.Kind+"/"+b.ID))
	})
	return out[:min(len(out), max(limit, 0))], nil
}
