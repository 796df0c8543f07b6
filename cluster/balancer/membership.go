package balancer

import (
	"slices"

	"github.com/asynkron/protoactor-go/actor"

	"granary/actors/service"
	"granary/cluster"
)

// MembershipSource finds instances through cluster membership: every member
// advertising the service as a kind runs PerMember instances under
// well-known names (see cluster.StartServices).
type MembershipSource struct {
	Member    *cluster.Member
	PerMember int
}

// Instances implements Source.
func (s MembershipSource) Instances(name string) []Instance {
	var out []Instance
	for _, m := range s.Member.Members() {
		if !slices.Contains(m.Kinds, name) {
			continue
		}
		for k := 1; k <= s.PerMember; k++ {
			actorName := service.InstanceName(name, k)
			out = append(out, Instance{ID: m.ID + "/" + actorName, MemberID: m.ID, PID: actor.NewPID(m.Address, actorName)})
		}
	}
	return out
}
