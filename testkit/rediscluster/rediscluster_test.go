package rediscluster

import (
	"context"
	"testing"
	"time"

	"granary/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// The started cluster serves a key of every master's slots, and the
// helpers see each key on the master that owns it.
func TestStartServesEverySlot(t *testing.T) {
	c := Start(t)
	client := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const prefix = "rediscluster-test:"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := DeleteKeys(ctx, client, prefix); err != nil {
			t.Errorf("DeleteKeys: %v", err)
		}
	})
	// Tags chosen so that one falls in each third of the slots.
	for _, tag := range []string{"{p3}", "{p2}", "{p0}"} {
		if err := client.Set(ctx, prefix+tag, "x", time.Minute).Err(); err != nil {
			t.Fatalf("SET %s: %v", tag, err)
		}
	}
	counts, err := KeysPerMaster(ctx, client, prefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	if c.Started && len(counts) != Masters {
		t.Fatalf("counted %d masters, want %d: %v", len(counts), Masters, counts)
	}
	total := 0
	for addr, n := range counts {
		total += n
		if c.Started && n != 1 {
			t.Errorf("master %s holds %d test keys, want 1 (counts %v)", addr, n, counts)
		}
	}
	if total != 3 {
		t.Errorf("found %d test keys over the masters, want 3: %v", total, counts)
	}
	if err := DeleteKeys(ctx, client, prefix); err != nil {
		t.Fatal(err)
	}
	if counts, err = KeysPerMaster(ctx, client, prefix+"*"); err != nil {
		t.Fatal(err)
	}
	for addr, n := range counts {
		if n != 0 {
			t.Errorf("after DeleteKeys master %s still holds %d keys", addr, n)
		}
	}
}

// A replica takes over the slots of its master killed with SIGKILL within
// a few node timeouts, and the data written before the kill (and
// replicated, as WAIT confirms) is served by it.
func TestReplicaTakesOverKilledMaster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six redis-servers")
	}
	c := StartWithReplicas(t)
	client := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const key = "rediscluster-test:{p0}:x"
	if err := client.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	slot, err := SlotOf(ctx, client, key)
	if err != nil {
		t.Fatal(err)
	}
	master, err := MasterFor(ctx, client, slot)
	if err != nil {
		t.Fatal(err)
	}
	node, err := client.MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := node.Wait(ctx, 1, 5000).Result(); err != nil || n < 1 {
		t.Fatalf("WAIT 1: %d replicas, %v", n, err)
	}
	killed := time.Now()
	if err := c.Kill(master); err != nil {
		t.Fatal(err)
	}
	for {
		now, err := MasterFor(ctx, client, slot)
		if err == nil && now != master {
			t.Logf("slot %d moved from %s to %s in %v", slot, master, now, time.Since(killed))
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("slot %d still on %s (%v)", slot, now, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with the ctx deadline
	}
	for {
		v, err := client.Get(ctx, key).Result()
		if err == nil {
			if v != "v" {
				t.Fatalf("GET after failover: %q", v)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("GET after failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
