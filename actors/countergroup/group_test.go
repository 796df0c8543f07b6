package countergroup_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"granary/actors/counter"
	"granary/actors/countergroup"
	"granary/cluster"
	"granary/internal/leakcheck"
	"granary/messages"
	"granary/testkit"
)

func TestMain(m *testing.M) { leakcheck.Main(m, testkit.LeakOptions()...) }

type groupClient struct {
	t    *testing.T
	m    *cluster.Member
	name string
	n    int
}

func (g *groupClient) call(cmd *messages.CounterGroupRequest) *messages.CounterGroupReply {
	g.t.Helper()
	g.n++
	cmd.CommandId = fmt.Sprintf("%s-%d", g.name, g.n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cluster.CallAs[*messages.CounterGroupReply](ctx, g.m, countergroup.Kind, g.name, cmd)
	if err != nil {
		g.t.Fatalf("call group %s: %v", g.name, err)
	}
	return r
}

func spawn() *messages.CounterGroupRequest {
	return &messages.CounterGroupRequest{Command: &messages.CounterGroupRequest_Spawn{Spawn: &messages.SpawnCounter{}}}
}

func broadcast(c string) *messages.CounterGroupRequest {
	return &messages.CounterGroupRequest{Command: &messages.CounterGroupRequest_Broadcast{Broadcast: &messages.BroadcastCounters{Command: c}}}
}

func get() *messages.CounterGroupRequest {
	return &messages.CounterGroupRequest{Command: &messages.CounterGroupRequest_Get{Get: &messages.GetCounterGroup{}}}
}

func crash(c string) *messages.CounterGroupRequest {
	return &messages.CounterGroupRequest{Command: &messages.CounterGroupRequest_Crash{Crash: &messages.CrashCounter{Counter: c}}}
}

// Done-means 5 of issue 3: a crashing child is restarted by its supervisor
// with its value intact; one that keeps crashing past the restart budget is
// stopped and the group reports it, while its siblings carry on.
func TestSupervisorRestartsChildrenAndStopsThemPastTheBudget(t *testing.T) {
	c := testkit.NewCluster(t, 1)
	g := &groupClient{t: t, m: c.Member(0), name: "team"}

	if r := g.call(get()); r.GetFailure().GetCode() != messages.CodeNotFound {
		t.Fatalf("unknown group: %v", r)
	}
	if r := g.call(spawn()); r.GetSpawned() != "c1" {
		t.Fatalf("first spawn: %v", r)
	}
	if r := g.call(spawn()); r.GetSpawned() != "c2" {
		t.Fatalf("second spawn: %v", r)
	}
	for range 3 {
		g.call(broadcast("increment"))
	}
	if r := g.call(get()); r.GetCounters()["c1"] != 3 || r.GetCounters()["c2"] != 3 {
		t.Fatalf("after 3 increments: %v", r.GetCounters())
	}

	// One crash: restarted, value intact, still counting.
	g.call(crash("c1"))
	testkit.WaitFor(t, 5*time.Second, func() error {
		r := g.call(get())
		if r.GetRestarts()["c1"] != 1 {
			return fmt.Errorf("restarts %v", r.GetRestarts())
		}
		if r.GetCounters()["c1"] != 3 {
			return fmt.Errorf("c1 = %d after restart, want 3", r.GetCounters()["c1"])
		}
		return nil
	})
	if r := g.call(broadcast("increment")); r.GetFailure() != nil || r.GetCounters()["c1"] != 4 {
		t.Fatalf("restarted child counts on: %v", r)
	}

	// c2 crashes once more than its budget allows: stopped and reported.
	budget, _ := countergroup.DefaultSupervision()
	for range budget + 1 {
		g.call(crash("c2"))
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if r := g.call(get()); !slices.Equal(r.GetStopped(), []string{"c2"}) {
			return fmt.Errorf("stopped %v restarts %v", r.GetStopped(), r.GetRestarts())
		}
		return nil
	})
	r := g.call(broadcast("increment"))
	if r.GetFailure() != nil || r.GetCounters()["c1"] != 5 || r.GetCounters()["c2"] != 4 {
		t.Fatalf("after c2 stopped: %v (c1 counts on, c2 keeps its last value)", r)
	}
	if r := g.call(crash("c2")); r.GetFailure().GetCode() != messages.CodeNotFound {
		t.Fatalf("crashing a stopped child: %v", r)
	}

	// One child at a time: a running child takes the command alone; the
	// stopped one reads its last value and refuses a change.
	if r := g.call(child("c1", reset())); r.GetFailure() != nil || r.GetCounters()["c1"] != 0 || r.GetCounters()["c2"] != 4 {
		t.Fatalf("reset c1 alone: %v", r)
	}
	if r := g.call(child("c2", &messages.CounterRequest{Command: &messages.CounterRequest_Get{Get: &messages.GetCounter{}}})); r.GetFailure() != nil || r.GetCounters()["c2"] != 4 {
		t.Fatalf("read the stopped child: %v", r)
	}
	if r := g.call(child("c2", reset())); r.GetFailure().GetCode() != messages.CodeServiceUnavailable {
		t.Fatalf("reset the stopped child: %v, want service_unavailable", r)
	}
	if r := g.call(child("c7", reset())); r.GetFailure().GetCode() != messages.CodeNotFound {
		t.Fatalf("reset an unknown child: %v, want not_found", r)
	}
	if r := g.call(get()); r.GetCounters()["c1"] != 0 || r.GetCounters()["c2"] != 4 {
		t.Fatalf("after the per-child commands: %v", r.GetCounters())
	}
}

func child(name string, req *messages.CounterRequest) *messages.CounterGroupRequest {
	return &messages.CounterGroupRequest{Command: &messages.CounterGroupRequest_Child{Child: &messages.ChildCommand{Counter: name, Request: req}}}
}

func reset() *messages.CounterRequest {
	return &messages.CounterRequest{Command: &messages.CounterRequest_Reset_{Reset_: &messages.ResetCounter{}}}
}

// Values live in the journal: a new activation of the group (after
// passivation or on another member) finds its children and their values.
func TestGroupAndChildrenSurviveReactivation(t *testing.T) {
	store := testkit.NewStore(t)
	first := testkit.NewCluster(t, 1, testkit.WithStore(store))
	g := &groupClient{t: t, m: first.Member(0), name: "durable"}
	g.call(spawn())
	g.call(spawn())
	g.call(broadcast("increment"))
	g.call(broadcast("increment"))
	first.Kill(0)

	second := testkit.NewCluster(t, 1, testkit.WithStore(store))
	g.m = second.Member(0)
	if r := g.call(get()); r.GetCounters()["c1"] != 2 || r.GetCounters()["c2"] != 2 {
		t.Fatalf("after the member died: %v", r)
	}
	// Re-send the second broadcast (command id durable-4): it was applied
	// once per child already.
	g.n = 3
	if r := g.call(broadcast("increment")); r.GetCounters()["c1"] != 2 {
		t.Fatalf("re-sent broadcast applied again: %v", r.GetCounters())
	}
}

func TestCounterGrainSurvivesMemberLoss(t *testing.T) {
	store := testkit.NewStore(t)
	first := testkit.NewCluster(t, 1, testkit.WithStore(store))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	incr := &messages.CounterRequest{Command: &messages.CounterRequest_Increment{Increment: &messages.IncrementCounter{By: 5}}}
	for range 3 {
		if _, err := cluster.CallAs[*messages.CounterReply](ctx, first.Member(0), counter.Kind, "hits", incr); err != nil {
			t.Fatal(err)
		}
	}
	first.Kill(0)
	second := testkit.NewCluster(t, 1, testkit.WithStore(store))
	r, err := cluster.CallAs[*messages.CounterReply](ctx, second.Member(0), counter.Kind, "hits",
		&messages.CounterRequest{Command: &messages.CounterRequest_Get{Get: &messages.GetCounter{}}})
	if err != nil || r.GetValue() != 15 || r.GetServedBy() != second.Member(0).ID() {
		t.Fatalf("counter after member loss: %v %v", r, err)
	}
}
