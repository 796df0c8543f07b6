package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"granary/actors/counter"
	"granary/cluster"
	"granary/messages"
	"granary/testkit"
)

// Issue 9: a member that called a grain hosted elsewhere kept its PID in
// Proto.Actor's PID cache after the grain passivated, one entry per
// distinct identity for as long as the member lived. The hosting member
// broadcasts ActivationTerminated; callers drop the entry on it.
func TestPIDCacheForgetsGrainsPassivatedOnAnotherMember(t *testing.T) {
	c := testkit.NewCluster(t, 2)
	caller := c.Member(0)
	var remote []string
	for i := 0; len(remote) < 20 && i < 400; i++ {
		name := fmt.Sprintf("pidcache-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// A read of a counter nobody wrote: its grain passivates at once.
		r, err := cluster.CallAs[*messages.CounterReply](ctx, caller, counter.Kind, name,
			&messages.CounterRequest{Command: &messages.CounterRequest_Get{Get: &messages.GetCounter{}}})
		cancel()
		if err != nil || r.GetFailure() != nil {
			t.Fatalf("get %s: %v %v", name, r, err)
		}
		if r.GetServedBy() != caller.ID() {
			remote = append(remote, name)
		}
	}
	if len(remote) == 0 {
		t.Fatal("no counter was placed on the other member")
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		for _, name := range remote {
			if pid, ok := caller.Cluster.PidCache.Get(name, counter.Kind); ok {
				return fmt.Errorf("%s (passivated on the other member) still cached as %s", name, pid)
			}
		}
		return nil
	})
}
