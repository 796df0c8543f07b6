package projection_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/account"
	"granary/actors/projection"
	"granary/messages"
	"granary/persistence"
	"granary/persistence/memory"
	"granary/testkit"
)

// backends runs f against the in-memory store and the Redis one (miniredis,
// or the real server named by GRANARY_REDIS_URL).
func backends(t *testing.T, partitions int, f func(t *testing.T, s persistence.Store)) {
	t.Run("memory", func(t *testing.T) { f(t, memory.New(partitions)) })
	t.Run("redis", func(t *testing.T) { f(t, testkit.NewStoreWithPartitions(t, partitions)) })
}

// clock is a settable clock for the driver's grace periods.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func driverConfig(t testing.TB, s persistence.Store, now func() time.Time) projection.Config {
	set := projection.DefaultSettings()
	set.BatchSize = 7 // many batches, partial last ones
	set.StepBudget = time.Hour
	cfg := projection.Config{Settings: set, Store: s, StoreTimeout: 5 * time.Second, MemberID: "test",
		Logger: testkit.Logger(t), Now: now}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// stepUntilIdle steps d until a step reports no more work.
func stepUntilIdle(t testing.TB, d *projection.Driver) {
	t.Helper()
	for i := 0; ; i++ {
		res, err := d.Step(context.Background())
		if err != nil {
			t.Fatalf("Step: %v", err)
		}
		if !res.More {
			return
		}
		if i > 100_000 {
			t.Fatal("driver never idle")
		}
	}
}

// ledger is what a test wrote to the journal, per account: the events, so
// the expected summaries can be computed independently.
type ledger struct {
	mu     sync.Mutex
	events map[string][]*messages.AccountEvent
}

func newLedger() *ledger { return &ledger{events: map[string][]*messages.AccountEvent{}} }

// appendEvents stores evs at the end of account id's stream, as the grain
// would, and records them.
func (l *ledger) appendEvents(t testing.TB, s persistence.Store, id string, evs []*messages.AccountEvent) {
	t.Helper()
	if len(evs) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	have := uint64(len(l.events[id]))
	batch := make([]persistence.EventData, len(evs))
	for i, ev := range evs {
		data, err := proto.Marshal(ev)
		if err != nil {
			t.Error(err)
			return
		}
		batch[i] = persistence.EventData{Type: account.TypeOf(ev), Data: data, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())}
	}
	if _, err := s.Append(context.Background(), account.StreamFor(id), have, batch); err != nil {
		t.Errorf("append %s@%d: %v", id, have, err)
		return
	}
	l.events[id] = append(l.events[id], evs...)
}

// deposit decides a deposit on account id as its grain would (refused
// when closed) and stores it.
func (l *ledger) deposit(t testing.TB, s persistence.Store, id string, amount int64) {
	t.Helper()
	l.mu.Lock()
	var st account.State
	for _, ev := range l.events[id] {
		st = account.Apply(st, id, ev)
	}
	l.mu.Unlock()
	evs, err := account.Decide(st, depositReq(amount), t0.Add(time.Duration(st.Version)*time.Second))
	if err == nil {
		l.appendEvents(t, s, id, evs)
	}
}

// ids lists the accounts written so far.
func (l *ledger) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.events))
	for id := range l.events {
		out = append(out, id)
	}
	return out
}

// want is the expected summary of every account written.
func (l *ledger) want() map[string]projection.Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]projection.Summary{}
	for id, evs := range l.events {
		out[id] = referenceSummary(id, evs)
	}
	return out
}

// writeAccounts appends the events of n random accounts in random chunks,
// interleaved, plus events of a non-account stream; it returns the ledger.
func writeAccounts(t testing.TB, s persistence.Store, l *ledger, r *rand.Rand, prefix string, n int) {
	t.Helper()
	pending := map[string][]*messages.AccountEvent{}
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i)
		reqs := append([]*messages.AccountRequest{openReq("N"+id, r.Int64N(1000))}, randomRequests(r)...)
		evs, _ := decideAll(reqs, id)
		pending[id] = evs
	}
	for len(pending) > 0 {
		for id, evs := range pending {
			k := min(len(evs), 1+r.IntN(4))
			l.appendEvents(t, s, id, evs[:k])
			if k == len(evs) {
				delete(pending, id)
			} else {
				pending[id] = evs[k:]
			}
			if r.IntN(5) == 0 {
				// Not an account: the projection skips it.
				other := "counter-" + prefix
				v, err := s.StreamVersion(context.Background(), other)
				if err == nil {
					_, err = s.Append(context.Background(), other, v, []persistence.EventData{{Type: "Incremented", Data: []byte{1}}})
				}
				if err != nil {
					t.Errorf("append %s: %v", other, err)
					return
				}
			}
		}
	}
}

// checkSummaries compares the live read model with the expected summaries.
func checkSummaries(t testing.TB, s persistence.Store, want map[string]projection.Summary) {
	t.Helper()
	for id, w := range want {
		got, ok, err := projection.GetSummary(context.Background(), s, id)
		if err != nil || !ok {
			t.Fatalf("GetSummary(%s) = %v, %v", id, ok, err)
		}
		if got != w {
			t.Fatalf("summary of %s\n got %+v\nwant %+v", id, got, w)
		}
	}
}

func mustStatus(t testing.TB, s persistence.Store) projection.ProjectionStatus {
	t.Helper()
	st, err := projection.StatusOf(context.Background(), s, projection.AccountSummaryName)
	if err != nil {
		t.Fatalf("StatusOf: %v", err)
	}
	return st
}
