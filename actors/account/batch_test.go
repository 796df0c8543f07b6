package account_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"granary/actors/account"
	"granary/messages"
	"granary/persistence"
	"granary/testkit"
)

// gatedStore holds the first Append of a test until released, so the test
// can queue requests behind it deterministically, and can make the next
// Append fail the way the test asks.
type gatedStore struct {
	persistence.Store
	entered chan struct{} // closed when the first Append arrives
	release chan struct{} // closed by the test
	calls   atomic.Int32
	sizes   sync.Map // call number -> events in that Append
	// second decides what the second Append does: "" passes through,
	// "lost" fails without storing, "unknown" stores then fails,
	// "foreign" lets another writer append first.
	second string
	other  func()
}

func newGatedStore(t *testing.T, second string) *gatedStore {
	return &gatedStore{Store: testkit.NewStore(t), entered: make(chan struct{}), release: make(chan struct{}), second: second}
}

func (g *gatedStore) Append(ctx context.Context, stream string, v uint64, evs []persistence.EventData, opts ...persistence.AppendOption) (persistence.AppendResult, error) {
	n := g.calls.Add(1)
	g.sizes.Store(n, len(evs))
	switch n {
	case 2: // the open is call 1; the gated deposit is call 2
		close(g.entered)
		<-g.release
	case 3:
		switch g.second {
		case "lost":
			return persistence.AppendResult{}, errors.New("connection reset before the write")
		case "unknown":
			if _, err := g.Store.Append(ctx, stream, v, evs, opts...); err != nil {
				return persistence.AppendResult{}, err
			}
			return persistence.AppendResult{}, errors.New("connection reset after the write")
		case "foreign":
			g.other()
		}
	}
	return g.Store.Append(ctx, stream, v, evs, opts...)
}

// queueBehindFirst sends one deposit, waits until its append is held in
// the store, then sends n more: they are all in the grain's mailbox before
// the first append returns, so they settle as one batch.
func queueBehindFirst(t *testing.T, a activation, g *gatedStore, n int) []*actor.Future {
	t.Helper()
	futures := []*actor.Future{a.system.Root.RequestFuture(a.pid, withID(deposit(1), "dep-0"), 10*time.Second)}
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("first deposit never reached the store")
	}
	for i := 1; i <= n; i++ {
		futures = append(futures, a.system.Root.RequestFuture(a.pid, withID(deposit(int64(i+1)), fmt.Sprintf("dep-%d", i)), 10*time.Second))
	}
	close(g.release)
	return futures
}

func replies(t *testing.T, futures []*actor.Future) []*messages.AccountReply {
	t.Helper()
	out := make([]*messages.AccountReply, len(futures))
	for i, f := range futures {
		res, err := f.Result()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		out[i] = res.(*messages.AccountReply)
	}
	return out
}

// storedCommands maps each command id in the journal to the version of its
// event.
func storedCommands(t *testing.T, store persistence.Store, id string) map[string]uint64 {
	t.Helper()
	events, err := store.ReadStream(context.Background(), account.StreamFor(id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, e := range events {
		ev, err := account.DecodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		out[ev.GetCommandId()] = e.Version
	}
	return out
}

// Commands queued behind an append in flight go to the journal as one
// batch, and each is answered with the state right after its own event.
func TestQueuedCommandsAreAppendedAsOneBatch(t *testing.T) {
	g := newGatedStore(t, "")
	a := activate(t, newSystem(t), grainConfig(t, g), "acc")
	a.call(t, openReq("ACC-1", 0))
	const queued = 50
	rs := replies(t, queueBehindFirst(t, a, g, queued))
	if calls := g.calls.Load(); calls != 3 {
		t.Fatalf("%d appends for 1 open + %d deposits, want 3 (open, first deposit, one batch)", calls, queued+1)
	}
	if n, _ := g.sizes.Load(int32(3)); n != queued {
		t.Fatalf("the batch held %v events, want %d", n, queued)
	}
	stored := storedCommands(t, g.Store, "acc")
	balance := int64(0)
	for i, r := range rs {
		if r.GetFailure() != nil {
			t.Fatalf("deposit %d: %v", i, r.GetFailure())
		}
		// Answered in order, each with the state its own event left.
		balance += int64(i + 1)
		want := uint64(i + 2)
		if got := r.GetAccount(); got.GetVersion() != want || got.GetBalance() != balance {
			t.Fatalf("deposit %d answered version %d balance %d, want %d and %d", i, got.GetVersion(), got.GetBalance(), want, balance)
		}
		if stored[fmt.Sprintf("dep-%d", i)] != want {
			t.Fatalf("deposit %d stored at version %d, want %d", i, stored[fmt.Sprintf("dep-%d", i)], want)
		}
	}
	assertLinearHistory(t, g.Store, "acc", queued+2, balance)
}

// A batch whose append fails acknowledges none of its commands: whether
// nothing was stored or the outcome is unknown, each is told "not known to
// be applied" (503), never a success for an event the journal lacks. The
// grain reloads and serves on.
func TestFailedBatchAcknowledgesNothingUnstored(t *testing.T) {
	for _, mode := range []string{"lost", "unknown"} {
		t.Run(mode, func(t *testing.T) {
			g := newGatedStore(t, mode)
			a := activate(t, newSystem(t), grainConfig(t, g), "acc")
			a.call(t, openReq("ACC-1", 0))
			rs := replies(t, queueBehindFirst(t, a, g, 10))
			stored := storedCommands(t, g.Store, "acc")
			if rs[0].GetFailure() != nil || stored["dep-0"] != 2 {
				t.Fatalf("first deposit: %v, stored at %d", rs[0], stored["dep-0"])
			}
			for i, r := range rs[1:] {
				if r.GetFailure().GetCode() != messages.CodeServiceUnavailable {
					t.Fatalf("deposit %d of the failed batch: %v, want service_unavailable", i+1, r)
				}
			}
			wantVersion := map[string]uint64{"lost": 2, "unknown": 12}[mode]
			assertLinearHistory(t, g.Store, "acc", wantVersion, -1)
			// The grain reloads from the journal and goes on.
			r := a.call(t, withID(deposit(100), "after"))
			if r.GetFailure() != nil || r.GetAccount().GetVersion() != wantVersion+1 {
				t.Fatalf("deposit after the failed batch: %v, want version %d", r, wantVersion+1)
			}
		})
	}
}

// When another activation wrote first, the batch is decided again on the
// journal's state: every command still lands once, after the other's event.
func TestBatchConflictIsDecidedAgain(t *testing.T) {
	g := newGatedStore(t, "foreign")
	system := newSystem(t)
	a := activate(t, system, grainConfig(t, g), "acc")
	a.call(t, openReq("ACC-1", 0))
	g.other = func() {
		// A direct store append: the other activation's grain is not
		// involved, so this cannot deadlock on the gate.
		ev, err := account.EncodeEvent(&messages.AccountEvent{CommandId: "foreign", Event: &messages.AccountEvent_Deposited{Deposited: &messages.MoneyDeposited{Amount: 1000}}})
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := g.Store.Append(context.Background(), account.StreamFor("acc"), 2, []persistence.EventData{ev}); err != nil {
			t.Error(err)
		}
	}
	rs := replies(t, queueBehindFirst(t, a, g, 10))
	stored := storedCommands(t, g.Store, "acc")
	for i, r := range rs {
		id := fmt.Sprintf("dep-%d", i)
		if r.GetFailure() != nil {
			t.Fatalf("deposit %d: %v", i, r.GetFailure())
		}
		if stored[id] == 0 || r.GetAccount().GetVersion() != stored[id] {
			t.Fatalf("deposit %d answered version %d, stored at %d", i, r.GetAccount().GetVersion(), stored[id])
		}
	}
	if stored["foreign"] != 3 {
		t.Fatalf("foreign event at version %d, want 3", stored["foreign"])
	}
	assertLinearHistory(t, g.Store, "acc", 13, 1000+66)
}

// A command of the batch that another activation refused is answered on
// its own; the others of the batch are appended without it.
func TestBatchWithADeclinedCommandStoresTheOthers(t *testing.T) {
	g := newGatedStore(t, "foreign")
	a := activate(t, newSystem(t), grainConfig(t, g), "acc")
	a.call(t, openReq("ACC-1", 0))
	// Just before the batch is stored, another activation refuses dep-5
	// at the version the batch was decided on.
	g.other = func() {
		if err := g.Store.Decline(context.Background(), account.StreamFor("acc"), 2, "dep-5", time.Now().Add(time.Minute)); err != nil {
			t.Error(err)
		}
	}
	rs := replies(t, queueBehindFirst(t, a, g, 10))
	stored := storedCommands(t, g.Store, "acc")
	for i, r := range rs {
		id := fmt.Sprintf("dep-%d", i)
		if i == 5 {
			if r.GetFailure().GetCode() != messages.CodeServiceUnavailable || stored[id] != 0 {
				t.Fatalf("declined deposit: %v, stored at %d", r, stored[id])
			}
			continue
		}
		if r.GetFailure() != nil || stored[id] == 0 || r.GetAccount().GetVersion() != stored[id] {
			t.Fatalf("deposit %d: %v, stored at %d", i, r, stored[id])
		}
	}
	assertLinearHistory(t, g.Store, "acc", 11, 1+2+3+4+5+7+8+9+10+11)
}

// Random faults under concurrent deposits and withdrawals: every command
// acknowledged is in the journal exactly once, every definite refusal is
// not, and the balance is the fold of what is stored.
func TestBatchingUnderRandomFaults(t *testing.T) {
	fs := &flakyStore{Store: testkit.NewStore(t), rng: rand.New(rand.NewPCG(1, 2))}
	a := activate(t, newSystem(t), grainConfig(t, fs), "acc")
	a.call(t, openReq("ACC-1", 100))
	const writers, each = 8, 60
	type answer struct {
		id    string
		reply *messages.AccountReply
	}
	answers := make(chan answer, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				req := deposit(int64(i%7 + 1))
				if i%3 == 0 {
					req = withdraw(int64(i%11 + 5))
				}
				answers <- answer{id, a.call(t, withID(req, id))}
			}
		}()
	}
	wg.Wait()
	close(answers)
	stored := storedCommands(t, fs.Store, "acc")
	var acked, refused, unknown int
	for ans := range answers {
		switch f := ans.reply.GetFailure(); {
		case f == nil:
			acked++
			if stored[ans.id] == 0 {
				t.Errorf("%s acknowledged but not in the journal", ans.id)
			}
		case f.GetCode() == messages.CodeInsufficientFunds:
			refused++
			if stored[ans.id] != 0 {
				t.Errorf("%s refused but in the journal at %d", ans.id, stored[ans.id])
			}
		case f.GetCode() == messages.CodeServiceUnavailable:
			unknown++
		default:
			t.Errorf("%s: unexpected %v", ans.id, f)
		}
	}
	assertLinearHistory(t, fs.Store, "acc", 0, -1)
	if acked == 0 || fs.faults.Load() == 0 {
		t.Fatalf("acked %d with %d faults: the test exercised nothing", acked, fs.faults.Load())
	}
	t.Logf("%d acknowledged, %d refused, %d unknown; %d faults over %d appends", acked, refused, unknown, fs.faults.Load(), fs.calls.Load())
}

// flakyStore fails about one append in five, half of them after storing.
type flakyStore struct {
	persistence.Store
	mu     sync.Mutex
	rng    *rand.Rand
	calls  atomic.Int32
	faults atomic.Int32
}

func (f *flakyStore) Append(ctx context.Context, stream string, v uint64, evs []persistence.EventData, opts ...persistence.AppendOption) (persistence.AppendResult, error) {
	f.calls.Add(1)
	f.mu.Lock()
	roll := f.rng.IntN(10)
	f.mu.Unlock()
	switch roll {
	case 0:
		f.faults.Add(1)
		return persistence.AppendResult{}, errors.New("connection reset before the write")
	case 1:
		f.faults.Add(1)
		if _, err := f.Store.Append(ctx, stream, v, evs, opts...); err != nil {
			return persistence.AppendResult{}, err
		}
		return persistence.AppendResult{}, errors.New("connection reset after the write")
	}
	return f.Store.Append(ctx, stream, v, evs, opts...)
}

// countingStore counts the events ReadStream returns.
type countingStore struct {
	persistence.Store
	read atomic.Int64
}

func (c *countingStore) ReadStream(ctx context.Context, stream string, after uint64, limit int) ([]persistence.Event, error) {
	evs, err := c.Store.ReadStream(ctx, stream, after, limit)
	c.read.Add(int64(len(evs)))
	return evs, err
}

// A re-sent command of a batch that is not the stream's last (re-sent
// under load) is answered with the state it left without reading the
// journal, where a fold of the whole stream would have been needed.
func TestResentBatchCommandAnswersWithoutReplay(t *testing.T) {
	g := newGatedStore(t, "")
	cs := &countingStore{Store: g}
	a := activate(t, newSystem(t), grainConfig(t, cs), "acc")
	a.call(t, openReq("ACC-1", 0))
	futures := []*actor.Future{a.system.Root.RequestFuture(a.pid, withID(deposit(1), "dep-0"), 10*time.Second)}
	<-g.entered
	for i := 1; i <= 20; i++ {
		futures = append(futures, a.system.Root.RequestFuture(a.pid, withID(deposit(int64(i+1)), fmt.Sprintf("dep-%d", i)), 10*time.Second))
	}
	// The re-send of dep-5 queues behind the batch that will hold dep-5.
	resend := a.system.Root.RequestFuture(a.pid, withID(deposit(6), "dep-5"), 10*time.Second)
	before := cs.read.Load()
	close(g.release)
	rs := replies(t, futures)
	res, err := resend.Result()
	if err != nil {
		t.Fatal(err)
	}
	r := res.(*messages.AccountReply)
	if r.GetFailure() != nil || !r.GetDuplicate() || r.GetAccount() == nil ||
		r.GetAccount().GetVersion() != rs[5].GetAccount().GetVersion() || r.GetAccount().GetBalance() != rs[5].GetAccount().GetBalance() {
		t.Fatalf("re-sent dep-5: %v, want a duplicate with dep-5's answer %v", r, rs[5].GetAccount())
	}
	if read := cs.read.Load() - before; read != 0 {
		t.Fatalf("answering the re-send read %d events", read)
	}
	assertLinearHistory(t, g.Store, "acc", 22, 21*22/2)
}
