package cluster

import (
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/asynkron/protoactor-go/actor"
)

// heavyGrain stands for a grain holding state.
type heavyGrain struct{ state *[1 << 20]byte }

func (g *heavyGrain) Receive(actor.Context) {}

// parentActor stands for the placement actor: it spawns grains as
// its children and, like the cluster's callers, sends to them through the
// *PID it got from Spawn.
type parentActor struct {
	props   *actor.Props
	weak    chan weak.Pointer[[1 << 20]byte]
	stopped chan struct{}
}

type spawnAndPoison struct{ n int }

func (p *parentActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case spawnAndPoison:
		for range msg.n {
			ctx.Poison(ctx.Spawn(p.props))
		}
	case *actor.Terminated:
		p.stopped <- struct{}{}
	}
}

// Issue 9: a passivated grain must not stay reachable. Without
// releaseOnStop the parentActor actor's children PIDSet keeps stale *PIDs
// whose cached process pointer holds the stopped grain and its state.
func TestStoppedGrainsAreNotRetainedByTheirParent(t *testing.T) {
	const n = 8
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	p := &parentActor{weak: make(chan weak.Pointer[[1 << 20]byte], n), stopped: make(chan struct{}, n)}
	p.props = releaseOnStop(actor.PropsFromProducer(func() actor.Actor {
		g := &heavyGrain{state: new([1 << 20]byte)}
		p.weak <- weak.Make(g.state)
		return g
	}))
	parent := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return p }))
	system.Root.Send(parent, spawnAndPoison{n: n})
	deadline := time.After(10 * time.Second)
	for range n {
		select {
		case <-p.stopped:
		case <-deadline:
			t.Fatal("grains did not all stop within 10s")
		}
	}
	close(p.weak)
	var ptrs []weak.Pointer[[1 << 20]byte]
	for w := range p.weak {
		ptrs = append(ptrs, w)
	}
	retained := 0
	for range 3 { // a collection may finish one cycle late
		runtime.GC()
		retained = 0
		for _, w := range ptrs {
			if w.Value() != nil {
				retained++
			}
		}
		if retained == 0 {
			break
		}
	}
	if retained > 0 {
		t.Fatalf("%d of %d stopped grains are still reachable after GC", retained, n)
	}
	runtime.KeepAlive(parent)
}
