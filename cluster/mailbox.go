package cluster

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// grainMailbox is the mailbox of every grain: Proto.Actor's mailbox
// semantics (system messages first, suspension, at most one consumer,
// panics escalated to the supervisor, a yield every throughput messages)
// in 48 bytes while idle. Proto.Actor's lock-free mailbox holds two queues
// with a stub node each, ~165 B that 100 000 idle grains keep for nothing
// (issue 10); here the queues exist only while messages wait, and the
// dispatcher is not stored: grain mailboxes always run on grainDispatcher.
type grainMailbox struct {
	mu sync.Mutex
	q  *mailQueues // nil while both queues are empty
	// status is idle or running: whoever moves it to running schedules
	// the consumer.
	status atomic.Int32
	// suspended is written by the consumer; atomic because the consumer
	// that looks for more work may overlap the next one's start.
	suspended atomic.Bool
	// stopping: the actor ran a Stop; once it is out of the registry the
	// user messages left are dead letters (consumer only).
	stopping bool
	invoker  actor.MessageInvoker
}

type mailQueues struct{ sys, user []any }

const (
	mailboxIdle int32 = iota
	mailboxRunning
)

func newGrainMailbox() actor.Mailbox { return &grainMailbox{} }

func (m *grainMailbox) PostUserMessage(msg any) {
	// Batches are delivered message by message and then as a whole, as
	// Proto.Actor's mailbox does.
	if batch, ok := msg.(actor.MessageBatch); ok {
		for _, each := range batch.GetMessages() {
			m.PostUserMessage(each)
		}
	}
	if env, ok := msg.(*actor.MessageEnvelope); ok {
		if batch, ok := env.Message.(actor.MessageBatch); ok {
			for _, each := range batch.GetMessages() {
				m.PostUserMessage(each)
			}
		}
	}
	m.push(false, msg)
}

func (m *grainMailbox) PostSystemMessage(msg any) { m.push(true, msg) }

// push queues msg and makes sure a consumer will run.
func (m *grainMailbox) push(system bool, msg any) {
	m.mu.Lock()
	if m.q == nil {
		m.q = &mailQueues{}
	}
	if system {
		m.q.sys = append(m.q.sys, msg)
	} else {
		m.q.user = append(m.q.user, msg)
	}
	m.mu.Unlock()
	m.schedule()
}

func (m *grainMailbox) RegisterHandlers(invoker actor.MessageInvoker, _ actor.Dispatcher) {
	m.invoker = invoker
}

func (m *grainMailbox) Start() {}

func (m *grainMailbox) UserMessageCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.q == nil {
		return 0
	}
	return len(m.q.user)
}

func (m *grainMailbox) schedule() {
	if m.status.CompareAndSwap(mailboxIdle, mailboxRunning) {
		grainDispatcher.Schedule(m.process)
	}
}

func (m *grainMailbox) process() {
	for {
		m.run()
		m.status.Store(mailboxIdle)
		// A message posted after run's last look found the mailbox
		// running and did not schedule it: look again.
		if !m.hasWork() || !m.status.CompareAndSwap(mailboxIdle, mailboxRunning) {
			return
		}
	}
}

func (m *grainMailbox) hasWork() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.q != nil && (len(m.q.sys) > 0 || (!m.suspended.Load() && len(m.q.user) > 0))
}

func (m *grainMailbox) run() {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	i, t := 0, grainDispatcher.Throughput()
	for {
		if i > t {
			i = 0
			runtime.Gosched()
		}
		i++
		var system bool
		if msg, system = m.next(); msg == nil {
			return
		}
		if !system {
			if m.stopping && m.gone() {
				m.deadLetter(msg)
				continue
			}
			m.invoker.InvokeUserMessage(msg)
			continue
		}
		switch msg.(type) {
		case *actor.Stop:
			m.invoker.InvokeSystemMessage(msg)
			m.stopping = true
		case *actor.SuspendMailbox:
			m.suspended.Store(true)
		case *actor.ResumeMailbox:
			m.suspended.Store(false)
		default:
			m.invoker.InvokeSystemMessage(msg)
		}
	}
}

// gone reports whether the actor has left the process registry (it
// stopped): Proto.Actor would drop a user message now without a word, and
// its sender would wait out its timeout.
func (m *grainMailbox) gone() bool {
	ctx, ok := m.invoker.(actor.Context)
	if !ok {
		return false
	}
	_, alive := ctx.ActorSystem().ProcessRegistry.GetLocal(ctx.Self().GetId())
	return !alive
}

// deadLetter hands msg to dead letters, which answer a request's sender
// at once (DeadLetterResponse), as for any message to a stopped actor.
func (m *grainMailbox) deadLetter(msg any) {
	ctx := m.invoker.(actor.Context)
	ctx.ActorSystem().DeadLetter.SendUserMessage(ctx.Self(), msg)
}

// next takes the next system message, or else (unless suspended) the next
// user message; nil when there is none to run.
func (m *grainMailbox) next() (msg any, system bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.q
	switch {
	case q == nil:
		return nil, false
	case len(q.sys) > 0:
		msg, q.sys[0], q.sys = q.sys[0], nil, q.sys[1:]
		system = true
	case !m.suspended.Load() && len(q.user) > 0:
		msg, q.user[0], q.user = q.user[0], nil, q.user[1:]
	default:
		return nil, false
	}
	if len(q.sys) == 0 && len(q.user) == 0 {
		m.q = nil // an idle grain holds no queue
	}
	return msg, system
}
