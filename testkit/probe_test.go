package testkit_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"granary/testkit"
)

func newSystem(t *testing.T) *actor.ActorSystem {
	log := testkit.Logger(t)
	s := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return log }))
	t.Cleanup(s.Shutdown)
	return s
}

// echo answers a string request with "echo: " and the string.
func echo(ctx actor.Context) {
	if s, ok := ctx.Message().(string); ok {
		ctx.Respond("echo: " + s)
	}
}

func TestProbeRecordsMessagesInOrder(t *testing.T) {
	system := newSystem(t)
	p := testkit.NewProbe(t, system)
	system.Root.Send(p.PID, "first")
	system.Root.Send(p.PID, 2)
	if got := testkit.Expect[string](t, p, time.Second); got != "first" {
		t.Fatalf("got %q, want first", got)
	}
	if got := testkit.Expect[int](t, p, time.Second); got != 2 {
		t.Fatalf("got %d, want 2", got)
	}
	testkit.ExpectNoMessage(t, p, 50*time.Millisecond)
}

func TestProbeWithAName(t *testing.T) {
	system := newSystem(t)
	p := testkit.NewProbe(t, system, testkit.WithProbeName("listener"))
	if p.PID.Id != "listener" {
		t.Fatalf("probe spawned as %q", p.PID.Id)
	}
	system.Root.Send(actor.NewPID(system.Address(), "listener"), "by name")
	if got := testkit.Expect[string](t, p, time.Second); got != "by name" {
		t.Fatalf("got %q", got)
	}
}

// As the sender of a request, the probe receives the answer.
func TestProbeAsSenderReceivesTheAnswer(t *testing.T) {
	system := newSystem(t)
	p := testkit.NewProbe(t, system)
	echoPID := system.Root.Spawn(actor.PropsFromFunc(echo))
	system.Root.RequestWithCustomSender(echoPID, "hi", p.PID)
	if got := testkit.Expect[string](t, p, time.Second); got != "echo: hi" {
		t.Fatalf("got %q", got)
	}
}

// A probe can stand in for an actor that answers: the test answers the
// recorded sender.
func TestProbeStandsInForAnActorThatAnswers(t *testing.T) {
	system := newSystem(t)
	p := testkit.NewProbe(t, system)
	future := system.Root.RequestFuture(p.PID, "question", 5*time.Second)
	r := p.Next(t, time.Second)
	if r.Message != "question" || r.Sender == nil {
		t.Fatalf("recorded %+v, want the question and a sender", r)
	}
	system.Root.Send(r.Sender, "answer")
	if got, err := future.Result(); err != nil || got != "answer" {
		t.Fatalf("requester got %v, %v", got, err)
	}
}

func TestProbeWatchRecordsTermination(t *testing.T) {
	system := newSystem(t)
	p := testkit.NewProbe(t, system)
	target := system.Root.Spawn(actor.PropsFromFunc(echo))
	p.Watch(t, target)
	testkit.ExpectNoMessage(t, p, 50*time.Millisecond)
	system.Root.Stop(target)
	if got := testkit.Expect[*actor.Terminated](t, p, time.Second); !got.GetWho().Equal(target) {
		t.Fatalf("terminated %v, want %v", got.GetWho(), target)
	}
}

type published struct{ n int }

func TestProbeSubscribeRecordsMatchingEvents(t *testing.T) {
	system := newSystem(t)
	p := testkit.NewProbe(t, system)
	p.Subscribe(func(evt any) bool { _, ok := evt.(published); return ok })
	system.EventStream.Publish("not for the probe")
	system.EventStream.Publish(published{1})
	system.EventStream.Publish(published{2})
	if got := testkit.Expect[published](t, p, time.Second); got.n != 1 {
		t.Fatalf("got %v", got)
	}
	if got := testkit.ExpectMatch(t, p, time.Second, func(e published) bool { return e.n == 2 }); got.n != 2 {
		t.Fatalf("got %v", got)
	}
	testkit.ExpectNoMessage(t, p, 50*time.Millisecond)
}

func TestExpectMatchSkipsOthers(t *testing.T) {
	system := newSystem(t)
	p := testkit.NewProbe(t, system)
	for _, m := range []any{"a", 1, "b", 2} {
		system.Root.Send(p.PID, m)
	}
	if got := testkit.ExpectMatch(t, p, time.Second, func(n int) bool { return n > 1 }); got != 2 {
		t.Fatalf("got %d", got)
	}
	testkit.ExpectNoMessage(t, p, 20*time.Millisecond)
}

func TestProbeExpectationsFail(t *testing.T) {
	system := newSystem(t)
	p := testkit.NewProbe(t, system)

	f := &fakeT{TB: t}
	wantFailure(t, f.run(t, func() { testkit.Expect[string](f, p, 20*time.Millisecond) }), "expected string within 20ms, got nothing")

	system.Root.Send(p.PID, 7)
	f = &fakeT{TB: t}
	wantFailure(t, f.run(t, func() { testkit.Expect[string](f, p, time.Second) }), "expected string, got int: 7")

	system.Root.Send(p.PID, "late")
	f = &fakeT{TB: t}
	wantFailure(t, f.run(t, func() { testkit.ExpectNoMessage(f, p, time.Second) }), "expected no message for 1s, got string: late")

	system.Root.Send(p.PID, "no match")
	f = &fakeT{TB: t}
	wantFailure(t, f.run(t, func() { testkit.ExpectMatch[int](f, p, 50*time.Millisecond, nil) }), "no matching int within 50ms; discarded 1: [string]")
}

// A full probe drops what does not fit and says so, rather than growing.
func TestProbeBufferIsBounded(t *testing.T) {
	system := newSystem(t)
	f := &fakeT{TB: t}
	// Registered before the probe, so it runs after the probe's cleanup.
	t.Cleanup(func() {
		if r := f.reports(); len(r) != 2 {
			t.Errorf("reports %q: want the failed expectation and the probe's own report at the end", r)
		}
	})
	p := testkit.NewProbe(f, system, testkit.WithProbeCapacity(2))
	for i := range 5 {
		system.Root.Send(p.PID, i)
	}
	testkit.WaitFor(t, time.Second, func() error {
		if p.Len()+int(p.Dropped()) != 5 {
			return fmt.Errorf("kept %d, dropped %d", p.Len(), p.Dropped())
		}
		return nil
	})
	if p.Len() != 2 || p.Dropped() != 3 {
		t.Fatalf("kept %d, dropped %d; want 2 and 3", p.Len(), p.Dropped())
	}
	wantFailure(t, f.run(t, func() { testkit.Expect[int](f, p, time.Second) }), "dropped 3 messages: its buffer of 2 was full")
}
