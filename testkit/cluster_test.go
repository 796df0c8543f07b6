package testkit_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"granary/actors/account"
	"granary/cluster"
	"granary/messages"
	"granary/testkit"
)

var alice = &messages.Caller{Subject: "alice"}

func openAccount(number string, balance int64) *messages.AccountRequest {
	return &messages.AccountRequest{CommandId: "open-" + number, Caller: alice,
		Command: &messages.AccountRequest_Open{Open: &messages.OpenAccount{AccountNumber: number, OwnerName: "Alice", InitialBalance: balance}}}
}

func getAccount() *messages.AccountRequest {
	return &messages.AccountRequest{CommandId: "get", Caller: alice,
		Command: &messages.AccountRequest_Get{Get: &messages.GetAccount{}}}
}

func callAccount(t *testing.T, m *cluster.Member, id string, req *messages.AccountRequest) *messages.AccountReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cluster.CallAs[*messages.AccountReply](ctx, m, account.Kind, id, req)
	if err != nil || r.GetFailure() != nil {
		t.Fatalf("call %s: %v %v", id, r, err)
	}
	return r
}

// A restarted member is a new member (new id) in the same slot; the
// grains it hosts load their state from the shared store.
func TestRestartStartsANewMemberInTheSlot(t *testing.T) {
	c := testkit.NewCluster(t, 1, testkit.WithRegistryTTL(500*time.Millisecond))
	id := account.IDFor("RESTART-1")
	callAccount(t, c.Member(0), id, openAccount("RESTART-1", 70))
	before := c.Member(0).ID()

	c.Restart(0)
	// The killed member stays listed until the registry TTL runs out.
	c.WaitForMembers(1, 10*time.Second)
	after := c.Member(0).ID()
	if after == before {
		t.Fatalf("restarted member kept its id %s", before)
	}
	r := callAccount(t, c.Member(0), id, getAccount())
	if r.GetServedBy() != after || r.GetAccount().GetBalance() != 70 {
		t.Fatalf("after restart: %v; want balance 70 served by %s", r, after)
	}
}

// A probe on a member as the sender of a grain request gets the reply, and
// as the grain's watcher sees it passivate.
func TestProbeOnAMemberWatchesAGrain(t *testing.T) {
	c := testkit.NewCluster(t, 1, testkit.WithGrainConfig(func(g *account.GrainConfig) { g.IdleTimeout = 300 * time.Millisecond }))
	id := account.IDFor("PROBED-1")
	callAccount(t, c.Member(0), id, openAccount("PROBED-1", 5))

	m := c.Member(0)
	grain := m.Cluster.Get(id, account.Kind)
	if grain == nil {
		t.Fatal("no activation")
	}
	p := c.NewProbe(0)
	p.Watch(t, grain)
	m.System.Root.RequestWithCustomSender(grain, getAccount(), p.PID)
	if r := testkit.Expect[*messages.AccountReply](t, p, 5*time.Second); r.GetAccount().GetBalance() != 5 {
		t.Fatalf("reply %v", r)
	}
	if got := testkit.Expect[*actor.Terminated](t, p, 5*time.Second); !got.GetWho().Equal(grain) {
		t.Fatalf("terminated %v, want the grain %v", got.GetWho(), grain)
	}
}

func TestWaitForFailsWithTheLastError(t *testing.T) {
	tries := 0
	f := &fakeT{TB: t}
	reports := f.run(t, func() {
		testkit.WaitFor(f, 30*time.Millisecond, func() error {
			tries++
			return fmt.Errorf("try %d", tries)
		})
	})
	wantFailure(t, reports, fmt.Sprintf("condition not met within 30ms: try %d", tries))
	if tries < 2 {
		t.Fatalf("polled %d times", tries)
	}

	n := 0
	testkit.WaitFor(t, time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
}
