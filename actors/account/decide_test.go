package account_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"granary/actors/account"
	"granary/messages"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func owner(sub string) *messages.Caller { return &messages.Caller{Subject: sub} }

func openReq(number string, initial int64) *messages.AccountRequest {
	return &messages.AccountRequest{CommandId: "open-" + number, Caller: owner("alice"),
		Command: &messages.AccountRequest_Open{Open: &messages.OpenAccount{AccountNumber: number, OwnerName: "Alice", InitialBalance: initial}}}
}

func deposit(amount int64) *messages.AccountRequest {
	return &messages.AccountRequest{Caller: owner("alice"), Command: &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: amount}}}
}

func withdraw(amount int64) *messages.AccountRequest {
	return &messages.AccountRequest{Caller: owner("alice"), Command: &messages.AccountRequest_Withdraw{Withdraw: &messages.Withdraw{Amount: amount}}}
}

func closeReq() *messages.AccountRequest {
	return &messages.AccountRequest{Caller: owner("alice"), Command: &messages.AccountRequest_Close{Close: &messages.CloseAccount{Reason: "done"}}}
}

// run decides and applies each request in turn, as the grain does, failing
// on the first unexpected error.
func run(t *testing.T, reqs ...*messages.AccountRequest) account.State {
	t.Helper()
	var s account.State
	for i, r := range reqs {
		evs, err := account.Decide(s, r, t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		for _, ev := range evs {
			s = account.Apply(s, "acc", ev)
		}
	}
	return s
}

func TestSeedScenario(t *testing.T) {
	s := run(t, openReq("ACC-1", 100000), deposit(50000), withdraw(20000), deposit(30000))
	if s.Balance != 160000 || s.Version != 4 {
		t.Fatalf("after four commands: balance %d version %d, want 160000 and 4", s.Balance, s.Version)
	}
	s = run(t, openReq("ACC-1", 100000), deposit(50000), withdraw(20000), deposit(30000), withdraw(10000))
	if s.Balance != 150000 || s.Version != 5 {
		t.Fatalf("after withdrawal: balance %d version %d, want 150000 and 5", s.Balance, s.Version)
	}
	if s.LastActivityMs != t0.Add(4*time.Second).UnixMilli() || s.OpenedAtMs != t0.UnixMilli() {
		t.Fatalf("timestamps come from the events: opened %d last %d", s.OpenedAtMs, s.LastActivityMs)
	}
}

func TestDecideRules(t *testing.T) {
	opened := run(t, openReq("ACC-1", 100))
	closed := run(t, openReq("ACC-1", 100), closeReq())
	long := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name  string
		state account.State
		req   *messages.AccountRequest
		code  string
		field string
	}{
		{"deposit to unknown account", account.State{}, deposit(1), messages.CodeNotFound, ""},
		{"open twice", opened, openReq("ACC-1", 0), messages.CodeAlreadyExists, ""},
		{"open empty number", account.State{}, openReq("", 0), messages.CodeValidationFailed, "account_number"},
		{"open long number", account.State{}, openReq(long(65), 0), messages.CodeValidationFailed, "account_number"},
		{"open negative balance", account.State{}, openReq("A", -1), messages.CodeValidationFailed, "initial_balance"},
		{"open huge balance", account.State{}, openReq("A", account.MaxAmount+1), messages.CodeValidationFailed, "initial_balance"},
		{"deposit zero", opened, deposit(0), messages.CodeValidationFailed, "amount"},
		{"deposit negative", opened, deposit(-5), messages.CodeValidationFailed, "amount"},
		{"deposit above limit", opened, deposit(account.MaxAmount + 1), messages.CodeValidationFailed, "amount"},
		{"withdraw more than balance", opened, withdraw(101), messages.CodeInsufficientFunds, ""},
		{"deposit to closed", closed, deposit(1), messages.CodeAccountClosed, ""},
		{"withdraw from closed", closed, withdraw(1), messages.CodeAccountClosed, ""},
		{"close twice", closed, closeReq(), messages.CodeAccountClosed, ""},
		{"stranger deposits", opened, &messages.AccountRequest{Caller: owner("mallory"),
			Command: &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: 1}}}, messages.CodeForbidden, ""},
		{"stranger reads", opened, &messages.AccountRequest{Caller: owner("mallory"),
			Command: &messages.AccountRequest_Get{Get: &messages.GetAccount{}}}, messages.CodeForbidden, ""},
		{"stale If-Match", opened, &messages.AccountRequest{Caller: owner("alice"), CheckVersion: true, ExpectedVersion: 7,
			Command: &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: 1}}}, messages.CodeVersionConflict, ""},
		{"description too long", opened, &messages.AccountRequest{Caller: owner("alice"),
			Command: &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: 1, Description: long(501)}}}, messages.CodeValidationFailed, "description"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := account.Decide(tc.state, tc.req, t0)
			if err == nil {
				t.Fatalf("got events %v, want %s", evs, tc.code)
			}
			var coder messages.Coder
			if !errors.As(err, &coder) || coder.Code() != tc.code {
				t.Fatalf("got %v, want code %s", err, tc.code)
			}
			if tc.field != "" && !strings.HasPrefix(err.Error(), tc.field+":") {
				t.Fatalf("error %q does not name field %s", err, tc.field)
			}
		})
	}
}

func TestAdminMayActOnAnyAccount(t *testing.T) {
	s := run(t, openReq("ACC-1", 100))
	req := &messages.AccountRequest{Caller: &messages.Caller{Subject: "root", Admin: true},
		Command: &messages.AccountRequest_Withdraw{Withdraw: &messages.Withdraw{Amount: 100}}}
	evs, err := account.Decide(s, req, t0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("admin withdrawal: %v %v", evs, err)
	}
	if got := account.Apply(s, "acc", evs[0]).Balance; got != 0 {
		t.Fatalf("balance %d, want 0", got)
	}
}

func TestInsufficientFundsCarriesNumbers(t *testing.T) {
	_, err := account.Decide(run(t, openReq("ACC-1", 100)), withdraw(250), t0)
	var e *account.InsufficientFundsError
	if !errors.As(err, &e) || e.Balance != 100 || e.Requested != 250 {
		t.Fatalf("got %#v", err)
	}
}

func TestMatchingIfMatchAndGetChangeNothing(t *testing.T) {
	s := run(t, openReq("ACC-1", 100))
	get := &messages.AccountRequest{Caller: owner("alice"), Command: &messages.AccountRequest_Get{Get: &messages.GetAccount{}}}
	if evs, err := account.Decide(s, get, t0); err != nil || len(evs) != 0 {
		t.Fatalf("get: %v %v", evs, err)
	}
	dep := deposit(5)
	dep.CheckVersion, dep.ExpectedVersion = true, 1
	if evs, err := account.Decide(s, dep, t0); err != nil || len(evs) != 1 {
		t.Fatalf("deposit with matching If-Match: %v %v", evs, err)
	}
}

func TestIDForIsStableAndDistinct(t *testing.T) {
	if account.IDFor("ACC-1") != account.IDFor("ACC-1") {
		t.Fatal("IDFor is not deterministic")
	}
	if account.IDFor("ACC-1") == account.IDFor("ACC-2") {
		t.Fatal("different numbers share an id")
	}
	if got := account.IDFor("ACC-1"); len(got) != len("acc_")+24 {
		t.Fatalf("id %q has the wrong shape", got)
	}
}

func TestTypeOfNamesEveryEvent(t *testing.T) {
	s := run(t, openReq("ACC-1", 100), deposit(1), withdraw(1), closeReq())
	if s.Version != 4 || !s.Closed {
		t.Fatalf("state %+v", s)
	}
	for _, req := range []*messages.AccountRequest{openReq("X", 0)} {
		evs, _ := account.Decide(account.State{}, req, t0)
		if account.TypeOf(evs[0]) != account.TypeAccountOpened {
			t.Fatalf("TypeOf = %q", account.TypeOf(evs[0]))
		}
	}
	if account.TypeOf(&messages.AccountEvent{}) != "" {
		t.Fatal("an empty event has no type")
	}
}
