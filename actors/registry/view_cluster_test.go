package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"granary/testkit/rediscluster"
)

// The view suite on a real Redis Cluster (one started from redis-server,
// or GRANARY_REDIS_CLUSTER_URL): every key of the view, and every key of
// its scripts and its Load pipeline, is under {registry}, one slot.
func TestViewConformanceCluster(t *testing.T) {
	cl := rediscluster.Start(t)
	runViewSuite(t, func(t *testing.T) View {
		c := cl.Client(t)
		var r [6]byte
		_, _ = rand.Read(r[:])
		prefix := "granarytest-registry-" + hex.EncodeToString(r[:])
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := rediscluster.DeleteKeys(ctx, c, prefix+":"); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
		return NewRedisView(c, prefix)
	})
}
