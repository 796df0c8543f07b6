package reminder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"granary/testkit/rediscluster"
)

// The store conformance suite on a real Redis Cluster (one started from
// redis-server, or GRANARY_REDIS_CLUSTER_URL), with the schedule in one set
// and in 16 (one hash tag each, so no script spans slots, and the
// partitions spread over the masters).
func TestClusterConformance(t *testing.T) {
	cl := rediscluster.Start(t)
	for _, partitions := range []int{1, 16} {
		t.Run(fmt.Sprintf("partitions=%d", partitions), func(t *testing.T) { clusterConformance(t, cl, partitions) })
	}
}

func clusterConformance(t *testing.T, cl *rediscluster.Cluster, partitions int) {
	runConformance(t, func(t *testing.T) Store {
		c := cl.Client(t)
		var r [6]byte
		_, _ = rand.Read(r[:])
		prefix := "granarytest-reminder-" + hex.EncodeToString(r[:])
		s, err := NewRedisPartitioned(c, prefix, partitions)
		if err != nil {
			t.Fatalf("NewRedisPartitioned: %v", err)
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
