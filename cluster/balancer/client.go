package balancer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sony/gobreaker/v2"

	"granary/messages"
)

// Instance is one service instance somewhere in the cluster.
type Instance struct {
	ID       string // unique across the cluster: member id + actor name
	MemberID string
	PID      *actor.PID
}

// Source lists the instances of a service that exist right now.
type Source interface {
	Instances(service string) []Instance
}

// Client calls one service. It is safe for concurrent use.
type Client struct {
	name    string
	cfg     Config
	source  Source
	sender  actor.SenderContext
	breaker *gobreaker.CircuitBreaker[*messages.ServiceReply]
	next    atomic.Uint64

	mu    sync.Mutex
	stats map[string]*stats // by Instance.ID; pruned to the live instances
}

type stats struct {
	memberID string
	inFlight atomic.Int64
	served   atomic.Uint64
}

// NewClient returns the client of service name.
func NewClient(name string, cfg Config, source Source, sender actor.SenderContext) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("service %s: %w", name, err)
	}
	c := &Client{name: name, cfg: cfg, source: source, sender: sender, stats: map[string]*stats{}}
	c.breaker = gobreaker.NewCircuitBreaker[*messages.ServiceReply](gobreaker.Settings{
		Name:        name,
		MaxRequests: cfg.HalfOpenRequests,
		Timeout:     cfg.OpenTimeout,
		ReadyToTrip: func(counts gobreaker.Counts) bool {
			return counts.ConsecutiveFailures >= cfg.FailureThreshold
		},
	})
	return c, nil
}

// Name is the service's name.
func (c *Client) Name() string { return c.name }

// Call sends req to an instance and returns its reply; domain outcomes are
// in the reply (its Failure), and count as successes for the breaker.
// Errors are *messages.Failure: CodeServiceUnavailable when the breaker is
// open or no instance exists or answers, CodeTimeout when none answered in
// time. An idempotent call is retried on other instances.
func (c *Client) Call(ctx context.Context, req *messages.ServiceRequest, idempotent bool) (*messages.ServiceReply, error) {
	reply, err := c.breaker.Execute(func() (*messages.ServiceReply, error) {
		return c.attempts(ctx, req, idempotent)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return nil, messages.Fail(messages.CodeServiceUnavailable, "service %s is unavailable (circuit breaker %s)", c.name, c.breaker.State())
	}
	return reply, err
}

func (c *Client) attempts(ctx context.Context, req *messages.ServiceRequest, idempotent bool) (*messages.ServiceReply, error) {
	tries := 1
	if idempotent {
		tries += c.cfg.Retries
	}
	var tried []string
	var lastErr error
	for range tries {
		inst, ok := c.pick(tried)
		if !ok {
			break
		}
		tried = append(tried, inst.ID)
		reply, err := c.callOne(ctx, inst, req)
		if err == nil {
			return reply, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	if lastErr == nil {
		lastErr = messages.Fail(messages.CodeServiceUnavailable, "no instance of service %s is running", c.name)
	}
	return nil, lastErr
}

// callOne is one attempt; an instance's own failure reply about
// availability or time counts as an infrastructure error.
func (c *Client) callOne(ctx context.Context, inst Instance, req *messages.ServiceRequest) (*messages.ServiceReply, error) {
	timeout := c.cfg.CallTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 {
		return nil, messages.Fail(messages.CodeTimeout, "no time left to call %s", c.name)
	}
	r := cloneWithDeadline(req, time.Now().Add(timeout))
	st := c.statsOf(inst)
	st.inFlight.Add(1)
	res, err := c.sender.RequestFuture(inst.PID, r, timeout).Result()
	st.inFlight.Add(-1)
	st.served.Add(1)
	switch {
	case errors.Is(err, actor.ErrTimeout):
		return nil, messages.Fail(messages.CodeTimeout, "%s instance %s did not answer within %v", c.name, inst.ID, timeout)
	case err != nil:
		return nil, messages.Fail(messages.CodeServiceUnavailable, "%s instance %s: %v", c.name, inst.ID, err)
	}
	reply, ok := res.(*messages.ServiceReply)
	if !ok {
		return nil, messages.Fail(messages.CodeServiceUnavailable, "%s instance %s answered %T", c.name, inst.ID, res)
	}
	if f := reply.GetFailure(); f != nil && (f.GetCode() == messages.CodeServiceUnavailable || f.GetCode() == messages.CodeTimeout) {
		return nil, f
	}
	return reply, nil
}

func cloneWithDeadline(req *messages.ServiceRequest, dl time.Time) *messages.ServiceRequest {
	r := &messages.ServiceRequest{DeadlineUnixMs: dl.UnixMilli(), Call: req.GetCall()}
	return r
}

// pick chooses an instance not yet tried by this call.
func (c *Client) pick(tried []string) (Instance, bool) {
	all := c.source.Instances(c.name)
	candidates := all[:0:0]
	for _, in := range all {
		if !slices.Contains(tried, in.ID) {
			candidates = append(candidates, in)
		}
	}
	if len(candidates) == 0 {
		return Instance{}, false
	}
	slices.SortFunc(candidates, func(a, b Instance) int { return cmpString(a.ID, b.ID) })
	n := c.next.Add(1)
	switch c.cfg.Strategy {
	case Random:
		return candidates[rand.IntN(len(candidates))], true
	case LeastConnections:
		// Fewest in flight wins; ties rotate so idle instances share work.
		best, bestLoad := -1, int64(0)
		for k := range candidates {
			i := (int(n) + k) % len(candidates)
			load := c.statsOf(candidates[i]).inFlight.Load()
			if best < 0 || load < bestLoad {
				best, bestLoad = i, load
			}
		}
		return candidates[best], true
	default:
		return candidates[int(n)%len(candidates)], true
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (c *Client) statsOf(inst Instance) *stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stats[inst.ID]
	if st == nil {
		st = &stats{memberID: inst.MemberID}
		c.stats[inst.ID] = st
	}
	return st
}

// Status is what GET /api/v1/services shows of one service.
type Status struct {
	Name      string
	Strategy  Strategy
	Breaker   string
	Instances []InstanceStatus
}

// InstanceStatus is one instance's counters, as seen by this client.
type InstanceStatus struct {
	ID       string
	MemberID string
	InFlight int64
	Served   uint64
}

// Status reports the live instances with their counts, and forgets the
// counts of instances that no longer exist (their member left).
func (c *Client) Status() Status {
	live := c.source.Instances(c.name)
	out := Status{Name: c.name, Strategy: c.cfg.Strategy, Breaker: c.breaker.State().String()}
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := map[string]*stats{}
	for _, in := range live {
		st := c.stats[in.ID]
		if st == nil {
			st = &stats{memberID: in.MemberID}
		}
		keep[in.ID] = st
		out.Instances = append(out.Instances, InstanceStatus{ID: in.ID, MemberID: in.MemberID, InFlight: st.inFlight.Load(), Served: st.served.Load()})
	}
	c.stats = keep
	slices.SortFunc(out.Instances, func(a, b InstanceStatus) int { return cmpString(a.ID, b.ID) })
	return out
}

// BreakerState is the breaker's state: closed, half-open or open.
func (c *Client) BreakerState() gobreaker.State { return c.breaker.State() }
