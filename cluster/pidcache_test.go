package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"granary/actors/counter"
	"granary/cluster"
	"granary/messages"
	"granary/testkit"
)

// Issue 9: a member that called a grain hosted elsewhere kept its PID in
// Proto.Actor's PID cache after the grain passivated, one entry per
// distinct identity for as long as the member lived. The hosting member
// broadcasts ActivationTerminated; callers drop the entry on it.
func TestPIDCacheForgetsGrainsPassivatedOnAnotherMember(t *testing.T) {
	c := testkit.NewCluster(t, 2)
	caller := c.Member(0)
	var remote []string
	for i := 0; len(remote) < 20 && i < 400; i++ {
		name := fmt.Sprintf("pidcache-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// A read of a counter nobody wrote: its grain passivates at once.
		r, err := cluster.CallAs[*messages.CounterReply](ctx, caller, counter.Kind, name,
			&messages.CounterRequest{Command: &messages.CounterRequest_Get{Get: &messages.GetCounter{}}})
		cancel()
		if err != nil || r.GetFailure() != nil {
			t.Fatalf("get %s: %v %v", name, r, err)
		}
		if r.GetServedBy() != caller.ID() {
			remote = append(remote, name)
		}
	}
	if len(remote) == 0 {
		t.Fatal("no counter was placed on the other member")
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		for _, name := range remote {
			if pid, ok := caller.Cluster.PidCache.Get(name, counter.Kind); ok {
				return fmt.Errorf("%s (passivated on the other member) still cached as %s", name, pid)
			}
		}
		return nil
	})
}

// Issue 10: a call for an identity this member hosts goes straight to the
// activation, so the PID cache holds nothing for it (an entry cost ~100 B
// per idle grain). A grain that passivates right after answering (a read
// of a counter nobody wrote) is activated anew by the next call, however
// close behind it comes: its stale PID answers dead letter, and the call
// asks the placement actor again instead of failing.
func TestLocalCallsSkipThePIDCacheAndSurviveStops(t *testing.T) {
	c := testkit.NewCluster(t, 2)
	caller := c.Member(0)
	call := func(name string, req *messages.CounterRequest) *messages.CounterReply {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := cluster.CallAs[*messages.CounterReply](ctx, caller, counter.Kind, name, req)
		if err != nil || r.GetFailure() != nil {
			t.Fatalf("call %s: %v %v", name, r, err)
		}
		return r
	}
	local, remote := 0, 0
	for i := 0; i < 40; i++ {
		name := fmt.Sprintf("local-%d", i)
		// An increment leaves the grain active (it has an event).
		r := call(name, &messages.CounterRequest{CommandId: fmt.Sprintf("inc-%d", i),
			Command: &messages.CounterRequest_Increment{Increment: &messages.IncrementCounter{By: 1}}})
		_, cached := caller.Cluster.PidCache.Get(name, counter.Kind)
		if r.GetServedBy() == caller.ID() {
			local++
			if cached {
				t.Fatalf("%s, active on the caller, is in its PID cache", name)
			}
		} else {
			remote++
			if !cached {
				t.Fatalf("%s, active on the other member, is not in the caller's PID cache", name)
			}
		}
		// Reads of a counter nobody wrote, back to back: each activation
		// passivates as soon as it has answered.
		for range 5 {
			call(name+"-empty", &messages.CounterRequest{Command: &messages.CounterRequest_Get{Get: &messages.GetCounter{}}})
		}
	}
	if local == 0 || remote == 0 {
		t.Fatalf("%d counters on the caller, %d on the other member: want both", local, remote)
	}
}

// The local path under contention: many callers on one member, grains that
// passivate as soon as they answer (reads of counters nobody wrote) and one
// that stays; every call must be answered, with -race watching the
// placement map, the activations and the dead-letter re-activation.
func TestLocalCallsUnderConcurrentPassivation(t *testing.T) {
	c := testkit.NewCluster(t, 1)
	m := c.Member(0)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				name := fmt.Sprintf("churn-%d", (g+i)%4)
				req := &messages.CounterRequest{Command: &messages.CounterRequest_Get{Get: &messages.GetCounter{}}}
				if i%5 == 0 {
					name = "steady"
					req = &messages.CounterRequest{CommandId: fmt.Sprintf("inc-%d-%d", g, i),
						Command: &messages.CounterRequest_Increment{Increment: &messages.IncrementCounter{By: 1}}}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := cluster.CallAs[*messages.CounterReply](ctx, m, counter.Kind, name, req)
				cancel()
				if err != nil || r.GetFailure() != nil {
					errs <- fmt.Errorf("%s: %v %v", name, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cluster.CallAs[*messages.CounterReply](ctx, m, counter.Kind, "steady",
		&messages.CounterRequest{Command: &messages.CounterRequest_Get{Get: &messages.GetCounter{}}})
	if err != nil || r.GetValue() != 16*8 {
		t.Fatalf("steady = %v (%v), want %d increments", r, err, 16*8)
	}
}
