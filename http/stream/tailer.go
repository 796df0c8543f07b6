// Package stream owns live event streams: a tailer that follows every
// journal partition of the cluster (whoever wrote the events) and fans them
// out to subscribers through bounded buffers, plus cluster topology
// changes. A subscriber that falls too far behind is dropped, never waited
// for: slow consumers cannot hold back grains or other subscribers.
package stream

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"granary/persistence"
)

// Item is one thing a subscriber receives: a journal event or a topology
// change (exactly one is set).
type Item struct {
	Event    *persistence.Event
	Topology *Topology
}

// Topology is a membership change as the member saw it.
type Topology struct {
	Members []string `json:"members"`
	Joined  []string `json:"joined"`
	Left    []string `json:"left"`
}

// Sub is one subscription. C is closed when the subscription ends: by
// Unsubscribe, or because the subscriber fell behind (Overflowed).
type Sub struct {
	C          chan Item
	filter     func(*persistence.Event) bool
	topology   bool
	overflowed bool
}

// Overflowed reports whether the tailer dropped this subscriber for being
// too slow; read it after C is closed.
func (s *Sub) Overflowed() bool { return s.overflowed }

// Tailer follows the journal and fans events out.
type Tailer struct {
	journal  persistence.Journal
	interval time.Duration
	batch    int
	maxSubs  int
	log      *slog.Logger

	mu   sync.Mutex
	subs map[*Sub]struct{}
}

// NewTailer polls every interval; at most maxSubs subscribers at once.
func NewTailer(j persistence.Journal, interval time.Duration, maxSubs int, log *slog.Logger) *Tailer {
	return &Tailer{journal: j, interval: interval, batch: 500, maxSubs: maxSubs, log: log, subs: map[*Sub]struct{}{}}
}

// ErrTooManySubscribers refuses a subscription past the limit.
type ErrTooManySubscribers struct{ Max int }

func (e ErrTooManySubscribers) Error() string { return "too many live streams" }

// Subscribe returns a subscription receiving the events filter accepts
// (nil: all) and, when topology is set, topology changes; buffer bounds what
// it may lag behind before it is dropped.
func (t *Tailer) Subscribe(filter func(*persistence.Event) bool, topology bool, buffer int) (*Sub, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.subs) >= t.maxSubs {
		return nil, ErrTooManySubscribers{t.maxSubs}
	}
	s := &Sub{C: make(chan Item, buffer), filter: filter, topology: topology}
	t.subs[s] = struct{}{}
	return s, nil
}

// Unsubscribe ends s; it is safe to call more than once.
func (t *Tailer) Unsubscribe(s *Sub) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.subs[s]; ok {
		delete(t.subs, s)
		close(s.C)
	}
}

// PublishTopology sends a topology change to the subscribers that want it.
func (t *Tailer) PublishTopology(top Topology) {
	t.deliver(Item{Topology: &top}, func(s *Sub) bool { return s.topology })
}

// deliver offers item to every matching subscriber without blocking; one
// whose buffer is full is dropped (its C closes, Overflowed is set).
func (t *Tailer) deliver(item Item, wants func(*Sub) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.subs {
		if !wants(s) {
			continue
		}
		select {
		case s.C <- item:
		default:
			s.overflowed = true
			delete(t.subs, s)
			close(s.C)
		}
	}
}

// Run follows every partition from its current head until ctx ends.
func (t *Tailer) Run(ctx context.Context) {
	positions := make([]uint64, t.journal.Partitions())
	for p := range positions {
		for {
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			head, err := t.journal.Head(hctx, p)
			cancel()
			if err == nil {
				positions[p] = head
				break
			}
			t.log.Warn("stream tailer: reading the journal head failed; retrying", "partition", p, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(t.interval * 10):
			}
		}
	}
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		for p := range positions {
			positions[p] = t.poll(ctx, p, positions[p])
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// poll delivers what partition p holds after pos and returns the new pos.
func (t *Tailer) poll(ctx context.Context, p int, pos uint64) uint64 {
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		events, err := t.journal.ReadPartition(rctx, p, pos, t.batch)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				t.log.Warn("stream tailer: reading the journal failed", "partition", p, "err", err)
			}
			return pos
		}
		for i := range events {
			ev := &events[i]
			t.deliver(Item{Event: ev}, func(s *Sub) bool { return s.filter == nil || s.filter(ev) })
			pos = ev.Position
		}
		if len(events) < t.batch {
			return pos
		}
	}
	return pos
}
