package cluster

import (
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// warmDispatcher runs grain mailboxes on goroutines that outlive one run.
// Proto.Actor's default starts a goroutine for every mailbox run, so under
// load almost every message of a grain began on a fresh, small stack and
// grew it on its first deep call (account.Decide, Host.Settle): ~5 % of a
// member's CPU in the deposit profile (issue 10). A worker that finished a
// run waits a little for the next one with its stack already grown.
//
// Schedule never blocks: a run goes to an idle worker if one is waiting,
// else to a new worker (up to maxWorkers), else to a plain goroutine. A
// worker exits after idle without work, so the pool holds nothing when the
// member is quiet and no goroutine outlives its usefulness.
type warmDispatcher struct {
	work       chan func() // unbuffered: a send succeeds only into an idle worker
	workers    atomic.Int32
	maxWorkers int32
	idle       time.Duration
	throughput int
}

const (
	// warmIdle is how long a worker waits for another run.
	warmIdle = 200 * time.Millisecond
	// warmWorkers bounds the pool; past it runs get plain goroutines.
	warmWorkers = 256
)

func newWarmDispatcher(throughput int) *warmDispatcher {
	return &warmDispatcher{work: make(chan func()), maxWorkers: warmWorkers, idle: warmIdle, throughput: throughput}
}

func (d *warmDispatcher) Throughput() int { return d.throughput }

func (d *warmDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
		return
	default:
	}
	if d.workers.Add(1) > d.maxWorkers {
		d.workers.Add(-1)
		go fn()
		return
	}
	go d.worker(fn)
}

func (d *warmDispatcher) worker(fn func()) {
	defer d.workers.Add(-1)
	t := time.NewTimer(d.idle)
	defer t.Stop()
	for {
		fn()
		t.Reset(d.idle)
		select {
		case fn = <-d.work:
		case <-t.C:
			return
		}
	}
}

var _ actor.Dispatcher = (*warmDispatcher)(nil)

// grainDispatcher is shared by every grain kind of the process: idle
// workers serve any mailbox.
var grainDispatcher = newWarmDispatcher(300)
