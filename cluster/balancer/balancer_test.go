package balancer_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/sony/gobreaker/v2"

	"granary/actors/service"
	"granary/cluster/balancer"
	"granary/internal/leakcheck"
	"granary/messages"
	"granary/testkit"
)

func TestMain(m *testing.M) { leakcheck.Main(m, testkit.LeakOptions()...) }

// fakeService is a set of real instance actors whose handler a test steers.
type fakeService struct {
	system    *actor.ActorSystem
	instances []balancer.Instance
	hits      []atomic.Int64
	handlers  []atomic.Value // of service.Handler
}

func (f *fakeService) Instances(string) []balancer.Instance { return f.instances }

func ok(context.Context, *messages.ServiceRequest) (*messages.ServiceReply, error) {
	return &messages.ServiceReply{Result: &messages.ServiceReply_PasswordOk{PasswordOk: true}}, nil
}

func newFakeService(t *testing.T, n int) *fakeService {
	log := testkit.Logger(t)
	f := &fakeService{system: actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return log }))}
	t.Cleanup(f.system.Shutdown)
	f.hits = make([]atomic.Int64, n)
	f.handlers = make([]atomic.Value, n)
	for i := range n {
		f.handlers[i].Store(service.Handler(ok))
		h := func(ctx context.Context, req *messages.ServiceRequest) (*messages.ServiceReply, error) {
			f.hits[i].Add(1)
			return f.handlers[i].Load().(service.Handler)(ctx, req)
		}
		name := service.InstanceName("test", i+1)
		pid, err := f.system.Root.SpawnNamed(service.Props("test", "m", i+1, h, log), name)
		if err != nil {
			t.Fatal(err)
		}
		f.instances = append(f.instances, balancer.Instance{ID: name, MemberID: "m", PID: pid})
	}
	return f
}

func newClient(t *testing.T, f *fakeService, mutate func(*balancer.Config)) *balancer.Client {
	cfg := balancer.DefaultConfig()
	cfg.CallTimeout = 2 * time.Second
	mutate(&cfg)
	c, err := balancer.NewClient("test", cfg, f, f.system.Root)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var req = &messages.ServiceRequest{Call: &messages.ServiceRequest_VerifyPassword{VerifyPassword: &messages.VerifyPassword{}}}

func call(t *testing.T, c *balancer.Client, idempotent bool) (*messages.ServiceReply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Call(ctx, req, idempotent)
}

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	f := newFakeService(t, 3)
	c := newClient(t, f, func(cfg *balancer.Config) { cfg.Strategy = balancer.RoundRobin })
	for range 300 {
		if _, err := call(t, c, false); err != nil {
			t.Fatal(err)
		}
	}
	for i := range f.hits {
		if got := f.hits[i].Load(); got != 100 {
			t.Fatalf("instance %d served %d of 300, want 100", i, got)
		}
	}
	st := c.Status()
	if st.Strategy != balancer.RoundRobin || st.Breaker != "closed" || len(st.Instances) != 3 || st.Instances[0].Served != 100 {
		t.Fatalf("status %+v", st)
	}
}

func TestRandomUsesEveryInstance(t *testing.T) {
	f := newFakeService(t, 3)
	c := newClient(t, f, func(cfg *balancer.Config) { cfg.Strategy = balancer.Random })
	for range 300 {
		if _, err := call(t, c, false); err != nil {
			t.Fatal(err)
		}
	}
	for i := range f.hits {
		// P(an instance gets fewer than 50 of 300 at p=1/3) is below 1e-15.
		if got := f.hits[i].Load(); got < 50 {
			t.Fatalf("instance %d served %d of 300 at random", i, got)
		}
	}
}

// least_connections sends nothing more to an instance that is stuck on a
// request while the others are idle; round_robin would keep feeding it.
func TestLeastConnectionsAvoidsTheBusyInstance(t *testing.T) {
	f := newFakeService(t, 3)
	release := make(chan struct{})
	slow := func(ctx context.Context, r *messages.ServiceRequest) (*messages.ServiceReply, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ok(ctx, r)
	}
	f.handlers[0].Store(service.Handler(slow))
	c := newClient(t, f, func(cfg *balancer.Config) {
		cfg.Strategy = balancer.LeastConnections
		cfg.CallTimeout = 10 * time.Second
	})
	var wg sync.WaitGroup
	defer func() { close(release); wg.Wait() }()
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := call(t, c, false); err != nil {
				t.Error(err)
			}
		}()
		// Launch the next call only once this one is accounted for, so
		// each pick sees the real in-flight counts.
		testkit.WaitFor(t, 5*time.Second, func() error {
			var done int64
			for k := range f.hits {
				done += f.hits[k].Load()
			}
			if done < int64(i+1) {
				return fmt.Errorf("%d of %d calls reached an instance", done, i+1)
			}
			return nil
		})
	}
	if got := f.hits[0].Load(); got > 1 {
		t.Fatalf("the stuck instance got %d calls; least_connections should send it at most the first", got)
	}
	st := c.Status()
	if st.Instances[0].InFlight > 1 {
		t.Fatalf("status shows %d in flight on the stuck instance", st.Instances[0].InFlight)
	}
}

func TestBreakerOpensFailsFastHalfOpensAndCloses(t *testing.T) {
	f := newFakeService(t, 2)
	down := service.Handler(func(context.Context, *messages.ServiceRequest) (*messages.ServiceReply, error) {
		return nil, messages.Fail(messages.CodeServiceUnavailable, "dependency down")
	})
	for i := range f.handlers {
		f.handlers[i].Store(down)
	}
	c := newClient(t, f, func(cfg *balancer.Config) {
		cfg.Strategy, cfg.FailureThreshold, cfg.OpenTimeout, cfg.Retries = balancer.RoundRobin, 3, 200*time.Millisecond, 0
	})
	for range 3 {
		if _, err := call(t, c, false); err == nil {
			t.Fatal("a failing instance answered success")
		}
	}
	if c.BreakerState() != gobreaker.StateOpen {
		t.Fatalf("breaker %v after 3 failures, want open", c.BreakerState())
	}
	before := f.hits[0].Load() + f.hits[1].Load()
	_, err := call(t, c, true)
	if f, isF := err.(*messages.Failure); !isF || f.GetCode() != messages.CodeServiceUnavailable {
		t.Fatalf("open breaker answered %v, want service_unavailable", err)
	}
	if after := f.hits[0].Load() + f.hits[1].Load(); after != before {
		t.Fatal("an open breaker still sent the call to an instance")
	}
	// Recovery: the dependency comes back; after OpenTimeout the breaker
	// half-opens, a trial call succeeds and it closes.
	for i := range f.handlers {
		f.handlers[i].Store(service.Handler(ok))
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if s := c.BreakerState(); s != gobreaker.StateHalfOpen {
			return fmt.Errorf("breaker %v", s)
		}
		return nil
	})
	if _, err := call(t, c, false); err != nil {
		t.Fatalf("trial call: %v", err)
	}
	if c.BreakerState() != gobreaker.StateClosed {
		t.Fatalf("breaker %v after a successful trial, want closed", c.BreakerState())
	}
}

func TestIdempotentCallsRetryOnAnotherInstance(t *testing.T) {
	f := newFakeService(t, 2)
	f.handlers[0].Store(service.Handler(func(context.Context, *messages.ServiceRequest) (*messages.ServiceReply, error) {
		return nil, messages.Fail(messages.CodeServiceUnavailable, "instance sick")
	}))
	c := newClient(t, f, func(cfg *balancer.Config) { cfg.Strategy = balancer.RoundRobin; cfg.Retries = 1 })
	for range 4 {
		if _, err := call(t, c, true); err != nil {
			t.Fatalf("idempotent call with a healthy instance left: %v", err)
		}
	}
	failures := 0
	for range 4 {
		if _, err := call(t, c, false); err != nil {
			failures++
		}
	}
	if failures != 2 {
		t.Fatalf("%d of 4 non-idempotent calls failed, want the 2 that hit the sick instance", failures)
	}
}

func TestDomainFailuresDoNotTripTheBreaker(t *testing.T) {
	f := newFakeService(t, 1)
	f.handlers[0].Store(service.Handler(func(context.Context, *messages.ServiceRequest) (*messages.ServiceReply, error) {
		return nil, messages.Fail(messages.CodeValidationFailed, "bad input")
	}))
	c := newClient(t, f, func(cfg *balancer.Config) { cfg.FailureThreshold = 2 })
	for range 5 {
		r, err := call(t, c, false)
		if err != nil || r.GetFailure().GetCode() != messages.CodeValidationFailed {
			t.Fatalf("got %v %v", r, err)
		}
	}
	if c.BreakerState() != gobreaker.StateClosed {
		t.Fatal("client errors opened the breaker")
	}
}

func TestNoInstancesIsUnavailable(t *testing.T) {
	f := newFakeService(t, 0)
	c := newClient(t, f, func(*balancer.Config) {})
	if _, err := call(t, c, true); err == nil {
		t.Fatal("a call with no instances succeeded")
	}
}
