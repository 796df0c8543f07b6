package cluster

import (
	"fmt"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"granary/actors/account"
	"granary/actors/counter"
	"granary/actors/countergroup"
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
}

// DefaultGrainsConfig returns the defaults; Store and Logger are the
// caller's to set on Account.
func DefaultGrainsConfig() GrainsConfig {
	c := GrainsConfig{Account: account.DefaultGrainConfig()}
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
		return []*pcluster.Kind{
			pcluster.NewKind(account.Kind, account.Props(a)),
			pcluster.NewKind(counter.Kind, counter.GrainProps(c)),
			pcluster.NewKind(countergroup.Kind, countergroup.Props(g)),
		}
	}
}

// Validate names the first unusable field.
func (c GrainsConfig) Validate() error {
	if err := c.Account.Validate(); err != nil {
		return err
	}
	if c.Supervision.MaxRestarts < 0 || c.Supervision.RestartWindow <= 0 {
		return fmt.Errorf("supervision: MaxRestarts %d must be >= 0 and RestartWindow %v > 0", c.Supervision.MaxRestarts, c.Supervision.RestartWindow)
	}
	return nil
}
