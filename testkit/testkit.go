// Package testkit starts in-process Granary clusters for tests: N members
// sharing one membership agent and one store, each on real loopback gRPC
// ports, with helpers to call grains, kill members and wait for conditions.
// It is public so that users can `go test` their own grains the same way.
//
//	c := testkit.NewCluster(t, 3)
//	reply, err := cluster.CallAs[*messages.AccountReply](ctx, c.Member(0), account.Kind, id, req)
//	c.Kill(1)
//	testkit.WaitFor(t, 5*time.Second, func() error { ... })
package testkit

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"

	"granary/actors/account"
	"granary/cluster"
	"granary/cluster/balancer"
	"granary/persistence"
)

// Cluster is an in-process cluster; its members stop when the test ends.
type Cluster struct {
	t       testing.TB
	Store   persistence.Store
	Log     *slog.Logger
	agent   *test.InMemAgent
	grains  cluster.GrainsConfig
	cfg     cluster.Config
	mu      sync.Mutex
	members []*cluster.Member
	stopped []bool
}

// Option adjusts a Cluster before it starts.
type Option func(*Cluster)

// WithStore makes the members share store instead of a fresh one.
func WithStore(s persistence.Store) Option { return func(c *Cluster) { c.Store = s } }

// WithGrainConfig lets a test tune the account grains (snapshot interval,
// timeouts, clock); counters share these storage settings.
func WithGrainConfig(f func(*account.GrainConfig)) Option {
	return func(c *Cluster) { f(&c.grains.Account) }
}

// WithGrainsConfig lets a test tune the grains (snapshot interval,
// timeouts, clock, restart budget).
func WithGrainsConfig(f func(*cluster.GrainsConfig)) Option {
	return func(c *Cluster) { f(&c.grains) }
}

// WithClusterConfig lets a test tune the members.
func WithClusterConfig(f func(*cluster.Config)) Option {
	return func(c *Cluster) { f(&c.cfg) }
}

// NewCluster starts n members and waits until each sees all of them.
func NewCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, agent: test.NewInMemAgent(), grains: cluster.DefaultGrainsConfig(), cfg: cluster.DefaultConfig()}
	c.Log = Logger(t)
	for _, o := range opts {
		o(c)
	}
	if c.Store == nil {
		c.Store = NewStore(t)
	}
	c.cfg.Provider = cluster.ProviderLocal
	c.cfg.LocalAgent = c.agent
	c.grains.Account.Store = c.Store
	c.grains.Account.Logger = c.Log
	if err := c.grains.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stopAll)
	for i := 0; i < n; i++ {
		c.AddMember()
	}
	c.WaitForMembers(n, 10*time.Second)
	return c
}

// liveMembers counts members running in this test process, across
// clusters, for the race-detector guard in AddMember.
var liveMembers atomic.Int32

// ErrSharedProcessRace explains why a test is skipped under -race.
const ErrSharedProcessRace = "skipped under -race: Proto.Actor's remote.Start (pinned version) calls grpclog.SetLoggerV2, " +
	"an unsynchronized global write that races with the gRPC logging of any other member running in the " +
	"same process. Production runs one member per process. `make test` runs these tests again without -race; " +
	"the multi-process tests (cmd/granary) cover the same paths with -race."

// AddMember starts one more member (a restarted process is a new member).
// Under -race a second live member in one process is skipped (see
// ErrSharedProcessRace).
func (c *Cluster) AddMember() *cluster.Member {
	c.t.Helper()
	if RaceEnabled && liveMembers.Load() > 0 {
		c.t.Skip(ErrSharedProcessRace)
	}
	m, err := cluster.Start(c.cfg, c.Log, cluster.Kinds(c.grains))
	if err != nil {
		c.t.Fatalf("start member: %v", err)
	}
	if err := cluster.StartServices(m, c.grains); err != nil {
		c.t.Fatalf("start services: %v", err)
	}
	liveMembers.Add(1)
	c.mu.Lock()
	c.members = append(c.members, m)
	c.stopped = append(c.stopped, false)
	c.mu.Unlock()
	return m
}

// Member returns the i-th member started.
func (c *Cluster) Member(i int) *cluster.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i]
}

// Kill stops member i at once, without handing anything over, as a crash
// would (its gRPC server stops; its grains are gone).
func (c *Cluster) Kill(i int) { c.stop(i, false) }

// Leave stops member i gracefully.
func (c *Cluster) Leave(i int) { c.stop(i, true) }

func (c *Cluster) stop(i int, graceful bool) {
	c.mu.Lock()
	if c.stopped[i] {
		c.mu.Unlock()
		return
	}
	c.stopped[i] = true
	m := c.members[i]
	c.mu.Unlock()
	m.Stop(graceful)
	liveMembers.Add(-1)
}

func (c *Cluster) stopAll() {
	c.mu.Lock()
	n := len(c.members)
	c.mu.Unlock()
	for i := 0; i < n; i++ {
		c.stop(i, false)
	}
}

// WaitForMembers waits until every running member sees exactly want members.
func (c *Cluster) WaitForMembers(want int, timeout time.Duration) {
	c.t.Helper()
	WaitFor(c.t, timeout, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, m := range c.members {
			if c.stopped[i] {
				continue
			}
			if got := len(m.Members()); got != want {
				return fmt.Errorf("member %d sees %d members, want %d", i, got, want)
			}
		}
		return nil
	})
}

// WaitFor polls cond until it returns nil, failing the test with cond's
// last error after timeout.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(delay)
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// Services returns service clients (default configuration: auth, payments
// when configured) that reach the cluster's instances from member i.
func (c *Cluster) Services(i int) *balancer.Set {
	c.t.Helper()
	m := c.Member(i)
	cfgs := map[string]balancer.Config{}
	for name := range c.grains.Services {
		cfgs[name] = balancer.DefaultConfig()
	}
	set, err := balancer.NewSet(cfgs, balancer.MembershipSource{Member: m, PerMember: c.grains.PerMember}, m.System.Root)
	if err != nil {
		c.t.Fatal(err)
	}
	return set
}
