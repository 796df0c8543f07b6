// Package cluster owns starting and stopping a Granary cluster member: the
// Proto.Actor actor system, remoting, the membership provider, the identity
// lookup that activates grains (placement.go), the grain kinds it hosts,
// and the calls into grains.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	cmap "github.com/orcaman/concurrent-map"

	"granary/actors/projection"
	"granary/actors/saga"
	"granary/cluster/balancer"
	"granary/internal/logx"
	"granary/persistence/reminder"
)

// Provider names.
const (
	// ProviderLocal keeps membership in process: a one-member cluster (dev)
	// or several members sharing one LocalAgent (tests).
	ProviderLocal = "local"
	// ProviderAutomanaged polls a static list of peers over HTTP.
	ProviderAutomanaged = "automanaged"
	// ProviderEtcd registers each member under a leased key in etcd and
	// watches the keys of the others (see etcd.go).
	ProviderEtcd = "etcd"
)

// Config describes one member.
type Config struct {
	// Name of the cluster; members only join members of the same name.
	Name string
	// Host and Port of remoting; Port 0 picks a free port.
	Host string
	Port int
	// Provider is ProviderLocal, ProviderAutomanaged or ProviderEtcd.
	Provider string
	// LocalAgent is shared by the members of one in-process cluster; nil
	// makes a fresh one (a cluster of one).
	LocalAgent *test.InMemAgent
	// AutomanagedPort is this member's health port; Peers lists every
	// member's host:automanagedPort, this one included.
	AutomanagedPort int
	Peers           []string
	// EtcdEndpoints are etcd's client endpoints, host:port or http:// URLs
	// (127.0.0.1:2379).
	EtcdEndpoints []string
	// EtcdPrefix is the base key: a member registers under
	// <EtcdPrefix>/<Name>/<member id>. Empty means DefaultEtcdPrefix.
	EtcdPrefix string
	// EtcdLeaseTTL is how long a member that stopped renewing its lease
	// (crashed, cut off from etcd) stays listed; whole seconds. EtcdCallTimeout
	// bounds each etcd request and must be below it; EtcdDialTimeout bounds
	// connecting. Zero means the DefaultEtcd* value (see etcd.go).
	EtcdLeaseTTL    time.Duration
	EtcdCallTimeout time.Duration
	EtcdDialTimeout time.Duration
	// RequestTimeout is the default grain call timeout.
	RequestTimeout time.Duration
	// AttemptTimeout bounds one attempt of a grain call; a call re-sends
	// after it (see Call), so a dead owner costs about this much.
	AttemptTimeout time.Duration
	// HeartbeatExpiration drops a member whose gossip heartbeat is older.
	HeartbeatExpiration time.Duration
}

// DefaultConfig is a one-member, loopback-only cluster.
func DefaultConfig() Config {
	return Config{
		Name:                "granary",
		Host:                "127.0.0.1",
		Provider:            ProviderLocal,
		RequestTimeout:      5 * time.Second,
		AttemptTimeout:      time.Second,
		HeartbeatExpiration: 5 * time.Second,
	}
}

// Validate names the first unusable field.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("cluster: Name is empty")
	case c.Host == "":
		return errors.New("cluster: Host is empty")
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("cluster: Port %d out of range", c.Port)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("cluster: RequestTimeout %v must be > 0", c.RequestTimeout)
	case c.AttemptTimeout <= 0:
		return fmt.Errorf("cluster: AttemptTimeout %v must be > 0", c.AttemptTimeout)
	case c.HeartbeatExpiration <= 0:
		return fmt.Errorf("cluster: HeartbeatExpiration %v must be > 0", c.HeartbeatExpiration)
	}
	switch c.Provider {
	case ProviderLocal:
	case ProviderAutomanaged:
		if c.AutomanagedPort <= 0 || c.AutomanagedPort > 65535 {
			return fmt.Errorf("cluster: AutomanagedPort %d out of range", c.AutomanagedPort)
		}
		if len(c.Peers) == 0 {
			return errors.New("cluster: automanaged provider needs Peers")
		}
		for _, p := range c.Peers {
			if _, port, err := net.SplitHostPort(p); err != nil || port == "" {
				return fmt.Errorf("cluster: peer %q is not host:port", p)
			}
		}
	case ProviderEtcd:
		if _, err := etcdSettingsOf(c); err != nil {
			return err
		}
	default:
		return fmt.Errorf("cluster: unknown Provider %q (want %s, %s or %s)", c.Provider, ProviderLocal, ProviderAutomanaged, ProviderEtcd)
	}
	return nil
}

// Member is a running cluster member.
type Member struct {
	System  *actor.ActorSystem
	Cluster *pcluster.Cluster
	cfg     Config
	log     *slog.Logger
	// view is the membership as of the last topology event. Proto.Actor's
	// MemberList reads its member set without its lock, so we keep our own
	// copy, written from the topology event it publishes under that lock.
	view     atomic.Pointer[[]MemberInfo]
	book     memberBook // departed members, broken links
	sub      *eventstream.Subscription
	services *balancer.Set
	// placement activates this member's grains (the identity lookup).
	placement *placement
	// stopSweep ends the saga sweep; sweepDone closes when it has.
	stopSweep context.CancelFunc
	sweepDone chan struct{}
	// stopKeeper ends the projections' keep-alive pings; keeperDone
	// closes when they have.
	stopKeeper context.CancelFunc
	keeperDone chan struct{}
	// registry is the registry's configuration with this process's
	// defaults filled in; stopReminders ends the reminder poller.
	registry      RegistryConfig
	stopReminders context.CancelFunc
	remindersDone chan struct{}
	poller        *reminder.Poller
	metrics       *memberMetrics
}

// ID is the member's id in the cluster (what X-Served-By shows). A restarted
// process is a new member with a new id.
func (m *Member) ID() string { return m.System.ID }

// Address is the member's remoting address.
func (m *Member) Address() string { return m.System.Address() }

// Start starts a member hosting the grains and services of grains, joins
// the cluster, and starts the member's service instances.
func Start(cfg Config, logger *slog.Logger, grains GrainsConfig) (m *Member, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := grains.Validate(); err != nil {
		return nil, err
	}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		// Proto.Actor logs each retried request at error level; keep its
		// chatter at warn and above so our own logs stay readable, and a
		// line it repeats (every second for a static peer that is down)
		// once per 30 s with a count.
		return slog.New(logx.Dedupe(levelFloor{logger.Handler(), slog.LevelWarn}, slog.LevelWarn, 30*time.Second, 256)).With("lib", "protoactor")
	}))
	compactRegistry(system)
	provider, err := newProvider(cfg)
	if err != nil {
		return nil, err
	}
	// The member exists before its cluster so that grains and services can
	// hold it as their way to call other grains; no call happens before
	// StartMember.
	m = &Member{System: system, cfg: cfg, log: logger.With("member", system.ID), registry: grains.Registry.withDefaults(), metrics: newMemberMetrics()}
	if m.services, err = balancer.NewSet(grains.Clients, ServiceSource{Member: m, PerMember: grains.PerMember}, system.Root); err != nil {
		return nil, err
	}
	rc := remote.Configure(cfg.Host, cfg.Port)
	pl := newPlacement(grains.Account.IdleTimeout/4, cfg.AttemptTimeout, logger)
	m.placement = pl
	cc := pcluster.Configure(cfg.Name, provider, pl, rc,
		pcluster.WithKinds(kinds(m, grains, pl)...),
		pcluster.WithRequestTimeout(cfg.RequestTimeout),
		pcluster.WithHeartbeatExpiration(cfg.HeartbeatExpiration),
	)
	c := pcluster.New(system, cc)
	m.Cluster = c
	empty := []MemberInfo{}
	m.view.Store(&empty)
	m.sub = system.EventStream.Subscribe(func(evt any) {
		switch e := evt.(type) {
		case *pcluster.ClusterTopology:
			m.view.Store(snapshot(e.GetMembers(), system.ID))
			m.book.left(e.GetLeft(), time.Now())
		case *remote.EndpointTerminatedEvent:
			m.book.endpoint(e.Address, false, *m.view.Load())
		case *remote.EndpointConnectedEvent:
			m.book.endpoint(e.Address, true, nil)
		case *pcluster.GossipUpdate:
			m.book.heard(e, *m.view.Load(), time.Now())
		case *pcluster.ActivationTerminated:
			// The member that hosted a grain broadcasts this when it
			// passivates; the pinned Proto.Actor only drops its own PID
			// cache entry, so every other member that called the grain
			// kept one per identity forever (issue 9).
			id := e.GetClusterIdentity()
			c.PidCache.RemoveByValue(id.GetIdentity(), id.GetKind(), e.GetPid())
		}
	})
	// StartMember panics when the provider or remoting fails to start; take
	// down what it started so nothing keeps running.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("start cluster member: %v", r)
			system.EventStream.Unsubscribe(m.sub)
			func() {
				defer func() { _ = recover() }()
				c.Shutdown(false)
			}()
			pl.release()
			m = nil
		}
	}()
	c.StartMember()
	if err := startServices(m, grains); err != nil {
		m.Stop(false)
		return nil, err
	}
	m.startSweep(grains)
	m.startKeeper(grains)
	m.startReminders()
	m.log.Info("cluster member started", "address", system.Address(), "provider", cfg.Provider)
	return m, nil
}

func newProvider(cfg Config) (pcluster.ClusterProvider, error) {
	switch cfg.Provider {
	case ProviderLocal:
		agent := cfg.LocalAgent
		if agent == nil {
			agent = test.NewInMemAgent()
		}
		return test.NewTestProvider(agent), nil
	case ProviderAutomanaged:
		return automanaged.NewWithConfig(time.Second, cfg.AutomanagedPort, cfg.Peers...), nil
	case ProviderEtcd:
		return newEtcdProvider(cfg)
	}
	return nil, fmt.Errorf("cluster: unknown Provider %q", cfg.Provider)
}

// startSweep runs the saga recovery sweep until Stop.
func (m *Member) startSweep(cfg GrainsConfig) {
	if cfg.Saga.SweepInterval <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.stopSweep, m.sweepDone = cancel, make(chan struct{})
	w := saga.Sweeper{Index: cfg.Account.Store, Call: m, Interval: cfg.Saga.SweepInterval, Grace: cfg.Saga.SweepGrace,
		Batch: 100, Logger: m.log}
	go func() {
		defer close(m.sweepDone)
		w.Run(ctx)
	}()
}

// startKeeper pings the projection grains until Stop, so each runs on
// whichever member owns it (see projection.Keeper).
func (m *Member) startKeeper(cfg GrainsConfig) {
	if cfg.Projection.KeepAlive <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.stopKeeper, m.keeperDone = cancel, make(chan struct{})
	k := projection.Keeper{Call: m, Interval: cfg.Projection.KeepAlive, Logger: m.log}
	go func() {
		defer close(m.keeperDone)
		k.Run(ctx)
	}()
}

// Stop leaves the cluster. graceful hands grains over and takes a few
// seconds; otherwise remoting stops at once, as if the process died.
func (m *Member) Stop(graceful bool) {
	defer func() {
		// Upstream #1142: shutdown can panic in the placement actor.
		if r := recover(); r != nil {
			m.log.Warn("cluster shutdown panicked", "panic", r)
		}
	}()
	if m.stopSweep != nil {
		m.stopSweep()
		<-m.sweepDone
	}
	if m.stopKeeper != nil {
		m.stopKeeper()
		<-m.keeperDone
	}
	if m.stopReminders != nil {
		m.stopReminders()
		<-m.remindersDone
	}
	m.Cluster.Shutdown(graceful)
	m.placement.release()
	m.System.EventStream.Unsubscribe(m.sub)
	m.log.Info("cluster member stopped", "graceful", graceful)
}

// MemberInfo is one member as the membership view shows it.
type MemberInfo struct {
	ID      string
	Address string
	Kinds   []string
	// Status is "alive", "alive (self)", StatusSuspected or StatusDead.
	Status string
	// LeftAt is when a departed member left this member's view (zero for
	// listed members).
	LeftAt time.Time
}

// Members lists the members this member currently sees, itself included;
// one whose remoting link broke is StatusSuspected.
func (m *Member) Members() []MemberInfo {
	return m.book.mark(append([]MemberInfo(nil), (*m.view.Load())...))
}

// Joined reports whether this member sees itself in the membership, i.e. it
// can host and reach grains.
func (m *Member) Joined() bool {
	for _, mi := range *m.view.Load() {
		if mi.ID == m.ID() {
			return true
		}
	}
	return false
}

func snapshot(members []*pcluster.Member, self string) *[]MemberInfo {
	out := make([]MemberInfo, 0, len(members))
	for _, mem := range members {
		status := "alive"
		if mem.GetId() == self {
			status = "alive (self)"
		}
		out = append(out, MemberInfo{
			ID:      mem.GetId(),
			Address: net.JoinHostPort(mem.GetHost(), strconv.Itoa(int(mem.GetPort()))),
			Kinds:   append([]string(nil), mem.GetKinds()...),
			Status:  status,
		})
	}
	return &out
}

// levelFloor drops records below min.
type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (h levelFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelFloor) WithAttrs(attrs []slog.Attr) slog.Handler {
	return levelFloor{h.Handler.WithAttrs(attrs), h.min}
}

func (h levelFloor) WithGroup(name string) slog.Handler {
	return levelFloor{h.Handler.WithGroup(name), h.min}
}

// registryBuckets is how many sharded maps the process registry of a
// member keeps its local processes in (Proto.Actor's default: 1024).
const registryBuckets = 8

// compactRegistry replaces the process registry's 1024 buckets of 32 map
// shards each with registryBuckets buckets. Every grain is one entry in
// it; spread over 32 768 Go maps, nearly every entry had a map of its own,
// whose first entry allocates a 288 B group, and the empty maps alone
// take ~3 MB (issue 10: ~420 B per idle grain at 20 000 grains). 256
// shards still keep lock contention far below what a member's cores can
// cause. It must run before anything is spawned: the processes registered
// so far (dead letters, the event stream) are carried over.
func compactRegistry(system *actor.ActorSystem) {
	reg := system.ProcessRegistry
	sm := &actor.SliceMap{LocalPIDs: make([]cmap.ConcurrentMap, registryBuckets)}
	for i := range sm.LocalPIDs {
		sm.LocalPIDs[i] = cmap.New()
	}
	for _, bucket := range reg.LocalPIDs.LocalPIDs {
		for id, proc := range bucket.Items() {
			sm.GetBucket(id).Set(id, proc)
		}
	}
	reg.LocalPIDs = sm
}
