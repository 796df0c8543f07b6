package cluster

import (
	"fmt"
	"maps"
	"slices"
	"time"

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
	"granary/actors/service"
	"granary/actors/user"
	"granary/cluster/balancer"
)

// ServiceFactory builds a service's handler for one member; call lets the
// handler reach grains (payments records payments in payment grains).
type ServiceFactory func(call service.Caller) service.Handler

// GrainsConfig configures every grain kind and service a member hosts.
// Counters, users and sagas share the accounts' storage settings.
type GrainsConfig struct {
	Account account.GrainConfig
	// A counter-group child may restart MaxRestarts times within
	// RestartWindow before its supervisor stops it.
	Supervision struct {
		MaxRestarts   int
		RestartWindow time.Duration
	}
	// Services are the stateless services every member runs, PerMember
	// instances each; Clients configures how this member calls them.
	Services  map[string]ServiceFactory
	PerMember int
	Clients   map[string]balancer.Config
	// Sagas: how long a saga tries before it compensates, how long one
	// step attempt and one drive may take, and how often every member
	// sweeps for unfinished sagas (0 turns the sweep off).
	Saga struct {
		Deadline, StepTimeout, MaxDrive time.Duration
		SweepInterval, SweepGrace       time.Duration
	}
	// PaymentLimit is the largest charge the payments service accepts.
	PaymentLimit int64
	// Projection tunes the read-model projections (one grain each per
	// cluster) and the keep-alive pings every member sends them.
	Projection projection.Settings
	// Registry configures the registry of services outside Granary.
	Registry RegistryConfig
	// Extra are the user's own grain kinds (see ExtraKind).
	Extra []ExtraKind
}

// DefaultGrainsConfig returns the defaults; Store and Logger are the
// caller's to set on Account.
func DefaultGrainsConfig() GrainsConfig {
	c := GrainsConfig{
		Account:   account.DefaultGrainConfig(),
		PerMember: 2,
		Services: map[string]ServiceFactory{
			service.AuthService: func(service.Caller) service.Handler { return service.Auth },
		},
		Clients:      map[string]balancer.Config{service.AuthService: balancer.DefaultConfig(), payment.Service: balancer.DefaultConfig()},
		PaymentLimit: payment.DefaultLimit,
		Projection:   projection.DefaultSettings(),
		Registry:     DefaultRegistryConfig(),
	}
	c.Services[payment.Service] = func(call service.Caller) service.Handler { return payment.Handler(call, c.PaymentLimit) }
	c.Supervision.MaxRestarts, c.Supervision.RestartWindow = countergroup.DefaultSupervision()
	c.Saga.Deadline, c.Saga.StepTimeout, c.Saga.MaxDrive = saga.DefaultDeadline, saga.DefaultStepTimeout, saga.DefaultMaxDrive
	c.Saga.SweepInterval, c.Saga.SweepGrace = 10*time.Second, 10*time.Second // grace: a saga updated this recently has a driver at work
	return c
}

// Validate names the first unusable field.
func (c GrainsConfig) Validate() error {
	if err := c.Account.Validate(); err != nil {
		return err
	}
	if c.PerMember < 1 {
		return fmt.Errorf("services: PerMember %d must be >= 1", c.PerMember)
	}
	for name := range c.Services {
		if _, ok := c.Clients[name]; !ok {
			return fmt.Errorf("services: %s has no client configuration", name)
		}
	}
	if c.Saga.Deadline <= 0 || c.Saga.StepTimeout <= 0 || c.Saga.MaxDrive <= 0 || c.Saga.SweepInterval < 0 || c.Saga.SweepGrace < 0 {
		return fmt.Errorf("sagas: Deadline %v, StepTimeout %v and MaxDrive %v must be > 0, sweep settings >= 0",
			c.Saga.Deadline, c.Saga.StepTimeout, c.Saga.MaxDrive)
	}
	if err := c.Projection.Validate(); err != nil {
		return err
	}
	if err := c.Registry.validate(); err != nil {
		return err
	}
	if err := c.validateExtra(); err != nil {
		return err
	}
	if c.PaymentLimit <= 0 {
		return fmt.Errorf("payments: PaymentLimit %d must be > 0", c.PaymentLimit)
	}
	if c.Supervision.MaxRestarts < 0 || c.Supervision.RestartWindow <= 0 {
		return fmt.Errorf("supervision: MaxRestarts %d must be >= 0 and RestartWindow %v > 0", c.Supervision.MaxRestarts, c.Supervision.RestartWindow)
	}
	return nil
}

// grainConfig is the storage configuration every grain uses, stamped with
// the member's id.
func (c GrainsConfig) grainConfig(memberID string) es.GrainConfig {
	g := c.Account
	g.MemberID = memberID
	return g
}

// kinds returns the grain kinds member m hosts; its grains report m's id
// (X-Served-By) and reach other grains and services through m.
func kinds(m *Member, cfg GrainsConfig, pl *placement) []*pcluster.Kind {
	a := cfg.Account
	a.MemberID = m.ID()
	c := cfg.grainConfig(m.ID())
	g := countergroup.Config{Counter: c, MaxRestarts: cfg.Supervision.MaxRestarts, RestartWindow: cfg.Supervision.RestartWindow}
	sc := saga.Config{
		GrainConfig:  c,
		Participants: saga.Participants{Call: m, Services: serviceCalls{m.services}},
		Deadline:     cfg.Saga.Deadline, StepTimeout: cfg.Saga.StepTimeout, MaxDrive: cfg.Saga.MaxDrive,
		Reminders: scheduler{m.registry.Reminders},
		Outcomes:  m.sagaOutcomes(),
	}
	rc := m.registryConfig(cfg)
	lean := map[string]actor.Producer{
		account.Kind:      account.Producer(a),
		counter.Kind:      counter.GrainProducer(c),
		countergroup.Kind: countergroup.Producer(g),
		user.Kind:         user.Producer(c),
		inventory.Kind:    inventory.Producer(c),
		payment.Kind:      payment.Producer(c),
		projection.Kind: projection.Producer(projection.Config{Settings: cfg.Projection, Store: a.Store,
			StoreTimeout: a.StoreTimeout, MemberID: m.ID(), Logger: a.Logger, Now: a.Now}),
		registry.InstanceKind: registry.InstanceProducer(rc),
		registry.RouteKind:    registry.RouteProducer(rc),
	}
	for _, def := range []*saga.Definition{saga.Order, saga.Transfer} {
		lean[def.Kind] = saga.Producer(def, sc)
	}
	var out []*pcluster.Kind
	for _, name := range slices.Sorted(maps.Keys(lean)) {
		out = append(out, pl.lean(name, lean[name], grainProps...))
	}
	// Kinds given as Props are activated as Proto.Actor's disthash does,
	// with the cluster middleware and the release of passivated grains.
	for _, k := range extraKinds(m, cfg) {
		k.Props = releaseOnStop(k.Props.Configure(grainProps...))
		out = append(out, k)
	}
	// Services are kinds too, so that membership advertises which members
	// run them; callers reach their named instances directly.
	for _, name := range slices.Sorted(maps.Keys(cfg.Services)) {
		out = append(out, pcluster.NewKind(name, releaseOnStop(service.Props(name, m.ID(), 0, cfg.Services[name](m), a.Logger))))
	}
	return out
}

// grainProps are the mailbox and dispatcher of every grain kind: a
// grainMailbox (see there) on the warm grainDispatcher. Services, which
// take every member's traffic, keep Proto.Actor's default mailbox.
var grainProps = []actor.PropsOption{actor.WithMailbox(newGrainMailbox), actor.WithDispatcher(grainDispatcher)}
