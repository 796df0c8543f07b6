package counter_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"granary/actors/counter"
	"granary/messages"
	"granary/testkit"
)

func counterGrain(t *testing.T) (*actor.ActorSystem, *actor.PID) {
	t.Helper()
	log := testkit.Logger(t)
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return log }))
	t.Cleanup(system.Shutdown)
	cfg := counter.Config{Store: testkit.NewStore(t), SnapshotEvery: 100, IdleTimeout: 5 * time.Minute,
		StoreTimeout: 3 * time.Second, RecentCommands: 1000, MemberID: "m", Logger: log, Now: time.Now}
	pid := system.Root.Spawn(counter.GrainProps(cfg))
	system.Root.Send(pid, &pcluster.ClusterInit{Identity: pcluster.NewClusterIdentity("c1", counter.Kind)})
	return system, pid
}

func call(t *testing.T, system *actor.ActorSystem, pid *actor.PID, req *messages.CounterRequest) *messages.CounterReply {
	t.Helper()
	res, err := system.Root.RequestFuture(pid, req, 5*time.Second).Result()
	if err != nil {
		t.Fatalf("counter request on %s: %v", pid, err)
	}
	return res.(*messages.CounterReply)
}

var get = &messages.CounterRequest{Command: &messages.CounterRequest_Get{Get: &messages.GetCounter{}}}

// Issue 9: 20 000 reads of counters nobody incremented kept 20 000 grains
// for the idle timeout. A counter grain with no events passivates once it
// answered; one with events stays.
func TestCounterGrainWithoutEventsPassivatesAfterAnswering(t *testing.T) {
	system, pid := counterGrain(t)
	probe := testkit.NewProbe(t, system)
	probe.Watch(t, pid)
	if r := call(t, system, pid, get); r.GetFailure() != nil || r.GetValue() != 0 {
		t.Fatalf("get of a new counter: %v", r)
	}
	got := probe.Next(t, 5*time.Second)
	if term, ok := got.Message.(*actor.Terminated); !ok || !term.Who.Equal(pid) {
		t.Fatalf("probe got %T %v, want the grain's Terminated", got.Message, got.Message)
	}
}

func TestCounterGrainWithEventsStaysActivated(t *testing.T) {
	system, pid := counterGrain(t)
	if r := call(t, system, pid, inc(5)); r.GetFailure() != nil {
		t.Fatalf("increment: %v", r)
	}
	for range 3 {
		if r := call(t, system, pid, get); r.GetValue() != 5 {
			t.Fatalf("get on the same activation: %v", r)
		}
	}
}
