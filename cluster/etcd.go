package cluster

// Membership through etcd.
//
// Each member grants a lease of EtcdLeaseTTL, puts its address and kinds
// under <EtcdPrefix>/<Name>/<member id> with that lease, renews the lease
// every TTL/3 and watches <EtcdPrefix>/<Name>/. The members are exactly the
// keys there: a member that stops renewing (crashed, partitioned from etcd,
// or stopped with Stop(false)) disappears when its lease expires, about
// EtcdLeaseTTL later; one that leaves gracefully revokes its lease and
// disappears at once. Proto.Actor then blocks the departed id for good, so a
// member whose lease expired stays out even if it comes back: the process
// must restart (it joins as a new member). Its own view loses itself too,
// so Joined() turns false and /ready says so.
//
// This is Granary's own provider, not Proto.Actor's
// cluster/clusterproviders/etcd, which at the pinned version:
//   - names members "<cluster>@<id>" while the rest of Proto.Actor keys them
//     by the actor system id: Joined() is never true, each member gossips to
//     itself (tried: -race then reports the gossip's shared math/rand), and
//     heartbeat or block-list removal never applies;
//   - is never told of Stop(false) and never closes its client, so a stopped
//     member stays registered (tried: still listed 15s later) and leaks;
//   - sets its shutdown flag while its goroutines read it, unsynchronized;
//   - calls etcd with context.TODO() everywhere (no timeouts), fixes the
//     lease TTL at 3s;
//   - lists members, then watches from "now" (a member registering in
//     between is never seen), never lists again after a watch fails, and
//     watches <prefix>/<cluster> without a trailing slash (cluster "a"
//     sees the members of "ab").

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Defaults for the etcd provider's zero Config fields.
const (
	DefaultEtcdPrefix = "/granary"
	// DefaultEtcdLeaseTTL is how long a member that stopped renewing stays
	// listed. Shorter notices crashes sooner but drops (for good) a member
	// that loses etcd for that long. etcd rounds it up to whole seconds and
	// to its own minimum (2s with default election settings).
	DefaultEtcdLeaseTTL = 3 * time.Second
	// DefaultEtcdDialTimeout bounds connecting to etcd.
	DefaultEtcdDialTimeout = 5 * time.Second
	// DefaultEtcdCallTimeout bounds each etcd request (grant, put, list,
	// renew, revoke). It must be below the lease TTL, or one slow renewal
	// could outlive the lease.
	DefaultEtcdCallTimeout = 1 * time.Second
)

// etcdStopPoll is how often a member checks whether its actor system has
// stopped: Proto.Actor tells the provider only about graceful shutdowns.
const etcdStopPoll = 100 * time.Millisecond

// etcdSettings are the etcd fields of a Config with defaults applied.
type etcdSettings struct {
	endpoints   []string
	prefix      string // "<EtcdPrefix>/<Name>/": every member key of this cluster
	ttl         time.Duration
	dialTimeout time.Duration
	callTimeout time.Duration
}

// etcdSettingsOf applies the defaults and names the first unusable field.
func etcdSettingsOf(c Config) (etcdSettings, error) {
	s := etcdSettings{
		endpoints:   c.EtcdEndpoints,
		ttl:         orDefault(c.EtcdLeaseTTL, DefaultEtcdLeaseTTL),
		dialTimeout: orDefault(c.EtcdDialTimeout, DefaultEtcdDialTimeout),
		callTimeout: orDefault(c.EtcdCallTimeout, DefaultEtcdCallTimeout),
	}
	if len(c.EtcdEndpoints) == 0 {
		return s, errors.New("cluster: etcd provider needs EtcdEndpoints")
	}
	for _, e := range c.EtcdEndpoints {
		switch {
		case e == "":
			return s, errors.New("cluster: empty etcd endpoint")
		case strings.HasPrefix(e, "https://"), strings.HasPrefix(e, "unixs://"):
			// No TLS settings yet: the client would fail on first use.
			return s, fmt.Errorf("cluster: etcd endpoint %q needs TLS, which is not supported yet", e)
		}
	}
	prefix := c.EtcdPrefix
	if prefix == "" {
		prefix = DefaultEtcdPrefix
	}
	if !strings.HasPrefix(prefix, "/") {
		return s, fmt.Errorf("cluster: EtcdPrefix %q must start with /", c.EtcdPrefix)
	}
	if strings.Contains(c.Name, "/") {
		return s, fmt.Errorf("cluster: Name %q must not contain / with the etcd provider", c.Name)
	}
	// The trailing slash keeps cluster "a" from seeing the members of "ab".
	s.prefix = strings.TrimRight(prefix, "/") + "/" + c.Name + "/"
	switch {
	case c.EtcdLeaseTTL < 0 || c.EtcdDialTimeout < 0 || c.EtcdCallTimeout < 0:
		return s, errors.New("cluster: etcd durations must be >= 0 (0 means the default)")
	case s.ttl < time.Second:
		return s, fmt.Errorf("cluster: EtcdLeaseTTL %v must be at least 1s (etcd leases count whole seconds)", s.ttl)
	case s.callTimeout >= s.ttl:
		return s, fmt.Errorf("cluster: EtcdCallTimeout %v must be below EtcdLeaseTTL %v", s.callTimeout, s.ttl)
	}
	return s, nil
}

func orDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

func newEtcdProvider(cfg Config) (pcluster.ClusterProvider, error) {
	s, err := etcdSettingsOf(cfg)
	if err != nil {
		return nil, err
	}
	return &etcdProvider{s: s}, nil
}

// etcdMember is the value stored under a member's key.
type etcdMember struct {
	ID    string   `json:"id"`
	Host  string   `json:"host"`
	Port  int32    `json:"port"`
	Kinds []string `json:"kinds"`
}

type etcdProvider struct {
	s       etcdSettings
	cluster *pcluster.Cluster
	log     *slog.Logger
	self    *pcluster.Member // nil for a cluster client, which only watches
	client  *clientv3.Client
	lease   clientv3.LeaseID

	cancel    context.CancelFunc // ends the loops
	loops     sync.WaitGroup     // the watch and renew loops
	watchDone chan struct{}      // closed when watchSystem returns

	mu     sync.Mutex
	closed bool // the loops ended and the client is closed
}

func (p *etcdProvider) StartMember(c *pcluster.Cluster) error { return p.start(c, true) }

func (p *etcdProvider) StartClient(c *pcluster.Cluster) error { return p.start(c, false) }

func (p *etcdProvider) start(c *pcluster.Cluster, member bool) (err error) {
	p.cluster = c
	p.log = c.Logger().With("provider", "etcd")
	if member {
		host, portStr, err := net.SplitHostPort(c.ActorSystem.Address())
		if err != nil {
			return fmt.Errorf("etcd provider: member address: %w", err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return fmt.Errorf("etcd provider: member port: %w", err)
		}
		// The id must be the actor system's: gossip, the block list and
		// Joined() all key members by it.
		p.self = &pcluster.Member{Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds()}
	}
	if p.client, err = p.newClient(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if p.lease != 0 {
				// Best effort: the key would otherwise stay until the
				// lease expires.
				ctx, cancel := p.call(context.Background())
				_, _ = p.client.Revoke(ctx, p.lease)
				cancel()
			}
			_ = p.client.Close()
		}
	}()
	if member {
		if err := p.register(); err != nil {
			return err
		}
	}
	// Listing after registering (and watching from right after the list's
	// revision) misses no member: one that registers at any time is either
	// in the list or in the watch.
	members, rev, err := p.list(context.Background())
	if err != nil {
		return err
	}
	p.publish(members)

	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.watchDone = make(chan struct{})
	p.loops.Add(1)
	go p.watchLoop(ctx, members, rev)
	if member {
		p.loops.Add(1)
		go p.renewLoop(ctx)
	}
	go p.watchSystem(ctx)
	return nil
}

func (p *etcdProvider) newClient() (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   p.s.endpoints,
		DialTimeout: p.s.dialTimeout,
		// Probe the connection so that a dead etcd ends the watch stream
		// instead of leaving it silent (gRPC pings at most every 10s).
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: p.s.ttl,
		// Every call's error comes back to us and is logged through slog;
		// the client's own zap output would only repeat it on stderr.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd provider: client for %v: %w", p.s.endpoints, err)
	}
	return c, nil
}

func (p *etcdProvider) call(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, p.s.callTimeout)
}

// register grants the lease and puts this member's key with it.
func (p *etcdProvider) register() error {
	ctx, cancel := p.call(context.Background())
	defer cancel()
	lease, err := p.client.Grant(ctx, int64(math.Ceil(p.s.ttl.Seconds())))
	if err != nil {
		return fmt.Errorf("etcd provider: grant lease at %v: %w", p.s.endpoints, err)
	}
	p.lease = lease.ID
	val, err := json.Marshal(etcdMember{ID: p.self.Id, Host: p.self.Host, Port: p.self.Port, Kinds: p.self.Kinds})
	if err != nil {
		return err
	}
	ctx, cancel = p.call(context.Background())
	defer cancel()
	if _, err := p.client.Put(ctx, p.s.prefix+p.self.Id, string(val), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("etcd provider: register: %w", err)
	}
	return nil
}

// list reads every member key and the revision it was read at.
func (p *etcdProvider) list(parent context.Context) (map[string]*pcluster.Member, int64, error) {
	ctx, cancel := p.call(parent)
	defer cancel()
	resp, err := p.client.Get(ctx, p.s.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("etcd provider: list members: %w", err)
	}
	members := make(map[string]*pcluster.Member, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if m := p.decode(kv.Key, kv.Value); m != nil {
			members[m.Id] = m
		}
	}
	return members, resp.Header.Revision, nil
}

// decode turns a member key's value into a member, or nil (logged) when it
// is not one.
func (p *etcdProvider) decode(key, value []byte) *pcluster.Member {
	id := strings.TrimPrefix(string(key), p.s.prefix)
	var v etcdMember
	if err := json.Unmarshal(value, &v); err != nil || v.ID != id || v.Host == "" || v.Port <= 0 {
		p.log.Warn("ignoring a malformed member key", "key", string(key), "error", err)
		return nil
	}
	return &pcluster.Member{Id: v.ID, Host: v.Host, Port: v.Port, Kinds: v.Kinds}
}

func (p *etcdProvider) publish(members map[string]*pcluster.Member) {
	list := make([]*pcluster.Member, 0, len(members))
	for _, m := range members {
		list = append(list, m)
	}
	p.cluster.MemberList.UpdateClusterTopology(list)
}

// watchLoop applies every change under the prefix to members. When the
// watch ends (etcd lost its leader or restarted past a compaction), events
// may have been missed: it lists again and watches from there.
func (p *etcdProvider) watchLoop(ctx context.Context, members map[string]*pcluster.Member, rev int64) {
	defer p.loops.Done()
	retry := p.s.ttl / 3
	for {
		// WithRequireLeader ends the watch when etcd loses quorum rather
		// than leaving it silent while members come and go.
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range p.client.Watch(wctx, p.s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if err := resp.Err(); err != nil {
				if ctx.Err() == nil {
					p.log.Warn("member watch ended; listing again", "error", err)
				}
				break
			}
			for _, ev := range resp.Events {
				id := strings.TrimPrefix(string(ev.Kv.Key), p.s.prefix)
				if ev.Type == clientv3.EventTypeDelete {
					delete(members, id)
				} else if m := p.decode(ev.Kv.Key, ev.Kv.Value); m != nil {
					members[id] = m
				}
			}
			rev = resp.Header.Revision
			if len(resp.Events) > 0 {
				p.publish(members)
			}
		}
		cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			fresh, freshRev, err := p.list(ctx)
			if err == nil {
				members, rev = fresh, freshRev
				p.publish(members)
				break
			}
			if ctx.Err() == nil {
				p.log.Warn("listing members failed; retrying", "error", err, "after", retry)
			}
		}
	}
}

// renewLoop keeps the lease alive, one bounded request every TTL/3.
func (p *etcdProvider) renewLoop(ctx context.Context) {
	defer p.loops.Done()
	tick := time.NewTicker(p.s.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := p.call(ctx)
		_, err := p.client.KeepAliveOnce(cctx, p.lease)
		cancel()
		switch {
		case err == nil || ctx.Err() != nil:
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			// Expired: every member (this one included) has dropped this
			// member's id and blocked it for good, so registering again
			// would change nothing.
			p.log.Error("membership lease expired: this member has left the cluster; restart the process to rejoin",
				"lease_ttl", p.s.ttl)
			return
		default:
			p.log.Warn("renewing the membership lease failed; retrying", "error", err, "lease_ttl", p.s.ttl)
		}
	}
}

// watchSystem ends the provider when the actor system stops without a
// graceful Shutdown (Stop(false)): the lease is left to expire, as it would
// if the process had died.
func (p *etcdProvider) watchSystem(ctx context.Context) {
	defer close(p.watchDone)
	tick := time.NewTicker(etcdStopPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if p.cluster.ActorSystem.IsStopped() {
				_ = p.stop(false)
				return
			}
		}
	}
}

// Shutdown leaves the cluster at once: revoking the lease deletes this
// member's key, so the others drop it without waiting for the TTL.
// Proto.Actor calls it only for a graceful shutdown.
func (p *etcdProvider) Shutdown(graceful bool) error {
	err := p.stop(p.self != nil)
	if p.watchDone != nil {
		<-p.watchDone
	}
	return err
}

// stop ends the loops and closes the client, revoking the lease first when
// revoke is set. Only the first call closes; a later one that must revoke
// (Shutdown after watchSystem saw the actor system stop, which Proto.Actor
// does first) uses a client of its own.
func (p *etcdProvider) stop(revoke bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel == nil {
		return nil // never started
	}
	client := p.client
	if p.closed {
		if !revoke {
			return nil
		}
		c, err := p.newClient()
		if err != nil {
			return err
		}
		defer c.Close()
		client = c
	} else {
		p.closed = true
		p.cancel()
		p.loops.Wait()
		defer p.client.Close()
	}
	if !revoke {
		return nil
	}
	ctx, cancel := p.call(context.Background())
	defer cancel()
	if _, err := client.Revoke(ctx, p.lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd provider: leave: %w", err)
	}
	return nil
}
