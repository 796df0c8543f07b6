package journaltest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"granary/persistence"
)

func snapshotCases() []suiteCase {
	return []suiteCase{
		{"SnapshotSaveLoad", 2, testSnapshotSaveLoad},
		{"SnapshotPlusTailEqualsReplay", 2, testSnapshotReplay},
		{"LoadStreamIsSnapshotThenTail", 2, testLoadStream},
	}
}

func mustLoad(t *testing.T, s persistence.Store, stream string) persistence.Snapshot {
	t.Helper()
	snap, ok, err := s.LoadSnapshot(ctx(t), stream)
	if err != nil || !ok {
		t.Fatalf("LoadSnapshot(%q): ok %v, err %v", stream, ok, err)
	}
	return snap
}

func mustSave(t *testing.T, s persistence.Store, stream string, version uint64, data string) {
	t.Helper()
	if err := s.SaveSnapshot(ctx(t), stream, persistence.Snapshot{Version: version, Data: []byte(data)}); err != nil {
		t.Fatalf("SaveSnapshot(%q, %d): %v", stream, version, err)
	}
}

func testSnapshotSaveLoad(t *testing.T, s persistence.Store) {
	const stream = "snap"
	mustAppend(t, s, stream, 0, batch(stream, 0, 6))

	buf := []byte("state@3")
	if err := s.SaveSnapshot(ctx(t), stream, persistence.Snapshot{Version: 3, Data: buf}); err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	buf[0] = 'X' // the caller reuses its buffer
	got := mustLoad(t, s, stream)
	if got.Version != 3 || string(got.Data) != "state@3" {
		t.Fatalf("loaded %d %q, want 3 %q", got.Version, got.Data, "state@3")
	}
	got.Data[0] = 'Y'
	if again := mustLoad(t, s, stream); string(again.Data) != "state@3" {
		t.Fatalf("stored snapshot changed through a returned one: %q", again.Data)
	}

	mustSave(t, s, stream, 2, "older")
	mustSave(t, s, stream, 3, "same version, other data")
	if got := mustLoad(t, s, stream); got.Version != 3 || string(got.Data) != "state@3" {
		t.Fatalf("older or equal snapshot replaced the stored one: %d %q", got.Version, got.Data)
	}
	mustSave(t, s, stream, 6, "state@6")
	if got := mustLoad(t, s, stream); got.Version != 6 || string(got.Data) != "state@6" {
		t.Fatalf("newer snapshot not stored: %d %q", got.Version, got.Data)
	}

	// A snapshot ahead of its stream would make a replay skip events.
	err := s.SaveSnapshot(ctx(t), stream, persistence.Snapshot{Version: 7, Data: []byte("future")})
	if !errors.Is(err, persistence.ErrInvalid) {
		t.Fatalf("snapshot ahead of the stream: err %v, want ErrInvalid", err)
	}
	if got := mustLoad(t, s, stream); got.Version != 6 {
		t.Fatalf("rejected snapshot stored: version %d", got.Version)
	}

	// Empty state is a valid snapshot; it reads back as nil data.
	mustAppend(t, s, "empty", 0, batch("empty", 0, 1))
	mustSave(t, s, "empty", 1, "")
	if got := mustLoad(t, s, "empty"); got.Version != 1 || got.Data != nil {
		t.Fatalf("empty snapshot loaded as %d %#v", got.Version, got.Data)
	}
	// Snapshots are per stream.
	if _, ok, err := s.LoadSnapshot(ctx(t), "snap2"); ok || err != nil {
		t.Fatalf("other stream has a snapshot: ok %v err %v", ok, err)
	}
}

// fold is a toy aggregate: the sum of the events' values and their count.
type fold struct{ sum, n uint64 }

func (f *fold) apply(t *testing.T, evs []persistence.Event) {
	t.Helper()
	for _, e := range evs {
		if e.Version != f.n+1 {
			t.Fatalf("fold at %d got version %d", f.n, e.Version)
		}
		f.sum += binary.BigEndian.Uint64(e.Data)
		f.n++
	}
}

func (f fold) encode() []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, f.sum), f.n)
}
func decodeFold(b []byte) fold {
	return fold{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}
}

func testSnapshotReplay(t *testing.T, s persistence.Store) {
	const stream = "account"
	var version uint64
	appendValues := func(vals ...uint64) {
		evs := make([]persistence.EventData, len(vals))
		for i, v := range vals {
			evs[i] = persistence.EventData{Type: "add", Data: binary.BigEndian.AppendUint64(nil, v)}
		}
		version = mustAppend(t, s, stream, version, evs).Version
	}
	for i := range 10 {
		appendValues(uint64(i*i), uint64(i+7), 3)
	}
	var live fold
	live.apply(t, mustReadStream(t, s, stream, 0, 0))
	if err := s.SaveSnapshot(ctx(t), stream, persistence.Snapshot{Version: live.n, Data: live.encode()}); err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	for i := range 7 {
		appendValues(uint64(1000 + i))
	}

	var full fold
	full.apply(t, mustReadStream(t, s, stream, 0, 0))

	snap := mustLoad(t, s, stream)
	restored := decodeFold(snap.Data)
	if restored.n != snap.Version {
		t.Fatalf("snapshot at version %d folds %d events", snap.Version, restored.n)
	}
	restored.apply(t, mustReadStream(t, s, stream, snap.Version, 0))
	if restored != full || full.n != version {
		t.Fatalf("snapshot+tail = %+v, full replay = %+v (version %d)", restored, full, version)
	}
}

// LoadStream (the store's own, or LoadSnapshot then ReadStream) answers
// exactly what those two calls would, for every limit, with and without a
// snapshot, for streams longer than any one reply.
func testLoadStream(t *testing.T, s persistence.Store) {
	mustAppend(t, s, "plain", 0, batch("plain", 0, 5))
	mustAppend(t, s, "snapped", 0, batch("snapped", 0, 9))
	mustSave(t, s, "snapped", 4, "state@4")
	mustAppend(t, s, "long", 0, batch("long", 0, 2500))
	mustSave(t, s, "long", 100, "state@100")
	mustAppend(t, s, "atsnap", 0, batch("atsnap", 0, 3))
	mustSave(t, s, "atsnap", 3, "state@3")
	versions := func(evs []persistence.Event) string {
		out := ""
		for _, e := range evs {
			out += fmt.Sprintf("%d:%s ", e.Version, e.Data)
		}
		return out
	}
	for _, stream := range []string{"plain", "snapped", "long", "atsnap", "none"} {
		for _, limit := range []int{0, 1, 3, 1000, 2399, 2400, 5000} {
			snap, ok, evs, err := persistence.LoadStream(ctx(t), s, stream, limit)
			if err != nil {
				t.Fatalf("LoadStream(%s, %d): %v", stream, limit, err)
			}
			wantSnap, wantOK, err := s.LoadSnapshot(ctx(t), stream)
			if err != nil {
				t.Fatal(err)
			}
			want := mustReadStream(t, s, stream, wantSnap.Version, limit)
			if ok != wantOK || snap.Version != wantSnap.Version || string(snap.Data) != string(wantSnap.Data) {
				t.Fatalf("LoadStream(%s, %d) snapshot %v %d %q, want %v %d %q", stream, limit, ok, snap.Version, snap.Data,
					wantOK, wantSnap.Version, wantSnap.Data)
			}
			if got, w := versions(evs), versions(want); got != w || len(evs) != len(want) {
				t.Fatalf("LoadStream(%s, %d): %d events, want %d (%.80s… vs %.80s…)", stream, limit, len(evs), len(want), got, w)
			}
			for i, e := range evs {
				w := want[i]
				if e.Stream != w.Stream || e.Version != w.Version || e.Partition != w.Partition || e.Position != w.Position ||
					e.Type != w.Type || string(e.Data) != string(w.Data) || !e.OccurredAt.Equal(w.OccurredAt) {
					t.Fatalf("LoadStream(%s, %d) event %d = %+v, want %+v", stream, limit, i, e, w)
				}
			}
		}
	}
	if _, _, _, err := persistence.LoadStream(ctx(t), s, "", 0); !errors.Is(err, persistence.ErrInvalid) {
		t.Fatalf("LoadStream of an empty name: %v, want ErrInvalid", err)
	}
}
