package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"granary/actors/account"
	"granary/messages"
	"granary/testkit"
)

// Split brain at its worst: two members that do not see each other (two
// one-member clusters) both host the same account and write to the same
// journal at once. The expected-version append keeps one linear history and
// every acknowledged deposit is in it.
func TestSplitBrainMembersKeepOneHistory(t *testing.T) {
	left := testkit.NewCluster(t, 1)
	right := testkit.NewCluster(t, 1, testkit.WithStore(left.Store))
	id := account.IDFor("SPLIT-1")
	alice := &messages.Caller{Subject: "alice"}
	call(t, left.Member(0), id, &messages.AccountRequest{CommandId: "open", Caller: alice,
		Command: &messages.AccountRequest_Open{Open: &messages.OpenAccount{AccountNumber: "SPLIT-1", OwnerName: "A"}}})

	var acked atomic.Int64
	var servedBy sync.Map
	var wg sync.WaitGroup
	for side, c := range []*testkit.Cluster{left, right} {
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					r := call(t, c.Member(0), id, &messages.AccountRequest{CommandId: fmt.Sprintf("s%d-w%d-%d", side, w, i), Caller: alice,
						Command: &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: 1}}})
					switch r.GetFailure().GetCode() {
					case "":
						acked.Add(1)
						servedBy.Store(r.GetServedBy(), true)
					case messages.CodeServiceUnavailable: // contended: retryable, nothing applied
					default:
						t.Errorf("deposit: %v", r.GetFailure())
					}
				}
			}()
		}
	}
	wg.Wait()

	events, err := left.Store.ReadStream(context.Background(), account.StreamFor(id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var s account.State
	for i, e := range events {
		if e.Version != uint64(i+1) {
			t.Fatalf("event %d has version %d: history forked", i, e.Version)
		}
		ev, err := account.DecodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		s = account.Apply(s, id, ev)
	}
	if s.Balance != acked.Load() {
		t.Fatalf("journal balance %d, acknowledged deposits %d", s.Balance, acked.Load())
	}
	members := 0
	servedBy.Range(func(any, any) bool { members++; return true })
	if members != 2 {
		t.Fatalf("deposits were served by %d members, want both sides", members)
	}
	t.Logf("%d of 200 deposits acknowledged across two live activations; journal at version %d", acked.Load(), s.Version)
}
