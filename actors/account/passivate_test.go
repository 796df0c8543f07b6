package account_test

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"granary/messages"
	"granary/testkit"
)

func getReq() *messages.AccountRequest {
	return &messages.AccountRequest{Caller: owner("alice"), Command: &messages.AccountRequest_Get{Get: &messages.GetAccount{}}}
}

// Issue 9: a grain asked only about an account that does not exist holds
// nothing, so it passivates once it answered instead of staying for the
// idle timeout (5 min here): otherwise reads of made-up ids grow a member's
// memory as fast as a client can send them.
func TestGrainOfAMissingAccountPassivatesAfterAnswering(t *testing.T) {
	system := newSystem(t)
	probe := testkit.NewProbe(t, system)
	a := activate(t, system, grainConfig(t, testkit.NewStore(t)), "nobody")
	probe.Watch(t, a.pid)
	if f := a.call(t, getReq()).GetFailure(); f.GetCode() != messages.CodeNotFound {
		t.Fatalf("get of a missing account: failure %v, want %s", f, messages.CodeNotFound)
	}
	got := probe.Next(t, 5*time.Second)
	if term, ok := got.Message.(*actor.Terminated); !ok || !term.Who.Equal(a.pid) {
		t.Fatalf("probe got %T %v, want the grain's Terminated", got.Message, got.Message)
	}
}

// A grain with events stays activated between requests.
func TestGrainOfAnAccountWithEventsStaysActivated(t *testing.T) {
	system := newSystem(t)
	a := activate(t, system, grainConfig(t, testkit.NewStore(t)), "acc")
	if f := a.call(t, openReq("ACC-1", 100)).GetFailure(); f != nil {
		t.Fatalf("open: %v", f)
	}
	for range 3 {
		// The same PID answers: a stopped grain would leave this request
		// unanswered (dead letter).
		res, err := system.Root.RequestFuture(a.pid, getReq(), 5*time.Second).Result()
		if err != nil {
			t.Fatalf("get on the same activation: %v", err)
		}
		if acc := res.(*messages.AccountReply).GetAccount(); acc.GetBalance() != 100 {
			t.Fatalf("get: %v", res)
		}
	}
}
