package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/account"
	"granary/actors/projection"
	"granary/cluster"
	"granary/messages"
	"granary/persistence"
	"granary/testkit"
)

// projectionFailover bounds how long the projection stays without a host
// after its member crashed: the members drop the dead one (registry TTL or
// heartbeat), a keep-alive ping that went to the dead owner waits out
// Proto.Actor's 5s activation timeout, and then it restarts elsewhere.
const projectionFailover = testkit.DefaultRegistryTTL + 5*time.Second + 5*time.Second

var projCaller = &messages.Caller{Subject: "proj-owner"}

// slowReadModels makes every read-model commit take a while, so that a
// catch-up lasts long enough to be interrupted whatever the machine.
type slowReadModels struct {
	persistence.Store
	slow atomic.Bool
}

func (s *slowReadModels) ApplyReadModel(ctx context.Context, ref persistence.ReadModelRef, expected, next uint64, docs []persistence.DocWrite) error {
	if s.slow.Load() {
		time.Sleep(2 * time.Millisecond)
	}
	return s.Store.ApplyReadModel(ctx, ref, expected, next, docs)
}

// seedAccounts writes n accounts of perAccount events each straight into
// the journal, as their grains would have, and returns their ids.
func seedAccounts(t *testing.T, s persistence.Store, prefix string, n, perAccount int) []string {
	t.Helper()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := make([]string, n)
	for i := range ids {
		number := fmt.Sprintf("%s-%d", prefix, i)
		ids[i] = account.IDFor(number)
		var st account.State
		var batch []persistence.EventData
		for v := range perAccount {
			req := &messages.AccountRequest{CommandId: fmt.Sprint(number, "/", v), Caller: projCaller}
			switch {
			case v == 0:
				req.Command = &messages.AccountRequest_Open{Open: &messages.OpenAccount{AccountNumber: number, OwnerName: "P", InitialBalance: int64(i)}}
			case v%4 == 3:
				req.Command = &messages.AccountRequest_Withdraw{Withdraw: &messages.Withdraw{Amount: 1}}
			default:
				req.Command = &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: int64(1 + v%13)}}
			}
			evs, err := account.Decide(st, req, at.Add(time.Duration(v)*time.Second))
			if err != nil {
				t.Fatalf("seed %s event %d: %v", number, v, err)
			}
			for _, ev := range evs {
				st = account.Apply(st, ids[i], ev)
				data, err := proto.Marshal(ev)
				if err != nil {
					t.Fatal(err)
				}
				batch = append(batch, persistence.EventData{Type: account.TypeOf(ev), Data: data, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())})
			}
		}
		if _, err := s.Append(context.Background(), account.StreamFor(ids[i]), 0, batch); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// foldJournal is a rebuild from scratch, without the projection: the plain
// fold of each account's stored events.
func foldJournal(t *testing.T, s persistence.Store, ids []string) map[string]projection.Summary {
	t.Helper()
	out := map[string]projection.Summary{}
	for _, id := range ids {
		stored, err := s.ReadStream(context.Background(), account.StreamFor(id), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var sum projection.Summary
		for _, e := range stored {
			ev, err := account.DecodeEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			if sum, err = projection.Apply(sum, id, e.Version, ev); err != nil {
				t.Fatal(err)
			}
		}
		out[id] = sum
	}
	return out
}

func readSummaries(t *testing.T, s persistence.Store, ids []string) map[string]projection.Summary {
	t.Helper()
	out := map[string]projection.Summary{}
	for _, id := range ids {
		sum, ok, err := projection.GetSummary(context.Background(), s, id)
		if err != nil || !ok {
			t.Fatalf("GetSummary(%s) = %v, %v", id, ok, err)
		}
		out[id] = sum
	}
	return out
}

func summaryStatus(t *testing.T, s persistence.Store) projection.ProjectionStatus {
	t.Helper()
	st, err := projection.StatusOf(context.Background(), s, projection.AccountSummaryName)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Issue 6: kill the member running the projection in the middle of its
// catch-up. The projection resumes on a survivor from the checkpoints it
// committed, and the read model ends equal to a rebuild from scratch (both
// a plain fold of the journal and the projection's own rebuild).
func TestProjectionResumesElsewhereAfterKill(t *testing.T) {
	store := &slowReadModels{Store: testkit.NewStoreWithPartitions(t, 3)}
	store.slow.Store(true)
	ids := seedAccounts(t, store, "PK", 300, 40) // 12000 events: 2400 commits of at least 2ms
	c := testkit.NewCluster(t, 3, testkit.WithStore(store), testkit.WithGrainsConfig(func(g *cluster.GrainsConfig) {
		// Small batches and steps: the catch-up takes long enough to be
		// interrupted, and commits often.
		g.Projection.BatchSize = 5
		g.Projection.StepBudget = 5 * time.Millisecond
		g.Projection.RetireGrace = 100 * time.Millisecond
	}))
	ctx := context.Background()

	// Find the member running it once it has started catching up.
	var host string
	testkit.WaitFor(t, 10*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		reply, err := projection.Ping(cctx, c.Member(0), projection.AccountSummaryName)
		if err != nil {
			return err
		}
		host = reply.GetServedBy()
		if st := summaryStatus(t, store); st.Position == 0 {
			return fmt.Errorf("not started: %+v", st)
		}
		return nil
	})
	victim := slices.IndexFunc([]int{0, 1, 2}, func(i int) bool { return c.Member(i).ID() == host })
	if victim < 0 {
		t.Fatalf("projection served by %s, not a member", host)
	}
	survivor := c.Member((victim + 1) % 3)

	before := summaryStatus(t, store)
	c.Kill(victim)
	killedAt := time.Now()
	t.Logf("killed member %d (%s) at position %d of %d", victim, host, before.Position, before.Head)
	if before.Lag < before.Head/4 {
		t.Fatalf("catch-up nearly done before the kill (%+v): seed more events", before)
	}
	store.slow.Store(false)

	// Live writes go on through a survivor meanwhile (the account may
	// live on the dead member too: the call re-sends until it moved).
	extra := account.IDFor("PK-live")
	callAccount := func(req *messages.AccountRequest) *messages.AccountReply {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, projectionFailover)
		defer cancel()
		reply, err := cluster.CallAs[*messages.AccountReply](cctx, survivor, account.Kind, extra, req)
		if err == nil && reply.GetFailure() != nil {
			err = reply.GetFailure()
		}
		if err != nil {
			t.Fatalf("account %s: %v", extra, err)
		}
		return reply
	}
	callAccount(&messages.AccountRequest{CommandId: "PK-live-open", Caller: projCaller,
		Command: &messages.AccountRequest_Open{Open: &messages.OpenAccount{AccountNumber: "PK-live", OwnerName: "L", InitialBalance: 5}}})
	last := callAccount(&messages.AccountRequest{CommandId: "PK-live-dep", Caller: projCaller,
		Command: &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: 7}}})
	ids = append(ids, extra)

	// It comes back on a survivor and catches up, without going backwards.
	testkit.WaitFor(t, projectionFailover, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		reply, err := projection.Ping(cctx, survivor, projection.AccountSummaryName)
		if err != nil {
			return err
		}
		if reply.GetServedBy() == host {
			return fmt.Errorf("still served by the killed member")
		}
		st := summaryStatus(t, store)
		if st.Position < before.Position {
			return fmt.Errorf("position went back from %d to %d", before.Position, st.Position)
		}
		if st.Lag != 0 {
			return fmt.Errorf("lag %d on %s", st.Lag, reply.GetServedBy())
		}
		return nil
	})
	t.Logf("caught up on a survivor %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	if s, err := projection.WaitForVersion(ctx, store, extra, last.GetAccount().GetVersion()); err != nil || s.CurrentBalance != 12 {
		t.Fatalf("live account summary %+v, %v", s, err)
	}

	live := readSummaries(t, store, ids)
	sameSummaries(t, "read model after the kill vs fold of the journal", live, foldJournal(t, store, ids))

	// The projection's own rebuild from position 0 ends the same.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	reply, err := projection.Rebuild(cctx, survivor, projection.AccountSummaryName)
	cancel()
	if err != nil || !reply.GetRebuildStarted() {
		t.Fatalf("Rebuild = %v, %v", reply, err)
	}
	testkit.WaitFor(t, 60*time.Second, func() error {
		st := summaryStatus(t, store)
		if st.Rebuilding || st.Generation != reply.GetRebuildGeneration() || st.Lag != 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	sameSummaries(t, "rebuilt read model vs the one that survived the kill", readSummaries(t, store, ids), live)
}

// sameSummaries fails the test at the first summary that differs.
func sameSummaries(t *testing.T, what string, got, want map[string]projection.Summary) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d summaries, want %d", what, len(got), len(want))
	}
	for id, w := range want {
		if g := got[id]; g != w {
			t.Fatalf("%s: summary of %s\n got %+v\nwant %+v", what, id, g, w)
		}
	}
}
