package cluster_test

import (
	"slices"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"granary/testkit"
)

// failoverDeadline bounds how long a crashed member's grains stay
// unreachable in process: the registry drops it after testkit's
// RegistryTTL, and a call whose identity lookup went to the dead owner just
// before can wait out Proto.Actor's fixed 5s activation-request timeout
// (placement.Get) before it is re-sent; plus slack for a busy CI.
const failoverDeadline = testkit.DefaultRegistryTTL + 5*time.Second + 3*time.Second

// Issue 3 in process: member 1 of 3 crashes (Kill: no handover) while
// clients deposit through members 0 and 2. The others drop it, its accounts
// are activated again on them from the journal, no acknowledged deposit is
// lost or applied twice, and balances equal the acknowledged sums. A new
// member then joins in its place and new grains land on it.
func TestFailoverAfterKill(t *testing.T) {
	c := testkit.NewCluster(t, 3)
	victim := c.Member(1).ID()
	accounts := openUntilHosted(t, c.Member(0), "KILL", victim, 3, 9)
	load := startWorkload(t, accounts, c.Member(0), c.Member(2))
	load.waitAcked(t, 200)

	// A probe on member 0 records the topology changes it publishes: the
	// one where the victim left is when the cluster noticed the crash.
	topology := c.NewProbe(0)
	topology.Subscribe(func(evt any) bool { _, ok := evt.(*pcluster.ClusterTopology); return ok })

	killedAt := time.Now()
	c.Kill(1)
	testkit.ExpectMatch(t, topology, failoverDeadline, func(tp *pcluster.ClusterTopology) bool {
		return slices.ContainsFunc(tp.GetLeft(), func(m *pcluster.Member) bool { return m.GetId() == victim })
	})
	detected := time.Since(killedAt)
	failover := load.waitMoved(t, victim, killedAt, failoverDeadline)
	t.Logf("failover: member 0 dropped the killed member after %v; all its accounts answered from the survivors within %v of the kill",
		detected.Round(time.Millisecond), failover.Round(time.Millisecond))

	// A restarted process is a new member: once everyone sees it, new
	// grains land on it.
	fresh := c.AddMember()
	c.WaitForMembers(3, 15*time.Second)
	openUntilHosted(t, c.Member(2), "REJOIN", fresh.ID(), 1, 1)

	load.finish(t, c, c.Member(0))
}
