package registry

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"granary/actors/es"
	"granary/messages"
)

// Scheduler keeps the durable timers that wake grains (see
// persistence/reminder): an instance's next probe, expiry or removal
// survives the member it was armed on.
type Scheduler interface {
	Schedule(ctx context.Context, kind, id string, at time.Time) error
	Unschedule(ctx context.Context, kind, id string) error
}

// Config is what the registry's grains need from their member.
type Config struct {
	Grain     es.GrainConfig
	View      View
	Reminders Scheduler
	Hosts     Hosts
	// MaxInstances caps registrations (all services, tombstones
	// included).
	MaxInstances int64
	// ProbeTimeout bounds one health probe; PurgeAfter is how long a
	// removed instance's tombstone stays in the view.
	ProbeTimeout, PurgeAfter time.Duration
}

// DefaultPurgeAfter outlives any activation that lost a race by far.
const DefaultPurgeAfter = 10 * time.Minute

// Validate names the first unusable field.
func (c Config) Validate() error {
	if err := c.Grain.Validate(); err != nil {
		return err
	}
	switch {
	case c.View == nil || c.Reminders == nil:
		return fmt.Errorf("registry config: View and Reminders are required")
	case len(c.Hosts.Allowed) == 0:
		return fmt.Errorf("registry config: no allowed hosts")
	case c.MaxInstances < 1 || c.ProbeTimeout <= 0 || c.PurgeAfter <= 0:
		return fmt.Errorf("registry config: MaxInstances %d, ProbeTimeout %v and PurgeAfter %v must be > 0", c.MaxInstances, c.ProbeTimeout, c.PurgeAfter)
	}
	return nil
}

// minProbeEvery keeps a 1 s ttl from probing more than 4 times a second.
const minProbeEvery = 250 * time.Millisecond

// probeEvery is the contract's "about every ttl_seconds/3".
func probeEvery(ttl time.Duration) time.Duration { return max(ttl/3, minProbeEvery) }

type instanceKind struct {
	cfg   Config
	host  es.Config
	probe *http.Client
}

// InstanceProps are the props of the service_instance kind.
func InstanceProps(cfg Config) *actor.Props { return actor.PropsFromProducer(InstanceProducer(cfg)) }

// InstanceProducer makes the service_instance kind's grains.
func InstanceProducer(cfg Config) actor.Producer {
	k := &instanceKind{cfg: cfg, host: cfg.Grain.HostConfig("instance")}
	k.probe = &http.Client{
		Timeout: cfg.ProbeTimeout,
		// A probe follows no redirect: one could point anywhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			DialContext:       AllowedDialer(cfg.Hosts, cfg.ProbeTimeout).DialContext,
			DisableKeepAlives: true, // a probe every few seconds per instance: no idle pool to bound
		},
	}
	return func() actor.Actor { return &instanceGrain{kind: k} }
}

// AllowedDialer dials only addresses inside hosts, whatever a name
// resolves to.
func AllowedDialer(hosts Hosts, timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netipAddrPort(address)
		if err != nil || !hosts.Contains(ap) {
			return fmt.Errorf("dial %s: outside GRANARY_REGISTRY_ALLOWED_HOSTS", address)
		}
		return nil
	}}
}

type instanceGrain struct {
	kind        *instanceKind
	identity    string
	service, id string
	host        *es.Host[Instance, *messages.InstanceEvent]
	lastBeat    time.Time
	beatRead    bool
	published   uint64
	scheduled   time.Time
	probing     bool
	fails       int
	nextProbe   time.Time
	retry       *time.Timer
}

// probeDone is a probe's result, sent by the probe's goroutine.
type probeDone struct {
	ok     bool
	detail string
	spec   *messages.InstanceSpec
}

// retryWake is the local fallback when the reminder could not be armed.
type retryWake struct{}

func (g *instanceGrain) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *cluster.ClusterInit:
		g.identity = msg.Identity.GetIdentity()
		g.service, g.id, _ = SplitIdentity(g.identity)
		g.host = es.NewSharedHost(&instanceCodec, &g.kind.host, g.identity)
		ctx.SetReceiveTimeout(g.kind.cfg.Grain.IdleTimeout)
	case *actor.ReceiveTimeout:
		ctx.Poison(ctx.Self())
	case *messages.InstanceRequest:
		ctx.Respond(g.serve(ctx, msg))
	case *probeDone:
		g.guard(func() { g.probed(ctx, msg) })
	case *retryWake:
		g.guard(func() { g.wake(ctx) })
	case *actor.Stopping:
		if g.retry != nil {
			g.retry.Stop()
		}
	}
}

func (g *instanceGrain) guard(f func()) {
	defer func() {
		if r := recover(); r != nil {
			g.host.Logger().Error("instance grain panicked; state will reload", "panic", r, "stack", string(debug.Stack()))
			g.host.Invalidate()
		}
	}()
	f()
}

func (g *instanceGrain) fail(f *messages.Failure) *messages.InstanceReply {
	return &messages.InstanceReply{Failure: f, ServedBy: g.kind.cfg.Grain.MemberID}
}

func (g *instanceGrain) serve(ctx actor.Context, req *messages.InstanceRequest) (reply *messages.InstanceReply) {
	defer func() {
		if r := recover(); r != nil {
			g.host.Logger().Error("instance grain panicked; state will reload", "panic", r, "stack", string(debug.Stack()))
			g.host.Invalidate()
			reply = g.fail(messages.Fail(messages.CodeServiceUnavailable, "instance failed; retry"))
		}
	}()
	if g.host == nil || g.service == "" {
		return g.fail(messages.Fail(messages.CodeNotFound, "no such instance"))
	}
	if d := req.GetDeadlineUnixMs(); d > 0 && g.now().UnixMilli() >= d {
		return g.fail(messages.Fail(messages.CodeTimeout, "request expired before the instance could handle it"))
	}
	var created bool
	var err error
	switch cmd := req.GetCommand().(type) {
	case *messages.InstanceRequest_Register:
		created, err = g.register(req.GetCommandId(), cmd.Register.GetSpec())
	case *messages.InstanceRequest_Heartbeat:
		err = g.heartbeat()
	case *messages.InstanceRequest_Deregister:
		err = g.deregister(req.GetCommandId())
	case *messages.InstanceRequest_Get:
		err = g.get()
	case *messages.InstanceRequest_Wake:
		g.wake(ctx)
		return &messages.InstanceReply{ServedBy: g.kind.cfg.Grain.MemberID}
	default:
		err = messages.Fail(messages.CodeValidationFailed, "unknown instance command %T", req.GetCommand())
	}
	if err != nil {
		return g.fail(messages.AsFailure(err, messages.CodeServiceUnavailable))
	}
	// Published before the answer: the gateway that asked reloads its view
	// once answered, so the change applies there at once.
	if err := g.publish(); err != nil {
		return g.fail(messages.Fail(messages.CodeServiceUnavailable, "stored, but the registry view could not be updated; retry"))
	}
	g.arm(ctx)
	return &messages.InstanceReply{Instance: g.state(), Created: created, ServedBy: g.kind.cfg.Grain.MemberID}
}

func (g *instanceGrain) now() time.Time { return g.kind.cfg.Grain.Now() }

func (g *instanceGrain) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), g.kind.cfg.Grain.StoreTimeout)
}

func (g *instanceGrain) state() *messages.InstanceState {
	return g.host.State().ToProto(g.service, g.id, g.lastBeat)
}

// execute runs decide through the host; events carry now.
func (g *instanceGrain) execute(commandID string, decide func(Instance, int64) ([]*messages.InstanceEvent, error)) error {
	c, cancel := g.storeCtx()
	defer cancel()
	now := g.now().UnixMilli()
	_, err := g.host.Execute(c, commandID, func(s Instance) ([]*messages.InstanceEvent, error) {
		evs, err := decide(s, now)
		for _, ev := range evs {
			ev.CommandId, ev.OccurredAtUnixMs = commandID, now
		}
		return evs, err
	})
	if err == nil {
		g.readBeat()
	}
	return err
}

// readBeat learns the latest heartbeat once per activation: another
// activation may have taken heartbeats since the journal's last event.
func (g *instanceGrain) readBeat() {
	if g.beatRead {
		return
	}
	c, cancel := g.storeCtx()
	defer cancel()
	at, err := g.kind.cfg.View.LastBeat(c, g.service, g.id)
	if err != nil {
		g.host.Logger().Warn("reading the last heartbeat failed", "err", err)
		return
	}
	g.beatRead = true
	g.noteBeat(at)
}

func (g *instanceGrain) noteBeat(at time.Time) {
	if at.After(g.lastBeat) {
		g.lastBeat = at
	}
	if rb := time.UnixMilli(g.host.State().RegBeat); rb.After(g.lastBeat) {
		g.lastBeat = rb
	}
}

func (g *instanceGrain) register(commandID string, in *messages.InstanceSpec) (created bool, err error) {
	spec, err := g.kind.cfg.Hosts.NormalizeSpec(in)
	if err != nil {
		return false, err
	}
	if err := g.execute("", func(Instance, int64) ([]*messages.InstanceEvent, error) { return nil, nil }); err != nil {
		return false, err
	}
	created = !g.host.State().Exists()
	if created {
		c, cancel := g.storeCtx()
		n, err := g.kind.cfg.View.Count(c)
		cancel()
		if err != nil {
			return false, messages.Fail(messages.CodeServiceUnavailable, "registry view unavailable")
		}
		if n >= g.kind.cfg.MaxInstances {
			return false, &Error{ErrFull.code, fmt.Sprintf("the registry is full: at most %d instances", g.kind.cfg.MaxInstances)}
		}
	}
	err = g.execute(commandID, func(s Instance, _ int64) ([]*messages.InstanceEvent, error) {
		// The same registration again, while UP, is a heartbeat only: a
		// client that heartbeats by PUT must not grow the journal.
		if s.Exists() && s.Status() == StatusUp && proto.Equal(s.Spec, spec) {
			return nil, nil
		}
		return []*messages.InstanceEvent{{Event: &messages.InstanceEvent_Registered{Registered: &messages.InstanceRegistered{Spec: spec}}}}, nil
	})
	if err != nil {
		return false, err
	}
	if created {
		g.fails, g.nextProbe = 0, time.Time{}
	}
	return created, g.beat()
}

func (g *instanceGrain) beat() error {
	c, cancel := g.storeCtx()
	defer cancel()
	at, err := g.kind.cfg.View.Beat(c, g.service, g.id, g.now())
	if err != nil {
		return messages.Fail(messages.CodeServiceUnavailable, "heartbeat could not be stored")
	}
	g.noteBeat(at)
	return nil
}

func (g *instanceGrain) heartbeat() error {
	if err := g.execute("", func(s Instance, _ int64) ([]*messages.InstanceEvent, error) {
		if !s.Exists() {
			return nil, ErrNotFound
		}
		return nil, nil
	}); err != nil {
		return err
	}
	if err := g.beat(); err != nil {
		return err
	}
	return g.execute("", func(s Instance, _ int64) ([]*messages.InstanceEvent, error) {
		if s.Exists() && s.HeartbeatLost {
			return []*messages.InstanceEvent{{Event: &messages.InstanceEvent_HeartbeatResumed{HeartbeatResumed: &messages.InstanceHeartbeatResumed{}}}}, nil
		}
		return nil, nil
	})
}

func (g *instanceGrain) deregister(commandID string) error {
	return g.execute(commandID, func(s Instance, _ int64) ([]*messages.InstanceEvent, error) {
		if !s.Exists() {
			return nil, ErrNotFound
		}
		return []*messages.InstanceEvent{{Event: &messages.InstanceEvent_Removed{Removed: &messages.InstanceRemoved{Reason: "deregistered"}}}}, nil
	})
}

func (g *instanceGrain) get() error {
	return g.execute("", func(s Instance, _ int64) ([]*messages.InstanceEvent, error) {
		if !s.Exists() {
			return nil, ErrNotFound
		}
		return nil, nil
	})
}

// wake does what is due: expire a silent instance, remove one DOWN for
// 3 × ttl, probe, purge a tombstone; then arms the next wake.
func (g *instanceGrain) wake(ctx actor.Context) {
	g.scheduled = time.Time{} // the reminder's claim moved it: arm again
	if err := g.execute("", func(Instance, int64) ([]*messages.InstanceEvent, error) { return nil, nil }); err != nil {
		g.host.Logger().Warn("instance wake: loading failed", "err", err)
		g.retryLater(ctx)
		return
	}
	s := g.host.State()
	if s.Version == 0 {
		g.unschedule()
		es.PassivateEmpty(ctx)
		return
	}
	now := g.now()
	if s.Removed {
		if err := g.publish(); err == nil && now.UnixMilli() >= s.RemovedAt+g.kind.cfg.PurgeAfter.Milliseconds() {
			c, cancel := g.storeCtx()
			err := g.kind.cfg.View.PurgeInstance(c, g.service, g.id, s.Version)
			cancel()
			if err == nil {
				g.unschedule()
				ctx.Poison(ctx.Self())
				return
			}
			g.host.Logger().Warn("purging a removed instance failed", "err", err)
		}
		g.arm(ctx)
		return
	}
	// Heartbeats may have reached another activation: read the latest.
	g.beatRead = false
	g.readBeat()
	err := g.execute("", func(s Instance, at int64) ([]*messages.InstanceEvent, error) {
		if !s.Exists() {
			return nil, nil
		}
		if s.Status() == StatusDown && s.DownSince > 0 && at >= s.DownSince+3*s.TTL().Milliseconds() {
			return []*messages.InstanceEvent{{Event: &messages.InstanceEvent_Removed{Removed: &messages.InstanceRemoved{Reason: "expired"}}}}, nil
		}
		if !s.HeartbeatLost && at > g.lastBeat.UnixMilli()+s.TTL().Milliseconds() {
			return []*messages.InstanceEvent{{Event: &messages.InstanceEvent_HeartbeatLost{HeartbeatLost: &messages.InstanceHeartbeatLost{}}}}, nil
		}
		return nil, nil
	})
	if err != nil {
		g.host.Logger().Warn("instance wake failed", "err", err)
	}
	s = g.host.State()
	if s.Exists() && s.Spec.GetHealthCheckPath() != "" && !g.probing && !now.Before(g.nextProbe) {
		g.startProbe(ctx, s.Spec)
	}
	if s.Removed {
		g.host.Logger().Info("instance removed", "reason", "expired")
	}
	if err := g.publish(); err != nil {
		g.host.Logger().Warn("publishing the instance failed", "err", err)
	}
	g.arm(ctx)
}

func (g *instanceGrain) startProbe(ctx actor.Context, spec *messages.InstanceSpec) {
	g.probing = true
	g.nextProbe = g.now().Add(probeEvery(time.Duration(spec.GetTtlSeconds()) * time.Second))
	url := "http://" + net.JoinHostPort(hostAddr(spec.GetHost()), strconv.Itoa(int(spec.GetPort()))) + spec.GetHealthCheckPath()
	self, root, client := ctx.Self(), ctx.ActorSystem().Root, g.kind.probe
	go func() {
		ok, detail := probe(client, url)
		root.Send(self, &probeDone{ok: ok, detail: detail, spec: spec})
	}()
}

func hostAddr(host string) string {
	if host == "localhost" {
		return "127.0.0.1"
	}
	return host
}

// probe GETs url once; 2xx and 3xx are healthy.
func probe(client *http.Client, url string) (bool, string) {
	resp, err := client.Get(url)
	if err != nil {
		return false, "probe failed: " + err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, ""
	}
	return false, fmt.Sprintf("probe answered %d", resp.StatusCode)
}

// probed records a probe's result: DOWN after 2 failures in a row, UP
// again after 1 success.
func (g *instanceGrain) probed(ctx actor.Context, p *probeDone) {
	g.probing = false
	s := g.host.State()
	if !s.Exists() || !proto.Equal(s.Spec, p.spec) {
		return // registration changed meanwhile: this probe is of the past
	}
	if p.ok {
		g.fails = 0
	} else {
		g.fails++
	}
	err := g.execute("", func(s Instance, _ int64) ([]*messages.InstanceEvent, error) {
		switch {
		case !s.Exists():
		case p.ok && s.ProbeFailing:
			return []*messages.InstanceEvent{{Event: &messages.InstanceEvent_ProbeRecovered{ProbeRecovered: &messages.InstanceProbeRecovered{}}}}, nil
		case !p.ok && !s.ProbeFailing && g.fails >= 2:
			return []*messages.InstanceEvent{{Event: &messages.InstanceEvent_ProbeFailed{ProbeFailed: &messages.InstanceProbeFailed{Detail: p.detail}}}}, nil
		}
		return nil, nil
	})
	if err != nil {
		g.host.Logger().Warn("recording a probe failed", "err", err)
	}
	if err := g.publish(); err != nil {
		g.host.Logger().Warn("publishing the instance failed", "err", err)
	}
	g.arm(ctx)
}

// publish writes the instance's record to the view unless this
// activation published its version already.
func (g *instanceGrain) publish() error {
	s := g.host.State()
	if s.Version == 0 || s.Version == g.published {
		return nil
	}
	c, cancel := g.storeCtx()
	defer cancel()
	if _, err := g.kind.cfg.View.PutInstance(c, s.Record(g.service, g.id)); err != nil {
		return err
	}
	g.published = s.Version
	return nil
}

// nextWake is when something may next be due.
func (g *instanceGrain) nextWake() (time.Time, bool) {
	s := g.host.State()
	switch {
	case s.Version == 0:
		return time.Time{}, false
	case s.Removed:
		return time.UnixMilli(s.RemovedAt).Add(g.kind.cfg.PurgeAfter), true
	}
	ttl := s.TTL()
	var next time.Time
	earliest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if !s.HeartbeatLost {
		earliest(g.lastBeat.Add(ttl + time.Millisecond))
	}
	if s.DownSince > 0 {
		earliest(time.UnixMilli(s.DownSince).Add(3 * ttl))
	}
	if s.Spec.GetHealthCheckPath() != "" && !g.probing {
		// A fixed time, not "a period from now": heartbeats re-arm the
		// reminder, and a moving target would never come due. A probe in
		// flight re-arms when it returns.
		if g.nextProbe.IsZero() {
			g.nextProbe = g.now()
		}
		earliest(g.nextProbe)
	}
	if g.published != s.Version {
		earliest(g.now().Add(time.Second)) // publishing failed: try again soon
	}
	if next.IsZero() {
		// A DOWN instance without a probe waits for a heartbeat; still
		// wake it once per ttl in case the heartbeat went to another
		// activation.
		next = g.now().Add(ttl)
	}
	return next, true
}

// arm sets the instance's reminder to its next wake.
func (g *instanceGrain) arm(ctx actor.Context) {
	next, ok := g.nextWake()
	if !ok {
		return
	}
	if next.Equal(g.scheduled) {
		return
	}
	c, cancel := g.storeCtx()
	err := g.kind.cfg.Reminders.Schedule(c, InstanceKind, g.identity, next)
	cancel()
	if err != nil {
		g.host.Logger().Warn("arming the instance's reminder failed; retrying from this member", "err", err)
		g.retryLater(ctx)
		return
	}
	g.scheduled = next
}

// retryLater wakes the grain from this member in a second, for when the
// durable reminder could not be written.
func (g *instanceGrain) retryLater(ctx actor.Context) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	if g.retry != nil {
		g.retry.Stop()
	}
	g.retry = time.AfterFunc(time.Second, func() { root.Send(self, &retryWake{}) })
}

func (g *instanceGrain) unschedule() {
	c, cancel := g.storeCtx()
	defer cancel()
	if err := g.kind.cfg.Reminders.Unschedule(c, InstanceKind, g.identity); err != nil {
		g.host.Logger().Warn("cancelling the instance's reminder failed", "err", err)
	}
	g.scheduled = time.Time{}
}

func netipAddrPort(address string) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dial address %q: %w", address, err)
	}
	return ap.Addr(), nil
}
