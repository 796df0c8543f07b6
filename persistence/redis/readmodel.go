package redis

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"granary/persistence"
)

// Read models live beside the journal partition they are folded from, under
// its hash tag, so one script moves a partition's documents and checkpoint
// together even on Redis Cluster:
//
//	<prefix>:{pN}:rm:<projection>:<gen>:cp    string  decimal checkpoint, or "retired" (a fence, expires)
//	<prefix>:{pN}:rm:<projection>:<gen>:docs  hash    document key -> document
//	<prefix>:{pN}:rm:<projection>:<gen>:docs:keys  zset  the hash's keys at score 0, for ListDocs
//
// A projection's generations are one small hash under a tag of its own; a
// generation swap is one script on it, hence atomic for every partition:
//
//	<prefix>:{proj:<projection>}:meta  hash  cur, next, old, old_at (unix ms), seq
//
// Projection names cannot hold ':' or braces (persistence.ValidProjectionName).
func (k keys) readModel(ref persistence.ReadModelRef) string {
	return k.tag(ref.Partition) + ":rm:" + ref.Projection + ":" + strconv.FormatUint(ref.Generation, 10)
}
func (k keys) checkpoint(ref persistence.ReadModelRef) string { return k.readModel(ref) + ":cp" }
func (k keys) docs(ref persistence.ReadModelRef) string       { return k.readModel(ref) + ":docs" }

// docKeys indexes docs' keys. Documents written before it existed are
// not in it until a rebuild writes them again.
func (k keys) docKeys(ref persistence.ReadModelRef) string { return k.docs(ref) + ":keys" }
func (k keys) projectionMeta(projection string) string {
	return k.prefix + ":{proj:" + projection + "}:meta"
}

// retiredMark is the checkpoint value of a fenced generation.
const retiredMark = "retired"

// rmCallTimeout bounds each read-model call whose ctx has no earlier
// deadline, so a stalled server cannot hold a projection forever.
const rmCallTimeout = 5 * time.Second

var (
	//go:embed apply_read_model.lua
	applyReadModelSrc    string
	applyReadModelScript = goredis.NewScript(applyReadModelSrc)

	//go:embed projection_meta.lua
	projectionMetaSrc string

	//go:embed begin_rebuild.lua
	beginRebuildSrc    string
	beginRebuildScript = goredis.NewScript(projectionMetaSrc + beginRebuildSrc)

	//go:embed swap_generation.lua
	swapGenerationSrc    string
	swapGenerationScript = goredis.NewScript(projectionMetaSrc + swapGenerationSrc)

	//go:embed finish_retire.lua
	finishRetireSrc    string
	finishRetireScript = goredis.NewScript(projectionMetaSrc + finishRetireSrc)
)

var _ persistence.ReadModels = (*Store)(nil)

func callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, rmCallTimeout)
}

// ApplyReadModel implements persistence.ReadModels with apply_read_model.lua.
func (s *Store) ApplyReadModel(ctx context.Context, ref persistence.ReadModelRef, expected, next uint64, docs []persistence.DocWrite) error {
	fail := func(err error) error { return fmt.Errorf("apply read model %s %d->%d: %w", ref, expected, next, err) }
	if err := persistence.CheckReadModelRef(ref, s.partitions); err != nil {
		return fail(err)
	}
	if err := persistence.CheckDocWrites(expected, next, docs); err != nil {
		return fail(err)
	}
	if next >= maxExact {
		// Lua could not compare it exactly; no journal gets there.
		return fail(fmt.Errorf("checkpoint %d beyond %d: %w", next, uint64(maxExact), persistence.ErrInvalid))
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	sets, dels := 0, 0
	for _, d := range docs {
		if d.Delete {
			dels++
		} else {
			sets++
		}
	}
	args := make([]any, 0, 3+2*sets+dels)
	args = append(args, strconv.FormatUint(expected, 10), strconv.FormatUint(next, 10), sets)
	for _, d := range docs {
		if !d.Delete {
			args = append(args, d.Key, d.Data)
		}
	}
	for _, d := range docs {
		if d.Delete {
			args = append(args, d.Key)
		}
	}
	cpKey := s.keys.checkpoint(ref)
	ctx, cancel := callCtx(ctx)
	defer cancel()
	reply, err := applyReadModelScript.Run(ctx, s.client, []string{cpKey, s.keys.docs(ref), s.keys.docKeys(ref)}, args...).Int64Slice()
	if err != nil {
		return fail(classify(err, cpKey))
	}
	switch {
	case len(reply) == 1 && reply[0] == 1:
		return nil
	case len(reply) == 1 && reply[0] == -1:
		return &persistence.CheckpointConflictError{Ref: ref, Expected: expected, Retired: true}
	case len(reply) == 2 && reply[0] == 0 && reply[1] >= 0:
		return &persistence.CheckpointConflictError{Ref: ref, Expected: expected, Actual: uint64(reply[1])}
	default:
		return fail(fmt.Errorf("unexpected script reply %v", reply))
	}
}

// Checkpoint implements persistence.ReadModels.
func (s *Store) Checkpoint(ctx context.Context, ref persistence.ReadModelRef) (uint64, error) {
	fail := func(err error) (uint64, error) { return 0, fmt.Errorf("checkpoint of %s: %w", ref, err) }
	if err := persistence.CheckReadModelRef(ref, s.partitions); err != nil {
		return fail(err)
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	key := s.keys.checkpoint(ref)
	ctx, cancel := callCtx(ctx)
	defer cancel()
	raw, err := s.client.Get(ctx, key).Result()
	switch {
	case errors.Is(err, goredis.Nil):
		return 0, nil
	case err != nil:
		return fail(classify(err, key))
	case raw == retiredMark:
		return fail(persistence.ErrGenerationRetired)
	}
	n, err := parseCount(raw)
	if err != nil {
		return fail(corrupt(key, err))
	}
	return n, nil
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
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	out := make([][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	key := s.keys.docs(ref)
	ctx, cancel := callCtx(ctx)
	defer cancel()
	vals, err := s.client.HMGet(ctx, key, keys...).Result()
	if err != nil {
		return fail(classify(err, key))
	}
	if len(vals) != len(keys) {
		return fail(fmt.Errorf("HMGET returned %d values for %d keys", len(vals), len(keys)))
	}
	for i, v := range vals {
		switch d := v.(type) {
		case nil:
		case string:
			out[i] = []byte(d)
		default:
			return fail(corrupt(key, fmt.Errorf("document %q is a %T", keys[i], v)))
		}
	}
	return out, nil
}

// ListDocs implements persistence.ReadModels: a ZRANGEBYLEX over the key
// index, then an HMGET of what it found. The two reads are not atomic; a
// key deleted between them is left out rather than listed as missing.
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
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	lo, hi := lexRange(prefix, after)
	if lo == "" {
		return nil, nil, nil
	}
	indexKey, docsKey := s.keys.docKeys(ref), s.keys.docs(ref)
	ctx, cancel := callCtx(ctx)
	defer cancel()
	found, err := s.client.ZRangeByLex(ctx, indexKey, &goredis.ZRangeBy{Min: lo, Max: hi, Count: int64(limit)}).Result()
	if err != nil {
		return fail(classify(err, indexKey))
	}
	if len(found) == 0 {
		return nil, nil, nil
	}
	vals, err := s.client.HMGet(ctx, docsKey, found...).Result()
	if err != nil {
		return fail(classify(err, docsKey))
	}
	if len(vals) != len(found) {
		return fail(fmt.Errorf("HMGET returned %d values for %d keys", len(vals), len(found)))
	}
	keys, docs := make([]string, 0, len(found)), make([][]byte, 0, len(found))
	for i, v := range vals {
		switch d := v.(type) {
		case nil:
		case string:
			keys, docs = append(keys, found[i]), append(docs, []byte(d))
		default:
			return fail(corrupt(docsKey, fmt.Errorf("document %q is a %T", found[i], v)))
		}
	}
	return keys, docs, nil
}

// lexRange is the ZRANGEBYLEX range of the keys that start with prefix
// and sort after after; lo is "" when there is none. The upper bound is
// exclusive of prefix's successor (prefix with its last byte below 0xff
// incremented, the bytes after it dropped), not prefix+"\xff", which a
// key holding 0xff after the prefix would pass.
func lexRange(prefix, after string) (lo, hi string) {
	switch {
	case prefix == "" && after == "":
		lo = "-"
	case after >= prefix:
		lo = "(" + after
	default:
		lo = "[" + prefix
	}
	hi = "+"
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			hi = "(" + prefix[:i] + string(prefix[i]+1)
			break
		}
	}
	if hi != "+" && lo[1:] >= hi[1:] {
		return "", ""
	}
	return lo, hi
}

// ProjectionMeta implements persistence.ReadModels.
func (s *Store) ProjectionMeta(ctx context.Context, projection string) (persistence.ProjectionMeta, error) {
	fail := func(err error) (persistence.ProjectionMeta, error) {
		return persistence.ProjectionMeta{}, fmt.Errorf("meta of projection %s: %w", projection, err)
	}
	if err := persistence.CheckProjectionName(projection); err != nil {
		return fail(err)
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	key := s.keys.projectionMeta(projection)
	ctx, cancel := callCtx(ctx)
	defer cancel()
	vals, err := s.client.HMGet(ctx, key, "cur", "next", "old", "old_at").Result()
	if err != nil {
		return fail(classify(err, key))
	}
	n := [4]uint64{1, 0, 0, 0}
	for i, v := range vals {
		if v == nil {
			continue
		}
		if n[i], err = parseCount(v); err != nil {
			return fail(corrupt(key, err))
		}
	}
	return metaOf(n[0], n[1], n[2], n[3]), nil
}

func metaOf(cur, next, old, oldAt uint64) persistence.ProjectionMeta {
	m := persistence.ProjectionMeta{Current: cur, Next: next, Retired: old}
	if old != 0 {
		m.RetiredAt = time.UnixMilli(int64(oldAt)).UTC()
	}
	return m
}

// BeginRebuild implements persistence.ReadModels with begin_rebuild.lua.
func (s *Store) BeginRebuild(ctx context.Context, projection string) (persistence.ProjectionMeta, bool, error) {
	fail := func(err error) (persistence.ProjectionMeta, bool, error) {
		return persistence.ProjectionMeta{}, false, fmt.Errorf("begin rebuild of %s: %w", projection, err)
	}
	if err := persistence.CheckProjectionName(projection); err != nil {
		return fail(err)
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	key := s.keys.projectionMeta(projection)
	ctx, cancel := callCtx(ctx)
	defer cancel()
	r, err := beginRebuildScript.Run(ctx, s.client, []string{key}).Int64Slice()
	if err != nil {
		return fail(classify(err, key))
	}
	if len(r) != 5 || r[1] < 1 || r[2] < 1 || r[3] < 0 || r[4] < 0 {
		return fail(fmt.Errorf("unexpected script reply %v", r))
	}
	return metaOf(uint64(r[1]), uint64(r[2]), uint64(r[3]), uint64(r[4])), r[0] == 1, nil
}

// SwapGeneration implements persistence.ReadModels with swap_generation.lua.
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
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	key := s.keys.projectionMeta(projection)
	ctx, cancel := callCtx(ctx)
	defer cancel()
	r, err := swapGenerationScript.Run(ctx, s.client, []string{key},
		strconv.FormatUint(from, 10), strconv.FormatUint(to, 10), strconv.FormatInt(max(now.UnixMilli(), 1), 10)).Int64Slice()
	if err != nil {
		return fail(classify(err, key))
	}
	switch {
	case len(r) == 1 && r[0] == 1:
		return nil
	case len(r) == 4 && r[0] == 0:
		return fail(fmt.Errorf("meta has current %d, next %d, retired %d: %w", r[1], r[2], r[3], persistence.ErrMetaConflict))
	default:
		return fail(fmt.Errorf("unexpected script reply %v", r))
	}
}

// DeleteGeneration implements persistence.ReadModels: it fences the
// checkpoint, then deletes a bounded batch of documents.
// The steps are not atomic and need not be: once fenced, nothing writes
// the generation again, and a repeated call simply deletes more.
func (s *Store) DeleteGeneration(ctx context.Context, ref persistence.ReadModelRef, limit int) (bool, error) {
	fail := func(err error) (bool, error) { return false, fmt.Errorf("delete read model %s: %w", ref, err) }
	if err := persistence.CheckReadModelRef(ref, s.partitions); err != nil {
		return fail(err)
	}
	if limit < 1 || limit > persistence.MaxDeleteBatch {
		return fail(fmt.Errorf("limit %d outside 1..%d: %w", limit, persistence.MaxDeleteBatch, persistence.ErrInvalid))
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	cpKey, docsKey := s.keys.checkpoint(ref), s.keys.docs(ref)
	ctx, cancel := callCtx(ctx)
	defer cancel()
	if err := s.client.Set(ctx, cpKey, retiredMark, persistence.RetiredFenceTTL).Err(); err != nil {
		return fail(classify(err, cpKey))
	}
	// HRANDFIELD (Redis 6.2+) returns exactly min(limit, size) distinct
	// fields in O(limit): always progress, no cursor to keep between calls
	// (or between activations). HSCAN from cursor 0 could return nothing
	// at all once the first buckets were emptied.
	fields, err := s.client.HRandField(ctx, docsKey, limit).Result()
	if err != nil {
		return fail(classify(err, docsKey))
	}
	fields = fields[:min(len(fields), limit)]
	indexKey := s.keys.docKeys(ref)
	if len(fields) > 0 {
		if err := s.client.HDel(ctx, docsKey, fields...).Err(); err != nil {
			return fail(classify(err, docsKey))
		}
		members := make([]any, len(fields))
		for i, f := range fields {
			members[i] = f
		}
		if err := s.client.ZRem(ctx, indexKey, members...).Err(); err != nil {
			return fail(classify(err, indexKey))
		}
	}
	left, err := s.client.HLen(ctx, docsKey).Result()
	if err != nil {
		return fail(classify(err, docsKey))
	}
	if left == 0 {
		// The index holds only keys of the hash, so it is empty too
		// (or as good as: a crash between HDEL and ZREM leaves a few).
		if err := s.client.Del(ctx, indexKey).Err(); err != nil {
			return fail(classify(err, indexKey))
		}
	}
	return left == 0, nil
}

// FinishRetire implements persistence.ReadModels with finish_retire.lua.
func (s *Store) FinishRetire(ctx context.Context, projection string, gen uint64) error {
	fail := func(err error) error { return fmt.Errorf("finish retiring %s generation %d: %w", projection, gen, err) }
	if err := persistence.CheckProjectionName(projection); err != nil {
		return fail(err)
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	key := s.keys.projectionMeta(projection)
	ctx, cancel := callCtx(ctx)
	defer cancel()
	if err := finishRetireScript.Run(ctx, s.client, []string{key}, strconv.FormatUint(gen, 10)).Err(); err != nil {
		return fail(classify(err, key))
	}
	return nil
}
