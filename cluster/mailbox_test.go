package cluster

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// recordingInvoker records what a mailbox delivers and fails the test if
// two deliveries ever overlap (a mailbox has one consumer).
type recordingInvoker struct {
	t       *testing.T
	inside  atomic.Int32
	mu      sync.Mutex
	user    []any
	system  []any
	failed  []any
	panicOn any
	done    chan struct{}
	want    int
}

func (r *recordingInvoker) enter() {
	if r.inside.Add(1) != 1 {
		r.t.Error("two messages delivered at once")
	}
}

func (r *recordingInvoker) leave() { r.inside.Add(-1) }

func (r *recordingInvoker) InvokeSystemMessage(m any) {
	r.enter()
	defer r.leave()
	r.mu.Lock()
	r.system = append(r.system, m)
	r.mu.Unlock()
}

func (r *recordingInvoker) InvokeUserMessage(m any) {
	r.enter()
	defer r.leave()
	if r.panicOn != nil && m == r.panicOn {
		panic("boom")
	}
	r.mu.Lock()
	r.user = append(r.user, m)
	n := len(r.user)
	r.mu.Unlock()
	if n == r.want {
		close(r.done)
	}
}

func (r *recordingInvoker) EscalateFailure(reason, m any) {
	r.mu.Lock()
	r.failed = append(r.failed, m)
	r.mu.Unlock()
}

func (r *recordingInvoker) snapshot() (user, system, failed []any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]any(nil), r.user...), append([]any(nil), r.system...), append([]any(nil), r.failed...)
}

type posted struct{ producer, seq int }

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Every message posted by concurrent producers is delivered once, in each
// producer's order, never two at once, and the drained mailbox holds no
// queue.
func TestGrainMailboxDeliversConcurrentPostsInOrder(t *testing.T) {
	const producers, each = 8, 2000
	inv := &recordingInvoker{t: t, done: make(chan struct{}), want: producers * each}
	m := newGrainMailbox().(*grainMailbox)
	m.RegisterHandlers(inv, grainDispatcher)
	m.Start()
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m.PostUserMessage(posted{p, i})
				if i%500 == 0 {
					m.PostSystemMessage(&actor.Watch{})
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-inv.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("delivered %d of %d messages", len(inv.user), inv.want)
	}
	user, _, _ := inv.snapshot()
	next := make([]int, producers)
	for _, msg := range user {
		p := msg.(posted)
		if p.seq != next[p.producer] {
			t.Fatalf("producer %d: got message %d, want %d", p.producer, p.seq, next[p.producer])
		}
		next[p.producer]++
	}
	waitUntil(t, "the system messages", func() bool { _, s, _ := inv.snapshot(); return len(s) == producers*each/500 })
	waitUntil(t, "the mailbox to go idle", func() bool { return m.status.Load() == mailboxIdle })
	if n := m.UserMessageCount(); n != 0 {
		t.Fatalf("UserMessageCount = %d on an idle mailbox", n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.q != nil {
		t.Fatalf("an idle mailbox still holds queues: %+v", *m.q)
	}
}

// While suspended a mailbox runs system messages only; resumed, it runs
// the user messages that waited, in order. A panic is escalated with the
// message that caused it, and the mailbox keeps running.
func TestGrainMailboxSuspendsAndEscalates(t *testing.T) {
	boom := posted{0, 2}
	inv := &recordingInvoker{t: t, done: make(chan struct{}), want: 3, panicOn: boom}
	m := newGrainMailbox().(*grainMailbox)
	m.RegisterHandlers(inv, grainDispatcher)
	m.PostSystemMessage(&actor.SuspendMailbox{})
	m.PostUserMessage(posted{0, 0})
	m.PostUserMessage(posted{0, 1})
	stop := &actor.Stop{}
	m.PostSystemMessage(stop)
	waitUntil(t, "the system message", func() bool { _, s, _ := inv.snapshot(); return len(s) == 1 })
	if u, _, _ := inv.snapshot(); len(u) != 0 {
		t.Fatalf("a suspended mailbox delivered %v", u)
	}
	if n := m.UserMessageCount(); n != 2 {
		t.Fatalf("UserMessageCount = %d, want 2 waiting", n)
	}
	m.PostUserMessage(boom)
	m.PostUserMessage(posted{0, 3})
	m.PostSystemMessage(&actor.ResumeMailbox{})
	select {
	case <-inv.done:
	case <-time.After(10 * time.Second):
		u, _, f := inv.snapshot()
		t.Fatalf("delivered %v, escalated %v", u, f)
	}
	user, system, failed := inv.snapshot()
	if want := []any{posted{0, 0}, posted{0, 1}, posted{0, 3}}; len(user) != 3 || user[0] != want[0] || user[1] != want[1] || user[2] != want[2] {
		t.Fatalf("delivered %v, want %v", user, want)
	}
	if len(system) != 1 || system[0] != stop {
		t.Fatalf("system messages %v: Suspend/Resume are the mailbox's own", system)
	}
	if len(failed) != 1 || failed[0] != boom {
		t.Fatalf("escalated %v, want the panicking message", failed)
	}
}

// Requests queued behind a Stop are answered as dead letters, at once: the
// pinned Proto.Actor drops user messages that reach a stopped actor without
// a word, so their callers waited out their timeout (1 s per attempt for a
// grain call that raced its grain's passivation).
func TestGrainMailboxDeadLettersWhatAStoppedActorLeft(t *testing.T) {
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	release := make(chan struct{})
	blocked := make(chan struct{})
	pid := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if ctx.Message() == "block" {
			close(blocked)
			<-release
		}
	}, grainProps...))
	system.Root.Send(pid, "block")
	<-blocked
	system.Root.Stop(pid)
	var futures []*actor.Future
	for range 5 {
		futures = append(futures, system.Root.RequestFuture(pid, "hello", 10*time.Second))
	}
	close(release)
	for i, f := range futures {
		if _, err := f.Result(); err != actor.ErrDeadLetter {
			t.Fatalf("request %d queued behind the stop: %v, want %v", i, err, actor.ErrDeadLetter)
		}
	}
}
