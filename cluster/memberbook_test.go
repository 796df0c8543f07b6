package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"granary/cluster"
	"granary/testkit"
)

// TestKilledMemberIsSuspectedThenDead: a crashed member is not forgotten.
// While still listed its broken link makes it "suspected"; once dropped it
// is among the departed, "dead", with the time it left.
func TestKilledMemberIsSuspectedThenDead(t *testing.T) {
	c := testkit.NewCluster(t, 2) // skipped under -race (see testkit)
	self, victim := c.Member(0), c.Member(1).ID()
	before := time.Now()
	c.Kill(1)
	seen := map[string]bool{}
	testkit.WaitFor(t, 30*time.Second, func() error {
		for _, m := range self.Members() {
			if m.ID == victim {
				seen[m.Status] = true
				return fmt.Errorf("still listed as %q", m.Status)
			}
		}
		return nil
	})
	t.Logf("listed as %v before it was dropped", seen)
	gone := self.Departed()
	if len(gone) != 1 || gone[0].ID != victim || gone[0].Status != cluster.StatusDead || gone[0].LeftAt.Before(before) {
		t.Fatalf("departed: %+v", gone)
	}
	if ms := self.Members(); len(ms) != 1 || ms[0].ID != self.ID() {
		t.Fatalf("members after the kill: %+v", ms)
	}
}
