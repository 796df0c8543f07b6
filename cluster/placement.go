package cluster

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"
)

// placementName is the actor every member runs to activate grains on
// request; members find each other's at {address, placementName}. It is
// disthash's name, and the request is disthash's: a member still on
// disthash and one on this lookup place and activate grains for each other
// during a rolling upgrade.
const placementName = "partition-activator"

// maxActivationTimeout bounds one ActivationRequest, as the pinned disthash
// lookup does; a member waits at most its call attempt's timeout when that
// is shorter. An owner that died moments ago has a remoting endpoint that
// still retries its connection, so the request is neither delivered nor
// refused: it only times out, and the call's next attempt (by then the
// membership may have moved the identity) should not wait 5 s for that.
const maxActivationTimeout = 5 * time.Second

// placement is the members' identity lookup (Proto.Actor's IdentityLookup).
// An identity lands on the member the pinned disthash lookup would choose
// (the same cluster.Rendezvous over the same members), so placement, and
// everything docs/scaling.md says of it, is unchanged. What changes is the
// cost of an activation, the fixed cost every idle grain pays (issue 10):
// disthash clones the kind's Props per activation to carry the cluster
// identity (~400 B with the middleware chain it rebuilds), keeps every grain
// in its placement actor's child set and identity map, and the cluster
// middleware stores the identity in a context extension, which with the
// receive-timeout timer makes each grain allocate its context extras.
//
// Here a grain kind with a producer ("lean": every built-in kind) shares one
// Props among its activations. Each activation is an activation value
// around the grain that hands it its *cluster.ClusterInit (the identity is
// read back from the actor's own name), keeps its idle timeout as two words
// checked by one sweep per member instead of a timer per grain, and tells
// the placement actor when it stops. Kinds given only as Props (services,
// extra kinds) are spawned as disthash does.
type placement struct {
	kinds map[string]*leanKind
	// sweepEvery is how often idle grains are looked for.
	sweepEvery time.Duration
	// activationTimeout bounds one ActivationRequest.
	activationTimeout time.Duration
	log               *slog.Logger

	c    *pcluster.Cluster
	rdv  atomic.Pointer[pcluster.Rendezvous]
	sub  *eventstream.Subscription
	pid  *actor.PID
	tick atomic.Int64

	stopSweep   chan struct{}
	sweepDone   chan struct{}
	releaseOnce sync.Once
	poisonOnce  sync.Once
}

// leanKind is a kind whose activations share props.
type leanKind struct {
	name   string
	prefix string // name + "/": the start of its activations' actor names
	props  *actor.Props
	place  *placement
	kind   *pcluster.ActivatedKind
	// byID holds the kind's activations on this member by identity; the
	// key is a substring of the activation's actor name, so it costs no
	// bytes of its own. Only the placement actor writes it; local callers
	// read it (see placement.local).
	mu   sync.RWMutex
	byID map[string]*actor.PID
}

func newPlacement(sweepEvery, activationTimeout time.Duration, log *slog.Logger) *placement {
	p := &placement{kinds: map[string]*leanKind{}, sweepEvery: min(max(sweepEvery, 10*time.Millisecond), 30*time.Second),
		activationTimeout: min(max(activationTimeout, 100*time.Millisecond), maxActivationTimeout), log: log}
	p.rdv.Store(pcluster.NewRendezvous())
	return p
}

// lean registers a kind whose grains produce makes, with opts (mailbox,
// dispatcher) on its shared props, and returns the kind to configure the
// cluster with.
func (p *placement) lean(name string, produce actor.Producer, opts ...actor.PropsOption) *pcluster.Kind {
	k := &leanKind{name: name, prefix: name + "/", place: p, byID: map[string]*actor.PID{}}
	k.props = actor.PropsFromProducer(func() actor.Actor { return newActivation(k, produce()) }, opts...)
	p.kinds[name] = k
	return &pcluster.Kind{Kind: name, Props: k.props}
}

// Setup is called by Cluster.StartMember once remoting runs.
func (p *placement) Setup(c *pcluster.Cluster, _ []string, _ bool) {
	p.c = c
	for name, k := range p.kinds {
		k.kind = c.GetClusterKind(name)
	}
	var err error
	p.pid, err = c.ActorSystem.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newPlacementActor(p) }), placementName)
	if err != nil {
		panic("spawn placement actor: " + err.Error()) // StartMember turns panics into errors
	}
	p.sub = c.ActorSystem.EventStream.Subscribe(func(ev any) {
		if t, ok := ev.(*pcluster.ClusterTopology); ok {
			r := pcluster.NewRendezvous()
			r.UpdateMembers(t.GetMembers())
			p.rdv.Store(r)
			c.ActorSystem.Root.Send(p.pid, t)
		}
	})
	p.stopSweep, p.sweepDone = make(chan struct{}), make(chan struct{})
	go p.runSweep()
}

func (p *placement) runSweep() {
	defer close(p.sweepDone)
	t := time.NewTicker(p.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stopSweep:
			return
		case <-t.C:
			p.tick.Add(1)
			p.c.ActorSystem.Root.Send(p.pid, sweep{})
		}
	}
}

// Get returns the PID of the identity's activation on its owner, activating
// it there if need be; nil when no member hosts the kind or the owner did
// not answer (the caller retries).
func (p *placement) Get(ci *pcluster.ClusterIdentity) *actor.PID {
	owner := p.rdv.Load().GetByClusterIdentity(ci)
	if owner == "" {
		return nil
	}
	res, err := p.c.ActorSystem.Root.RequestFuture(actor.NewPID(owner, placementName),
		&pcluster.ActivationRequest{ClusterIdentity: ci}, p.activationTimeout).Result()
	if err != nil {
		return nil
	}
	r, ok := res.(*pcluster.ActivationResponse)
	if !ok || r.GetFailed() {
		return nil
	}
	return r.GetPid()
}

// local resolves an identity this member hosts or owns without
// Proto.Actor's PID cache, whose entry per identity (~100 B) and per-call
// bookkeeping a local caller does not need: the PID of its activation here,
// activating it if this member owns it. here is false when another member
// owns it (or the kind is not lean): call through the cluster. recheck
// skips the map, for when its PID just answered dead letter; an activation
// is waited for at most timeout.
func (p *placement) local(kind, id string, recheck bool, timeout time.Duration) (pid *actor.PID, here bool) {
	k := p.kinds[kind]
	if k == nil || p.c == nil {
		return nil, false
	}
	if !recheck {
		k.mu.RLock()
		pid = k.byID[id]
		k.mu.RUnlock()
		if pid != nil {
			return pid, true
		}
	}
	ci := pcluster.NewClusterIdentity(id, kind)
	if p.rdv.Load().GetByClusterIdentity(ci) != p.c.ActorSystem.Address() {
		return nil, false
	}
	res, err := p.c.ActorSystem.Root.RequestFuture(p.pid, &pcluster.ActivationRequest{ClusterIdentity: ci}, min(timeout, p.activationTimeout)).Result()
	if r, ok := res.(*pcluster.ActivationResponse); ok && err == nil && !r.GetFailed() {
		return r.GetPid(), true
	}
	return nil, true
}

// RemovePid tells every member that pid no longer serves ci, so they drop
// it from their PID caches.
func (p *placement) RemovePid(ci *pcluster.ClusterIdentity, pid *actor.PID) {
	p.c.MemberList.BroadcastEvent(&pcluster.ActivationTerminated{Pid: pid, ClusterIdentity: ci}, true)
}

// Shutdown stops every activation of this member; Cluster.Shutdown calls it
// (twice) only on a graceful leave.
func (p *placement) Shutdown() {
	p.release()
	p.poisonOnce.Do(func() {
		if err := p.c.ActorSystem.Root.PoisonFuture(p.pid).Wait(); err != nil {
			p.log.Warn("stop placement actor", "err", err)
		}
	})
}

// release stops the sweep and the topology subscription; Member.Stop calls
// it after every leave, graceful or not.
func (p *placement) release() {
	p.releaseOnce.Do(func() {
		if p.c == nil || p.stopSweep == nil {
			return // never (fully) set up
		}
		p.c.ActorSystem.EventStream.Unsubscribe(p.sub)
		close(p.stopSweep)
		<-p.sweepDone
	})
}

// sweep makes the placement actor send every lean activation an idleCheck.
type sweep struct{}

// idleCheck asks an activation whether its grain's idle timeout is due. It
// is not activity: it must not re-arm a grain's Proto.Actor timer.
type idleCheck struct{}

func (idleCheck) NotInfluenceReceiveTimeout() {}

// activationStopped tells the placement actor that a lean activation
// stopped.
type activationStopped struct {
	kind *leanKind
	pid  *actor.PID
}

// placementActor owns the member's activations.
type placementActor struct {
	p *placement
	// props-only kinds: children by "kind/identity", and that key by child.
	children map[string]*actor.PID
	childKey map[string]string
	// stopping: the member is leaving; nothing more is activated (the
	// actor may take requests while its children stop).
	stopping bool
}

func newPlacementActor(p *placement) *placementActor {
	return &placementActor{p: p, children: map[string]*actor.PID{}, childKey: map[string]string{}}
}

func (a *placementActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *pcluster.ActivationRequest:
		if a.stopping {
			ctx.Respond(&pcluster.ActivationResponse{Failed: true})
			return
		}
		ctx.Respond(a.activate(ctx, msg.GetClusterIdentity()))
	case *activationStopped:
		a.stopped(msg)
	case *actor.Terminated:
		a.childTerminated(msg.GetWho())
	case sweep:
		for _, pid := range a.leanPIDs() {
			ctx.Send(pid, idleCheck{})
		}
	case *pcluster.ClusterTopology:
		a.rebalance(ctx)
	case *actor.Stopping:
		a.stopping = true
		a.stopAll(ctx)
	}
}

func (a *placementActor) activate(ctx actor.Context, ci *pcluster.ClusterIdentity) *pcluster.ActivationResponse {
	if k, ok := a.p.kinds[ci.GetKind()]; ok {
		k.mu.RLock()
		pid, found := k.byID[ci.GetIdentity()]
		k.mu.RUnlock()
		if found {
			if _, alive := ctx.ActorSystem().ProcessRegistry.GetLocal(pid.GetId()); alive {
				return &pcluster.ActivationResponse{Pid: pid}
			}
			// Stopped, and its activationStopped still queued behind this
			// request: account for it now (the late notice is ignored).
			a.stopped(&activationStopped{kind: k, pid: pid})
		}
		// A root actor, not a child: no child set to keep it in. Its
		// supervision is the same default one-for-one restart a child of
		// the placement actor gets.
		pid = ctx.ActorSystem().Root.SpawnPrefix(k.props, k.prefix+ci.GetIdentity())
		k.mu.Lock()
		k.byID[k.identityOf(pid)] = pid
		k.mu.Unlock()
		k.kind.Inc()
		return &pcluster.ActivationResponse{Pid: pid}
	}
	kind, ok := a.p.c.TryGetClusterKind(ci.GetKind())
	if !ok {
		a.p.log.Warn("activation of an unknown kind", "kind", ci.GetKind(), "identity", ci.GetIdentity())
		return &pcluster.ActivationResponse{Failed: true}
	}
	key := ci.AsKey()
	if pid, ok := a.children[key]; ok {
		return &pcluster.ActivationResponse{Pid: pid}
	}
	pid := ctx.SpawnPrefix(pcluster.WithClusterIdentity(kind.Props, ci), ci.GetIdentity())
	a.children[key], a.childKey[pid.GetId()] = pid, key
	kind.Inc()
	return &pcluster.ActivationResponse{Pid: pid}
}

func (a *placementActor) stopped(msg *activationStopped) {
	k, id := msg.kind, msg.kind.identityOf(msg.pid)
	k.mu.Lock()
	pid, ok := k.byID[id]
	if !ok || !pid.Equal(msg.pid) {
		k.mu.Unlock()
		return // a stop seen after the identity's next activation began
	}
	delete(k.byID, id)
	k.mu.Unlock()
	k.kind.Dec()
	a.p.RemovePid(pcluster.NewClusterIdentity(id, msg.kind.name), msg.pid)
}

func (a *placementActor) childTerminated(pid *actor.PID) {
	key, ok := a.childKey[pid.GetId()]
	if !ok {
		return
	}
	delete(a.childKey, pid.GetId())
	delete(a.children, key)
	kind, id, _ := strings.Cut(key, "/")
	if k, ok := a.p.c.TryGetClusterKind(kind); ok {
		k.Dec()
	}
	a.p.RemovePid(pcluster.NewClusterIdentity(id, kind), pid)
}

// rebalance stops the activations whose owner is now another member; they
// are activated there on their next call (their state is in the journal).
func (a *placementActor) rebalance(ctx actor.Context) {
	rdv, self := a.p.rdv.Load(), ctx.ActorSystem().Address()
	moved := 0
	for _, k := range a.p.kinds {
		k.mu.RLock()
		for id, pid := range k.byID {
			if rdv.GetByClusterIdentity(pcluster.NewClusterIdentity(id, k.name)) != self {
				ctx.Poison(pid)
				moved++
			}
		}
		k.mu.RUnlock()
	}
	for key, pid := range a.children {
		if rdv.GetByIdentity(key) != self {
			ctx.Poison(pid)
			moved++
		}
	}
	if moved > 0 {
		a.p.log.Info("grains moved to other members", "grains", moved)
	}
}

// stopAll poisons every activation, so each answers what it has queued,
// and waits for them together.
func (a *placementActor) stopAll(ctx actor.Context) {
	var futures []*actor.Future
	for _, pid := range a.leanPIDs() {
		futures = append(futures, ctx.PoisonFuture(pid))
	}
	for _, pid := range a.children {
		futures = append(futures, ctx.PoisonFuture(pid))
	}
	for _, f := range futures {
		_ = f.Wait() // a grain that stopped on its own meanwhile answers dead letter
	}
}

// leanPIDs lists every lean activation (a copy: sends happen unlocked).
func (a *placementActor) leanPIDs() []*actor.PID {
	var out []*actor.PID
	for _, k := range a.p.kinds {
		k.mu.RLock()
		for _, pid := range k.byID {
			out = append(out, pid)
		}
		k.mu.RUnlock()
	}
	return out
}

// identityOf reads the identity back from an activation's actor name,
// prefix + identity + "$" + sequence (the sequence never holds a "$").
func (k *leanKind) identityOf(pid *actor.PID) string {
	name := strings.TrimPrefix(pid.GetId(), k.prefix)
	if i := strings.LastIndexByte(name, '$'); i >= 0 {
		return name[:i]
	}
	return name
}
