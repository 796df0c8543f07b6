package saga_test

import (
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"granary/actors/es"
	"granary/actors/saga"
	"granary/messages"
	"granary/testkit"
)

// An activation that loaded a saga before it existed (a GET that came
// first, then a membership change moved the identity) must not keep
// answering "not found" once another activation started it.
func TestStaleActivationSeesTheSagaStartedElsewhere(t *testing.T) {
	e := newEnv(t)
	a, b := e.open("S-A", 1000), e.open("S-B", 0)
	system := e.m.System
	cfg := saga.Config{
		GrainConfig: es.GrainConfig{Store: e.c.Store, SnapshotEvery: 100, IdleTimeout: time.Minute, StoreTimeout: 5 * time.Second,
			RecentCommands: 1000, MemberID: "stale", Logger: testkit.Logger(t), Now: time.Now},
		Deadline: saga.DefaultDeadline, StepTimeout: saga.DefaultStepTimeout, MaxDrive: saga.DefaultMaxDrive,
	}
	pid := system.Root.Spawn(saga.Props(saga.Transfer, cfg))
	t.Cleanup(func() { _ = system.Root.StopFuture(pid).Wait() })
	system.Root.Send(pid, &pcluster.ClusterInit{Identity: pcluster.NewClusterIdentity("t-moved", saga.TransferKind)})
	get := func() *messages.SagaReply {
		t.Helper()
		r, err := system.Root.RequestFuture(pid, &messages.SagaRequest{Command: &messages.SagaRequest_Get{Get: &messages.GetSaga{}}}, 10*time.Second).Result()
		if err != nil {
			t.Fatal(err)
		}
		return r.(*messages.SagaReply)
	}
	if r := get(); r.GetFailure().GetCode() != messages.CodeNotFound {
		t.Fatalf("before the start: %v", r)
	}
	expect(t, e.transfer("t-moved", a, b, 100), "completed", "", "", "withdraw=completed() deposit=completed() ")
	r := get()
	if r.GetFailure() != nil || r.GetSaga().GetStatus() != "completed" {
		t.Fatalf("stale activation after the saga completed elsewhere: %v", r)
	}
}
