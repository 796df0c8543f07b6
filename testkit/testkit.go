// Package testkit starts in-process Granary clusters for tests: N members
// sharing one membership registry and one store, each on real loopback gRPC
// ports. Its helpers crash, stop and restart members (Kill, Leave, Restart,
// AddMember), wait for conditions with deadlines (WaitFor, WaitForMembers),
// and record what actors receive (NewProbe, Expect, ExpectNoMessage). It is
// public so that users can `go test` their own grains the same way; see
// README.md for a guide.
//
//	c := testkit.NewCluster(t, 3)
//	reply, err := cluster.CallAs[*messages.AccountReply](ctx, c.Member(0), account.Kind, id, req)
//	c.Kill(1)
//	testkit.WaitFor(t, 10*time.Second, func() error { ... })
//
// The store is an embedded miniredis per test, or the real Redis named by
// GRANARY_REDIS_URL (see NewStore). Everything a Cluster or Probe starts
// stops when the test ends; packages that use them verify that with
// goleak.VerifyTestMain(m, testkit.LeakOptions()...).
//
// Under the race detector only one member may run at a time in a process
// (see ErrSharedProcessRace): tests that need more are skipped there and
// should also be run without -race.
package testkit

import (
	"fmt"
	"granary/actors/registry"
	"granary/persistence/reminder"
	"log/slog"
	"slices"
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
	// pollDone stops the membership poll (see pollMembership).
	pollDone chan struct{}
	pollWG   sync.WaitGroup
	// killed holds members killed and still listed by the registry.
	killed      map[string]time.Time
	registryTTL time.Duration
	// silenced holds the members whose gossip has stopped (see silence).
	silenced map[string]bool
}

// MembershipPoll is how often the cluster's in-memory registry reports the
// registered members to every member again, as a polling provider would.
// Proto.Actor's test provider reports only when a member registers or
// deregisters, but members leave out of each report the peers they have
// blocked (heartbeat expired), so without the poll a crashed member would
// stay in the topology until the next registration.
const MembershipPoll = 250 * time.Millisecond

// DefaultRegistryTTL is how long the in-memory registry keeps listing a
// killed member (see WithRegistryTTL).
const DefaultRegistryTTL = 3 * time.Second

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

// WithKinds adds the test's own grain kinds to every member (see
// cluster.ExtraKind); they share the members' store and grain settings.
func WithKinds(kinds ...cluster.ExtraKind) Option {
	return func(c *Cluster) { c.grains.Extra = append(c.grains.Extra, kinds...) }
}

// WithRegistryTTL sets how long the in-memory registry keeps listing a
// killed member, like a service registry whose entry expires once a crashed
// process stops renewing it (default DefaultRegistryTTL). Members also drop
// a peer whose gossip heartbeat is older than their HeartbeatExpiration
// (WithClusterConfig), whichever comes first.
func WithRegistryTTL(d time.Duration) Option { return func(c *Cluster) { c.registryTTL = d } }

// WithClusterConfig lets a test tune the members.
func WithClusterConfig(f func(*cluster.Config)) Option {
	return func(c *Cluster) { f(&c.cfg) }
}

// NewCluster starts n members and waits until each sees all of them.
func NewCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, agent: test.NewInMemAgent(), grains: cluster.DefaultGrainsConfig(), cfg: cluster.DefaultConfig(),
		killed: map[string]time.Time{}, registryTTL: DefaultRegistryTTL, silenced: map[string]bool{}}
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
	// One registry view and one set of timers for the whole cluster, as
	// Redis gives a real one.
	if c.grains.Registry.View == nil {
		c.grains.Registry.View = registry.NewMemoryView()
	}
	if c.grains.Registry.Reminders == nil {
		c.grains.Registry.Reminders = reminder.NewMemory()
	}
	if err := c.grains.Validate(); err != nil {
		t.Fatal(err)
	}
	c.pollDone = make(chan struct{})
	c.pollWG.Add(1)
	go c.pollMembership()
	t.Cleanup(c.close)
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
	"same process; and its member list is replaced on a membership change while actors read it without a lock. " +
	"Production runs one member per process. `make test` runs these tests again without -race; " +
	"the multi-process tests (cmd/granary) cover the same paths with -race."

// AddMember starts one more member (a restarted process is a new member).
// Under -race a test that starts a second live member in one process, or
// any member after a cluster's first, is skipped (see
// ErrSharedProcessRace).
func (c *Cluster) AddMember() *cluster.Member {
	c.t.Helper()
	m := c.start()
	c.mu.Lock()
	c.members = append(c.members, m)
	c.stopped = append(c.stopped, false)
	c.mu.Unlock()
	return m
}

func (c *Cluster) start() *cluster.Member {
	c.t.Helper()
	c.mu.Lock()
	changesMembership := len(c.members) > 0
	c.mu.Unlock()
	if RaceEnabled && (liveMembers.Load() > 0 || changesMembership) {
		c.t.Skip(ErrSharedProcessRace)
	}
	m, err := cluster.Start(c.cfg, c.Log, c.grains)
	if err != nil {
		c.t.Fatalf("start member: %v", err)
	}
	liveMembers.Add(1)
	return m
}

// Member returns the i-th member started.
func (c *Cluster) Member(i int) *cluster.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i]
}

// Kill crashes member i: it falls silent at once (its gossip stops, so it
// neither heartbeats nor announces that it is leaving; its gRPC server
// stops, so nothing reaches its grains any more) and hands nothing over.
// The others find out as they would in production: the registry drops it
// after its TTL (see WithRegistryTTL), or gossip blocks it once its
// heartbeat is older than their HeartbeatExpiration, whichever comes
// first. Its grains are activated again, from the journal, on whichever
// member owns them next. Calls to them fail or time out until then;
// cluster.Call re-sends.
func (c *Cluster) Kill(i int) { c.stop(i, false) }

// Leave stops member i gracefully: it deregisters at once, so the others
// route its grains elsewhere straight away, and winds down over about two
// seconds (Proto.Actor waits for the handover). Leave blocks until it has.
func (c *Cluster) Leave(i int) { c.stop(i, true) }

// Restart kills member i if it still runs and starts a new member in its
// place: Member(i) is the new one afterwards. Like a restarted process it
// joins with a new id; wait for it with WaitForMembers. Skipped under -race,
// like AddMember after the first member.
func (c *Cluster) Restart(i int) *cluster.Member {
	c.t.Helper()
	if RaceEnabled {
		c.t.Skip(ErrSharedProcessRace)
	}
	c.Kill(i)
	m := c.start()
	c.mu.Lock()
	c.members[i], c.stopped[i] = m, false
	c.mu.Unlock()
	return m
}

func (c *Cluster) stop(i int, graceful bool) {
	c.mu.Lock()
	if c.stopped[i] {
		c.mu.Unlock()
		return
	}
	c.stopped[i] = true
	m := c.members[i]
	c.mu.Unlock()
	if !graceful {
		c.silence(m)
		c.mu.Lock()
		c.killed[m.ID()] = time.Now()
		c.mu.Unlock()
	}
	m.Stop(graceful)
	liveMembers.Add(-1)
}

// silence stops m's gossip, once. A crashed process sends nothing more,
// but Proto.Actor's non-graceful shutdown first gossips that the member
// left gracefully and keeps gossiping until its loop notices, so in one
// process the others would learn of a "crash" at once.
func (c *Cluster) silence(m *cluster.Member) {
	c.mu.Lock()
	done := c.silenced[m.ID()]
	c.silenced[m.ID()] = true
	c.mu.Unlock()
	if !done {
		m.Cluster.Gossip.Shutdown()
	}
}

// pollMembership re-publishes the registry until the cluster closes, and
// drops members killed more than the registry TTL ago from it.
func (c *Cluster) pollMembership() {
	defer c.pollWG.Done()
	tick := time.NewTicker(MembershipPoll)
	defer tick.Stop()
	for {
		select {
		case <-c.pollDone:
			return
		case <-tick.C:
			var expired []string
			c.mu.Lock()
			// With no member running there is nobody to tell, and the
			// dead members' own lists would change under their actors.
			if slices.Contains(c.stopped, false) {
				for id, at := range c.killed {
					if time.Since(at) >= c.registryTTL {
						expired = append(expired, id)
						delete(c.killed, id)
					}
				}
			}
			c.mu.Unlock()
			for _, id := range expired {
				c.agent.DeregisterService(id) // reports to every member
			}
			c.agent.ForceUpdate()
		}
	}
}

// close stops the poll, then every member still running.
func (c *Cluster) close() {
	close(c.pollDone)
	c.pollWG.Wait()
	c.stopAll()
}

// stopAll silences every running member before stopping any, so that none
// gossips to a peer that has already gone: Proto.Actor leaks the gRPC
// connections of every failed dial to a dead peer (see LeakOptions).
func (c *Cluster) stopAll() {
	c.mu.Lock()
	var running []int
	for i, stopped := range c.stopped {
		if !stopped {
			running = append(running, i)
		}
	}
	c.mu.Unlock()
	for _, i := range running {
		c.silence(c.Member(i))
	}
	for _, i := range running {
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

// Services returns member i's clients of the stateless services.
func (c *Cluster) Services(i int) *balancer.Set { return c.Member(i).Services() }
