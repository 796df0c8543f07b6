package proxy

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// maxInstances caps the per-instance state; the registry bounds the real
// number far below it, so reaching it means the janitor has fallen behind.
const maxInstances = 10_000

// InstanceStatus is one instance as this gateway sees it.
type InstanceStatus struct {
	ID, Service string
	Breaker     string // "closed", "open" or "half-open"
	InFlight    int64  // requests in flight from this gateway
	Served      uint64 // requests this gateway finished on it
}

// instance is the gateway-local state of one registered instance.
type instance struct {
	id, service string
	breaker     *gobreaker.TwoStepCircuitBreaker[struct{}]
	inFlight    atomic.Int64
	served      atomic.Uint64
	seen        atomic.Int64 // unix nanoseconds of the last Targets listing it
}

// errClientGone is reported to a breaker for a request whose client left: it
// says nothing about the instance.
var errClientGone = errors.New("client gone")

type instances struct {
	settings gobreaker.Settings
	mu       sync.RWMutex
	m        map[string]*instance
}

func newInstances(cfg Config) *instances {
	failures := cfg.BreakerFailures
	return &instances{
		settings: gobreaker.Settings{
			Timeout:     cfg.BreakerOpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
			IsExcluded:  func(err error) bool { return errors.Is(err, errClientGone) },
		},
		m: map[string]*instance{},
	}
}

// get returns the state of t, creating it on first sight, and notes it seen.
func (s *instances) get(service string, t Target, now int64) *instance {
	s.mu.RLock()
	in := s.m[t.ID]
	s.mu.RUnlock()
	if in == nil {
		s.mu.Lock()
		if in = s.m[t.ID]; in == nil {
			st := s.settings
			st.Name = t.ID
			in = &instance{id: t.ID, service: service, breaker: gobreaker.NewTwoStepCircuitBreaker[struct{}](st)}
			// Past the cap the instance still works, with a breaker nobody keeps.
			if len(s.m) < maxInstances {
				s.m[t.ID] = in
			}
		}
		s.mu.Unlock()
	}
	if in.seen.Load() != now {
		in.seen.Store(now)
	}
	return in
}

// sweep drops instances not listed since before and idle, returning their ids.
func (s *instances) sweep(before time.Time) []string {
	cut := before.UnixNano()
	var gone []string
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, in := range s.m {
		if in.seen.Load() < cut && in.inFlight.Load() == 0 {
			delete(s.m, id)
			gone = append(gone, id)
		}
	}
	return gone
}

func (s *instances) forget(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// Instances reports every instance this gateway keeps state for, by service then id.
func (p *Proxy) Instances() []InstanceStatus {
	p.state.mu.RLock()
	out := make([]InstanceStatus, 0, len(p.state.m))
	for _, in := range p.state.m {
		out = append(out, InstanceStatus{
			ID: in.id, Service: in.service, Breaker: in.breaker.State().String(),
			InFlight: in.inFlight.Load(), Served: in.served.Load(),
		})
	}
	p.state.mu.RUnlock()
	slices.SortFunc(out, func(a, b InstanceStatus) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// rotations are the round-robin positions, one per route.
type rotations struct {
	mu sync.Mutex
	m  map[string]*rotation
}

type rotation struct {
	next atomic.Uint64
	used atomic.Int64
}

func newRotations() *rotations { return &rotations{m: map[string]*rotation{}} }

func (r *rotations) get(route string, now int64) *rotation {
	r.mu.Lock()
	rot := r.m[route]
	if rot == nil {
		rot = &rotation{}
		if len(r.m) < maxInstances {
			r.m[route] = rot
		}
	}
	r.mu.Unlock()
	rot.used.Store(now)
	return rot
}

func (r *rotations) sweep(before time.Time) {
	cut := before.UnixNano()
	r.mu.Lock()
	for name, rot := range r.m {
		if rot.used.Load() < cut {
			delete(r.m, name)
		}
	}
	r.mu.Unlock()
}
