package journaltest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"granary/persistence"
)

func readModelCases() []suiteCase {
	return []suiteCase{
		{"ReadModelApplyAndRead", 2, testReadModelApply},
		{"ReadModelInvalid", 2, testReadModelInvalid},
		{"ReadModelCompareAndSet", 1, testReadModelCAS},
		{"ReadModelGenerations", 2, testReadModelGenerations},
		{"ReadModelDeleteBounded", 1, testReadModelDeleteBounded},
		{"ReadModelListDocs", 2, testReadModelListDocs},
		{"ReadModelListDocsRetired", 1, testReadModelListDocsRetired},
	}
}

func rmRef(gen uint64, p int) persistence.ReadModelRef {
	return persistence.ReadModelRef{Projection: "summary", Generation: gen, Partition: p}
}

func mustApply(t *testing.T, s persistence.Store, ref persistence.ReadModelRef, expected, next uint64, docs ...persistence.DocWrite) {
	t.Helper()
	if err := s.ApplyReadModel(ctx(t), ref, expected, next, docs); err != nil {
		t.Fatalf("ApplyReadModel(%s, %d, %d): %v", ref, expected, next, err)
	}
}

func mustCheckpoint(t *testing.T, s persistence.Store, ref persistence.ReadModelRef) uint64 {
	t.Helper()
	cp, err := s.Checkpoint(ctx(t), ref)
	if err != nil {
		t.Fatalf("Checkpoint(%s): %v", ref, err)
	}
	return cp
}

func mustDocs(t *testing.T, s persistence.Store, ref persistence.ReadModelRef, keys ...string) [][]byte {
	t.Helper()
	docs, err := s.ReadDocs(ctx(t), ref, keys)
	if err != nil {
		t.Fatalf("ReadDocs(%s, %q): %v", ref, keys, err)
	}
	if len(docs) != len(keys) {
		t.Fatalf("ReadDocs(%s, %d keys) returned %d documents", ref, len(keys), len(docs))
	}
	return docs
}

func mustMeta(t *testing.T, s persistence.Store, projection string) persistence.ProjectionMeta {
	t.Helper()
	m, err := s.ProjectionMeta(ctx(t), projection)
	if err != nil {
		t.Fatalf("ProjectionMeta(%s): %v", projection, err)
	}
	return m
}

func set(key, data string) persistence.DocWrite {
	return persistence.DocWrite{Key: key, Data: []byte(data)}
}

// wantDocs compares documents with want; "" in want means missing (nil),
// "<empty>" an empty document.
func wantDocs(t *testing.T, got [][]byte, want ...string) {
	t.Helper()
	for i, w := range want {
		switch {
		case w == "" && got[i] != nil:
			t.Fatalf("document %d is %q, want missing", i, got[i])
		case w == "<empty>" && (got[i] == nil || len(got[i]) != 0):
			t.Fatalf("document %d is %#v, want empty and present", i, got[i])
		case w != "" && w != "<empty>" && !bytes.Equal(got[i], []byte(w)):
			t.Fatalf("document %d is %q, want %q", i, got[i], w)
		}
	}
}

func testReadModelApply(t *testing.T, s persistence.Store) {
	ref := rmRef(1, 1)
	if cp := mustCheckpoint(t, s, ref); cp != 0 {
		t.Fatalf("fresh checkpoint %d, want 0", cp)
	}
	wantDocs(t, mustDocs(t, s, ref, "a"), "")
	if docs := mustDocs(t, s, ref); len(docs) != 0 {
		t.Fatalf("ReadDocs of no keys: %v", docs)
	}

	mustApply(t, s, ref, 0, 3, set("a", "A1"), set("b", "B1"))
	if cp := mustCheckpoint(t, s, ref); cp != 3 {
		t.Fatalf("checkpoint %d, want 3", cp)
	}
	wantDocs(t, mustDocs(t, s, ref, "a", "b", "c"), "A1", "B1", "")

	// A stale writer (expected 0) changes nothing, and learns the truth.
	err := s.ApplyReadModel(ctx(t), ref, 0, 7, []persistence.DocWrite{set("a", "stale"), set("c", "stale")})
	var conflict *persistence.CheckpointConflictError
	if !errors.As(err, &conflict) || !errors.Is(err, persistence.ErrCheckpointConflict) || errors.Is(err, persistence.ErrGenerationRetired) {
		t.Fatalf("stale apply: %v, want a *CheckpointConflictError", err)
	}
	if conflict.Expected != 0 || conflict.Actual != 3 || conflict.Ref != ref || conflict.Retired {
		t.Fatalf("conflict %+v, want expected 0 actual 3", conflict)
	}
	// A writer ahead of the checkpoint is refused as well.
	if err := s.ApplyReadModel(ctx(t), ref, 4, 7, nil); !errors.Is(err, persistence.ErrCheckpointConflict) {
		t.Fatalf("apply from 4 at checkpoint 3: %v, want conflict", err)
	}
	wantDocs(t, mustDocs(t, s, ref, "a", "c"), "A1", "")
	if cp := mustCheckpoint(t, s, ref); cp != 3 {
		t.Fatalf("checkpoint after refused applies %d, want 3", cp)
	}

	// Update, delete and an empty document in one batch.
	mustApply(t, s, ref, 3, 5, set("a", "A2"), persistence.DocWrite{Key: "b", Delete: true}, set("e", ""))
	wantDocs(t, mustDocs(t, s, ref, "a", "b", "e"), "A2", "", "<empty>")
	// Events that change no document still move the checkpoint.
	mustApply(t, s, ref, 5, 9)
	if cp := mustCheckpoint(t, s, ref); cp != 9 {
		t.Fatalf("checkpoint %d, want 9", cp)
	}

	// Partitions, generations and projections are separate.
	for _, other := range []persistence.ReadModelRef{rmRef(1, 0), rmRef(2, 1), {Projection: "other", Generation: 1, Partition: 1}} {
		if cp := mustCheckpoint(t, s, other); cp != 0 {
			t.Fatalf("checkpoint of %s is %d, want 0", other, cp)
		}
		wantDocs(t, mustDocs(t, s, other, "a"), "")
	}

	// Binary documents and keys survive.
	bin := string([]byte{0, 1, 2, 0xff, '\n'})
	mustApply(t, s, ref, 9, 10, set("k\x00ey", bin), set(strings.Repeat("k", persistence.MaxDocKey), "long key"))
	wantDocs(t, mustDocs(t, s, ref, "k\x00ey", strings.Repeat("k", persistence.MaxDocKey)), bin, "long key")

	// A full batch goes through in one call.
	full := make([]persistence.DocWrite, persistence.MaxDocBatch)
	keys := make([]string, len(full))
	for i := range full {
		keys[i] = "doc-" + strconv.Itoa(i)
		full[i] = set(keys[i], strconv.Itoa(i))
	}
	mustApply(t, s, ref, 10, 1010, full...)
	got := mustDocs(t, s, ref, keys...)
	for i := range keys {
		if string(got[i]) != strconv.Itoa(i) {
			t.Fatalf("document %s is %q", keys[i], got[i])
		}
	}
}

func testReadModelInvalid(t *testing.T, s persistence.Store) {
	good := rmRef(1, 0)
	tooMany := make([]string, persistence.MaxDocBatch+1)
	tooManyWrites := make([]persistence.DocWrite, persistence.MaxDocBatch+1)
	for i := range tooMany {
		tooMany[i] = strconv.Itoa(i)
		tooManyWrites[i] = set(tooMany[i], "x")
	}
	for name, call := range map[string]func() error{
		"empty name":      func() error { _, err := s.Checkpoint(ctx(t), named("")); return err },
		"upper case name": func() error { _, err := s.Checkpoint(ctx(t), named("Summary")); return err },
		"colon in name":   func() error { _, err := s.ReadDocs(ctx(t), named("a:b"), nil); return err },
		"brace in name": func() error {
			return s.ApplyReadModel(ctx(t), named("a{b}"), 0, 1, nil)
		},
		"long name":          func() error { _, err := s.ProjectionMeta(ctx(t), strings.Repeat("a", 65)); return err },
		"generation 0":       func() error { return s.ApplyReadModel(ctx(t), rmRef(0, 0), 0, 1, nil) },
		"partition too high": func() error { _, err := s.Checkpoint(ctx(t), rmRef(1, 2)); return err },
		"negative partition": func() error { _, err := s.ReadDocs(ctx(t), rmRef(1, -1), nil); return err },
		"next not above":     func() error { return s.ApplyReadModel(ctx(t), good, 3, 3, nil) },
		"empty key":          func() error { return s.ApplyReadModel(ctx(t), good, 0, 1, []persistence.DocWrite{set("", "x")}) },
		"key too long": func() error {
			return s.ApplyReadModel(ctx(t), good, 0, 1, []persistence.DocWrite{set(strings.Repeat("k", persistence.MaxDocKey+1), "x")})
		},
		"too many writes":  func() error { return s.ApplyReadModel(ctx(t), good, 0, 1, tooManyWrites) },
		"too many reads":   func() error { _, err := s.ReadDocs(ctx(t), good, tooMany); return err },
		"empty read key":   func() error { _, err := s.ReadDocs(ctx(t), good, []string{"a", ""}); return err },
		"delete limit 0":   func() error { _, err := s.DeleteGeneration(ctx(t), good, 0); return err },
		"delete limit big": func() error { _, err := s.DeleteGeneration(ctx(t), good, persistence.MaxDeleteBatch+1); return err },
		"swap generation 0": func() error {
			return s.SwapGeneration(ctx(t), "summary", 0, 2, time.Now())
		},
		"begin bad name":  func() error { _, _, err := s.BeginRebuild(ctx(t), "no/slash"); return err },
		"finish bad name": func() error { return s.FinishRetire(ctx(t), "", 1) },
	} {
		if err := call(); !errors.Is(err, persistence.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	// Nothing was written by the refused calls.
	if cp := mustCheckpoint(t, s, good); cp != 0 {
		t.Fatalf("checkpoint %d after invalid calls, want 0", cp)
	}
	if m := mustMeta(t, s, "summary"); m != (persistence.ProjectionMeta{Current: 1}) {
		t.Fatalf("meta %+v after invalid calls", m)
	}
}

// named is a ref of projection name, generation 1, partition 0.
func named(name string) persistence.ReadModelRef {
	return persistence.ReadModelRef{Projection: name, Generation: 1}
}

// testReadModelCAS runs several writers that each fold "+1" into one
// document the way a projection does (read checkpoint, read document,
// write both back at the checkpoint read). Every success must count once:
// the checkpoint and the document end equal to the number of successes.
func testReadModelCAS(t *testing.T, s persistence.Store) {
	const writers, rounds = 8, 25
	ref := rmRef(1, 0)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < rounds; {
				cp, err := s.Checkpoint(ctx(t), ref)
				if err != nil {
					errs <- err
					return
				}
				docs, err := s.ReadDocs(ctx(t), ref, []string{"n"})
				if err != nil {
					errs <- err
					return
				}
				n := 0
				if docs[0] != nil {
					if n, err = strconv.Atoi(string(docs[0])); err != nil {
						errs <- fmt.Errorf("writer %d: document %q: %w", w, docs[0], err)
						return
					}
				}
				err = s.ApplyReadModel(ctx(t), ref, cp, cp+1, []persistence.DocWrite{set("n", strconv.Itoa(n+1))})
				switch {
				case err == nil:
					done++
				case !errors.Is(err, persistence.ErrCheckpointConflict):
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if cp := mustCheckpoint(t, s, ref); cp != writers*rounds {
		t.Fatalf("checkpoint %d, want %d", cp, writers*rounds)
	}
	wantDocs(t, mustDocs(t, s, ref, "n"), strconv.Itoa(writers*rounds))
}

// testReadModelGenerations walks a projection through two rebuilds: the
// new generation is built beside the live one, swapped in atomically, and
// the old one is fenced and deleted.
func testReadModelGenerations(t *testing.T, s persistence.Store) {
	const name = "summary"
	if m := mustMeta(t, s, name); m != (persistence.ProjectionMeta{Current: 1}) {
		t.Fatalf("fresh meta %+v, want Current 1 only", m)
	}
	for p := range 2 {
		mustApply(t, s, rmRef(1, p), 0, 5, set("a", "live"), set("b", "live"), set("c", "live"))
	}

	m, started, err := s.BeginRebuild(ctx(t), name)
	if err != nil || !started || m != (persistence.ProjectionMeta{Current: 1, Next: 2}) {
		t.Fatalf("BeginRebuild = %+v, %v, %v; want Current 1 Next 2, started", m, started, err)
	}
	// A second request joins the running rebuild.
	if m, started, err := s.BeginRebuild(ctx(t), name); err != nil || started || m.Next != 2 {
		t.Fatalf("second BeginRebuild = %+v, %v, %v; want the running Next 2", m, started, err)
	}
	// Reads keep using generation 1 while 2 is built beside it.
	mustApply(t, s, rmRef(2, 0), 0, 5, set("a", "rebuilt"))
	mustApply(t, s, rmRef(2, 1), 0, 5, set("a", "rebuilt"))
	wantDocs(t, mustDocs(t, s, rmRef(mustMeta(t, s, name).Current, 0), "a"), "live")

	for _, bad := range [][2]uint64{{1, 3}, {2, 2}, {3, 2}} {
		if err := s.SwapGeneration(ctx(t), name, bad[0], bad[1], time.Now()); !errors.Is(err, persistence.ErrMetaConflict) {
			t.Fatalf("SwapGeneration(%d, %d): %v, want ErrMetaConflict", bad[0], bad[1], err)
		}
	}
	swappedAt := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	if err := s.SwapGeneration(ctx(t), name, 1, 2, swappedAt); err != nil {
		t.Fatalf("SwapGeneration(1, 2): %v", err)
	}
	m = mustMeta(t, s, name)
	if m.Current != 2 || m.Next != 0 || m.Retired != 1 || !m.RetiredAt.Equal(swappedAt.Truncate(time.Millisecond)) {
		t.Fatalf("meta after swap %+v, want Current 2, Retired 1 at %v", m, swappedAt.Truncate(time.Millisecond))
	}
	wantDocs(t, mustDocs(t, s, rmRef(m.Current, 0), "a"), "rebuilt")
	// Swapping again is a conflict, not a second swap.
	if err := s.SwapGeneration(ctx(t), name, 1, 2, swappedAt); !errors.Is(err, persistence.ErrMetaConflict) {
		t.Fatalf("repeated swap: %v, want ErrMetaConflict", err)
	}

	// A new rebuild never reuses a generation number, and cannot swap in
	// before the retired generation is gone.
	m, started, err = s.BeginRebuild(ctx(t), name)
	if err != nil || !started || m.Current != 2 || m.Next != 3 || m.Retired != 1 {
		t.Fatalf("BeginRebuild during retirement = %+v, %v, %v; want Next 3", m, started, err)
	}
	if err := s.SwapGeneration(ctx(t), name, 2, 3, time.Now()); !errors.Is(err, persistence.ErrMetaConflict) {
		t.Fatalf("swap while generation 1 is retired: %v, want ErrMetaConflict", err)
	}

	// Deleting fences first: a late writer of generation 1 is refused.
	for p := range 2 {
		for calls := 1; ; calls++ {
			done, err := s.DeleteGeneration(ctx(t), rmRef(1, p), 2)
			if err != nil {
				t.Fatalf("DeleteGeneration(%s): %v", rmRef(1, p), err)
			}
			if done {
				break
			}
			if calls > 3 {
				t.Fatalf("DeleteGeneration(%s, 2) not done after %d calls for 3 documents", rmRef(1, p), calls)
			}
		}
		wantDocs(t, mustDocs(t, s, rmRef(1, p), "a", "b", "c"), "", "", "")
		err := s.ApplyReadModel(ctx(t), rmRef(1, p), 5, 6, []persistence.DocWrite{set("a", "late")})
		var conflict *persistence.CheckpointConflictError
		if !errors.Is(err, persistence.ErrGenerationRetired) || !errors.Is(err, persistence.ErrCheckpointConflict) || !errors.As(err, &conflict) || !conflict.Retired {
			t.Fatalf("apply to retired %s: %v, want ErrGenerationRetired", rmRef(1, p), err)
		}
		if err := s.ApplyReadModel(ctx(t), rmRef(1, p), 0, 6, nil); !errors.Is(err, persistence.ErrGenerationRetired) {
			t.Fatalf("apply from 0 to retired %s: %v, want ErrGenerationRetired", rmRef(1, p), err)
		}
		if _, err := s.Checkpoint(ctx(t), rmRef(1, p)); !errors.Is(err, persistence.ErrGenerationRetired) {
			t.Fatalf("Checkpoint(retired %s): %v, want ErrGenerationRetired", rmRef(1, p), err)
		}
		wantDocs(t, mustDocs(t, s, rmRef(1, p), "a"), "")
		// Deleting a finished (or never written) generation is done at once.
		if done, err := s.DeleteGeneration(ctx(t), rmRef(1, p), 1); err != nil || !done {
			t.Fatalf("DeleteGeneration again: %v, %v", done, err)
		}
	}
	// The live generation is untouched.
	wantDocs(t, mustDocs(t, s, rmRef(2, 1), "a"), "rebuilt")

	// Only the retired generation's number clears it.
	if err := s.FinishRetire(ctx(t), name, 7); err != nil {
		t.Fatal(err)
	}
	if m := mustMeta(t, s, name); m.Retired != 1 {
		t.Fatalf("FinishRetire(7) changed the meta: %+v", m)
	}
	if err := s.FinishRetire(ctx(t), name, 1); err != nil {
		t.Fatal(err)
	}
	if m := mustMeta(t, s, name); m != (persistence.ProjectionMeta{Current: 2, Next: 3}) {
		t.Fatalf("meta after FinishRetire %+v, want Current 2 Next 3", m)
	}
	if err := s.SwapGeneration(ctx(t), name, 2, 3, swappedAt); err != nil {
		t.Fatalf("SwapGeneration(2, 3): %v", err)
	}
	if m, _, err := s.BeginRebuild(ctx(t), name); err != nil || m.Next != 4 {
		t.Fatalf("third rebuild: %+v, %v; want Next 4", m, err)
	}
	// Projections do not share generations.
	if m := mustMeta(t, s, "other"); m != (persistence.ProjectionMeta{Current: 1}) {
		t.Fatalf("meta of another projection %+v", m)
	}
}

// testReadModelDeleteBounded checks that one DeleteGeneration removes no
// more than its limit yet always makes progress.
func testReadModelDeleteBounded(t *testing.T, s persistence.Store) {
	ref := rmRef(1, 0)
	const n, limit = 250, 40
	docs := make([]persistence.DocWrite, n)
	keys := make([]string, n)
	for i := range docs {
		keys[i] = fmt.Sprintf("doc-%03d", i)
		docs[i] = set(keys[i], "x")
	}
	mustApply(t, s, ref, 0, 1, docs...)
	left := n
	for calls := 1; ; calls++ {
		done, err := s.DeleteGeneration(ctx(t), ref, limit)
		if err != nil {
			t.Fatalf("DeleteGeneration: %v", err)
		}
		now := 0
		for _, d := range mustDocs(t, s, ref, keys...) {
			if d != nil {
				now++
			}
		}
		if now < left-limit || now >= left {
			t.Fatalf("call %d: %d documents left after %d, want between %d and %d", calls, now, left, max(0, left-limit), left-1)
		}
		left = now
		if done != (left == 0) {
			t.Fatalf("call %d: done %v with %d documents left", calls, done, left)
		}
		if done {
			break
		}
	}
}

func mustList(t *testing.T, s persistence.Store, ref persistence.ReadModelRef, prefix, after string, limit int) ([]string, [][]byte) {
	t.Helper()
	keys, docs, err := s.ListDocs(ctx(t), ref, prefix, after, limit)
	if err != nil {
		t.Fatalf("ListDocs(%s, %q, %q, %d): %v", ref, prefix, after, limit, err)
	}
	if len(keys) != len(docs) {
		t.Fatalf("ListDocs(%s) returned %d keys and %d documents", ref, len(keys), len(docs))
	}
	return keys, docs
}

// listAll pages through ListDocs limit at a time, as a reader with a
// cursor does, and returns every key.
func listAll(t *testing.T, s persistence.Store, ref persistence.ReadModelRef, prefix string, limit int) []string {
	t.Helper()
	var all []string
	after := ""
	for calls := 0; ; calls++ {
		if calls > 100 {
			t.Fatalf("ListDocs(%s, %q) did not end after %d pages", ref, prefix, calls)
		}
		keys, _ := mustList(t, s, ref, prefix, after, limit)
		if len(keys) > limit {
			t.Fatalf("ListDocs limit %d returned %d keys", limit, len(keys))
		}
		all = append(all, keys...)
		if len(keys) < limit {
			return all
		}
		after = keys[len(keys)-1]
	}
}

func testReadModelListDocs(t *testing.T, s persistence.Store) {
	ref := rmRef(1, 1)
	if keys, _ := mustList(t, s, ref, "", "", 10); len(keys) != 0 {
		t.Fatalf("fresh read model lists %q", keys)
	}
	hi := "a\xff"
	mustApply(t, s, ref, 0, 1, set("b/2", "B2"), set("a/1", "A1"), set("b/1", "B1"), set("b", "B"),
		set("b/10", "B10"), set("c", "C"), set(hi, "HI"), set(hi+"\xff\x01", "HI2"), set("a", ""))
	// Another partition, generation and projection are not listed.
	mustApply(t, s, rmRef(1, 0), 0, 1, set("b/3", "other partition"))
	mustApply(t, s, rmRef(2, 1), 0, 1, set("b/4", "other generation"))
	mustApply(t, s, persistence.ReadModelRef{Projection: "other", Generation: 1, Partition: 1}, 0, 1, set("b/5", "other projection"))

	keys, docs := mustList(t, s, ref, "", "", 100)
	want := []string{"a", "a/1", hi, hi + "\xff\x01", "b", "b/1", "b/10", "b/2", "c"}
	if !slices.Equal(keys, want) {
		t.Fatalf("all keys %q, want %q in byte order", keys, want)
	}
	wantDocs(t, docs, "<empty>", "A1", "HI", "HI2", "B", "B1", "B10", "B2", "C")

	for _, c := range []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"b/", "", 100, []string{"b/1", "b/10", "b/2"}},
		{"b/", "", 2, []string{"b/1", "b/10"}},
		{"b/", "b/10", 2, []string{"b/2"}},
		{"b/", "b/2", 2, nil},
		{"b/", "a", 1, []string{"b/1"}}, // after below the prefix: from its start
		{"b/", "c", 10, nil},            // after beyond it: nothing
		{"b", "", 10, []string{"b", "b/1", "b/10", "b/2"}},
		{"b", "b", 10, []string{"b/1", "b/10", "b/2"}}, // strictly after
		{"a\xff", "", 10, []string{hi, hi + "\xff\x01"}},
		{"\xff", "", 10, nil},
		{"", "b/2", 10, []string{"c"}},
		{"", "c", 10, nil},
		{"z", "", 10, nil},
	} {
		keys, _ := mustList(t, s, ref, c.prefix, c.after, c.limit)
		if !slices.Equal(keys, c.want) {
			t.Errorf("ListDocs(%q, after %q, limit %d) = %q, want %q", c.prefix, c.after, c.limit, keys, c.want)
		}
	}
	if got := listAll(t, s, ref, "", 2); !slices.Equal(got, want) {
		t.Fatalf("paging by 2: %q, want %q", got, want)
	}

	// Updates keep one entry; deletes leave the list in the same batch.
	mustApply(t, s, ref, 1, 2, set("b/1", "B1'"), persistence.DocWrite{Key: "b/10", Delete: true},
		persistence.DocWrite{Key: "never", Delete: true})
	keys, docs = mustList(t, s, ref, "b/", "", 10)
	if !slices.Equal(keys, []string{"b/1", "b/2"}) {
		t.Fatalf("after update and delete: %q", keys)
	}
	wantDocs(t, docs, "B1'", "B2")

	// Many documents page exactly once each.
	many := make([]persistence.DocWrite, 300)
	for i := range many {
		many[i] = set(fmt.Sprintf("m/%04d", i), "x")
	}
	mustApply(t, s, ref, 2, 3, many...)
	got := listAll(t, s, ref, "m/", 7)
	if len(got) != len(many) {
		t.Fatalf("paged %d keys of %d", len(got), len(many))
	}
	for i, k := range got {
		if k != many[i].Key {
			t.Fatalf("key %d is %q, want %q", i, k, many[i].Key)
		}
	}

	for name, call := range map[string]func() error{
		"limit 0":   func() error { _, _, err := s.ListDocs(ctx(t), ref, "", "", 0); return err },
		"limit big": func() error { _, _, err := s.ListDocs(ctx(t), ref, "", "", persistence.MaxDocBatch+1); return err },
		"long prefix": func() error {
			_, _, err := s.ListDocs(ctx(t), ref, strings.Repeat("p", persistence.MaxDocKey+1), "", 1)
			return err
		},
		"long after": func() error {
			_, _, err := s.ListDocs(ctx(t), ref, "", strings.Repeat("p", persistence.MaxDocKey+1), 1)
			return err
		},
		"bad ref": func() error { _, _, err := s.ListDocs(ctx(t), rmRef(1, 2), "", "", 1); return err },
	} {
		if err := call(); !errors.Is(err, persistence.ErrInvalid) {
			t.Errorf("ListDocs %s: %v, want ErrInvalid", name, err)
		}
	}
}

// testReadModelListDocsRetired: deleting a generation takes its documents
// off the list too.
func testReadModelListDocsRetired(t *testing.T, s persistence.Store) {
	ref := rmRef(1, 0)
	docs := make([]persistence.DocWrite, 30)
	for i := range docs {
		docs[i] = set(fmt.Sprintf("d%02d", i), "x")
	}
	mustApply(t, s, ref, 0, 1, docs...)
	if got := listAll(t, s, ref, "d", 50); len(got) != len(docs) {
		t.Fatalf("listed %d of %d", len(got), len(docs))
	}
	done, err := s.DeleteGeneration(ctx(t), ref, 10)
	if err != nil || done {
		t.Fatalf("first DeleteGeneration: %v, %v", done, err)
	}
	if got := listAll(t, s, ref, "", 50); len(got) != len(docs)-10 {
		t.Fatalf("after deleting 10: %d listed, want %d", len(got), len(docs)-10)
	}
	for !done {
		if done, err = s.DeleteGeneration(ctx(t), ref, 10); err != nil {
			t.Fatal(err)
		}
	}
	if keys, _ := mustList(t, s, ref, "", "", 50); len(keys) != 0 {
		t.Fatalf("retired and deleted generation lists %q", keys)
	}
}
