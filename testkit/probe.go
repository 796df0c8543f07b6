package testkit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
)

// DefaultProbeCapacity is how many unread messages a probe keeps.
const DefaultProbeCapacity = 1024

// Probe is an actor that records every message it receives, so a test can
// assert on what arrives and when: wire its PID in as the sender of a
// request, as the watcher of another actor (Watch), as a subscriber to the
// event stream (Subscribe), or anywhere a PID is expected.
//
// A probe keeps at most its capacity of unread messages; when full it
// drops further ones and the next expectation (or the end of the test)
// fails saying how many were lost, rather than letting a queue grow
// without bound. Its own lifecycle messages (*actor.Started, *actor.Stopping,
// *actor.Stopped, *actor.Restarting) are not recorded; *actor.Terminated of
// a watched actor is. The probe stops when the test ends.
//
// The expectations (Expect, ExpectMatch, ExpectNoMessage, Next) are meant
// for the test goroutine; the probe itself is safe to send to from anywhere.
type Probe struct {
	// PID is the probe's address, reachable from every member of the
	// cluster its actor system belongs to.
	PID *actor.PID

	system   *actor.ActorSystem
	inbox    chan Received
	capacity int
	dropped  atomic.Int64

	mu   sync.Mutex
	subs []*eventstream.Subscription
}

// Received is one message a probe recorded.
type Received struct {
	Message any
	// Sender is the PID to answer to (nil for a plain Send); answering it
	// with system.Root.Send completes the sender's request.
	Sender *actor.PID
}

// ProbeOption adjusts a probe.
type ProbeOption func(*probeConfig)

type probeConfig struct {
	capacity int
	name     string
}

// WithProbeCapacity sets how many unread messages the probe keeps (default
// DefaultProbeCapacity).
func WithProbeCapacity(n int) ProbeOption { return func(c *probeConfig) { c.capacity = n } }

// WithProbeName spawns the probe under a fixed name instead of a generated
// one, for code that addresses actors by name.
func WithProbeName(name string) ProbeOption { return func(c *probeConfig) { c.name = name } }

// watchRequest asks the probe actor to watch a PID; done is closed once the
// watch is registered.
type watchRequest struct {
	pid  *actor.PID
	done chan struct{}
}

// NewProbe spawns a probe in system. It stops, and its event-stream
// subscriptions end, when the test ends.
func NewProbe(t testing.TB, system *actor.ActorSystem, opts ...ProbeOption) *Probe {
	t.Helper()
	cfg := probeConfig{capacity: DefaultProbeCapacity}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.capacity < 1 {
		t.Fatalf("probe capacity %d must be >= 1", cfg.capacity)
	}
	p := &Probe{system: system, inbox: make(chan Received, cfg.capacity), capacity: cfg.capacity}
	props := actor.PropsFromFunc(p.receive)
	if cfg.name != "" {
		pid, err := system.Root.SpawnNamed(props, cfg.name)
		if err != nil {
			t.Fatalf("spawn probe %q: %v", cfg.name, err)
		}
		p.PID = pid
	} else {
		p.PID = system.Root.SpawnPrefix(props, "probe")
	}
	t.Cleanup(func() {
		p.mu.Lock()
		for _, s := range p.subs {
			system.EventStream.Unsubscribe(s)
		}
		p.subs = nil
		p.mu.Unlock()
		if !system.IsStopped() {
			_ = system.Root.StopFuture(p.PID).Wait()
		}
		if n := p.dropped.Load(); n > 0 {
			t.Errorf("probe %s dropped %d messages: its buffer of %d was full (drain it or use WithProbeCapacity)", p.PID.Id, n, p.capacity)
		}
	})
	return p
}

// NewProbe spawns a probe on member i (see the package-level NewProbe).
func (c *Cluster) NewProbe(i int, opts ...ProbeOption) *Probe {
	c.t.Helper()
	return NewProbe(c.t, c.Member(i).System, opts...)
}

func (p *Probe) receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started, *actor.Stopping, *actor.Stopped, *actor.Restarting:
		return
	case watchRequest:
		ctx.Watch(msg.pid)
		close(msg.done)
		return
	}
	select {
	case p.inbox <- Received{Message: ctx.Message(), Sender: ctx.Sender()}:
	default:
		p.dropped.Add(1)
	}
}

// Watch makes the probe watch pid (local or on another member): when that
// actor stops, or its member is known to be gone, the probe records an
// *actor.Terminated for it. Watch returns once the watch is in place.
func (p *Probe) Watch(t testing.TB, pid *actor.PID) {
	t.Helper()
	done := make(chan struct{})
	p.system.Root.Send(p.PID, watchRequest{pid: pid, done: done})
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		t.Fatalf("probe %s: watching %s not registered within 5s", p.PID.Id, pid)
	}
}

// Subscribe forwards to the probe every event on its actor system's event
// stream for which keep returns true (every event when keep is nil), until
// the test ends. Keep the filter narrow: the stream is busy.
func (p *Probe) Subscribe(keep func(evt any) bool) {
	handler := func(evt any) { p.system.Root.Send(p.PID, evt) }
	var s *eventstream.Subscription
	if keep == nil {
		s = p.system.EventStream.Subscribe(handler)
	} else {
		s = p.system.EventStream.SubscribeWithPredicate(handler, keep)
	}
	p.mu.Lock()
	p.subs = append(p.subs, s)
	p.mu.Unlock()
}

// Len is the number of recorded messages not yet taken.
func (p *Probe) Len() int { return len(p.inbox) }

// Dropped is the number of messages lost because the buffer was full.
func (p *Probe) Dropped() int64 { return p.dropped.Load() }

// Next takes the next recorded message, whatever its type, failing the test
// if none arrives within timeout or if the probe has dropped messages.
func (p *Probe) Next(t testing.TB, timeout time.Duration) Received {
	t.Helper()
	r, ok := p.next(t, timeout)
	if !ok {
		t.Fatalf("probe %s: no message within %v", p.PID.Id, timeout)
	}
	return r
}

func (p *Probe) next(t testing.TB, timeout time.Duration) (Received, bool) {
	t.Helper()
	p.checkDropped(t)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-p.inbox:
		return r, true
	case <-timer.C:
		p.checkDropped(t)
		return Received{}, false
	}
}

func (p *Probe) checkDropped(t testing.TB) {
	t.Helper()
	if n := p.dropped.Load(); n > 0 {
		t.Fatalf("probe %s dropped %d messages: its buffer of %d was full (drain it or use WithProbeCapacity)", p.PID.Id, n, p.capacity)
	}
}

// Expect takes the probe's next message and fails the test unless it
// arrives within timeout and is a T.
func Expect[T any](t testing.TB, p *Probe, timeout time.Duration) T {
	t.Helper()
	r, ok := p.next(t, timeout)
	if !ok {
		var zero T
		t.Fatalf("probe %s: expected %T within %v, got nothing", p.PID.Id, zero, timeout)
	}
	msg, ok := r.Message.(T)
	if !ok {
		var zero T
		t.Fatalf("probe %s: expected %T, got %T: %v", p.PID.Id, zero, r.Message, r.Message)
	}
	return msg
}

// ExpectMatch takes messages until one is a T for which match returns true
// (nil matches any T), discarding the others, and fails the test if none
// does within timeout. Use it where unrelated messages may come first, such
// as a series of topology events.
func ExpectMatch[T any](t testing.TB, p *Probe, timeout time.Duration, match func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var skipped []string
	for {
		r, ok := p.next(t, time.Until(deadline))
		if !ok {
			var zero T
			t.Fatalf("probe %s: no matching %T within %v; discarded %d: %v", p.PID.Id, zero, timeout, len(skipped), skipped)
		}
		if msg, ok := r.Message.(T); ok && (match == nil || match(msg)) {
			return msg
		}
		if len(skipped) < 20 {
			skipped = append(skipped, fmt.Sprintf("%T", r.Message))
		}
	}
}

// ExpectNoMessage fails the test if the probe receives anything within d
// (or already holds an unread message). It waits the whole of d.
func ExpectNoMessage(t testing.TB, p *Probe, d time.Duration) {
	t.Helper()
	if r, ok := p.next(t, d); ok {
		t.Fatalf("probe %s: expected no message for %v, got %T: %v", p.PID.Id, d, r.Message, r.Message)
	}
}
