package reminder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"granary/testkit/rediscluster"
)

// The store conformance suite on a real Redis Cluster (one started from
// redis-server, or GRANARY_REDIS_CLUSTER_URL): the schedule is one key
// under {reminders}, so the claim script never spans slots.
func TestClusterConformance(t *testing.T) {
	cl := rediscluster.Start(t)
	runConformance(t, func(t *testing.T) Store {
		c := cl.Client(t)
		var r [6]byte
		_, _ = rand.Read(r[:])
		prefix := "granarytest-reminder-" + hex.EncodeToString(r[:])
		s, err := NewRedis(c, prefix)
		if err != nil {
			t.Fatalf("NewRedis: %v", err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := rediscluster.DeleteKeys(ctx, c, prefix+":"); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
		return s
	})
}
