package redispipe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"granary/testkit/rediscluster"
)

// On a Redis Cluster one pipeline of a shard may hold calls for several
// masters: go-redis's ClusterClient splits it by node, and after NOSCRIPT
// ScriptLoad loads the script on every master, so the calls sent again
// succeed whichever master they go to.
func TestClusterPipelinesSpanMasters(t *testing.T) {
	cl := rediscluster.Start(t)
	srv := server{"cluster", func(tb testing.TB) (goredis.UniversalClient, string) {
		c := cl.Client(tb)
		var r [6]byte
		_, _ = rand.Read(r[:])
		prefix := "redispipetest-" + hex.EncodeToString(r[:])
		tb.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := rediscluster.DeleteKeys(ctx, c, prefix+":"); err != nil {
				tb.Errorf("cleanup: %v", err)
			}
		})
		return c, prefix
	}}
	f := newFixture(t, srv, Options{Shards: 1})
	cc := f.client.(*goredis.ClusterClient)
	// These tags hash into the first, second and last third of the slots:
	// one per master of a started cluster.
	streams := []string{"{p3}:a", "{p2}:a", "{p0}:a", "{p3}:b", "{p2}:b", "{p0}:b"}

	// round sends one held call, then one call per stream in a single
	// batch, each appending tag want+1 at length want.
	round := func(want int) {
		t.Helper()
		gt := holdFirstBatch(f)
		held := f.pushAsync(t.Context(), "{p3}:held", want, want+1)
		recv(t, gt.entered, "first batch")
		var replies []<-chan result
		for i, s := range streams {
			replies = append(replies, f.pushAsync(t.Context(), s, want, want+1))
			f.queued(t, i+1)
		}
		close(gt.release)
		if r := recv(t, held, "held reply"); r.err != nil {
			t.Fatalf("held call: %v", r.err)
		}
		for i, ch := range replies {
			r := recv(t, ch, "reply")
			if r.err != nil || !slices.Equal(r.val, []int64{1, int64(want + 1), int64(want + 1)}) {
				t.Fatalf("call on %s: %v, %v", streams[i], r.val, r.err)
			}
		}
		if b := gt.batches(); len(b) < 2 || b[len(b)-1] != len(streams) {
			t.Fatalf("batch sizes %v, want the streams' %d calls in one batch", b, len(streams))
		}
	}
	round(0)
	if st := f.Stats(); st != (Stats{Pipelines: 3, Calls: 7}) {
		t.Fatalf("stats %+v; want 3 pipelines (NOSCRIPT, again, the batch), 7 calls", st)
	}
	if err := f.client.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH on every master: %v", err)
	}
	round(1)
	if st := f.Stats(); st != (Stats{Pipelines: 6, Calls: 14}) {
		t.Fatalf("stats %+v; want 6 pipelines after the flush, 14 calls", st)
	}
	for _, s := range append(streams, "{p3}:held") {
		if got := f.list(t, s); !slices.Equal(got, []int{1, 2}) {
			t.Fatalf("%s = %v, want [1 2]", s, got)
		}
	}
	counts, err := rediscluster.KeysPerMaster(t.Context(), cc, f.prefix+":*")
	if err != nil {
		t.Fatal(err)
	}
	for addr, n := range counts {
		if cl.Started && n == 0 {
			t.Errorf("master %s got none of the calls (keys per master %v)", addr, counts)
		}
	}
}
