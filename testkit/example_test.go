package testkit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"granary/actors/account"
	"granary/cluster"
	"granary/messages"
	"granary/testkit"
)

// A test body: start a cluster, call a grain, crash the member, and find
// the grain's state again on a new member that shares the store. (This one
// runs under -race too: it never has two members at once. Multi-member
// tests, Restart and AddMember after a Kill need a run without -race; see
// ErrSharedProcessRace.)
func ExampleNewCluster() {
	inTest(func(t testing.TB) {
		c := testkit.NewCluster(t, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		id := account.IDFor("EX-1")
		caller := &messages.Caller{Subject: "alice"}

		// Every grain request carries a command id: calls are re-sent when
		// an owner dies, and grains drop ids they have seen.
		_, err := cluster.CallAs[*messages.AccountReply](ctx, c.Member(0), account.Kind, id, &messages.AccountRequest{
			CommandId: "open-1", Caller: caller,
			Command: &messages.AccountRequest_Open{Open: &messages.OpenAccount{AccountNumber: "EX-1", OwnerName: "Alice", InitialBalance: 100}}})
		if err != nil {
			t.Fatal(err)
		}
		dep, err := cluster.CallAs[*messages.AccountReply](ctx, c.Member(0), account.Kind, id, &messages.AccountRequest{
			CommandId: "deposit-1", Caller: caller,
			Command: &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: 50}}})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("balance:", dep.GetAccount().GetBalance(), "served by member 0:", dep.GetServedBy() == c.Member(0).ID())

		// Crash the member; a new one on the same store activates the
		// account again from its journal.
		c.Kill(0)
		again := testkit.NewCluster(t, 1, testkit.WithStore(c.Store))
		got, err := cluster.CallAs[*messages.AccountReply](ctx, again.Member(0), account.Kind, id, &messages.AccountRequest{
			CommandId: "get-1", Caller: caller, Command: &messages.AccountRequest_Get{Get: &messages.GetAccount{}}})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("after the crash:", got.GetAccount().GetBalance(), "served by the new member:", got.GetServedBy() == again.Member(0).ID())
	})
	// Output:
	// balance: 150 served by member 0: true
	// after the crash: 150 served by the new member: true
}

// inTest runs body as a test would run it. An example has no *testing.T, so
// exampleT plays one: it runs the cleanups at the end and turns a failure
// into a panic. In your own tests, pass t.
func inTest(body func(t testing.TB)) {
	t := &exampleT{}
	defer t.cleanup()
	body(t)
}

// exampleT implements the part of testing.TB the test kit uses; calling
// any other method panics (the embedded interface is nil).
type exampleT struct {
	testing.TB
	cleanups []func()
}

func (t *exampleT) Helper()                           {}
func (t *exampleT) Name() string                      { return "ExampleNewCluster" }
func (t *exampleT) Log(args ...any)                   {} // keeps the cluster's logs out of the output
func (t *exampleT) Logf(format string, args ...any)   {}
func (t *exampleT) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Error(args ...any)                 { panic(fmt.Sprint(args...)) }
func (t *exampleT) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (t *exampleT) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (t *exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (t *exampleT) Skip(args ...any)                  { panic(fmt.Sprint(args...)) }

func (t *exampleT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
