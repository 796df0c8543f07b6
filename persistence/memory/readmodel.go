package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"granary/persistence"
)

// readModels is the read-model part of a Store, guarded by Store.mu. Maps
// are made on first write, as the Redis backend makes keys.
type readModels struct {
	parts map[persistence.ReadModelRef]*rmPartition
	metas map[string]persistence.ProjectionMeta
	// seq is the highest generation handed out per projection, so a
	// generation number is never used twice (as the Redis meta's seq).
	seq map[string]uint64
}

type rmPartition struct {
	checkpoint uint64
	// retired fences the partition for good (the Redis fence expires
	// after persistence.RetiredFenceTTL; a memory store does not live
	// that long).
	retired bool
	docs    map[string][]byte
}

var _ persistence.ReadModels = (*Store)(nil)

// ApplyReadModel implements persistence.ReadModels.
func (s *Store) ApplyReadModel(ctx context.Context, ref persistence.ReadModelRef, expected, next uint64, docs []persistence.DocWrite) error {
	fail := func(err error) error { return fmt.Errorf("apply read model %s %d->%d: %w", ref, expected, next, err) }
	if err := persistence.CheckReadModelRef(ref, s.partitions); err != nil {
		return fail(err)
	}
	if err := persistence.CheckDocWrites(expected, next, docs); err != nil {
		return fail(err)
	}
	copies := make([]persistence.DocWrite, len(docs))
	for i, d := range docs {
		// A document written empty exists (reads back as empty, not nil).
		copies[i] = persistence.DocWrite{Key: d.Key, Data: append([]byte{}, d.Data...), Delete: d.Delete}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(ctx); err != nil {
		return fail(err)
	}
	p := s.rm.parts[ref]
	switch {
	case p != nil && p.retired:
		return &persistence.CheckpointConflictError{Ref: ref, Expected: expected, Retired: true}
	case p == nil && expected != 0:
		return &persistence.CheckpointConflictError{Ref: ref, Expected: expected}
	case p != nil && p.checkpoint != expected:
		return &persistence.CheckpointConflictError{Ref: ref, Expected: expected, Actual: p.checkpoint}
	}
	if p == nil {
		if s.rm.parts == nil {
			s.rm.parts = map[persistence.ReadModelRef]*rmPartition{}
		}
		p = &rmPartition{docs: map[string][]byte{}}
		s.rm.parts[ref] = p
	}
	for _, d := range copies {
		if d.Delete {
			delete(p.docs, d.Key)
		} else {
			p.docs[d.Key] = d.Data
		}
	}
	p.checkpoint = next
	return nil
}

// Checkpoint implements persistence.ReadModels.
func (s *Store) Checkpoint(ctx context.Context, ref persistence.ReadModelRef) (uint64, error) {
	if err := persistence.CheckReadModelRef(ref, s.partitions); err != nil {
		return 0, fmt.Errorf("checkpoint of %s: %w", ref, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.open(ctx); err != nil {
		return 0, fmt.Errorf("checkpoint of %s: %w", ref, err)
	}
	p := s.rm.parts[ref]
	switch {
	case p == nil:
		return 0, nil
	case p.retired:
		return 0, fmt.Errorf("checkpoint of %s: %w", ref, persistence.ErrGenerationRetired)
	}
	return p.checkpoint, nil
}

// ReadDocs implements persistence.ReadModels.
func (s *Store) ReadDocs(ctx context.Context, ref persistence.ReadModelRef, keys []string) ([][]byte, error) {
	fail := func(err error) ([][]byte, error) {
		return nil, fmt.Errorf("read %d documents of %s: %w", len(keys), ref, err)
	}
	if err := persistence.CheckReadModelRef(ref, s.partitions); err != nil {
		return fail(err)
	}
	if len(keys) > persistence.MaxDocBatch {
		return fail(fmt.Errorf("at most %d keys: %w", persistence.MaxDocBatch, persistence.ErrInvalid))
	}
	for _, k := range keys {
		if err := persistence.CheckDocKey(k); err != nil {
			return fail(err)
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.open(ctx); err != nil {
		return fail(err)
	}
	out := make([][]byte, len(keys))
	if p := s.rm.parts[ref]; p != nil {
		for i, k := range keys {
			out[i] = cloneDoc(p.docs[k])
		}
	}
	return out, nil
}

// ListDocs implements persistence.ReadModels. It sorts the partition's
// matching keys on every call: the twin trades speed for having no second
// structure to keep in step with docs.
func (s *Store) ListDocs(ctx context.Context, ref persistence.ReadModelRef, prefix, after string, limit int) ([]string, [][]byte, error) {
	fail := func(err error) ([]string, [][]byte, error) {
		return nil, nil, fmt.Errorf("list documents of %s with prefix %q after %q: %w", ref, prefix, after, err)
	}
	if err := persistence.CheckReadModelRef(ref, s.partitions); err != nil {
		return fail(err)
	}
	if err := persistence.CheckListDocs(prefix, after, limit); err != nil {
		return fail(err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.open(ctx); err != nil {
		return fail(err)
	}
	p := s.rm.parts[ref]
	if p == nil {
		return nil, nil, nil
	}
	var keys []string
	for k := range p.docs {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	keys = keys[:min(len(keys), limit)]
	docs := make([][]byte, len(keys))
	for i, k := range keys {
		docs[i] = cloneDoc(p.docs[k])
	}
	return keys, docs, nil
}

// ProjectionMeta implements persistence.ReadModels.
func (s *Store) ProjectionMeta(ctx context.Context, projection string) (persistence.ProjectionMeta, error) {
	if err := persistence.CheckProjectionName(projection); err != nil {
		return persistence.ProjectionMeta{}, fmt.Errorf("meta of projection %s: %w", projection, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.open(ctx); err != nil {
		return persistence.ProjectionMeta{}, fmt.Errorf("meta of projection %s: %w", projection, err)
	}
	return s.metaLocked(projection), nil
}

func (s *Store) metaLocked(projection string) persistence.ProjectionMeta {
	m, ok := s.rm.metas[projection]
	if !ok {
		return persistence.ProjectionMeta{Current: 1}
	}
	return m
}

// BeginRebuild implements persistence.ReadModels.
func (s *Store) BeginRebuild(ctx context.Context, projection string) (persistence.ProjectionMeta, bool, error) {
	if err := persistence.CheckProjectionName(projection); err != nil {
		return persistence.ProjectionMeta{}, false, fmt.Errorf("begin rebuild of %s: %w", projection, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(ctx); err != nil {
		return persistence.ProjectionMeta{}, false, fmt.Errorf("begin rebuild of %s: %w", projection, err)
	}
	m := s.metaLocked(projection)
	if m.Next != 0 {
		return m, false, nil
	}
	if s.rm.metas == nil {
		s.rm.metas, s.rm.seq = map[string]persistence.ProjectionMeta{}, map[string]uint64{}
	}
	m.Next = max(s.rm.seq[projection], m.Current) + 1
	s.rm.seq[projection] = m.Next
	s.rm.metas[projection] = m
	return m, true, nil
}

// SwapGeneration implements persistence.ReadModels.
func (s *Store) SwapGeneration(ctx context.Context, projection string, from, to uint64, now time.Time) error {
	fail := func(err error) error {
		return fmt.Errorf("swap %s generation %d for %d: %w", projection, from, to, err)
	}
	if err := persistence.CheckProjectionName(projection); err != nil {
		return fail(err)
	}
	if from == 0 || to == 0 {
		return fail(fmt.Errorf("generation 0: %w", persistence.ErrInvalid))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(ctx); err != nil {
		return fail(err)
	}
	m := s.metaLocked(projection)
	if m.Current != from || m.Next != to || m.Retired != 0 {
		return fail(fmt.Errorf("meta is %+v: %w", m, persistence.ErrMetaConflict))
	}
	// The Redis backend keeps milliseconds.
	s.rm.metas[projection] = persistence.ProjectionMeta{Current: to, Retired: from, RetiredAt: time.UnixMilli(now.UnixMilli()).UTC()}
	return nil
}

// DeleteGeneration implements persistence.ReadModels.
func (s *Store) DeleteGeneration(ctx context.Context, ref persistence.ReadModelRef, limit int) (bool, error) {
	fail := func(err error) (bool, error) { return false, fmt.Errorf("delete read model %s: %w", ref, err) }
	if err := persistence.CheckReadModelRef(ref, s.partitions); err != nil {
		return fail(err)
	}
	if limit < 1 || limit > persistence.MaxDeleteBatch {
		return fail(fmt.Errorf("limit %d outside 1..%d: %w", limit, persistence.MaxDeleteBatch, persistence.ErrInvalid))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(ctx); err != nil {
		return fail(err)
	}
	p := s.rm.parts[ref]
	if p == nil {
		if s.rm.parts == nil {
			s.rm.parts = map[persistence.ReadModelRef]*rmPartition{}
		}
		p = &rmPartition{docs: map[string][]byte{}}
		s.rm.parts[ref] = p
	}
	p.retired = true
	n := 0
	for k := range p.docs {
		if n == limit {
			break
		}
		delete(p.docs, k) // deleting during range is allowed
		n++
	}
	return len(p.docs) == 0, nil
}

// FinishRetire implements persistence.ReadModels.
func (s *Store) FinishRetire(ctx context.Context, projection string, gen uint64) error {
	if err := persistence.CheckProjectionName(projection); err != nil {
		return fmt.Errorf("finish retiring %s generation %d: %w", projection, gen, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(ctx); err != nil {
		return fmt.Errorf("finish retiring %s generation %d: %w", projection, gen, err)
	}
	m := s.metaLocked(projection)
	if gen == 0 || m.Retired != gen {
		return nil
	}
	m.Retired, m.RetiredAt = 0, time.Time{}
	s.rm.metas[projection] = m
	return nil
}

// cloneDoc copies a stored document; an empty one stays non-nil (it
// exists), unlike clone's nil for empty event data.
func cloneDoc(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
