package cluster_test

import (
	"context"
	"testing"
	"time"

	"granary/actors/account"
	"granary/cluster"
	"granary/messages"
	"granary/testkit"
)

func call(t *testing.T, m *cluster.Member, id string, req *messages.AccountRequest) *messages.AccountReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := cluster.CallAs[*messages.AccountReply](ctx, m, account.Kind, id, req)
	if err != nil {
		t.Fatalf("call %s: %v", id, err)
	}
	return reply
}

func TestAccountThroughClusterMember(t *testing.T) {
	c := testkit.NewCluster(t, 1)
	id := account.IDFor("ACC-1")
	admin := &messages.Caller{Subject: "alice"}
	open := call(t, c.Member(0), id, &messages.AccountRequest{CommandId: "c1", Caller: admin,
		Command: &messages.AccountRequest_Open{Open: &messages.OpenAccount{AccountNumber: "ACC-1", OwnerName: "Alice", InitialBalance: 100}}})
	if open.GetFailure() != nil || open.GetAccount().GetVersion() != 1 {
		t.Fatalf("open: %v", open)
	}
	if open.GetServedBy() != c.Member(0).ID() {
		t.Fatalf("served by %q, want %q", open.GetServedBy(), c.Member(0).ID())
	}
	dep := call(t, c.Member(0), id, &messages.AccountRequest{CommandId: "c2", Caller: admin,
		Command: &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: 50}}})
	if dep.GetAccount().GetBalance() != 150 {
		t.Fatalf("deposit: %v", dep)
	}
}
