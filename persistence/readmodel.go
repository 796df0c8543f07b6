package persistence

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// ReadModelRef names one partition of one generation of a projection's read
// model. A projection keeps, per journal partition, a checkpoint (the last
// position it folded) and the documents that partition's events produce,
// side by side, so one atomic operation can move both.
type ReadModelRef struct {
	Projection string
	Generation uint64
	Partition  int
}

func (r ReadModelRef) String() string {
	return fmt.Sprintf("%s/g%d/p%d", r.Projection, r.Generation, r.Partition)
}

// DocWrite changes one document of a read model: Data replaces it, or
// Delete removes it.
type DocWrite struct {
	Key    string
	Data   []byte
	Delete bool
}

// ProjectionMeta is the generation bookkeeping of a projection. Readers use
// Current; a rebuild builds Next beside it and swaps it in; the generation
// it replaced is Retired until its data is deleted.
type ProjectionMeta struct {
	// Current is the generation reads use: 1 until the first swap.
	Current uint64
	// Next is the generation being rebuilt (0: no rebuild running).
	Next uint64
	// Retired is the generation swapped out and not yet deleted (0: none);
	// RetiredAt is when it was swapped out.
	Retired   uint64
	RetiredAt time.Time
}

// Limits of one read-model call, so no call can grow without bound.
const (
	// MaxDocBatch caps the documents one ApplyReadModel writes or one
	// ReadDocs reads.
	MaxDocBatch = 1000
	// MaxDeleteBatch caps the documents one DeleteGeneration removes.
	MaxDeleteBatch = 5000
	// MaxDocKey caps a document key in bytes.
	MaxDocKey = 512
)

// ReadModels stores the read models projections build from the journal.
//
// Every method is safe for concurrent use, honours ctx's deadline and
// reports ErrInvalid for a bad argument (a projection name outside
// ValidProjectionName, a partition outside [0, Partitions()), generation 0,
// an empty or oversized key, a batch above its limit) and ErrClosed after
// Close. Other errors leave the outcome unknown to the caller (for
// ApplyReadModel: applied or not; reading the checkpoint again tells).
type ReadModels interface {
	// ApplyReadModel writes docs to ref's documents and moves ref's
	// checkpoint from expected to next, atomically and all or none, only if
	// the checkpoint is expected (0 for a partition never applied). It
	// returns a *CheckpointConflictError (matching ErrCheckpointConflict)
	// when the checkpoint is another one, also matching
	// ErrGenerationRetired once the generation was retired. next must be
	// above expected. Because the checkpoint and the documents move
	// together, a projection that folds the events after expected and
	// commits them this way applies each event exactly once, even when two
	// instances of it run at the same time.
	ApplyReadModel(ctx context.Context, ref ReadModelRef, expected, next uint64, docs []DocWrite) error

	// Checkpoint returns ref's checkpoint (0 when never applied), or an
	// error matching ErrGenerationRetired once the generation was retired.
	Checkpoint(ctx context.Context, ref ReadModelRef) (uint64, error)

	// ReadDocs returns the documents of ref with the given keys, in order;
	// a missing one is nil. At most MaxDocBatch keys.
	ReadDocs(ctx context.Context, ref ReadModelRef, keys []string) ([][]byte, error)

	// ListDocs returns, in byte order of their keys, at most limit
	// (1..MaxDocBatch) documents of ref whose key starts with prefix and
	// sorts strictly after after (a whole key, typically the last one a
	// previous call returned; "" starts at the first). Documents written
	// by ApplyReadModel are listed from the moment it returns; a retired
	// generation lists what DeleteGeneration has not removed yet. Fewer
	// than limit means no more follow, unless documents were deleted
	// during the call (they are left out).
	ListDocs(ctx context.Context, ref ReadModelRef, prefix, after string, limit int) (keys []string, docs [][]byte, err error)

	// ProjectionMeta returns the projection's generations; a projection
	// never seen has Current 1 and nothing else.
	ProjectionMeta(ctx context.Context, projection string) (ProjectionMeta, error)

	// BeginRebuild makes a new, never used generation the projection's Next
	// unless a rebuild is running already; either way it returns the meta
	// with the Next to build, and started tells whether this call set it.
	BeginRebuild(ctx context.Context, projection string) (meta ProjectionMeta, started bool, err error)

	// SwapGeneration makes Next the Current generation and the Current one
	// Retired (at now), provided the meta still has Current from, Next to
	// and nothing Retired; otherwise it returns ErrMetaConflict and changes
	// nothing.
	SwapGeneration(ctx context.Context, projection string, from, to uint64, now time.Time) error

	// DeleteGeneration removes up to limit (1..MaxDeleteBatch) documents of
	// ref, after fencing it: from the first call on, ApplyReadModel on ref
	// fails with ErrGenerationRetired, so no late writer can recreate what
	// was deleted. done reports that no document is left. The fence itself
	// is kept for RetiredFenceTTL, far longer than any writer can lag.
	DeleteGeneration(ctx context.Context, ref ReadModelRef, limit int) (done bool, err error)

	// FinishRetire clears Retired when it is gen (and does nothing
	// otherwise), once every partition of gen was deleted.
	FinishRetire(ctx context.Context, projection string, gen uint64) error
}

// RetiredFenceTTL is how long a retired generation's fence outlives it.
const RetiredFenceTTL = 7 * 24 * time.Hour

var (
	// ErrCheckpointConflict: the read model's checkpoint is not the
	// expected one; another instance of the projection applied first.
	// Read the checkpoint again and continue from there.
	ErrCheckpointConflict = errors.New("read model checkpoint conflict")
	// ErrGenerationRetired: the generation was swapped out and is being
	// deleted; read the projection's meta again.
	ErrGenerationRetired = errors.New("read model generation retired")
	// ErrMetaConflict: the projection's generations are not those the
	// caller expected.
	ErrMetaConflict = errors.New("projection meta conflict")
)

// CheckpointConflictError carries the checkpoints of a failed
// ApplyReadModel.
type CheckpointConflictError struct {
	Ref      ReadModelRef
	Expected uint64
	Actual   uint64
	// Retired: the generation was retired (Actual is then meaningless).
	Retired bool
}

func (e *CheckpointConflictError) Error() string {
	if e.Retired {
		return fmt.Sprintf("apply read model %s: %v", e.Ref, ErrGenerationRetired)
	}
	return fmt.Sprintf("apply read model %s: expected checkpoint %d, it is %d: %v", e.Ref, e.Expected, e.Actual, ErrCheckpointConflict)
}

func (e *CheckpointConflictError) Is(target error) bool {
	return target == ErrCheckpointConflict || (e.Retired && target == ErrGenerationRetired)
}

var projectionName = regexp.MustCompile(`^[a-z0-9_.-]{1,64}$`)

// ValidProjectionName reports whether name may name a projection: it becomes
// part of storage keys, so it is short and free of separators and braces.
func ValidProjectionName(name string) bool { return projectionName.MatchString(name) }

// CheckReadModelRef validates ref against a store with the given partition
// count; backends call it first.
func CheckReadModelRef(ref ReadModelRef, partitions int) error {
	switch {
	case !ValidProjectionName(ref.Projection):
		return fmt.Errorf("projection name %q must match %s: %w", ref.Projection, projectionName, ErrInvalid)
	case ref.Generation == 0:
		return fmt.Errorf("generation 0: %w", ErrInvalid)
	case ref.Partition < 0 || ref.Partition >= partitions:
		return fmt.Errorf("partition %d out of range [0, %d): %w", ref.Partition, partitions, ErrInvalid)
	}
	return nil
}

// CheckProjectionName validates a projection name; backends call it first.
func CheckProjectionName(name string) error {
	if !ValidProjectionName(name) {
		return fmt.Errorf("projection name %q must match %s: %w", name, projectionName, ErrInvalid)
	}
	return nil
}

// CheckDocWrites validates an ApplyReadModel call's arguments.
func CheckDocWrites(expected, next uint64, docs []DocWrite) error {
	if next <= expected {
		return fmt.Errorf("next checkpoint %d must be above expected %d: %w", next, expected, ErrInvalid)
	}
	if len(docs) > MaxDocBatch {
		return fmt.Errorf("%d documents in one batch, at most %d: %w", len(docs), MaxDocBatch, ErrInvalid)
	}
	for _, d := range docs {
		if err := CheckDocKey(d.Key); err != nil {
			return err
		}
	}
	return nil
}

// CheckListDocs validates a ListDocs call's arguments (besides its ref).
func CheckListDocs(prefix, after string, limit int) error {
	switch {
	case limit < 1 || limit > MaxDocBatch:
		return fmt.Errorf("list limit %d outside 1..%d: %w", limit, MaxDocBatch, ErrInvalid)
	case len(prefix) > MaxDocKey || len(after) > MaxDocKey:
		return fmt.Errorf("list prefix of %d bytes or after of %d bytes, at most %d: %w", len(prefix), len(after), MaxDocKey, ErrInvalid)
	}
	return nil
}

// CheckDocKey validates one document key.
func CheckDocKey(key string) error {
	if key == "" || len(key) > MaxDocKey {
		return fmt.Errorf("document key of %d bytes, want 1..%d: %w", len(key), MaxDocKey, ErrInvalid)
	}
	return nil
}
