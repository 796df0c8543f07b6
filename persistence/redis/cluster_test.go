package redis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"granary/persistence"
	"granary/persistence/journaltest"
	"granary/testkit/rediscluster"
)

func TestIsClusterURL(t *testing.T) {
	for url, want := range map[string]bool{
		"redis://h1:1?addr=h2:2&addr=h3:3":   true,
		"rediss://u:pw@h1:1?addr=h2:2":       true,
		"redis://h1:1/0?addr=h2:2":           true,
		"redis://h1:1/0":                     false,
		"redis://h1:1?dial_timeout=2s":       false,
		"memory://x?addr=h2:2":               false,
		"redis://%zz?addr=h2:2":              false,
		"redis+sentinel://h1:1?addr=h2:2&x=": false,
	} {
		if got := IsClusterURL(url); got != want {
			t.Errorf("IsClusterURL(%q) = %v, want %v", url, got, want)
		}
	}
}

// Both forms get the default timeouts and honour their callers' deadlines.
func TestNewClientPicksTheClient(t *testing.T) {
	c, err := NewClient("redis://127.0.0.1:1?addr=127.0.0.1:2&read_timeout=7s")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc, ok := c.(*goredis.ClusterClient)
	if !ok {
		t.Fatalf("cluster URL gave a %T, want *goredis.ClusterClient", c)
	}
	o := cc.Options()
	if len(o.Addrs) != 2 || o.DialTimeout != DefaultDialTimeout || o.ReadTimeout != 7*time.Second ||
		o.WriteTimeout != DefaultIOTimeout || !o.ContextTimeoutEnabled {
		t.Fatalf("cluster options: addrs %v dial %v read %v write %v ctx %v", o.Addrs, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.ContextTimeoutEnabled)
	}

	c, err = NewClient("redis://127.0.0.1:1/2")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, ok := c.(*goredis.Client)
	if !ok {
		t.Fatalf("single-server URL gave a %T, want *goredis.Client", c)
	}
	so := sc.Options()
	if so.DB != 2 || so.DialTimeout != DefaultDialTimeout || so.ReadTimeout != DefaultIOTimeout || !so.ContextTimeoutEnabled {
		t.Fatalf("single-server options: db %d dial %v read %v ctx %v", so.DB, so.DialTimeout, so.ReadTimeout, so.ContextTimeoutEnabled)
	}
}

func TestNewClientRefusesBadClusterURLs(t *testing.T) {
	for name, url := range map[string]string{
		"database":      "redis://:secret@127.0.0.1:1/3?addr=127.0.0.1:2",
		"bad addr":      "redis://:secret@127.0.0.1:1?addr=nohostport",
		"unknown param": "redis://:secret@127.0.0.1:1?addr=127.0.0.1:2&db=1",
	} {
		c, err := NewClient(url)
		if err == nil {
			c.Close()
			t.Errorf("%s: NewClient succeeded", name)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error leaks the password: %v", name, err)
		}
	}
}

// clusterStore returns a store on cl under a key prefix of its own, whose
// keys are deleted (from every master) with tb.
func clusterStore(tb testing.TB, cl *rediscluster.Cluster, partitions int) (*Store, *goredis.ClusterClient, string) {
	client := cl.Client(tb)
	prefix := uniquePrefix(tb)
	s, err := New(client, Options{Partitions: partitions, KeyPrefix: prefix})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() {
		_ = s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rediscluster.DeleteKeys(ctx, client, prefix+":"); err != nil {
			tb.Errorf("cleanup: %v", err)
		}
	})
	return s, client, prefix
}

// The whole conformance suite on a real Redis Cluster: any script or
// MULTI whose keys span slots fails there with CROSSSLOT.
func TestClusterConformance(t *testing.T) {
	cl := rediscluster.Start(t)
	journaltest.Run(t, func(t *testing.T, partitions int) persistence.Store {
		s, _, _ := clusterStore(t, cl, partitions)
		return s
	})
}

// A store opened from the cluster URL with 16 partitions writes every
// partition, each on one slot, and so puts data on every master; appends
// keep working after the masters' script caches are flushed.
func TestClusterSpreadsPartitions(t *testing.T) {
	const partitions, streams = 16, 160
	cl := rediscluster.Start(t)
	probe := cl.Client(t)
	prefix := uniquePrefix(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rediscluster.DeleteKeys(ctx, probe, prefix+":"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	ps, err := Open(ctx, persistence.BackendConfig{URL: cl.URL, Partitions: partitions, KeyPrefix: prefix})
	if err != nil {
		t.Fatalf("Open(cluster URL): %v", err)
	}
	defer ps.Close()
	s := ps.(*Store)
	if _, ok := s.client.(*goredis.ClusterClient); !ok {
		t.Fatalf("Open gave a %T client, want *goredis.ClusterClient", s.client)
	}

	appendAll := func(round uint64) {
		t.Helper()
		for i := range streams {
			stream := fmt.Sprintf("acct-%d", i)
			res, err := s.Append(ctx, stream, round, []persistence.EventData{{Type: "t", Data: []byte(stream)}},
				persistence.ForCommands(persistence.CommandFence{ID: fmt.Sprintf("c%d-%d", i, round), Through: 1}))
			if err != nil {
				t.Fatalf("round %d: Append %s: %v", round, stream, err)
			}
			if res.Version != round+1 {
				t.Fatalf("round %d: Append %s: version %d", round, stream, res.Version)
			}
			if err := s.SaveSnapshot(ctx, stream, persistence.Snapshot{Version: res.Version, Data: []byte("snap")}); err != nil {
				t.Fatalf("round %d: SaveSnapshot %s: %v", round, stream, err)
			}
		}
	}
	appendAll(0)
	// A flushed cache (a restarted or failed-over master) answers
	// NOSCRIPT; the pipeliner loads the script on every master and resends.
	if err := probe.ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	before := s.pipe.Stats()
	appendAll(1)
	// One call at least went twice: NOSCRIPT, then again after the load.
	if after := s.pipe.Stats(); after.Pipelines-before.Pipelines <= after.Calls-before.Calls {
		t.Errorf("after SCRIPT FLUSH: %d pipelines for %d calls, want a resend", after.Pipelines-before.Pipelines, after.Calls-before.Calls)
	}

	var total uint64
	for p := range partitions {
		head, err := s.Head(ctx, p)
		if err != nil {
			t.Fatalf("Head(%d): %v", p, err)
		}
		if head == 0 {
			t.Errorf("partition %d holds no events; %d streams should reach all %d", p, streams, partitions)
		}
		evs, err := s.ReadPartition(ctx, p, 0, int(head)+1)
		if err != nil || uint64(len(evs)) != head {
			t.Fatalf("ReadPartition(%d) = %d events, %v; want %d", p, len(evs), err, head)
		}
		total += head
	}
	if total != 2*streams {
		t.Fatalf("partitions hold %d events, want %d", total, 2*streams)
	}
	for i := range streams {
		stream := fmt.Sprintf("acct-%d", i)
		evs, err := s.ReadStream(ctx, stream, 0, 10)
		if err != nil || len(evs) != 2 {
			t.Fatalf("ReadStream(%s) = %d events, %v; want 2", stream, len(evs), err)
		}
	}

	// Every key of a partition hashes to the partition's slot.
	p := s.PartitionOf("acct-0")
	want, err := probe.ClusterKeySlot(ctx, s.keys.head(p)).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{s.keys.events(p), s.keys.stream(p, "acct-0"), s.keys.snapshot(p, "acct-0"),
		s.keys.declined(p, "acct-0", "c0-0"), s.keys.applied(p, "acct-0", "c0-0")} {
		if slot, err := probe.ClusterKeySlot(ctx, k).Result(); err != nil || slot != want {
			t.Errorf("CLUSTER KEYSLOT %s = %d, %v; want %d (the partition's)", k, slot, err, want)
		}
	}

	counts, err := rediscluster.KeysPerMaster(ctx, probe, prefix+":{p*")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("partition keys per master: %v", counts)
	if cl.Started && len(counts) != rediscluster.Masters {
		t.Fatalf("keys counted on %d masters, want %d", len(counts), rediscluster.Masters)
	}
	for addr, n := range counts {
		if n == 0 {
			t.Errorf("master %s holds no partition keys: 16 partitions should reach every master", addr)
		}
	}
}
