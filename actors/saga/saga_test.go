package saga_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/account"
	"granary/actors/inventory"
	"granary/actors/payment"
	"granary/actors/saga"
	"granary/actors/service"
	"granary/cluster"
	"granary/internal/leakcheck"
	"granary/messages"
	"granary/persistence"
	"granary/persistence/memory"
	"granary/testkit"
)

func TestMain(m *testing.M) { leakcheck.Main(m, testkit.LeakOptions()...) }

type env struct {
	t *testing.T
	c *testkit.Cluster
	m *cluster.Member
}

func newEnv(t *testing.T, opts ...testkit.Option) *env {
	c := testkit.NewCluster(t, 1, opts...)
	return &env{t: t, c: c, m: c.Member(0)}
}

func call[R any](e *env, kind, id string, msg any) R {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := cluster.CallAs[R](ctx, e.m, kind, id, msg)
	if err != nil {
		e.t.Fatalf("call %s/%s: %v", kind, id, err)
	}
	return r
}

func (e *env) setStock(product string, n int64) {
	e.t.Helper()
	r := call[*messages.InventoryReply](e, inventory.Kind, product, &messages.InventoryRequest{CommandId: fmt.Sprintf("set-%s-%d", product, n),
		Command: &messages.InventoryRequest_Set{Set: &messages.SetStock{Available: n}}})
	if r.GetFailure() != nil {
		e.t.Fatal(r.GetFailure())
	}
}

func (e *env) stock(product string) int64 {
	e.t.Helper()
	return call[*messages.InventoryReply](e, inventory.Kind, product, &messages.InventoryRequest{
		Command: &messages.InventoryRequest_Get{Get: &messages.GetStock{}}}).GetAvailable()
}

func (e *env) order(id, product string, qty, amount int64) *messages.SagaState {
	e.t.Helper()
	r := call[*messages.SagaReply](e, saga.OrderKind, id, &messages.SagaRequest{Command: &messages.SagaRequest_Start{Start: &messages.StartSaga{
		Input: &messages.StartSaga_Order{Order: &messages.OrderInput{OrderId: id, UserId: "alice", ProductId: product,
			Quantity: qty, Amount: amount, PaymentId: "pay-" + id}}}}})
	if r.GetFailure() != nil {
		e.t.Fatalf("order %s: %v", id, r.GetFailure())
	}
	return r.GetSaga()
}

func (e *env) payment(id string) *messages.PaymentReply {
	e.t.Helper()
	return call[*messages.PaymentReply](e, payment.Kind, id, &messages.PaymentRequest{Command: &messages.PaymentRequest_Get{Get: &messages.GetPayment{}}})
}

func steps(s *messages.SagaState) string {
	out := ""
	for _, st := range s.GetSteps() {
		out += fmt.Sprintf("%s=%s(%s) ", st.GetName(), st.GetStatus(), st.GetError())
	}
	return out
}

func expect(t *testing.T, s *messages.SagaState, status, failedStep, errText, wantSteps string) {
	t.Helper()
	if s.GetStatus() != status || s.GetFailedStep() != failedStep || s.GetError() != errText || steps(s) != wantSteps {
		t.Fatalf("saga %s: status %s failed_step %q error %q steps %s\nwant %s %q %q %s",
			s.GetId(), s.GetStatus(), s.GetFailedStep(), s.GetError(), steps(s), status, failedStep, errText, wantSteps)
	}
}

// The seed's three outcomes, with the exact step statuses of the contract.
func TestOrderOutcomes(t *testing.T) {
	e := newEnv(t)
	e.setStock("product_1", 100)
	e.setStock("product_2", 1)

	ok := e.order("o-ok", "product_1", 2, 5000)
	expect(t, ok, "completed", "", "", "reserve_inventory=completed() process_payment=completed() create_order=completed() ")
	if got := e.stock("product_1"); got != 98 {
		t.Fatalf("stock %d after a completed order of 2, want 98", got)
	}
	if p := e.payment("pay-o-ok").GetPayment(); p.GetStatus() != payment.StatusCompleted || p.GetAmount() != 5000 || p.GetUserId() != "alice" {
		t.Fatalf("payment %v", p)
	}

	big := e.order("o-big", "product_1", 1, 150000)
	expect(t, big, "compensated", "process_payment", "payment amount too large",
		"reserve_inventory=compensated() process_payment=failed(payment amount too large) create_order=pending() ")
	if got := e.stock("product_1"); got != 98 {
		t.Fatalf("stock %d after a compensated order, want 98 (restored)", got)
	}
	if r := e.payment("pay-o-big"); r.GetFailure().GetCode() != messages.CodeNotFound {
		t.Fatalf("a refused payment left a record: %v", r)
	}

	unknown := e.order("o-unknown", "no_such_product", 1, 100)
	expect(t, unknown, "compensated", "reserve_inventory", "product not found",
		"reserve_inventory=failed(product not found) process_payment=pending() create_order=pending() ")

	short := e.order("o-short", "product_2", 2, 100)
	expect(t, short, "compensated", "reserve_inventory", "insufficient inventory",
		"reserve_inventory=failed(insufficient inventory) process_payment=pending() create_order=pending() ")

	// Posting an existing order again returns it and does nothing more.
	again := e.order("o-ok", "product_1", 50, 1)
	if again.GetOrder().GetQuantity() != 2 || again.GetStatus() != "completed" || e.stock("product_1") != 98 {
		t.Fatalf("re-posted order: %v, stock %d", again, e.stock("product_1"))
	}
}

// Concurrent orders for the last units never oversell.
func TestConcurrentOrdersNeverOversell(t *testing.T) {
	e := newEnv(t)
	e.setStock("last", 5)
	var mu sync.Mutex
	completed := 0
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := e.order(fmt.Sprintf("race-%d", i), "last", 1, 100)
			if s.GetStatus() == "completed" {
				mu.Lock()
				completed++
				mu.Unlock()
			} else if s.GetError() != "insufficient inventory" {
				t.Errorf("order %d: %s %s", i, s.GetStatus(), s.GetError())
			}
		}()
	}
	wg.Wait()
	if completed != 5 || e.stock("last") != 0 {
		t.Fatalf("%d orders completed, stock %d; want exactly 5 and 0", completed, e.stock("last"))
	}
}

func (e *env) open(number string, balance int64) string {
	e.t.Helper()
	id := account.IDFor(number)
	r := call[*messages.AccountReply](e, account.Kind, id, &messages.AccountRequest{CommandId: "open-" + number,
		Caller:  &messages.Caller{Subject: "alice"},
		Command: &messages.AccountRequest_Open{Open: &messages.OpenAccount{AccountNumber: number, OwnerName: "A", InitialBalance: balance}}})
	if r.GetFailure() != nil {
		e.t.Fatal(r.GetFailure())
	}
	return id
}

func (e *env) balance(id string) int64 {
	e.t.Helper()
	return call[*messages.AccountReply](e, account.Kind, id, &messages.AccountRequest{Caller: &messages.Caller{Subject: "x", Admin: true},
		Command: &messages.AccountRequest_Get{Get: &messages.GetAccount{}}}).GetAccount().GetBalance()
}

func (e *env) transfer(id, from, to string, amount int64) *messages.SagaState {
	e.t.Helper()
	r := call[*messages.SagaReply](e, saga.TransferKind, id, &messages.SagaRequest{Command: &messages.SagaRequest_Start{Start: &messages.StartSaga{
		Input: &messages.StartSaga_Transfer{Transfer: &messages.TransferInput{TransferId: id, FromAccount: from, ToAccount: to,
			Amount: amount, Caller: &messages.Caller{Subject: "alice"}}}}}})
	if r.GetFailure() != nil {
		e.t.Fatalf("transfer %s: %v", id, r.GetFailure())
	}
	return r.GetSaga()
}

func TestTransferOutcomes(t *testing.T) {
	e := newEnv(t)
	a, b := e.open("T-A", 1000), e.open("T-B", 0)
	expect(t, e.transfer("t-ok", a, b, 300), "completed", "", "", "withdraw=completed() deposit=completed() ")
	if e.balance(a) != 700 || e.balance(b) != 300 {
		t.Fatalf("balances %d %d", e.balance(a), e.balance(b))
	}
	expect(t, e.transfer("t-poor", a, b, 5000), "compensated", "withdraw", "insufficient funds",
		"withdraw=failed(insufficient funds) deposit=pending() ")

	missing := account.IDFor("NOPE")
	expect(t, e.transfer("t-missing", a, missing, 100), "compensated", "deposit", "account not found",
		"withdraw=compensated() deposit=failed(account not found) ")
	if e.balance(a) != 700 {
		t.Fatalf("source %d after a compensated transfer, want 700", e.balance(a))
	}

	// Close the source after the withdrawal would have happened: the give
	// back still lands (money is never destroyed). Here: target closed.
	call[*messages.AccountReply](e, account.Kind, b, &messages.AccountRequest{CommandId: "close-b", Caller: &messages.Caller{Subject: "alice"},
		Command: &messages.AccountRequest_Close{Close: &messages.CloseAccount{}}})
	expect(t, e.transfer("t-closed", a, b, 100), "compensated", "deposit", "account closed",
		"withdraw=compensated() deposit=failed(account closed) ")
	if e.balance(a) != 700 || e.balance(b) != 300 {
		t.Fatalf("balances %d %d after compensation", e.balance(a), e.balance(b))
	}
}

// A step's answer is lost after it took effect (its member died right
// after the step): the journal shows the step started but not finished.
// Driving the saga again re-sends the step with the same command id, and the
// participant applies it once.
func TestLostStepAnswerIsNotAppliedTwice(t *testing.T) {
	e := newEnv(t)
	e.setStock("p", 10)
	id := "lost-1"
	in := &messages.OrderInput{OrderId: id, UserId: "alice", ProductId: "p", Quantity: 3, Amount: 700, PaymentId: "pay-lost"}
	now := time.Now()
	// What the dead member left behind: the saga started, its first two
	// steps began, and both took effect at their participants.
	writeSagaEvents(t, e.c.Store, saga.OrderKind, id,
		&messages.SagaEvent{OccurredAtUnixMs: now.UnixMilli(), Event: &messages.SagaEvent_Started{Started: &messages.SagaStarted{
			Kind: saga.OrderKind, DeadlineUnixMs: now.Add(time.Minute).UnixMilli(), Order: in}}},
		&messages.SagaEvent{OccurredAtUnixMs: now.UnixMilli(), Event: &messages.SagaEvent_StepStarted{StepStarted: &messages.SagaStepStarted{Step: "reserve_inventory"}}},
	)
	r := call[*messages.InventoryReply](e, inventory.Kind, "p", &messages.InventoryRequest{CommandId: saga.OrderKind + "/" + id + "/reserve_inventory/do",
		Command: &messages.InventoryRequest_Reserve{Reserve: &messages.ReserveStock{SagaId: id, Quantity: 3}}})
	if r.GetAvailable() != 7 {
		t.Fatalf("reservation: %v", r)
	}
	payments, err := e.c.Services(0).Client(payment.Service)
	if err != nil {
		t.Fatal(err)
	}
	charged, err := payments.Call(context.Background(), &messages.ServiceRequest{Call: &messages.ServiceRequest_ChargePayment{
		ChargePayment: &messages.ChargePayment{PaymentId: "pay-lost", UserId: "alice", Amount: 700, SagaId: id}}}, true)
	if err != nil || charged.GetFailure() != nil {
		t.Fatalf("charge: %v %v", charged, err)
	}

	s := call[*messages.SagaReply](e, saga.OrderKind, id, &messages.SagaRequest{Command: &messages.SagaRequest_Resume{Resume: &messages.ResumeSaga{}}}).GetSaga()
	expect(t, s, "completed", "", "", "reserve_inventory=completed() process_payment=completed() create_order=completed() ")
	if got := e.stock("p"); got != 7 {
		t.Fatalf("stock %d: the re-sent reservation was applied again (want 7)", got)
	}
	events, err := e.c.Store.ReadStream(context.Background(), "payment-pay-lost", 0, 0)
	if err != nil || len(events) != 1 {
		t.Fatalf("payment journal has %d events (%v), want the one charge", len(events), err)
	}
}

func writeSagaEvents(t *testing.T, store persistence.Store, kind, id string, evs ...*messages.SagaEvent) {
	t.Helper()
	var batch []persistence.EventData
	for _, ev := range evs {
		data, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		typ := map[string]string{"started": "SagaStarted", "step_started": "SagaStepStarted"}[string(ev.ProtoReflect().WhichOneof(ev.ProtoReflect().Descriptor().Oneofs().ByName("event")).Name())]
		batch = append(batch, persistence.EventData{Type: typ, Data: data, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())})
	}
	if _, err := store.Append(context.Background(), saga.Stream(kind)(id), 0, batch); err != nil {
		t.Fatal(err)
	}
	if err := store.PutSaga(context.Background(), persistence.SagaRecord{Kind: kind, ID: id, Status: "started",
		StartedAt: time.Now().Add(-time.Minute), UpdatedAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
}

// The recovery sweep finishes a saga nobody asks about any more.
func TestSweepFinishesAbandonedSagas(t *testing.T) {
	e := newEnv(t, testkit.WithGrainsConfig(func(g *cluster.GrainsConfig) { g.Saga.SweepInterval = 0 }))
	e.setStock("p", 4)
	now := time.Now()
	writeSagaEvents(t, e.c.Store, saga.OrderKind, "abandoned",
		&messages.SagaEvent{OccurredAtUnixMs: now.UnixMilli(), Event: &messages.SagaEvent_Started{Started: &messages.SagaStarted{
			Kind: saga.OrderKind, DeadlineUnixMs: now.Add(time.Minute).UnixMilli(),
			Order: &messages.OrderInput{OrderId: "abandoned", UserId: "bob", ProductId: "p", Quantity: 1, Amount: 10, PaymentId: "pay-ab"}}}})
	// Indexed, but its member died before the journal had it.
	if err := e.c.Store.PutSaga(context.Background(), persistence.SagaRecord{Kind: saga.OrderKind, ID: "ghost", Status: "started",
		StartedAt: now.Add(-time.Minute), UpdatedAt: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	w := saga.Sweeper{Index: e.c.Store, Call: e.m, Interval: time.Hour, Grace: time.Second, Batch: 10, Logger: e.c.Log}
	if n := w.Sweep(context.Background()); n != 1 {
		t.Fatalf("sweep resumed %d sagas, want 1", n)
	}
	list, _, err := e.c.Store.ListSagas(context.Background(), persistence.SagaFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range list {
		got[r.ID] = r.Status
	}
	if got["abandoned"] != "completed" || got["ghost"] != "compensated" || e.stock("p") != 3 {
		t.Fatalf("after the sweep: %v, stock %d", got, e.stock("p"))
	}
	if open, _ := e.c.Store.OpenSagas(context.Background(), time.Now(), 10); len(open) != 0 {
		t.Fatalf("still open: %+v", open)
	}
}

// A saga that finished while its index write failed is closed in the
// index by the next sweep, instead of being resumed by every sweep.
func TestSweepClosesTheRecordOfAFinishedSaga(t *testing.T) {
	e := newEnv(t, testkit.WithGrainsConfig(func(g *cluster.GrainsConfig) { g.Saga.SweepInterval = 0 }))
	a, b := e.open("SW-A", 100), e.open("SW-B", 0)
	expect(t, e.transfer("sw-1", a, b, 10), "completed", "", "", "withdraw=completed() deposit=completed() ")
	// What a failed last index write leaves: the record still says started.
	old := time.Now().Add(-time.Minute)
	if err := e.c.Store.PutSaga(context.Background(), persistence.SagaRecord{Kind: saga.TransferKind, ID: "sw-1", Status: "started",
		StartedAt: old, UpdatedAt: old}); err != nil {
		t.Fatal(err)
	}
	w := saga.Sweeper{Index: e.c.Store, Call: e.m, Interval: time.Hour, Grace: time.Second, Batch: 10, Logger: e.c.Log}
	w.Sweep(context.Background())
	if open, _ := e.c.Store.OpenSagas(context.Background(), time.Now(), 10); len(open) != 0 {
		t.Fatalf("still open after the sweep: %+v", open)
	}
	if b := e.balance(b); b != 10 {
		t.Fatalf("the sweep moved money again: target %d", b)
	}
}

// appendLog records the event types of each append to a saga stream.
type appendLog struct {
	persistence.Store
	mu      sync.Mutex
	appends map[string][][]string
	puts    map[string][]string // saga id: the statuses indexed, in order
}

func (l *appendLog) PutSaga(ctx context.Context, r persistence.SagaRecord) error {
	err := l.Store.PutSaga(ctx, r)
	if err == nil {
		l.mu.Lock()
		if l.puts == nil {
			l.puts = map[string][]string{}
		}
		l.puts[r.ID] = append(l.puts[r.ID], r.Status)
		l.mu.Unlock()
	}
	return err
}

func (l *appendLog) Append(ctx context.Context, stream string, expected uint64, events []persistence.EventData, opts ...persistence.AppendOption) (persistence.AppendResult, error) {
	res, err := l.Store.Append(ctx, stream, expected, events, opts...)
	if err == nil {
		var types []string
		for _, e := range events {
			types = append(types, e.Type)
		}
		l.mu.Lock()
		l.appends[stream] = append(l.appends[stream], types)
		l.mu.Unlock()
	}
	return res, err
}

// A step's completion and what Next decides right after it (the next
// step's start, or the end) are stored in one append: a transfer records
// its six events in three appends, each event once and in order.
func TestSagaRecordsConsecutiveDecisionsTogether(t *testing.T) {
	log := &appendLog{Store: memory.New(4), appends: map[string][][]string{}}
	e := newEnv(t, testkit.WithStore(log))
	a, b := e.open("R-A", 1000), e.open("R-B", 0)
	expect(t, e.transfer("t-batched", a, b, 300), "completed", "", "", "withdraw=completed() deposit=completed() ")
	expect(t, e.transfer("t-refused", a, b, 5000), "compensated", "withdraw", "insufficient funds",
		"withdraw=failed(insufficient funds) deposit=pending() ")
	log.mu.Lock()
	defer log.mu.Unlock()
	for id, want := range map[string]string{
		"t-batched": "[[SagaStarted SagaStepStarted] [SagaStepCompleted SagaStepStarted] [SagaStepCompleted SagaFinished]]",
		"t-refused": "[[SagaStarted SagaStepStarted] [SagaStepFailed SagaFinished]]",
	} {
		if got := fmt.Sprint(log.appends[saga.Stream(saga.TransferKind)(id)]); got != want {
			t.Errorf("appends of %s: %s, want %s", id, got, want)
		}
	}
}

// The saga index is written when a saga's status changes, not at every
// step: a transfer's start (before and after its first append) and end,
// three writes where there were four.
// The clock moves a microsecond a call, so no write is due to age.
func TestSagaIndexIsWrittenOnStatusChanges(t *testing.T) {
	log := &appendLog{Store: memory.New(4), appends: map[string][][]string{}}
	var ticks atomic.Int64
	base := time.Now()
	e := newEnv(t, testkit.WithStore(log), testkit.WithGrainConfig(func(g *account.GrainConfig) {
		g.Now = func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * time.Microsecond) }
	}))
	a, b := e.open("I-A", 1000), e.open("I-B", 0)
	expect(t, e.transfer("t-indexed", a, b, 300), "completed", "", "", "withdraw=completed() deposit=completed() ")
	expect(t, e.transfer("t-refused", a, b, 5000), "compensated", "withdraw", "insufficient funds",
		"withdraw=failed(insufficient funds) deposit=pending() ")
	log.mu.Lock()
	defer log.mu.Unlock()
	for id, want := range map[string]string{
		"t-indexed": "[started started completed]",
		"t-refused": "[started started compensated]",
	} {
		if got := fmt.Sprint(log.puts[id]); got != want {
			t.Errorf("index writes of %s: %s, want %s", id, got, want)
		}
	}
	recs, _, err := log.ListSagas(context.Background(), persistence.SagaFilter{Limit: 10})
	if err != nil || len(recs) != 2 {
		t.Fatalf("listed %v, %v; want the two sagas", recs, err)
	}
	for _, r := range recs {
		if r.Status != map[string]string{"t-indexed": "completed", "t-refused": "compensated"}[r.ID] {
			t.Errorf("indexed %s as %s", r.ID, r.Status)
		}
	}
}

// A sweep's Resume of a saga that was indexed but never journaled closes
// its record in the grain itself, so a retry's Start that follows it
// indexes the saga afresh, in order; the sweep writes nothing after.
func TestGhostRecordIsClosedBeforeARetryStarts(t *testing.T) {
	log := &appendLog{Store: memory.New(4), appends: map[string][][]string{}}
	e := newEnv(t, testkit.WithStore(log), testkit.WithGrainsConfig(func(g *cluster.GrainsConfig) { g.Saga.SweepInterval = 0 }))
	a, b := e.open("G-A", 1000), e.open("G-B", 0)
	old := time.Now().Add(-time.Minute)
	if err := log.Store.PutSaga(context.Background(), persistence.SagaRecord{Kind: saga.TransferKind, ID: "t-ghost", Status: "started",
		StartedAt: old, UpdatedAt: old}); err != nil {
		t.Fatal(err)
	}
	w := saga.Sweeper{Index: log, Call: e.m, Interval: time.Hour, Grace: time.Second, Batch: 10, Logger: e.c.Log}
	if n := w.Sweep(context.Background()); n != 0 {
		t.Fatalf("sweep resumed %d sagas, want none (the ghost is not one)", n)
	}
	expect(t, e.transfer("t-ghost", a, b, 100), "completed", "", "", "withdraw=completed() deposit=completed() ")
	log.mu.Lock()
	puts := fmt.Sprint(log.puts["t-ghost"])
	log.mu.Unlock()
	if puts != "[compensated started started completed]" {
		t.Fatalf("index writes of the ghost, then its retry: %s, want [compensated started started completed]", puts)
	}
}

// heldCaller passes calls on, then holds each answer until released.
type heldCaller struct {
	inner    service.Caller
	answered chan struct{}
	release  chan struct{}
}

func (h heldCaller) Call(ctx context.Context, kind, id string, msg any) (any, error) {
	res, err := h.inner.Call(ctx, kind, id, msg)
	h.answered <- struct{}{}
	<-h.release
	return res, err
}

// The race the grain's own close prevents: the sweep is told "not found"
// for a ghost, a client's retry then starts and finishes the saga, and
// only then does the sweep go on. Its old close, written at that point,
// left a completed saga's record (or a running one's) compensated.
func TestSweepAfterARetryLeavesTheRetrysRecord(t *testing.T) {
	log := &appendLog{Store: memory.New(4), appends: map[string][][]string{}}
	e := newEnv(t, testkit.WithStore(log), testkit.WithGrainsConfig(func(g *cluster.GrainsConfig) { g.Saga.SweepInterval = 0 }))
	a, b := e.open("H-A", 1000), e.open("H-B", 0)
	old := time.Now().Add(-time.Minute)
	if err := log.Store.PutSaga(context.Background(), persistence.SagaRecord{Kind: saga.TransferKind, ID: "t-held", Status: "started",
		StartedAt: old, UpdatedAt: old}); err != nil {
		t.Fatal(err)
	}
	held := heldCaller{inner: e.m, answered: make(chan struct{}, 1), release: make(chan struct{})}
	w := saga.Sweeper{Index: log, Call: held, Interval: time.Hour, Grace: time.Second, Batch: 10, Logger: e.c.Log}
	swept := make(chan int, 1)
	go func() { swept <- w.Sweep(context.Background()) }()
	<-held.answered
	expect(t, e.transfer("t-held", a, b, 100), "completed", "", "", "withdraw=completed() deposit=completed() ")
	close(held.release)
	if n := <-swept; n != 0 {
		t.Fatalf("sweep resumed %d sagas, want none", n)
	}
	list, _, err := log.ListSagas(context.Background(), persistence.SagaFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list {
		if r.ID == "t-held" && r.Status != "completed" {
			t.Fatalf("record of the retried saga: %s, want completed", r.Status)
		}
	}
}
