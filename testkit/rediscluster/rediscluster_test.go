package rediscluster

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
