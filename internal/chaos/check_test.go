package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"granary/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func ok200(gw string) []Attempt { return []Attempt{{Gateway: gw, Status: 200}} }

// good is a history that is right in every respect: A opens with 100, B
// with 0; a deposit, a withdrawal, a refused withdrawal, a read, a deposit
// whose answer was lost but which the journal has, a completed transfer and
// one that failed and was compensated.
func good() ([]Op, Journal) {
	ops := []Op{
		{ID: "d1", Client: 0, Kind: Deposit, Account: "A", Amount: 50, Call: at(10), Return: at(20), Outcome: OK, Balance: 150, Attempts: ok200("member1")},
		{ID: "w1", Client: 1, Kind: Withdraw, Account: "A", Amount: 30, Call: at(30), Return: at(40), Outcome: OK, Balance: 120, Attempts: ok200("member2")},
		{ID: "w2", Client: 0, Kind: Withdraw, Account: "A", Amount: 500, Call: at(50), Return: at(60), Outcome: Insufficient,
			Attempts: []Attempt{{Gateway: "member1", Status: 409, Code: "insufficient_funds"}}},
		{ID: "r1", Client: 1, Kind: Read, Account: "A", Call: at(70), Return: at(80), Outcome: OK, Balance: 120, Attempts: ok200("member3")},
		{ID: "d2", Client: 2, Kind: Deposit, Account: "A", Amount: 10, Call: at(90), Outcome: Indeterminate,
			Attempts: []Attempt{{Gateway: "member1", Err: "timeout"}, {Gateway: "member2", Status: 409, Code: "request_in_progress"}, {Gateway: "member3", Status: 504, Code: "timeout"}}},
		{ID: "t1", Client: 0, Kind: Transfer, Account: "A", To: "B", Amount: 20, Call: at(100), Return: at(130), Outcome: OK, Status: "completed",
			Attempts: []Attempt{{Gateway: "member1", Status: 201}}},
		{ID: "t2", Client: 1, Kind: Transfer, Account: "B", To: "A", Amount: 999, Call: at(140), Return: at(150), Outcome: Refused, Status: "compensated",
			Attempts: []Attempt{{Gateway: "member2", Status: 422, Code: "saga_failed"}}},
		{ID: "r2", Client: 1, Kind: Read, Account: "B", Call: at(160), Return: at(170), Outcome: OK, Balance: 20, Attempts: ok200("member2")},
	}
	j := Journal{
		Initial: map[string]int64{"A": 100, "B": 0},
		Events: map[string][]Event{
			"A": {
				{Version: 1, Type: "AccountOpened", Initial: 100},
				{Version: 2, Type: "MoneyDeposited", Amount: 50, Description: "d1"},
				{Version: 3, Type: "MoneyWithdrawn", Amount: 30, Description: "w1"},
				{Version: 4, Type: "MoneyDeposited", Amount: 10, Description: "d2"},
				{Version: 5, Type: "MoneyWithdrawn", Amount: 20, TransferID: "t1"},
			},
			"B": {
				{Version: 1, Type: "AccountOpened", Initial: 0},
				{Version: 2, Type: "MoneyDeposited", Amount: 20, TransferID: "t1"},
			},
		},
		Balances:  map[string]int64{"A": 110, "B": 20},
		Transfers: map[string]string{"t1": "completed", "t2": "compensated"},
	}
	return ops, j
}

// all runs every checker and returns the names of those that failed.
func all(t *testing.T, ops []Op, j Journal) []string {
	t.Helper()
	journal, _ := CheckJournal(ops, j)
	var failed []string
	for _, r := range []Report{CheckStatuses(ops), journal, CheckLinearizable(ops, j, t.TempDir(), 10*time.Second), CheckConservation(ops, j), CheckSagas(ops, j)} {
		if !r.OK() {
			failed = append(failed, r.Name)
			t.Logf("%s: %s; %s", r.Name, r.Summary, strings.Join(r.Problems, "; "))
		}
	}
	return failed
}

func wantFailed(t *testing.T, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Errorf("checker %q passed a broken history (failed: %v)", w, got)
		}
	}
}

func TestGoodHistoryPasses(t *testing.T) {
	ops, j := good()
	if failed := all(t, ops, j); len(failed) > 0 {
		t.Fatalf("a correct history failed %v", failed)
	}
	if _, lost := CheckJournal(ops, j); lost != 0 {
		t.Fatalf("lost = %d, want 0", lost)
	}
}

func TestLostWriteFails(t *testing.T) {
	ops, j := good()
	// The acknowledged deposit d1 is not in the journal (balances follow
	// the journal, as after a Redis that lost it).
	j.Events["A"] = append(j.Events["A"][:1:1], j.Events["A"][2:]...)
	j.Balances["A"] -= 50
	wantFailed(t, all(t, ops, j), "journal", "linearizability")
	if _, lost := CheckJournal(ops, j); lost != 1 {
		t.Fatalf("lost = %d, want 1", lost)
	}
}

// Issue 9 item 1: the first attempt timed out, the retry with the same key
// was told 409 idempotency_key_reused (a definite "not applied"), yet the
// withdrawal is in the journal.
func TestRefusedButAppliedFails(t *testing.T) {
	ops, j := good()
	ops = append(ops, Op{ID: "w3", Client: 2, Kind: Withdraw, Account: "A", Amount: 5, Call: at(200), Return: at(220), Outcome: Refused,
		Attempts: []Attempt{{Gateway: "member1", Err: "timeout"}, {Gateway: "member2", Status: 409, Code: "idempotency_key_reused"}}})
	j.Events["A"] = append(j.Events["A"], Event{Version: 6, Type: "MoneyWithdrawn", Amount: 5, Description: "w3"})
	j.Balances["A"] -= 5
	wantFailed(t, all(t, ops, j), "journal", "statuses")
}

func TestInsufficientButAppliedFails(t *testing.T) {
	ops, j := good()
	// w2 was answered insufficient_funds at a time the account held 150
	// and a later read saw the money gone.
	ops[2].Amount = 60
	j.Events["A"] = append(j.Events["A"], Event{Version: 6, Type: "MoneyWithdrawn", Amount: 60, Description: "w2"})
	j.Balances["A"] -= 60
	wantFailed(t, all(t, ops, j), "journal", "linearizability")
}

func TestMoneyCreatedFails(t *testing.T) {
	ops, j := good()
	j.Balances["B"] += 1000 // a balance its journal does not explain
	wantFailed(t, all(t, ops, j), "conservation")
}

func TestUnknownEventFails(t *testing.T) {
	ops, j := good()
	// An event nobody asked for: money appears with no client op behind it.
	j.Events["B"] = append(j.Events["B"], Event{Version: 3, Type: "MoneyDeposited", Amount: 7, Description: "ghost"})
	j.Balances["B"] += 7
	wantFailed(t, all(t, ops, j), "journal", "conservation")
}

func TestAppliedTwiceFails(t *testing.T) {
	ops, j := good()
	j.Events["A"] = append(j.Events["A"], Event{Version: 6, Type: "MoneyDeposited", Amount: 50, Description: "d1"})
	j.Balances["A"] += 50
	wantFailed(t, all(t, ops, j), "journal", "conservation")
}

func TestTransferLegTwiceFails(t *testing.T) {
	ops, j := good()
	j.Events["B"] = append(j.Events["B"], Event{Version: 3, Type: "MoneyDeposited", Amount: 20, TransferID: "t1"})
	j.Balances["B"] += 20
	wantFailed(t, all(t, ops, j), "journal", "conservation")
}

func TestNonLinearizableFails(t *testing.T) {
	ops, j := good()
	// A stale read: after w1 (→120) returned, a read still saw 150.
	ops[3].Balance = 150
	dir := t.TempDir()
	r := CheckLinearizable(ops, j, dir, 10*time.Second)
	if r.OK() {
		t.Fatal("a stale read passed the linearizability check")
	}
	if _, err := os.Stat(filepath.Join(dir, "linearizability-A.html")); err != nil {
		t.Fatalf("no visualisation written: %v (%v)", err, r.Problems)
	}
}

func TestIndeterminateNotAppliedIsDropped(t *testing.T) {
	ops, j := good()
	// An unanswered withdrawal the journal does not have changed nothing.
	ops = append(ops, Op{ID: "w4", Client: 3, Kind: Withdraw, Account: "A", Amount: 1, Call: at(5), Outcome: Indeterminate,
		Attempts: []Attempt{{Gateway: "member3", Err: "connection refused"}}})
	if failed := all(t, ops, j); len(failed) > 0 {
		t.Fatalf("failed %v", failed)
	}
}

func TestStatusesNotAllowedFail(t *testing.T) {
	for _, a := range []Attempt{{Status: 500, Code: "internal"}, {Status: 409, Code: "idempotency_key_reused"}, {Status: 404, Code: "not_found"}} {
		ops, _ := good()
		ops[0].Attempts = append([]Attempt{a}, ops[0].Attempts...)
		if r := CheckStatuses(ops); r.OK() {
			t.Errorf("deposit answered %d %s passed", a.Status, a.Code)
		}
	}
}

func TestUnfinishedSagaFails(t *testing.T) {
	ops, j := good()
	j.Transfers["t1"] = "started"
	wantFailed(t, all(t, ops, j), "sagas")
}

func TestUnavailability(t *testing.T) {
	ops := []Op{
		{Kind: Deposit, Outcome: OK, Return: at(1000)},
		{Kind: Deposit, Outcome: OK, Return: at(1500)},
		{Kind: Deposit, Outcome: OK, Return: at(4000)}, // 2.5 s gap inside the kill
		{Kind: Read, Outcome: OK, Return: at(4500)},    // reads are not writes
		{Kind: Deposit, Outcome: OK, Return: at(6000)},
		{Kind: Deposit, Outcome: OK, Return: at(6100)},
		{Kind: Deposit, Outcome: OK, Return: at(6300)},
		{Kind: Deposit, Outcome: OK, Return: at(6500)},
		{Kind: Deposit, Outcome: OK, Return: at(6700)},
		{Kind: Deposit, Outcome: OK, Return: at(6900)},
	}
	faults := []Fault{{Kind: "kill9", Start: at(1200), End: at(3000)}, {Kind: "sigstop", Start: at(5800), End: at(5900)}}
	un := Unavailability(ops, faults, at(7000))
	if un["kill9"] != 2500*time.Millisecond {
		t.Errorf("kill9: %s, want 2.5s", un["kill9"])
	}
	if un["sigstop"] != 200*time.Millisecond {
		t.Errorf("sigstop: %s, want 200ms", un["sigstop"])
	}

	// After the load stops (end), a write still in flight returns late:
	// the cluster answered everything else, so that is no stretch of the
	// last fault's, which ended long before.
	tail := append(ops[:len(ops):len(ops)], Op{Kind: Deposit, Outcome: OK, Return: at(15000)})
	if un := Unavailability(tail, faults, at(7000)); un["sigstop"] != 200*time.Millisecond {
		t.Errorf("sigstop with a straggler after the load: %s, want 200ms", un["sigstop"])
	}
	// Successes stop 1.5 s after the last fault ended and none comes until
	// the load stops: the clients' wait in that window is a stretch,
	// straggler or not.
	dead := []Op{{Kind: Deposit, Outcome: OK, Return: at(5850)}, {Kind: Deposit, Outcome: OK, Return: at(5950)}, {Kind: Deposit, Outcome: OK, Return: at(7400)}}
	for _, ops := range [][]Op{dead, append(dead[:3:3], Op{Kind: Deposit, Outcome: OK, Return: at(20000)})} {
		if un := Unavailability(ops, faults[1:], at(9000)); un["sigstop"] != 1600*time.Millisecond {
			t.Errorf("sigstop, nothing after 7.4 s until the load stopped at 9 s: %s, want 1.6s", un["sigstop"])
		}
	}
	// A stretch that began inside the fault counts whole, even when its
	// next success came after the load stopped.
	stuck := []Op{{Kind: Deposit, Outcome: OK, Return: at(5700)}, {Kind: Deposit, Outcome: OK, Return: at(9000)}}
	if un := Unavailability(stuck, faults[1:], at(7000)); un["sigstop"] != 3200*time.Millisecond {
		t.Errorf("sigstop never recovered within the load: %s, want 3.2s", un["sigstop"])
	}
}

// A re-sent command the grain already applied, answered with the account's
// current state instead of the state the command left: the answer includes
// a later write of someone else, which no order of the operations explains.
func TestAnswerWithLaterStateFails(t *testing.T) {
	ops, j := good()
	ops = append(ops,
		Op{ID: "d3", Client: 2, Kind: Deposit, Account: "B", Amount: 5, Call: at(200), Return: at(400), Outcome: OK, Balance: 32, Attempts: ok200("member1")},
		Op{ID: "d4", Client: 3, Kind: Deposit, Account: "B", Amount: 7, Call: at(300), Return: at(310), Outcome: OK, Balance: 32, Attempts: ok200("member2")},
	)
	j.Events["B"] = append(j.Events["B"],
		Event{Version: 3, Type: "MoneyDeposited", Amount: 5, Description: "d3"},
		Event{Version: 4, Type: "MoneyDeposited", Amount: 7, Description: "d4"})
	j.Balances["B"] = 32
	wantFailed(t, all(t, ops, j), "linearizability")
	got := Explain(ops, j, "B", 5)
	if len(got) != 1 || !strings.Contains(got[0], "d3") || !strings.Contains(got[0], "later v4") {
		t.Fatalf("Explain = %q, want d3 named as answered with v4's balance", got)
	}
}

func TestExplainImpossibleRead(t *testing.T) {
	ops, j := good()
	for i := range j.Events["A"] {
		j.Events["A"][i].OccurredAt = at(15 + 20*i)
	}
	ops[3].Balance = 999 // a balance A never had
	got := Explain(ops, j, "A", 5)
	if len(got) != 1 || !strings.Contains(got[0], "r1") {
		t.Fatalf("Explain = %q, want the read r1 named", got)
	}
}
