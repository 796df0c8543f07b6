package grains_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"granary/actors/account"
	"granary/cluster/grains"
	"granary/internal/leakcheck"
	"granary/messages"
	"granary/persistence"
	"granary/persistence/memory"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// fakeCaller records the one call made and answers with reply.
type fakeCaller struct {
	reply          any
	err            error
	kind, identity string
	msg            any
}

func (f *fakeCaller) Call(_ context.Context, kind, identity string, msg any) (any, error) {
	f.kind, f.identity, f.msg = kind, identity, msg
	return f.reply, f.err
}

func withDeadline(t *testing.T) (context.Context, time.Time) {
	t.Helper()
	dl := time.Now().Add(time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	t.Cleanup(cancel)
	return ctx, dl
}

// A command goes to its kind and id, with its command set and the
// deadline from ctx.
func TestAccountsDepositStampsDeadline(t *testing.T) {
	ctx, dl := withDeadline(t)
	f := &fakeCaller{reply: &messages.AccountReply{Account: &messages.AccountState{Id: "acc_1", Balance: 7}, ServedBy: "m1"}}
	r, err := grains.Accounts{Caller: f}.Deposit(ctx, "acc_1", &messages.AccountRequest{CommandId: "c1"}, &messages.Deposit{Amount: 7})
	if err != nil || r.GetAccount().GetBalance() != 7 {
		t.Fatalf("Deposit = %v, %v", r, err)
	}
	req, ok := f.msg.(*messages.AccountRequest)
	if !ok || f.kind != messages.AccountKind || f.identity != "acc_1" {
		t.Fatalf("sent %T to %s/%s", f.msg, f.kind, f.identity)
	}
	if req.GetDeposit().GetAmount() != 7 || req.GetCommandId() != "c1" || req.GetDeadlineUnixMs() != dl.UnixMilli() {
		t.Fatalf("request %v, want deposit 7 under c1 with deadline %d", req, dl.UnixMilli())
	}
}

// A grain's refusal is the error, and the reply still says who served it.
func TestFailureIsTheError(t *testing.T) {
	ctx, _ := withDeadline(t)
	fail := &messages.Failure{Code: messages.CodeInsufficientFunds, Detail: "balance 1"}
	f := &fakeCaller{reply: &messages.AccountReply{Failure: fail, ServedBy: "m2"}}
	r, err := grains.Accounts{Caller: f}.Withdraw(ctx, "acc_1", &messages.AccountRequest{}, &messages.Withdraw{Amount: 5})
	var got *messages.Failure
	if !errors.As(err, &got) || got.GetCode() != messages.CodeInsufficientFunds {
		t.Fatalf("err = %v, want the grain's failure", err)
	}
	if r.GetServedBy() != "m2" {
		t.Fatalf("served by %q, want m2", r.GetServedBy())
	}
}

// Answers of the wrong type, empty answers and call errors are errors.
func TestBadAnswers(t *testing.T) {
	ctx, _ := withDeadline(t)
	callErr := messages.Fail(messages.CodeTimeout, "no answer")
	for name, f := range map[string]*fakeCaller{
		"wrong type":   {reply: &messages.CounterReply{}},
		"no account":   {reply: &messages.AccountReply{ServedBy: "m1"}},
		"nil answer":   {reply: (*messages.AccountReply)(nil)},
		"call failure": {err: callErr},
	} {
		if _, err := (grains.Accounts{Caller: f}).Get(ctx, "acc_1", &messages.AccountRequest{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	f := &fakeCaller{err: callErr}
	if _, err := (grains.Counters{Caller: f}).Send(ctx, "c", &messages.CounterRequest{}); !errors.Is(err, callErr) {
		t.Errorf("call failure = %v, want it unchanged", err)
	}
}

// Each client calls its own kind.
func TestKinds(t *testing.T) {
	ctx, _ := withDeadline(t)
	cases := []struct {
		kind, id string
		call     func(c grains.Caller) error
		reply    any
	}{
		{messages.CounterKind, "hits", func(c grains.Caller) error {
			_, err := grains.Counters{Caller: c}.Send(ctx, "hits", &messages.CounterRequest{})
			return err
		}, &messages.CounterReply{}},
		{messages.CounterGroupKind, "g", func(c grains.Caller) error {
			_, err := grains.CounterGroups{Caller: c}.Spawn(ctx, "g", "c1")
			return err
		}, &messages.CounterGroupReply{Spawned: "g-1"}},
		{messages.InventoryKind, "p1", func(c grains.Caller) error {
			_, err := grains.Inventory{Caller: c}.Send(ctx, "p1", &messages.InventoryRequest{})
			return err
		}, &messages.InventoryReply{}},
		{messages.PaymentKind, "pay_1", func(c grains.Caller) error {
			_, err := grains.Payments{Caller: c}.Get(ctx, "pay_1")
			return err
		}, &messages.PaymentReply{}},
		{messages.TransferSagaKind, "t1", func(c grains.Caller) error {
			_, err := grains.Sagas{Caller: c, Kind: messages.TransferSagaKind}.Get(ctx, "t1")
			return err
		}, &messages.SagaReply{}},
		{messages.UserKind, "ada", func(c grains.Caller) error {
			_, err := grains.Users{Caller: c}.Get(ctx, "ada")
			return err
		}, &messages.UserReply{}},
		{messages.InstanceKind, "svc/i1", func(c grains.Caller) error {
			_, err := grains.Instances{Caller: c}.Send(ctx, "svc", "i1", &messages.InstanceRequest{})
			return err
		}, &messages.InstanceReply{}},
		{messages.RouteKind, messages.RouteTableID, func(c grains.Caller) error {
			_, err := grains.Routes{Caller: c}.Send(ctx, &messages.RouteRequest{})
			return err
		}, &messages.RouteReply{}},
	}
	for _, tc := range cases {
		f := &fakeCaller{reply: tc.reply}
		if err := tc.call(f); err != nil || f.kind != tc.kind || f.identity != tc.id {
			t.Errorf("%s: called %s/%s (%v), want %s/%s", tc.kind, f.kind, f.identity, err, tc.kind, tc.id)
		}
	}
}

// A child call must answer with the child.
func TestChildMustAnswerTheChild(t *testing.T) {
	ctx, _ := withDeadline(t)
	f := &fakeCaller{reply: &messages.CounterGroupReply{Counters: map[string]int64{"other": 1}}}
	if _, err := (grains.CounterGroups{Caller: f}).Child(ctx, "g", "c1", "cmd", &messages.CounterRequest{}); err == nil {
		t.Fatal("an answer without the child is not an error")
	}
}

func appendAccountEvents(t *testing.T, j persistence.Journal, id string, evs ...*messages.AccountEvent) {
	t.Helper()
	var data []persistence.EventData
	for _, ev := range evs {
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, persistence.EventData{Type: account.TypeOf(ev), Data: b, OccurredAt: time.UnixMilli(ev.GetOccurredAtUnixMs())})
	}
	if _, err := j.Append(context.Background(), account.StreamFor(id), 0, data); err != nil {
		t.Fatal(err)
	}
}

// AccountAt folds the journal up to the version asked, and says when the
// journal ends before it.
func TestAccountAt(t *testing.T) {
	store := memory.New(4)
	id := account.IDFor("ACC-1")
	appendAccountEvents(t, store, id,
		&messages.AccountEvent{OccurredAtUnixMs: 1, Event: &messages.AccountEvent_Opened{Opened: &messages.AccountOpened{AccountNumber: "ACC-1", InitialBalance: 100}}},
		&messages.AccountEvent{OccurredAtUnixMs: 2, Event: &messages.AccountEvent_Deposited{Deposited: &messages.MoneyDeposited{Amount: 50}}},
		&messages.AccountEvent{OccurredAtUnixMs: 3, Event: &messages.AccountEvent_Withdrawn{Withdrawn: &messages.MoneyWithdrawn{Amount: 30}}},
	)
	j := grains.AccountJournal{Journal: store}
	for v, want := range map[uint64]int64{1: 100, 2: 150, 3: 120} {
		s, err := j.AccountAt(context.Background(), id, v)
		if err != nil || s.GetVersion() != v || s.GetBalance() != want {
			t.Errorf("AccountAt(%d) = %v, %v; want balance %d", v, s, err, want)
		}
	}
	var f *messages.Failure
	if _, err := j.AccountAt(context.Background(), id, 4); !errors.As(err, &f) || f.GetCode() != messages.CodeServiceUnavailable {
		t.Errorf("past the end: %v, want service_unavailable", err)
	}
}

// An event that does not decode is unreadable, not storage trouble.
func TestAccountAtUnreadable(t *testing.T) {
	store := memory.New(4)
	id := account.IDFor("ACC-2")
	if _, err := store.Append(context.Background(), account.StreamFor(id), 0, []persistence.EventData{{Type: "AccountOpened", Data: []byte{0xff, 0xff}}}); err != nil {
		t.Fatal(err)
	}
	_, err := grains.AccountJournal{Journal: store}.AccountAt(context.Background(), id, 1)
	if !errors.Is(err, grains.ErrUnreadableEvent) || !errors.Is(err, persistence.ErrCorrupt) {
		t.Fatalf("err = %v, want unreadable and corrupt", err)
	}
}
