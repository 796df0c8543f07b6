package projection_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/account"
	"granary/actors/projection"
	"granary/messages"
	"granary/persistence"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

var alice = &messages.Caller{Subject: "alice"}

func openReq(number string, initial int64) *messages.AccountRequest {
	return &messages.AccountRequest{CommandId: "open-" + number, Caller: alice,
		Command: &messages.AccountRequest_Open{Open: &messages.OpenAccount{AccountNumber: number, OwnerName: "Alice", InitialBalance: initial}}}
}

func depositReq(amount int64) *messages.AccountRequest {
	return &messages.AccountRequest{Caller: alice, Command: &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: amount}}}
}

func withdrawReq(amount int64) *messages.AccountRequest {
	return &messages.AccountRequest{Caller: alice, Command: &messages.AccountRequest_Withdraw{Withdraw: &messages.Withdraw{Amount: amount}}}
}

func closeReq() *messages.AccountRequest {
	return &messages.AccountRequest{Caller: alice, Command: &messages.AccountRequest_Close{Close: &messages.CloseAccount{Reason: "done"}}}
}

// decideAll runs requests through account.Decide/Apply as the grain does,
// dropping refused ones, and returns the events stored and the final state.
func decideAll(reqs []*messages.AccountRequest, id string) ([]*messages.AccountEvent, account.State) {
	var s account.State
	var out []*messages.AccountEvent
	for i, r := range reqs {
		evs, err := account.Decide(s, r, t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			continue
		}
		for _, ev := range evs {
			s = account.Apply(s, id, ev)
			out = append(out, ev)
		}
	}
	return out, s
}

// journalEvents turns account events into what a partition read returns.
func journalEvents(t testing.TB, id string, evs []*messages.AccountEvent, firstVersion uint64) []persistence.Event {
	t.Helper()
	out := make([]persistence.Event, len(evs))
	for i, ev := range evs {
		data, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = persistence.Event{Stream: account.StreamFor(id), Version: firstVersion + uint64(i), Type: account.TypeOf(ev), Data: data,
			OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs()).UTC()}
	}
	return out
}

// fold runs events through the AccountSummary handler in one batch and
// returns the summary of id.
func foldSummary(t testing.TB, id string, events []persistence.Event, docs map[string][]byte) projection.Summary {
	t.Helper()
	h := projection.AccountSummary{}
	if docs == nil {
		docs = map[string][]byte{}
	}
	for _, k := range h.Keys(events) {
		if _, ok := docs[k]; !ok {
			docs[k] = nil
		}
	}
	writes, err := h.Fold(docs, events)
	if err != nil {
		t.Fatalf("Fold: %v", err)
	}
	for _, w := range writes {
		docs[w.Key] = w.Data
	}
	return decodeDoc(t, id, docs[id])
}

// decodeDoc reads a stored summary through the public read path's
// decoder: a one-document memory read model.
func decodeDoc(t testing.TB, id string, data []byte) projection.Summary {
	t.Helper()
	if data == nil {
		return projection.Summary{}
	}
	s, err := projection.DecodeSummaryForTest(id, data)
	if err != nil {
		t.Fatalf("decode summary %s: %v", id, err)
	}
	return s
}

// The seed's CQRS demo: open 100000, deposit 50000, withdraw 20000,
// deposit 30000, withdraw 10000.
func TestSeedScenario(t *testing.T) {
	evs, _ := decideAll([]*messages.AccountRequest{openReq("ACC-1", 100000), depositReq(50000), withdrawReq(20000), depositReq(30000), withdrawReq(10000)}, "acc1")
	if len(evs) != 5 {
		t.Fatalf("%d events, want 5", len(evs))
	}
	s := foldSummary(t, "acc1", journalEvents(t, "acc1", evs, 1), nil)
	want := projection.Summary{AccountID: "acc1", AccountNumber: "ACC-1", Owner: "alice", OwnerName: "Alice",
		CurrentBalance: 150000, TotalDeposits: 180000, TotalWithdrawals: 30000, TransactionCount: 5,
		LastActivity: t0.Add(4 * time.Second), Version: 5}
	if s != want {
		t.Fatalf("summary\n got %+v\nwant %+v", s, want)
	}
}

func TestApplyRules(t *testing.T) {
	open0, _ := decideAll([]*messages.AccountRequest{openReq("Z", 0)}, "z")
	s, err := projection.Apply(projection.Summary{}, "z", 1, open0[0])
	if err != nil || s.TransactionCount != 0 || s.TotalDeposits != 0 || s.Version != 1 {
		t.Fatalf("open with 0: %+v, %v; want no transaction", s, err)
	}
	evs, _ := decideAll([]*messages.AccountRequest{openReq("A", 10), depositReq(5), closeReq()}, "a")
	var sum projection.Summary
	for i, ev := range evs {
		if sum, err = projection.Apply(sum, "a", uint64(i+1), ev); err != nil {
			t.Fatal(err)
		}
	}
	if !sum.IsClosed || sum.TransactionCount != 2 || sum.CurrentBalance != 15 {
		t.Fatalf("after close: %+v", sum)
	}
	// Replays are no-ops; gaps are corruption.
	again, err := projection.Apply(sum, "a", 2, evs[1])
	if err != nil || again != sum {
		t.Fatalf("replayed version 2: %+v, %v; want unchanged", again, err)
	}
	_, err = projection.Apply(sum, "a", 5, evs[1])
	var gap *projection.GapError
	if !errors.As(err, &gap) || !errors.Is(err, persistence.ErrCorrupt) || gap.Have != 3 || gap.Got != 5 {
		t.Fatalf("gap: %v, want a GapError 3 -> 5 matching ErrCorrupt", err)
	}
}

func TestFoldSkipsOtherStreamsAndRefusesCorruptEvents(t *testing.T) {
	h := projection.AccountSummary{}
	evs, _ := decideAll([]*messages.AccountRequest{openReq("A", 10)}, "a")
	batch := append([]persistence.Event{{Stream: "counter-x", Version: 1, Type: "Incremented", Data: []byte{1}},
		{Stream: "account-", Version: 1, Type: "junk"}}, journalEvents(t, "a", evs, 1)...)
	if keys := h.Keys(batch); len(keys) != 2 || keys[0] != "a" || keys[1] != "owner/alice/a" {
		t.Fatalf("Keys = %q, want [a owner/alice/a]", keys)
	}
	writes, err := h.Fold(map[string][]byte{"a": nil, "owner/alice/a": nil}, batch)
	if err != nil || len(writes) != 2 || writes[0].Key != "a" || writes[1].Key != "owner/alice/a" {
		t.Fatalf("Fold = %+v, %v", writes, err)
	}
	bad := journalEvents(t, "a", evs, 1)
	bad[0].Type = account.TypeMoneyDeposited // payload says AccountOpened
	if _, err := h.Fold(map[string][]byte{"a": nil}, bad); !errors.Is(err, persistence.ErrCorrupt) {
		t.Fatalf("mismatched event: %v, want ErrCorrupt", err)
	}
	if _, err := h.Fold(map[string][]byte{"a": []byte("{not json")}, journalEvents(t, "a", evs, 1)); !errors.Is(err, persistence.ErrCorrupt) {
		t.Fatalf("damaged document: %v, want ErrCorrupt", err)
	}
}

// referenceSummary is the summary's definition written as plainly as
// possible, independent of the projection's code.
func referenceSummary(id string, evs []*messages.AccountEvent) projection.Summary {
	var s projection.Summary
	for i, ev := range evs {
		s.AccountID = id
		s.Version = uint64(i + 1)
		s.LastActivity = time.UnixMilli(ev.GetOccurredAtUnixMs()).UTC()
		if o := ev.GetOpened(); o != nil {
			s.AccountNumber, s.Owner, s.OwnerName = o.GetAccountNumber(), o.GetOwner(), o.GetOwnerName()
			s.CurrentBalance, s.TotalDeposits = o.GetInitialBalance(), o.GetInitialBalance()
			if o.GetInitialBalance() > 0 {
				s.TransactionCount++
			}
		}
		if d := ev.GetDeposited(); d != nil {
			s.CurrentBalance += d.GetAmount()
			s.TotalDeposits += d.GetAmount()
			s.TransactionCount++
		}
		if w := ev.GetWithdrawn(); w != nil {
			s.CurrentBalance -= w.GetAmount()
			s.TotalWithdrawals += w.GetAmount()
			s.TransactionCount++
		}
		if ev.GetClosed() != nil {
			s.IsClosed = true
		}
	}
	return s
}

// randomRequests is a random command sequence; many are refused by Decide
// (withdrawing too much, acting before opening or after closing), which is
// the point: only what Decide accepts becomes events.
func randomRequests(r *rand.Rand) []*messages.AccountRequest {
	n := r.IntN(60)
	out := make([]*messages.AccountRequest, 0, n)
	for i := range n {
		switch k := r.IntN(100); {
		case k < 8 || i == 0:
			initial := int64(0)
			if r.IntN(2) == 0 {
				initial = r.Int64N(1_000_000)
			}
			out = append(out, openReq(fmt.Sprint("N", r.IntN(3)), initial))
		case k < 55:
			out = append(out, depositReq(1+r.Int64N(100_000)))
		case k < 97:
			out = append(out, withdrawReq(1+r.Int64N(200_000)))
		default:
			out = append(out, closeReq())
		}
	}
	return out
}

// For random command sequences the summary equals a fold over the
// account's events, whatever the batches the projection reads them in and
// however often a batch is read again (after a crash before its commit or
// a conflict), and agrees with the account's own state.
func TestSummaryIsAFoldOfTheEvents(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 42))
	for round := range 500 {
		id := fmt.Sprint("acc", round)
		evs, state := decideAll(randomRequests(r), id)
		journal := journalEvents(t, id, evs, 1)
		want := referenceSummary(id, evs)

		docs := map[string][]byte{}
		for from := 0; from < len(journal); {
			to := from + 1 + r.IntN(8)
			to = min(to, len(journal))
			// A batch re-read from an earlier position (the commit after
			// it was lost) folds the same.
			start := from
			if r.IntN(4) == 0 {
				start = r.IntN(from + 1)
			}
			foldSummary(t, id, journal[start:to], docs)
			from = to
		}
		got := decodeDoc(t, id, docs[id])
		if got != want {
			t.Fatalf("round %d (seed %d): %d events\n got %+v\nwant %+v", round, seed, len(evs), got, want)
		}
		if len(evs) == 0 {
			continue
		}
		if got.CurrentBalance != state.Balance || got.Version != state.Version || got.IsClosed != state.Closed ||
			got.Owner != state.Owner || got.AccountNumber != state.Number || got.LastActivity.UnixMilli() != state.LastActivityMs {
			t.Fatalf("round %d (seed %d): summary %+v disagrees with account state %+v", round, seed, got, state)
		}
		if got.TotalDeposits-got.TotalWithdrawals != got.CurrentBalance {
			t.Fatalf("round %d: deposits - withdrawals != balance: %+v", round, got)
		}
	}
}

func openBy(owner, number string) *messages.AccountRequest {
	r := openReq(number, 5)
	r.Caller = &messages.Caller{Subject: owner}
	return r
}

// The owner index: one document per account, written when it is opened,
// naming the account; the summaries next to it stay readable.
func TestOwnerIndex(t *testing.T) {
	h := projection.AccountSummary{}
	var batch []persistence.Event
	for _, a := range []struct{ owner, id string }{{"alice", "acc_1"}, {"bob", "acc_2"}, {"a/b", "acc_3"}, {"alice", "acc_4"}} {
		evs, _ := decideAll([]*messages.AccountRequest{openBy(a.owner, a.id), depositReq(1)}, a.id)
		batch = append(batch, journalEvents(t, a.id, evs, 1)...)
	}
	keys := h.Keys(batch)
	wantKeys := []string{"acc_1", "owner/alice/acc_1", "acc_2", "owner/bob/acc_2", "acc_3", "owner/a%2Fb/acc_3", "acc_4", "owner/alice/acc_4"}
	if fmt.Sprint(keys) != fmt.Sprint(wantKeys) {
		t.Fatalf("Keys = %q\nwant %q", keys, wantKeys)
	}
	docs := map[string][]byte{}
	for _, k := range keys {
		docs[k] = nil
	}
	writes, err := h.Fold(docs, batch)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		docs[w.Key] = w.Data
	}
	for _, k := range wantKeys {
		if docs[k] == nil {
			t.Fatalf("no document %s after Fold", k)
		}
	}
	if string(docs["owner/alice/acc_4"]) != "acc_4" || string(docs["owner/a%2Fb/acc_3"]) != "acc_3" {
		t.Fatalf("index documents %q, %q", docs["owner/alice/acc_4"], docs["owner/a%2Fb/acc_3"])
	}
	for _, k := range wantKeys {
		if strings.HasPrefix(k, projection.OwnerIndexPrefix("a")) {
			t.Fatalf("%s is under owner a's prefix", k)
		}
		if strings.HasPrefix(k, "acc_") != !strings.HasPrefix(k, "owner/") {
			t.Fatalf("%s is neither a summary nor an index key", k)
		}
	}

	// Later events of an opened account, and a replay of its opening,
	// touch only its summary: the index document is written once.
	more := journalEvents(t, "acc_1", mustEvents(t, "acc_1", openBy("alice", "acc_1"), depositReq(1), depositReq(2)), 1)
	writes, err = h.Fold(docsFor(h, docs, more), more)
	if err != nil || len(writes) != 1 || writes[0].Key != "acc_1" {
		t.Fatalf("Fold of a replay and a deposit = %+v, %v; want the summary only", writes, err)
	}
	if s := decodeDoc(t, "acc_1", writes[0].Data); s.Version != 3 {
		t.Fatalf("summary at version %d, want 3", s.Version)
	}
}

// An owner too long to keep readable is hashed into a key that fits.
func TestOwnerIndexPrefixBounds(t *testing.T) {
	long := strings.Repeat("x/", 400)
	p := projection.OwnerIndexPrefix(long)
	if !strings.HasPrefix(p, "owner/#") || len(p)+len("acc_")+24 > persistence.MaxDocKey {
		t.Fatalf("prefix of a long owner %q (%d bytes)", p, len(p))
	}
	if p == projection.OwnerIndexPrefix(long+"x") {
		t.Fatal("two long owners share a prefix")
	}
	if projection.OwnerIndexPrefix("#abc") == "owner/#abc/" {
		t.Fatal("an owner starting with # is not escaped")
	}
	if got := projection.OwnerIndexPrefix("alice"); got != "owner/alice/" {
		t.Fatalf("OwnerIndexPrefix(alice) = %q", got)
	}
}

func mustEvents(t *testing.T, id string, reqs ...*messages.AccountRequest) []*messages.AccountEvent {
	t.Helper()
	evs, _ := decideAll(reqs, id)
	if len(evs) != len(reqs) {
		t.Fatalf("%d of %d requests became events", len(evs), len(reqs))
	}
	return evs
}

// docsFor is what the driver hands Fold: the current document of every
// key Keys lists.
func docsFor(h projection.Handler, all map[string][]byte, events []persistence.Event) map[string][]byte {
	docs := map[string][]byte{}
	for _, k := range h.Keys(events) {
		docs[k] = all[k]
	}
	return docs
}

// Driven over a store, the owner index lists exactly each owner's
// accounts, from the partition that holds their summaries.
func TestOwnerIndexThroughTheDriver(t *testing.T) {
	backends(t, 4, func(t *testing.T, s persistence.Store) {
		l := newLedger()
		writeAccounts(t, s, l, rand.New(rand.NewPCG(5, 6)), "acc_a", 12) // alice's
		var bobs []string
		for i := range 5 {
			id := fmt.Sprint("acc_b", i)
			l.appendEvents(t, s, id, mustEvents(t, id, openBy("bob", id)))
			bobs = append(bobs, id)
		}
		d := projection.NewDriver(projection.AccountSummary{}, driverConfig(t, s, newClock().Now))
		stepUntilIdle(t, d)

		indexed := func(owner string) []string {
			var ids []string
			for p := range s.Partitions() {
				ref := persistence.ReadModelRef{Projection: projection.AccountSummaryName, Generation: 1, Partition: p}
				keys, docs, err := s.ListDocs(context.Background(), ref, projection.OwnerIndexPrefix(owner), "", persistence.MaxDocBatch)
				if err != nil {
					t.Fatal(err)
				}
				for i, k := range keys {
					id := string(docs[i])
					if k != projection.OwnerIndexPrefix(owner)+id || s.PartitionOf(account.StreamFor(id)) != p {
						t.Fatalf("index document %s -> %s in partition %d", k, id, p)
					}
					ids = append(ids, id)
				}
			}
			slices.Sort(ids)
			return ids
		}
		var alices []string
		for _, id := range l.ids() {
			if !slices.Contains(bobs, id) {
				alices = append(alices, id)
			}
		}
		slices.Sort(alices)
		if got := indexed("bob"); !slices.Equal(got, bobs) {
			t.Fatalf("bob's index %q, want %q", got, bobs)
		}
		if got := indexed("alice"); !slices.Equal(got, alices) {
			t.Fatalf("alice's index %q, want %q", got, alices)
		}
	})
}
