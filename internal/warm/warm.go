// Package warm runs short functions on goroutines that outlive one call.
// A fresh goroutine starts on a small stack, and one that goes deep (a
// grain's decision, a journal append through go-redis) grows it on every
// start: ~5 % of a member's CPU under load in issue 10's profiles. A
// worker that finished waits a little for the next function with its
// stack already grown.
package warm

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Pool runs functions on warm workers. Go never blocks: a function goes to
// an idle worker if one is waiting, else to a new worker (up to the
// pool's bound), else to a plain goroutine. A worker exits after Idle
// without work, so a quiet process holds no worker and nothing needs
// stopping.
type Pool struct {
	work       chan func() // unbuffered: a send succeeds only into an idle worker
	workers    atomic.Int32
	maxWorkers int32
	idle       time.Duration
}

// DefaultIdle is how long a worker waits for another function.
const DefaultIdle = 200 * time.Millisecond

// New returns a pool of at most maxWorkers workers that each wait idle
// for more work before exiting.
func New(maxWorkers int, idle time.Duration) *Pool {
	p := &Pool{work: make(chan func()), maxWorkers: int32(maxWorkers), idle: idle}
	pools.Lock()
	pools.all = append(pools.all, p)
	pools.Unlock()
	return p
}

// pools lists every pool so Quiesce can reach the package-level ones the
// grain runtime keeps. Pools are made by code, not per request, so the
// list stays as short as the program text.
var pools struct {
	sync.Mutex
	all []*Pool
}

// Quiesce tells every idle worker of every pool to exit now and waits
// until none is alive, or reports the pools that still had workers at the
// deadline. It is for a test binary's leak check: an idle worker would
// exit on its own after Idle, but a check that races that timer on a busy
// machine fails now and then; one that quiesces first fails only on a
// worker that is really stuck.
func Quiesce(timeout time.Duration) error {
	pools.Lock()
	all := append([]*Pool(nil), pools.all...)
	pools.Unlock()
	deadline := time.Now().Add(timeout)
	var errs []error
	for _, p := range all {
		for p.workers.Load() > 0 {
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("warm pool: %d workers still busy after %v", p.workers.Load(), timeout))
				break
			}
			select {
			case p.work <- nil: // an idle worker takes nil as "exit"
			default:
				time.Sleep(time.Millisecond)
			}
		}
	}
	return errors.Join(errs...)
}

// Go runs fn, which must not be nil (a nil is how Quiesce ends a worker).
func (p *Pool) Go(fn func()) {
	if fn == nil {
		panic("warm: Go(nil)")
	}
	select {
	case p.work <- fn:
		return
	default:
	}
	if p.workers.Add(1) > p.maxWorkers {
		p.workers.Add(-1)
		go fn()
		return
	}
	go p.worker(fn)
}

// Workers is how many workers are alive (busy or idle).
func (p *Pool) Workers() int { return int(p.workers.Load()) }

func (p *Pool) worker(fn func()) {
	defer p.workers.Add(-1)
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		fn()
		t.Reset(p.idle)
		select {
		case fn = <-p.work:
			if fn == nil {
				return
			}
		case <-t.C:
			return
		}
	}
}
