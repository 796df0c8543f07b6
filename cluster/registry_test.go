package cluster

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// The compacted registry still resolves what the actor system registered
// before it (dead letters, the event stream) and what is spawned after.
func TestCompactRegistryKeepsProcesses(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	local := func(id string) *actor.PID { return actor.NewPID(system.Address(), id) }
	before, ok := system.ProcessRegistry.GetLocal("eventstream")
	if !ok {
		t.Fatal("no event stream registered before compaction")
	}
	compactRegistry(system)
	if n := len(system.ProcessRegistry.LocalPIDs.LocalPIDs); n != registryBuckets {
		t.Fatalf("%d buckets, want %d", n, registryBuckets)
	}
	if after, ok := system.ProcessRegistry.GetLocal("eventstream"); !ok || after != before {
		t.Fatalf("event stream after compaction: %v, %v", after, ok)
	}
	if _, ok := system.ProcessRegistry.GetLocal("deadletter"); !ok {
		t.Fatal("dead letters lost by compaction")
	}
	got := make(chan any, 1)
	pid := system.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if s, ok := c.Message().(string); ok {
			got <- s
		}
	}))
	if p, _ := system.ProcessRegistry.Get(local(pid.Id)); p == system.DeadLetter {
		t.Fatal("spawned actor does not resolve")
	}
	system.Root.Send(pid, "hello")
	select {
	case m := <-got:
		if m != "hello" {
			t.Fatalf("got %v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("spawned actor got nothing within 5s")
	}
	system.Root.Stop(pid)
}
