package cluster_test

import (
	"testing"
	"time"

	"granary/testkit"
)

// A member that leaves gracefully deregisters before it winds down, so the
// others route its grains elsewhere at once: its accounts are served by the
// others straight away, every deposit is acknowledged exactly once, and the
// clients see no error at all (cluster.Call's own re-sends suffice; the
// clients would re-send with the same command id if they had to).
func TestGracefulLeaveHandsOver(t *testing.T) {
	c := testkit.NewCluster(t, 3)
	leaver := c.Member(1).ID()
	accounts := openUntilHosted(t, c.Member(0), "LEAVE", leaver, 3, 9)
	load := startWorkload(t, accounts, c.Member(0), c.Member(2))
	load.waitAcked(t, 200)

	leftAt := time.Now()
	c.Leave(1) // returns once the member has wound down (about 2s)
	took := time.Since(leftAt)
	moved := load.waitMoved(t, leaver, leftAt, 5*time.Second)
	t.Logf("handover: the leaver's accounts answered from the others within %v; Leave took %v",
		moved.Round(time.Millisecond), took.Round(time.Millisecond))
	c.WaitForMembers(2, 5*time.Second)
	load.waitAcked(t, load.acked()+100) // and the clients carry on

	if resends := load.finish(t, c, c.Member(0)); resends != 0 {
		t.Errorf("clients had to re-send %d deposits: a graceful leave should cost them nothing", resends)
	}
}
