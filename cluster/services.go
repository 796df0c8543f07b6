package cluster

import (
	"context"
	"fmt"

	"slices"

	"github.com/asynkron/protoactor-go/actor"

	"granary/actors/service"
	"granary/cluster/balancer"
	"granary/messages"
)

// ServiceSource finds service instances through membership: every member
// advertising the service as a kind runs PerMember instances under
// well-known names (see StartServices), so instances come and go with
// members.
type ServiceSource struct {
	Member    *Member
	PerMember int
}

// Instances implements balancer.Source.
func (s ServiceSource) Instances(name string) []balancer.Instance {
	var out []balancer.Instance
	for _, m := range s.Member.Members() {
		if !slices.Contains(m.Kinds, name) {
			continue
		}
		for k := 1; k <= s.PerMember; k++ {
			actorName := service.InstanceName(name, k)
			out = append(out, balancer.Instance{ID: m.ID + "/" + actorName, MemberID: m.ID, PID: actor.NewPID(m.Address, actorName)})
		}
	}
	return out
}

// Services are this member's clients of the stateless services.
func (m *Member) Services() *balancer.Set { return m.services }

// StartServices spawns PerMember named instances of every service on m.
func startServices(m *Member, cfg GrainsConfig) error {
	for name, factory := range cfg.Services {
		h := factory(m)
		for k := 1; k <= cfg.PerMember; k++ {
			props := service.Props(name, m.ID(), k, h, cfg.Account.Logger)
			if _, err := m.System.Root.SpawnNamed(props, service.InstanceName(name, k)); err != nil {
				return fmt.Errorf("start %s instance %d: %w", name, k, err)
			}
		}
	}
	return nil
}

// serviceCalls lets grains call services by name without knowing the
// balancer (saga.Services).
type serviceCalls struct{ set *balancer.Set }

func (s serviceCalls) Call(ctx context.Context, service string, req *messages.ServiceRequest, idempotent bool) (*messages.ServiceReply, error) {
	c, err := s.set.Client(service)
	if err != nil {
		return nil, err
	}
	return c.Call(ctx, req, idempotent)
}
