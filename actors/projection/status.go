package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"granary/persistence"
)

// ErrUnknownProjection: no projection has that name.
var ErrUnknownProjection = errors.New("unknown projection")

// ProjectionStatus is how far a projection is, summed over the journal's
// partitions (per partition in Partitions). Position is what the live
// generation has folded, Head what the journal holds, Lag the difference.
type ProjectionStatus struct {
	Name       string `json:"name"`
	Position   uint64 `json:"position"`
	Head       uint64 `json:"head"`
	Lag        uint64 `json:"lag"`
	Generation uint64 `json:"generation"`
	// Rebuilding: a new generation is being built; RebuildPosition is how
	// far, and RebuildProgress that as a fraction of Head (0..1).
	Rebuilding        bool              `json:"rebuilding"`
	RebuildGeneration uint64            `json:"rebuild_generation,omitempty"`
	RebuildPosition   uint64            `json:"rebuild_position,omitempty"`
	RebuildProgress   float64           `json:"rebuild_progress"`
	Partitions        []PartitionStatus `json:"partitions"`
}

// PartitionStatus is a projection's position in one journal partition.
type PartitionStatus struct {
	Partition       int    `json:"partition"`
	Position        uint64 `json:"position"`
	Head            uint64 `json:"head"`
	Lag             uint64 `json:"lag"`
	RebuildPosition uint64 `json:"rebuild_position,omitempty"`
}

// statusTimeout bounds each storage call of Status when ctx has no
// deadline of its own.
const statusTimeout = 3 * time.Second

// Status reports every projection, read straight from the store: it works
// whether or not (and wherever) the projection grains run.
func Status(ctx context.Context, store Store) ([]ProjectionStatus, error) {
	var out []ProjectionStatus
	for _, name := range Names() {
		st, err := StatusOf(ctx, store, name)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// StatusOf reports one projection; ErrUnknownProjection for a name that
// is none.
func StatusOf(ctx context.Context, store Store, name string) (ProjectionStatus, error) {
	if handlerFor(name) == nil {
		return ProjectionStatus{}, fmt.Errorf("status of %q: %w", name, ErrUnknownProjection)
	}
	var err error
	// A swap between reading the meta and a checkpoint retires the
	// generation read; the meta is then new and the next try succeeds.
	for range 3 {
		var meta persistence.ProjectionMeta
		cctx, cancel := context.WithTimeout(ctx, statusTimeout)
		meta, err = store.ProjectionMeta(cctx, name)
		cancel()
		if err != nil {
			return ProjectionStatus{}, fmt.Errorf("status of %s: %w", name, err)
		}
		var st ProjectionStatus
		st, err = statusAt(ctx, store, name, meta, statusTimeout)
		if !errors.Is(err, persistence.ErrGenerationRetired) {
			return st, err
		}
	}
	return ProjectionStatus{}, err
}

func statusAt(ctx context.Context, store Store, name string, meta persistence.ProjectionMeta, timeout time.Duration) (ProjectionStatus, error) {
	st := ProjectionStatus{Name: name, Generation: meta.Current, Rebuilding: meta.Next != 0, RebuildGeneration: meta.Next}
	read := func(f func(context.Context) (uint64, error)) (uint64, error) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return f(cctx)
	}
	for p := range store.Partitions() {
		ps := PartitionStatus{Partition: p}
		var err error
		// The checkpoint before the head, so Position <= Head.
		ps.Position, err = read(func(c context.Context) (uint64, error) {
			return store.Checkpoint(c, persistence.ReadModelRef{Projection: name, Generation: meta.Current, Partition: p})
		})
		if err == nil && meta.Next != 0 {
			ps.RebuildPosition, err = read(func(c context.Context) (uint64, error) {
				return store.Checkpoint(c, persistence.ReadModelRef{Projection: name, Generation: meta.Next, Partition: p})
			})
		}
		if err == nil {
			ps.Head, err = read(func(c context.Context) (uint64, error) { return store.Head(c, p) })
		}
		if err != nil {
			return ProjectionStatus{}, fmt.Errorf("status of %s: %w", name, err)
		}
		ps.Lag = ps.Head - min(ps.Position, ps.Head)
		st.Position += ps.Position
		st.Head += ps.Head
		st.Lag += ps.Lag
		st.RebuildPosition += ps.RebuildPosition
		st.Partitions = append(st.Partitions, ps)
	}
	if st.Rebuilding {
		st.RebuildProgress = 1
		if st.Head > 0 {
			st.RebuildProgress = min(1, float64(st.RebuildPosition)/float64(st.Head))
		}
	}
	return st, nil
}
