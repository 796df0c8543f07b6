package cluster

import (
	"fmt"
	"maps"
	"slices"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"granary/actors/account"
	"granary/actors/counter"
	"granary/actors/countergroup"
	"granary/actors/service"
	"granary/actors/user"
)

// GrainsConfig configures every grain kind a member hosts. Counters share
// the accounts' storage settings.
type GrainsConfig struct {
	Account account.GrainConfig
	// A counter-group child may restart MaxRestarts times within
	// RestartWindow before its supervisor stops it.
	Supervision struct {
		MaxRestarts   int
		RestartWindow time.Duration
	}
	// Services are the stateless services every member runs, PerMember
	// instances each (see StartServices).
	Services  map[string]service.Handler
	PerMember int
}

// DefaultGrainsConfig returns the defaults; Store and Logger are the
// caller's to set on Account.
func DefaultGrainsConfig() GrainsConfig {
	c := GrainsConfig{Account: account.DefaultGrainConfig(), PerMember: 2,
		Services: map[string]service.Handler{service.AuthService: service.Auth}}
	c.Supervision.MaxRestarts, c.Supervision.RestartWindow = countergroup.DefaultSupervision()
	return c
}

// Kinds returns the grain kinds every Granary member hosts, for Start. Each
// member's grains report that member's id (X-Served-By).
func Kinds(cfg GrainsConfig) func(memberID string) []*pcluster.Kind {
	return func(memberID string) []*pcluster.Kind {
		a := cfg.Account
		a.MemberID = memberID
		c := counter.Config{
			Store: a.Store, SnapshotEvery: a.SnapshotEvery, IdleTimeout: a.IdleTimeout, StoreTimeout: a.StoreTimeout,
			RecentCommands: a.RecentCommands, MemberID: memberID, Logger: a.Logger, Now: a.Now,
		}
		g := countergroup.Config{Counter: c, MaxRestarts: cfg.Supervision.MaxRestarts, RestartWindow: cfg.Supervision.RestartWindow}
		kinds := []*pcluster.Kind{
			pcluster.NewKind(account.Kind, account.Props(a)),
			pcluster.NewKind(counter.Kind, counter.GrainProps(c)),
			pcluster.NewKind(countergroup.Kind, countergroup.Props(g)),
			pcluster.NewKind(user.Kind, user.Props(c)),
		}
		// Services are kinds too, so that membership advertises which
		// members run them; callers reach their named instances directly.
		for _, name := range slices.Sorted(maps.Keys(cfg.Services)) {
			kinds = append(kinds, pcluster.NewKind(name, service.Props(name, memberID, 0, cfg.Services[name], a.Logger)))
		}
		return kinds
	}
}

// StartServices spawns PerMember named instances of every service on m.
func StartServices(m *Member, cfg GrainsConfig) error {
	for name, h := range cfg.Services {
		for k := 1; k <= cfg.PerMember; k++ {
			props := service.Props(name, m.ID(), k, h, cfg.Account.Logger)
			if _, err := m.System.Root.SpawnNamed(props, service.InstanceName(name, k)); err != nil {
				return fmt.Errorf("start %s instance %d: %w", name, k, err)
			}
		}
	}
	return nil
}

// Validate names the first unusable field.
func (c GrainsConfig) Validate() error {
	if err := c.Account.Validate(); err != nil {
		return err
	}
	if c.PerMember < 1 {
		return fmt.Errorf("services: PerMember %d must be >= 1", c.PerMember)
	}
	if c.Supervision.MaxRestarts < 0 || c.Supervision.RestartWindow <= 0 {
		return fmt.Errorf("supervision: MaxRestarts %d must be >= 0 and RestartWindow %v > 0", c.Supervision.MaxRestarts, c.Supervision.RestartWindow)
	}
	return nil
}
