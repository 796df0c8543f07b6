package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"granary/testkit/rediscluster"
)

// Issue 13, Done means 2: a `granary node` on three masters with a replica
// each, under concurrent deposits; the master of journal partition 0 is
// killed with SIGKILL and its replica takes over. No definite wrong answer
// (every balance equals its journal, no deposit journalled twice, no
// deposit refused), and every account takes a new deposit again within the
// failover time + 2 s. Redis replicates asynchronously, so an acknowledged
// deposit whose master died before its replica had it would be lost: the
// test measures and logs that loss (the README states it) rather than
// asserting none, since Granary does not call WAIT.
//
// It found that the node did not follow the promoted replica for 60 s
// (go-redis's cluster client draws no MOVED from a dead master and
// reloaded its slot map once a minute); persistence/redis now reloads it
// every second.
func TestNodeSurvivesRedisClusterMasterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	cl := rediscluster.StartWithReplicas(t)
	prefix := "rcfail-" + randHex()
	c := startClusterNode(t, cl, prefix,
		// A deposit in flight at the kill is "unknown yet" until its claim
		// lapses; keep that well inside the depositors' patience.
		"GRANARY_IDEMPOTENCY_PENDING_TTL=8s")

	const accounts = 20
	deps := make([]*depositor, accounts)
	for i := range deps {
		var a accountBody
		code, err := c.do("POST", "/api/v1/accounts",
			map[string]any{"account_number": fmt.Sprintf("RCF-%s-%02d", prefix, i), "owner_name": "Failover", "initial_balance": 0}, &a)
		if err != nil || code != 201 {
			t.Fatalf("open account %d: %d %v", i, code, err)
		}
		deps[i] = &depositor{acked: map[string]int64{}, gateways: func() []string { return []string{c.base} }, c: c, accountID: a.ID}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, accounts)
	for _, d := range deps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.run(0, stop); err != nil {
				errs <- err
			}
		}()
	}
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	t.Cleanup(stopAll)
	ackedCount := func() int {
		total := 0
		for _, d := range deps {
			d.mu.Lock()
			total += len(d.acked)
			d.mu.Unlock()
		}
		return total
	}
	waitAcked := func(want int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for ackedCount() < want {
			if time.Now().After(deadline) {
				t.Fatalf("only %d deposits acknowledged within %v, want %d", ackedCount(), within, want)
			}
			time.Sleep(20 * time.Millisecond) // polling a condition
		}
	}
	waitAcked(400, 60*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rc := cl.Client(t)
	slot, err := rediscluster.SlotOf(ctx, rc, prefix+":{p0}:head")
	if err != nil {
		t.Fatal(err)
	}
	master, err := rediscluster.MasterFor(ctx, rc, slot)
	if err != nil {
		t.Fatal(err)
	}
	before := ackedCount()
	killed := time.Now()
	if err := cl.Kill(master); err != nil {
		t.Fatal(err)
	}
	// Service back means a new deposit is served on every account. The
	// depositors cannot tell: one whose deposit was in flight at the kill
	// keeps its Idempotency-Key until it gets a definite answer, which its
	// pending claim may hold back for the claim's TTL ("unknown yet" is
	// the contract's answer meanwhile). So a prober per account sends
	// fresh deposits until one is acknowledged.
	probedAt := make([]time.Time, accounts)
	var probes sync.WaitGroup
	for i, d := range deps {
		probes.Go(func() {
			for n := 0; time.Since(killed) < time.Minute; n++ {
				key := fmt.Sprintf("probe-%d-%d-%s", i, n, randHex())
				code, _, err := c.call("POST", "/api/v1/accounts/"+d.accountID+"/deposits",
					map[string]any{"amount": 1, "description": key}, nil, map[string]string{"Idempotency-Key": key})
				if err == nil && code == http.StatusOK {
					d.mu.Lock()
					d.acked[key] = 1
					d.mu.Unlock()
					probedAt[i] = time.Now()
					return
				}
				time.Sleep(50 * time.Millisecond) // between attempts of a prober, not a wait for a condition
			}
		})
	}
	var promoted time.Duration
	for {
		now, err := rediscluster.MasterFor(ctx, rc, slot)
		if err == nil && now != master {
			promoted = time.Since(killed)
			t.Logf("slot %d moved from %s to %s %v after the kill", slot, master, now, promoted.Round(time.Millisecond))
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("slot %d never left the killed master %s: %v", slot, master, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	// Keep depositing a while after the failover: every account, those of
	// the killed master's partitions included, must be served again.
	resumedBy := time.Now().Add(5 * time.Second)
	for time.Now().Before(resumedBy) {
		time.Sleep(50 * time.Millisecond) // letting load run; the checks below wait on conditions
	}
	for i, d := range deps {
		deadline := killed.Add(promoted + 30*time.Second)
		for {
			d.mu.Lock()
			last := time.Time{}
			if len(d.servedBy) > 0 {
				last = d.servedBy[len(d.servedBy)-1].at
			}
			d.mu.Unlock()
			if last.After(killed.Add(promoted)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("account %d (%s): no deposit acknowledged after the failover", i, d.accountID)
			}
			time.Sleep(20 * time.Millisecond) // polling a condition
		}
	}
	stopAll()
	close(errs)
	for err := range errs {
		t.Errorf("definite wrong answer: %v", err)
	}

	// The gap: for each account, the time from the kill to the first new
	// deposit acknowledged; the worst is the outage the accounts of the
	// killed master's partitions saw. The depositors' in-flight deposits
	// are reported beside it.
	probes.Wait()
	var gap, inFlight time.Duration
	for i, d := range deps {
		if probedAt[i].IsZero() {
			t.Fatalf("account %d (%s): no new deposit acknowledged within a minute of the kill", i, d.accountID)
		}
		gap = max(gap, probedAt[i].Sub(killed))
		for _, s := range d.servedBy {
			if s.at.After(killed) {
				inFlight = max(inFlight, s.at.Sub(killed))
				break
			}
		}
	}
	t.Logf("every account took a new deposit within %v of the kill; deposits in flight at the kill were all answered within %v",
		gap.Round(time.Millisecond), inFlight.Round(time.Millisecond))
	limit := promoted + 2*time.Second

	// Every balance equals its journal, no deposit is journalled twice,
	// and what was acknowledged but is not journalled is the loss.
	acked, lost := 0, 0
	var lostKeys []string
	for _, d := range deps {
		events := allEvents(t, c, d.accountID)
		var sum int64
		inJournal := map[string]int{}
		for _, e := range events {
			if e.Type == "MoneyDeposited" {
				sum += e.Data.Amount
				inJournal[e.Data.Description]++
			}
		}
		var a accountBody
		if code, err := c.do("GET", "/api/v1/accounts/"+d.accountID, nil, &a); code != 200 || err != nil {
			t.Fatalf("balance of %s: %d %v", d.accountID, code, err)
		}
		if a.Balance != sum || a.Version != uint64(len(events)) {
			t.Errorf("%s: balance %d at version %d, journal sums %d over %d events", d.accountID, a.Balance, a.Version, sum, len(events))
		}
		for key, times := range inJournal {
			if times > 1 {
				t.Errorf("%s: deposit %s journalled %d times", d.accountID, key, times)
			}
		}
		for key := range d.acked {
			acked++
			if inJournal[key] == 0 {
				lost++
				lostKeys = append(lostKeys, key)
			}
		}
	}
	sort.Strings(lostKeys)
	t.Logf("killed master %s (slot %d of %s:{p0}) after %d acknowledged deposits; replica promoted after %v; "+
		"deposits served again %v after the kill (limit %v); %d acknowledged, %d lost (not in the journal): %v",
		master, slot, prefix, before, promoted.Round(time.Millisecond), gap.Round(time.Millisecond), limit, acked, lost, lostKeys)
	if gap > limit {
		t.Errorf("deposits served again %v after the kill, want within %v (failover %v + 2 s)", gap, limit, promoted)
	}
}
