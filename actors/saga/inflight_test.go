package saga_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"granary/actors/account"
	"granary/actors/saga"
	"granary/cluster"
	"granary/messages"
	"granary/persistence"
	"granary/persistence/reminder"
	"granary/testkit"
)

// gatedStore holds appends to one stream, once armed, until open is
// closed.
type gatedStore struct {
	persistence.Store
	stream string
	armed  atomic.Bool
	held   chan struct{}
	open   chan struct{}
}

func (s *gatedStore) Append(ctx context.Context, stream string, expected uint64, events []persistence.EventData, opts ...persistence.AppendOption) (persistence.AppendResult, error) {
	if stream == s.stream && s.armed.Load() {
		select {
		case s.held <- struct{}{}:
		default:
		}
		select {
		case <-s.open:
		case <-ctx.Done():
			return persistence.AppendResult{}, ctx.Err()
		}
	}
	return s.Store.Append(ctx, stream, expected, events, opts...)
}

// The saga grain answers a status query while one of its steps is in
// flight: the step runs off its mailbox.
func TestSagaAnswersWhileAStepIsInFlight(t *testing.T) {
	base := testkit.NewStore(t)
	from := account.IDFor("IF-A")
	gate := &gatedStore{Store: base, stream: account.StreamFor(from), held: make(chan struct{}, 1), open: make(chan struct{})}
	e := newEnv(t, testkit.WithStore(gate))
	a, b := e.open("IF-A", 1000), e.open("IF-B", 0)
	gate.armed.Store(true)

	done := make(chan *messages.SagaReply, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := cluster.CallAs[*messages.SagaReply](ctx, e.m, saga.TransferKind, "if-1", &messages.SagaRequest{Command: &messages.SagaRequest_Start{Start: &messages.StartSaga{
			Input: &messages.StartSaga_Transfer{Transfer: &messages.TransferInput{TransferId: "if-1", FromAccount: a, ToAccount: b,
				Amount: 100, Caller: &messages.Caller{Subject: "alice"}}}}}})
		if err != nil {
			t.Errorf("start: %v", err)
		}
		done <- r
	}()
	select {
	case <-gate.held: // the withdrawal is being written, and held
	case <-time.After(10 * time.Second):
		t.Fatal("the withdrawal never reached the journal")
	}
	// Its saga answers meanwhile, and says where it is.
	s := call[*messages.SagaReply](e, saga.TransferKind, "if-1", &messages.SagaRequest{Command: &messages.SagaRequest_Get{Get: &messages.GetSaga{}}}).GetSaga()
	if s.GetStatus() != saga.StatusStarted || s.GetSteps()[0].GetStartedAtUnixMs() == 0 || s.GetSteps()[0].GetStatus() != saga.StepPending {
		t.Fatalf("status while the withdrawal is in flight: %v", s)
	}
	select {
	case r := <-done:
		t.Fatalf("the start was answered before its step finished: %v", r)
	default:
	}
	close(gate.open)
	r := <-done
	expect(t, r.GetSaga(), "completed", "", "", "withdraw=completed() deposit=completed() ")
	if got := e.balance(b); got != 100 {
		t.Fatalf("target balance %d", got)
	}
}

// failingStore refuses appends to one stream while failing is set, as a
// participant whose storage is down.
type failingStore struct {
	persistence.Store
	stream  string
	failing atomic.Bool
	refused atomic.Int64
}

func (s *failingStore) Append(ctx context.Context, stream string, expected uint64, events []persistence.EventData, opts ...persistence.AppendOption) (persistence.AppendResult, error) {
	if stream == s.stream && s.failing.Load() {
		s.refused.Add(1)
		return persistence.AppendResult{}, persistence.ErrClosed
	}
	return s.Store.Append(ctx, stream, expected, events, opts...)
}

// A saga that paused because a participant was down is driven on by its
// own reminder, without a client's retry or the recovery sweep.
func TestPausedSagaResumesOnItsReminder(t *testing.T) {
	to := account.IDFor("RM-B")
	store := &failingStore{Store: testkit.NewStore(t), stream: account.StreamFor(to)}
	e := newEnv(t, testkit.WithStore(store), testkit.WithGrainsConfig(func(c *cluster.GrainsConfig) {
		c.Saga.MaxDrive = 500 * time.Millisecond
		c.Saga.SweepInterval = 0 // no sweep: only the reminder can resume it
	}))
	a, b := e.open("RM-A", 1000), e.open("RM-B", 0)
	store.failing.Store(true)
	s := e.transfer("rm-1", a, b, 100)
	if s.GetStatus() != saga.StatusStarted {
		t.Fatalf("with the target down the transfer is %s, want started (paused)", s.GetStatus())
	}
	refused := store.refused.Load()
	// Still retried while it is down, by its timer.
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := store.refused.Load(); n <= refused {
			return fmt.Errorf("no new attempt since the pause (%d)", n)
		}
		return nil
	})
	store.failing.Store(false)
	testkit.WaitFor(t, 10*time.Second, func() error {
		s := call[*messages.SagaReply](e, saga.TransferKind, "rm-1", &messages.SagaRequest{Command: &messages.SagaRequest_Get{Get: &messages.GetSaga{}}}).GetSaga()
		if s.GetStatus() != saga.StatusCompleted {
			return fmt.Errorf("status %s", s.GetStatus())
		}
		return nil
	})
	if got := e.balance(b); got != 100 {
		t.Fatalf("target balance %d", got)
	}
	// Its timer went with it.
	testkit.WaitFor(t, 5*time.Second, func() error {
		if _, ok, err := e.m.Reminders().Next(context.Background(), reminder.Key{Kind: saga.TransferKind, ID: "rm-1"}); err != nil || ok {
			return fmt.Errorf("timer still set (%v)", err)
		}
		return nil
	})
}
