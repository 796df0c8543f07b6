package projection_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"granary/actors/account"
	"granary/actors/projection"
	"granary/cluster"
	"granary/messages"
	"granary/persistence"
	"granary/testkit"
)

// callAccount sends req to account id through member m.
func callAccount(t testing.TB, m *cluster.Member, id string, req *messages.AccountRequest) *messages.AccountReply {
	t.Helper()
	r, err := tryAccount(m, id, req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryAccount is callAccount for goroutines other than the test's.
func tryAccount(m *cluster.Member, id string, req *messages.AccountRequest) (*messages.AccountReply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := cluster.CallAs[*messages.AccountReply](ctx, m, account.Kind, id, req)
	if err == nil && r.GetFailure() != nil {
		err = r.GetFailure()
	}
	if err != nil {
		return nil, fmt.Errorf("account %s: %w", id, err)
	}
	return r, nil
}

var commandSeq atomic.Int64

// withID gives a request a unique command id, as the gateway does.
func withID(req *messages.AccountRequest) *messages.AccountRequest {
	req.CommandId = fmt.Sprint("cmd-", commandSeq.Add(1))
	return req
}

// The seed's CQRS demo through the grains: the summary reaches the version
// the last command answered, with the demo's numbers.
func TestSummaryFollowsTheGrains(t *testing.T) {
	c := testkit.NewCluster(t, 1)
	m := c.Member(0)
	id := account.IDFor("CQRS-1")
	var version uint64
	for _, req := range []*messages.AccountRequest{openReq("CQRS-1", 100000), depositReq(50000), withdrawReq(20000), depositReq(30000), withdrawReq(10000)} {
		version = callAccount(t, m, id, withID(req)).GetAccount().GetVersion()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := projection.WaitForVersion(ctx, c.Store, id, version)
	if err != nil {
		t.Fatalf("WaitForVersion(%d): %v", version, err)
	}
	if s.CurrentBalance != 150000 || s.TotalDeposits != 180000 || s.TotalWithdrawals != 30000 || s.TransactionCount != 5 ||
		s.Version != 5 || s.AccountNumber != "CQRS-1" || s.Owner != "alice" || s.OwnerName != "Alice" || s.IsClosed {
		t.Fatalf("summary %+v", s)
	}

	// The grain runs on the member and reports no trouble; lag drains to 0.
	reply, err := projection.Ping(ctx, m, projection.AccountSummaryName)
	if err != nil || reply.GetServedBy() != m.ID() || reply.GetGeneration() != 1 || reply.GetLastError() != "" {
		t.Fatalf("Ping = %v, %v", reply, err)
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		st, err := projection.Status(ctx, c.Store)
		if err != nil {
			return err
		}
		if len(st) != 1 || st[0].Name != projection.AccountSummaryName || st[0].Lag != 0 || st[0].Head == 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})

	// Unknown names never reach a grain.
	if _, err := projection.Rebuild(ctx, m, "nope"); !errors.Is(err, projection.ErrUnknownProjection) {
		t.Fatalf("Rebuild(nope): %v, want ErrUnknownProjection", err)
	}
	if _, err := projection.StatusOf(ctx, c.Store, "nope"); !errors.Is(err, projection.ErrUnknownProjection) {
		t.Fatalf("StatusOf(nope): %v, want ErrUnknownProjection", err)
	}
	// A version the account never reaches times out as not caught up.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := projection.WaitForVersion(short, c.Store, id, version+1); !errors.Is(err, projection.ErrNotCaughtUp) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForVersion(%d): %v, want ErrNotCaughtUp and DeadlineExceeded", version+1, err)
	}
}

// Rebuild through the grain while clients deposit through account grains
// and read summaries: reads never fail, and once the writes stop the
// rebuilt read model equals the accounts' live state.
func TestRebuildWhileDepositing(t *testing.T) {
	c := testkit.NewCluster(t, 1, testkit.WithGrainsConfig(func(g *cluster.GrainsConfig) {
		g.Projection.BatchSize = 20 // a rebuild of many small batches
		g.Projection.RetireGrace = 200 * time.Millisecond
	}))
	m := c.Member(0)
	const accounts = 8
	ids := make([]string, accounts)
	for i := range ids {
		number := fmt.Sprint("RB-", i)
		ids[i] = account.IDFor(number)
		callAccount(t, m, ids[i], withID(openReq(number, 1000)))
		for range 30 {
			callAccount(t, m, ids[i], withID(depositReq(7)))
		}
	}
	ctx := context.Background()
	testkit.WaitFor(t, 10*time.Second, func() error {
		st, err := projection.StatusOf(ctx, c.Store, projection.AccountSummaryName)
		if err == nil && st.Lag != 0 {
			err = fmt.Errorf("lag %d", st.Lag)
		}
		return err
	})

	stop := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	halt := func() { once.Do(func() { close(stop); wg.Wait() }) }
	defer halt()
	var deposits, reads atomic.Int64
	for w := range 2 {
		wg.Add(1)
		go func() { // depositor
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := tryAccount(m, ids[(w+2*i)%accounts], withID(depositReq(3))); err != nil {
					t.Error(err)
					return
				}
				deposits.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() { // reader
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s, ok, err := projection.GetSummary(ctx, c.Store, ids[i%accounts])
			if err != nil || !ok || s.Version < 31 {
				t.Errorf("summary of %s during rebuild: %+v, %v, %v", ids[i%accounts], s, ok, err)
				return
			}
			reads.Add(1)
		}
	}()

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	reply, err := projection.Rebuild(cctx, m, projection.AccountSummaryName)
	cancel()
	if err != nil || !reply.GetRebuildStarted() || reply.GetRebuildGeneration() != 2 || reply.GetGeneration() != 1 {
		t.Fatalf("Rebuild = %v, %v", reply, err)
	}
	depositsAtStart := deposits.Load()
	testkit.WaitFor(t, 30*time.Second, func() error {
		meta, err := c.Store.ProjectionMeta(ctx, projection.AccountSummaryName)
		if err == nil && (meta.Current != 2 || meta.Retired != 0) {
			err = fmt.Errorf("meta %+v", meta)
		}
		return err
	})
	halt()
	if t.Failed() {
		return
	}
	t.Logf("rebuild raced %d deposits and %d reads", deposits.Load()-depositsAtStart, reads.Load())
	if deposits.Load() == depositsAtStart {
		t.Fatal("no deposit during the rebuild")
	}

	// Writes stopped: the rebuilt model catches up and equals the grains.
	for _, id := range ids {
		live := callAccount(t, m, id, &messages.AccountRequest{Caller: alice, Command: &messages.AccountRequest_Get{Get: &messages.GetAccount{}}}).GetAccount()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := projection.WaitForVersion(cctx, c.Store, id, live.GetVersion())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		evs, err := c.Store.ReadStream(ctx, account.StreamFor(id), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := referenceFromJournal(t, id, evs); s != want || s.CurrentBalance != live.GetBalance() || s.Version != live.GetVersion() {
			t.Fatalf("summary of %s\n got %+v\nwant %+v (live balance %d version %d)", id, s, want, live.GetBalance(), live.GetVersion())
		}
	}
	// The old generation is gone.
	old := persistence.ReadModelRef{Projection: projection.AccountSummaryName, Generation: 1, Partition: 0}
	if docs, err := c.Store.ReadDocs(ctx, old, ids); err != nil || docs[0] != nil {
		t.Fatalf("generation 1 still holds %q (%v)", docs[0], err)
	}
}

// referenceFromJournal folds a stream's stored events the plain way.
func referenceFromJournal(t testing.TB, id string, stored []persistence.Event) projection.Summary {
	t.Helper()
	evs := make([]*messages.AccountEvent, len(stored))
	for i, e := range stored {
		ev, err := account.DecodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		evs[i] = ev
	}
	return referenceSummary(id, evs)
}
