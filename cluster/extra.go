package cluster

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"granary/actors/account"
	"granary/actors/counter"
	"granary/actors/countergroup"
	"granary/actors/es"
	"granary/actors/inventory"
	"granary/actors/payment"
	"granary/actors/projection"
	"granary/actors/registry"
	"granary/actors/saga"
	"granary/actors/user"
)

// ExtraKind is a grain kind of the user's that every member hosts next to
// Granary's own (GrainsConfig.Extra). Its grains get the same mailbox and
// the same release of passivated grains as the built-in kinds.
//
// Every member of a cluster must list the same extra kinds: the cluster
// places an identity on any member that advertises its kind. Requests and
// replies that may cross members must be protobuf messages (Proto.Actor
// serializes them); see examples/wallet.
type ExtraKind struct {
	// Name is the kind callers pass to Member.Call. It must not be one of
	// Granary's kinds or services.
	Name string
	// Props builds the kind's props once per member. grain is the storage
	// configuration the built-in grains use (store, timeouts, snapshot
	// interval, logger, clock), stamped with m's id; m lets a grain call
	// other grains (m.Call) and services (m.Services()). No call may
	// happen inside Props itself: the member is not started yet.
	Props func(m *Member, grain es.GrainConfig) *actor.Props
}

// builtinKinds are the kind names kinds() registers besides the services;
// an extra kind by one of these names would replace Granary's own.
var builtinKinds = []string{
	account.Kind, counter.Kind, countergroup.Kind, user.Kind, inventory.Kind, payment.Kind, projection.Kind,
	saga.OrderKind, saga.TransferKind, registry.InstanceKind, registry.RouteKind,
}

// validateExtra names the first extra kind that cannot be registered.
func (c GrainsConfig) validateExtra() error {
	seen := make(map[string]bool, len(c.Extra))
	for i, k := range c.Extra {
		switch {
		case k.Name == "":
			return fmt.Errorf("extra kinds: kind %d has no Name", i)
		case k.Props == nil:
			return fmt.Errorf("extra kinds: %s has no Props", k.Name)
		case seen[k.Name]:
			return fmt.Errorf("extra kinds: %s is listed twice", k.Name)
		case isService(c, k.Name):
			return fmt.Errorf("extra kinds: %s is the name of a service", k.Name)
		}
		for _, b := range builtinKinds {
			if k.Name == b {
				return fmt.Errorf("extra kinds: %s is a built-in kind", k.Name)
			}
		}
		seen[k.Name] = true
	}
	return nil
}

func isService(c GrainsConfig, name string) bool {
	_, ok := c.Services[name]
	return ok
}

// extraKinds builds the extra kinds of member m.
func extraKinds(m *Member, cfg GrainsConfig) []*pcluster.Kind {
	out := make([]*pcluster.Kind, 0, len(cfg.Extra))
	for _, k := range cfg.Extra {
		out = append(out, pcluster.NewKind(k.Name, k.Props(m, cfg.grainConfig(m.ID()))))
	}
	return out
}
