package account_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/account"
	"granary/messages"
	"granary/persistence"
	"granary/testkit"
)

// BenchmarkActivation measures a cold activation (load snapshot, replay the
// tail, answer one read) of accounts with 100 and 100 000 events. With a
// snapshot every 100 events both replay at most 100, so the two should cost
// about the same. Runs on miniredis, or real Redis with GRANARY_REDIS_URL.
func BenchmarkActivation(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			store := testkit.NewStore(b)
			id := "bench"
			const tail = 50
			seedEvents(b, store, id, 0, n-tail)
			system := newSystem(b)
			cfg := grainConfig(b, store)
			// The first activation replays everything once and saves the
			// snapshot the grain would have written along the way.
			get := &messages.AccountRequest{Caller: owner("alice"), Command: &messages.AccountRequest_Get{Get: &messages.GetAccount{}}}
			first := activate(b, system, cfg, id)
			first.call(b, get)
			first.stop()
			if snap, ok, err := store.LoadSnapshot(context.Background(), account.StreamFor(id)); n > 1000 && (err != nil || !ok || snap.Version != uint64(n-tail)) {
				b.Fatalf("no snapshot after the first activation: %+v %v %v", snap, ok, err)
			}
			// Then a tail the snapshot does not cover, as in real life.
			seedEvents(b, store, id, n-tail, n)
			b.ResetTimer()
			for range b.N {
				a := activate(b, system, cfg, id)
				if r := a.call(b, get); r.GetAccount().GetVersion() != uint64(n) {
					b.Fatalf("activated at version %d, want %d", r.GetAccount().GetVersion(), n)
				}
				a.stop()
			}
		})
	}
}

// seedEvents writes events from..to-1 of an account (an open, then deposits)
// straight into the journal, in batches, as if the grain had written them
// over time.
func seedEvents(b *testing.B, store persistence.Store, id string, from, to int) {
	b.Helper()
	ctx := context.Background()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := make([]persistence.EventData, 0, 1000)
	version := uint64(from)
	flush := func() {
		if _, err := store.Append(ctx, account.StreamFor(id), version, batch); err != nil {
			b.Fatal(err)
		}
		version += uint64(len(batch))
		batch = batch[:0]
	}
	for i := from; i < to; i++ {
		ev := &messages.AccountEvent{CommandId: fmt.Sprintf("seed-%d", i), OccurredAtUnixMs: at.UnixMilli()}
		if i == 0 {
			ev.Event = &messages.AccountEvent_Opened{Opened: &messages.AccountOpened{AccountNumber: "B-1", Owner: "alice", OwnerName: "A"}}
		} else {
			ev.Event = &messages.AccountEvent_Deposited{Deposited: &messages.MoneyDeposited{Amount: 1}}
		}
		data, err := proto.Marshal(ev)
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, persistence.EventData{Type: account.TypeOf(ev), Data: data, OccurredAt: at})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
}
