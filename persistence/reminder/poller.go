package reminder

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Poller defaults, used for zero fields.
const (
	DefaultInterval     = 200 * time.Millisecond
	DefaultLease        = 5 * time.Second
	DefaultBatch        = 64
	DefaultConcurrency  = 16
	DefaultWakeTimeout  = 5 * time.Second
	DefaultClaimTimeout = time.Second
	// failureLogEvery spaces the log lines of a store that keeps failing:
	// an outage is one line per this, with a count, not one per tick.
	failureLogEvery = 30 * time.Second
)

// Poller claims due reminders from Store and wakes their grains through
// Wake. Every member runs one; the leases keep them from waking the same
// reminder twice within a lease. Fields are read once, when Run starts.
type Poller struct {
	Store Store
	// Wake wakes d's grain (e.g. a cluster call to it). An error, or a
	// grain that neither re-arms nor cancels, makes the reminder fire again
	// once the lease ends.
	Wake func(ctx context.Context, d Due) error
	// Interval is the wait between claims when nothing more was due.
	Interval time.Duration
	// Lease is how long a claimed reminder is kept from other claimers.
	// It should exceed WakeTimeout, or a slow wake may be repeated
	// elsewhere while it is still running.
	Lease time.Duration
	// Batch is the most reminders claimed in one round.
	Batch int
	// Concurrency is the most Wake calls in flight; a round claims no more
	// than there are free slots, so no claimed reminder waits in a queue
	// while its lease runs out.
	Concurrency int
	// WakeTimeout bounds each Wake call.
	WakeTimeout time.Duration
	// ClaimTimeout bounds each Claim call.
	ClaimTimeout time.Duration
	// Now is the clock reminders are judged due by (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger

	claimed, woken, wakeErrors, claimErrors atomic.Uint64
}

// Stats counts what a Poller has done since it was made.
type Stats struct {
	Claimed     uint64 // reminders claimed
	Woken       uint64 // Wake calls that returned nil
	WakeErrors  uint64 // Wake calls that returned an error
	ClaimErrors uint64 // failed Claim calls
}

// Stats returns the counters; safe to call while Run runs.
func (p *Poller) Stats() Stats {
	return Stats{
		Claimed:     p.claimed.Load(),
		Woken:       p.woken.Load(),
		WakeErrors:  p.wakeErrors.Load(),
		ClaimErrors: p.claimErrors.Load(),
	}
}

// pollConfig is a Poller's fields with defaults applied.
type pollConfig struct {
	interval, lease, wakeTimeout, claimTimeout time.Duration
	batch, concurrency                         int
	now                                        func() time.Time
	log                                        *slog.Logger
}

func (p *Poller) config() pollConfig {
	c := pollConfig{
		interval: p.Interval, lease: p.Lease, wakeTimeout: p.WakeTimeout, claimTimeout: p.ClaimTimeout,
		batch: p.Batch, concurrency: p.Concurrency, now: p.Now, log: p.Logger,
	}
	if c.interval <= 0 {
		c.interval = DefaultInterval
	}
	if c.lease <= 0 {
		c.lease = DefaultLease
	}
	if c.wakeTimeout <= 0 {
		c.wakeTimeout = DefaultWakeTimeout
	}
	if c.claimTimeout <= 0 {
		c.claimTimeout = DefaultClaimTimeout
	}
	if c.batch <= 0 {
		c.batch = DefaultBatch
	}
	if c.concurrency <= 0 {
		c.concurrency = DefaultConcurrency
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c
}

// Run claims and wakes until ctx ends. After a round that claimed all it
// asked for it claims again at once; otherwise it waits Interval. Store
// errors are logged (the first, then one line per 30s with a count, then
// the recovery) and retried after Interval. Wake calls get a context
// derived from ctx, so ending ctx cancels them; Run returns only after
// every Wake it started has returned.
func (p *Poller) Run(ctx context.Context) {
	c := p.config()
	slots := make(chan struct{}, c.concurrency)
	var wakes sync.WaitGroup
	defer wakes.Wait()
	var failures failureLog
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C

	for {
		// Wait for one free slot, then take whatever else is free up to a
		// batch: claiming more than can run would let leases expire unwoken.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		want := 1
		for want < c.batch {
			select {
			case slots <- struct{}{}:
				want++
				continue
			default:
			}
			break
		}

		now := c.now()
		claimCtx, cancel := context.WithTimeout(ctx, c.claimTimeout)
		due, err := p.Store.Claim(claimCtx, now, c.lease, want)
		cancel()
		for range want - len(due) {
			<-slots
		}
		p.claimed.Add(uint64(len(due)))
		for _, d := range due {
			wakes.Add(1)
			go func() {
				defer wakes.Done()
				defer func() { <-slots }()
				p.wake(ctx, c, d)
			}()
		}

		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.claimErrors.Add(1)
			failures.fail(c.log, now, err)
		} else {
			failures.ok(c.log)
			if len(due) == want {
				continue
			}
		}
		timer.Reset(c.interval)
		select {
		case <-timer.C:
		case <-ctx.Done():
			return
		}
	}
}

func (p *Poller) wake(ctx context.Context, c pollConfig, d Due) {
	ctx, cancel := context.WithTimeout(ctx, c.wakeTimeout)
	defer cancel()
	if err := p.Wake(ctx, d); err != nil {
		p.wakeErrors.Add(1)
		// One line per failed wake is bounded by the claims, which the
		// lease spaces out per reminder.
		c.log.Warn("reminder wake failed; it fires again after the lease",
			"kind", d.Kind, "id", d.ID, "due", d.At, "lease", c.lease, "err", err)
		return
	}
	p.woken.Add(1)
}

// failureLog rate-limits the log of a failing store. Owned by Run's
// goroutine.
type failureLog struct {
	failing    bool
	count      int       // failures since the last line
	total      int       // failures since the store last worked
	lastLogged time.Time // by the Poller's clock
}

func (f *failureLog) fail(log *slog.Logger, now time.Time, err error) {
	f.count++
	f.total++
	if !f.failing {
		f.failing = true
		f.lastLogged = now
		f.count = 0
		log.Error("reminder claim failed; retrying every interval", "err", err)
		return
	}
	if now.Sub(f.lastLogged) >= failureLogEvery {
		log.Error("reminder claims still failing", "failures", f.count, "since", f.lastLogged, "err", err)
		f.lastLogged = now
		f.count = 0
	}
}

func (f *failureLog) ok(log *slog.Logger) {
	if f.failing {
		log.Info("reminder claims work again", "failures", f.total)
	}
	*f = failureLog{}
}
