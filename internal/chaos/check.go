package chaos

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Report is what one checker found; Problems empty means it passed.
type Report struct {
	Name     string
	Problems []string
	Summary  string
}

// OK reports whether the checker passed.
func (r Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) addf(format string, args ...any) {
	// Keep reports readable: the count is in the summary, the first
	// examples are enough to debug from.
	if len(r.Problems) < 20 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	} else if len(r.Problems) == 20 {
		r.Problems = append(r.Problems, "…")
	}
}

// allowed lists, per operation, the statuses (and 409 codes) the contract
// allows. A 5xx other than 503/504 is a bug, as is idempotency_key_reused
// for a retry of the same request.
func allowed(k Kind, status int, code string) bool {
	switch status {
	case 503, 504, 429:
		return true
	}
	switch k {
	case Deposit:
		return status == 200 || (status == 409 && code == "request_in_progress")
	case Withdraw:
		return status == 200 || (status == 409 && (code == "insufficient_funds" || code == "request_in_progress"))
	case Read:
		return status == 200
	case Transfer:
		return status == 201 || status == 202 || status == 422 || (status == 409 && code == "request_in_progress")
	}
	return false
}

// CheckStatuses fails on any answer the contract does not allow for the call.
func CheckStatuses(ops []Op) Report {
	r := Report{Name: "statuses"}
	counts := map[string]int{}
	bad := 0
	for _, op := range ops {
		for _, a := range op.Attempts {
			if a.Status == 0 {
				counts["no answer"]++
				continue
			}
			key := fmt.Sprint(a.Status)
			if a.Code != "" && a.Status >= 400 {
				key += " " + a.Code
			}
			counts[key]++
			if !allowed(op.Kind, a.Status, a.Code) {
				bad++
				r.addf("%s %s on %s: %d %s", op.Kind, op.ID, a.Gateway, a.Status, a.Code)
			}
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, counts[k]))
	}
	r.Summary = fmt.Sprintf("%d not allowed; seen: %s", bad, strings.Join(parts, ", "))
	return r
}

// applied indexes client events of the journal by op id (= description).
type applied struct {
	byOp       map[string][]Event // op id -> events carrying it
	accountOf  map[string]string  // op id -> account of its event
	transferEv map[string][]legEvent
}

type legEvent struct {
	account string
	ev      Event
}

func index(j Journal) applied {
	a := applied{byOp: map[string][]Event{}, accountOf: map[string]string{}, transferEv: map[string][]legEvent{}}
	for acct, evs := range j.Events {
		for _, ev := range evs {
			switch {
			case ev.TransferID != "":
				a.transferEv[ev.TransferID] = append(a.transferEv[ev.TransferID], legEvent{acct, ev})
			case ev.Type == "MoneyDeposited" || ev.Type == "MoneyWithdrawn":
				a.byOp[ev.Description] = append(a.byOp[ev.Description], ev)
				a.accountOf[ev.Description] = acct
			}
		}
	}
	return a
}

func eventType(k Kind) string {
	if k == Deposit {
		return "MoneyDeposited"
	}
	return "MoneyWithdrawn"
}

// CheckJournal compares every answer with the journal: an acknowledged write
// must be in it exactly once (else "lost"), a refused one must not be
// (else "refused but applied"), every event must belong to an operation a
// client sent, with its account, type and amount, at most once.
func CheckJournal(ops []Op, j Journal) (Report, int) {
	r := Report{Name: "journal"}
	idx := index(j)
	byID := map[string]Op{}
	lost, refusedApplied, indetApplied, indet := 0, 0, 0, 0
	for _, op := range ops {
		byID[op.ID] = op
		if op.Kind != Deposit && op.Kind != Withdraw {
			continue
		}
		evs := idx.byOp[op.ID]
		switch op.Outcome {
		case OK:
			if len(evs) == 0 {
				lost++
				r.addf("lost: %s %s %d on %s acknowledged (balance %d) but not in the journal", op.Kind, op.ID, op.Amount, op.Account, op.Balance)
			}
		case Insufficient, Refused:
			if len(evs) > 0 {
				refusedApplied++
				r.addf("refused but applied: %s %s %d on %s answered %s (%s) but is in the journal", op.Kind, op.ID, op.Amount, op.Account, op.Outcome, lastAnswer(op))
			}
		case Indeterminate:
			indet++
			if len(evs) > 0 {
				indetApplied++
			}
		}
	}
	for id, evs := range idx.byOp {
		op, ok := byID[id]
		if !ok || (op.Kind != Deposit && op.Kind != Withdraw) {
			r.addf("unknown event: %s on %s with description %q that no client sent", evs[0].Type, idx.accountOf[id], id)
			continue
		}
		if len(evs) > 1 {
			r.addf("applied %d times: %s %s", len(evs), op.Kind, id)
		}
		ev := evs[0]
		if idx.accountOf[id] != op.Account || ev.Type != eventType(op.Kind) || ev.Amount != op.Amount {
			r.addf("event does not match its request: %s %s %d on %s, journal has %s %d on %s", op.Kind, id, op.Amount, op.Account, ev.Type, ev.Amount, idx.accountOf[id])
		}
	}
	for tid, legs := range idx.transferEv {
		op, ok := byID[tid]
		if !ok || op.Kind != Transfer {
			r.addf("unknown event: transfer leg of %q that no client started", tid)
			continue
		}
		var debit, comp, credit int
		for _, l := range legs {
			switch {
			case l.ev.Amount != op.Amount:
				r.addf("transfer %s leg %s on %s moves %d, asked %d", tid, l.ev.Type, l.account, l.ev.Amount, op.Amount)
			case l.account == op.Account && l.ev.Type == "MoneyWithdrawn":
				debit++
			case l.account == op.Account && l.ev.Type == "MoneyDeposited":
				comp++
			case l.account == op.To && l.ev.Type == "MoneyDeposited":
				credit++
			default:
				r.addf("transfer %s has a leg nobody asked for: %s on %s", tid, l.ev.Type, l.account)
			}
		}
		if debit > 1 || comp > 1 || credit > 1 {
			r.addf("transfer %s applied more than once: %d debits, %d compensations, %d credits", tid, debit, comp, credit)
		}
		if op.Outcome == Refused && (debit != comp || credit > 0) {
			r.addf("transfer %s answered failed (%s) but the journal has %d debits, %d compensations, %d credits", tid, lastAnswer(op), debit, comp, credit)
		}
		if op.Outcome == OK && op.Status == "completed" && (debit != 1 || credit != 1 || comp != 0) {
			r.addf("transfer %s answered completed but the journal has %d debits, %d compensations, %d credits", tid, debit, comp, credit)
		}
	}
	for _, op := range ops {
		if op.Kind == Transfer && op.Outcome == OK && op.Status == "completed" && len(idx.transferEv[op.ID]) == 0 {
			lost++
			r.addf("lost: transfer %s acknowledged completed but not in the journal", op.ID)
		}
	}
	r.Summary = fmt.Sprintf("lost %d, refused-but-applied %d, indeterminate %d (%d of them applied)", lost, refusedApplied, indet, indetApplied)
	return r, lost
}

func lastAnswer(op Op) string {
	for i := len(op.Attempts) - 1; i >= 0; i-- {
		if a := op.Attempts[i]; a.Status != 0 {
			return fmt.Sprintf("%d %s on %s", a.Status, a.Code, a.Gateway)
		}
	}
	return "no answer"
}

// CheckConservation: each account's final balance is what its journal adds
// up to, and the total is the opening balances plus the deposits minus the
// withdrawals clients asked for (transfers move money, they make none).
func CheckConservation(ops []Op, j Journal) Report {
	r := Report{Name: "conservation"}
	byID := map[string]Op{}
	for _, op := range ops {
		byID[op.ID] = op
	}
	var initial, final, replayed, expected int64
	accts := make([]string, 0, len(j.Initial))
	for a := range j.Initial {
		accts = append(accts, a)
	}
	sort.Strings(accts)
	for _, a := range accts {
		initial += j.Initial[a]
		final += j.Balances[a]
		var bal int64
		for _, ev := range j.Events[a] {
			switch ev.Type {
			case "AccountOpened":
				bal = ev.Initial
			case "MoneyDeposited":
				bal += ev.Amount
			case "MoneyWithdrawn":
				bal -= ev.Amount
			}
		}
		replayed += bal
		if bal != j.Balances[a] {
			r.addf("account %s: balance %d, its journal adds up to %d", a, j.Balances[a], bal)
		}
		if bal < 0 {
			r.addf("account %s: negative balance %d", a, bal)
		}
	}
	expected = initial
	idx := index(j)
	for id := range idx.byOp {
		op, ok := byID[id]
		if !ok {
			continue // an unknown event: money nobody asked for shows below
		}
		switch op.Kind {
		case Deposit:
			expected += op.Amount
		case Withdraw:
			expected -= op.Amount
		}
	}
	if final != expected {
		r.addf("money not conserved: balances sum to %d, opening balances and client deposits/withdrawals give %d (%+d)", final, expected, final-expected)
	}
	r.Summary = fmt.Sprintf("opening %d, final %d, expected %d", initial, final, expected)
	return r
}

// CheckSagas: every transfer a client started ends completed or compensated.
func CheckSagas(ops []Op, j Journal) Report {
	r := Report{Name: "sagas"}
	counts := map[string]int{}
	for _, op := range ops {
		if op.Kind != Transfer {
			continue
		}
		st, ok := j.Transfers[op.ID]
		if !ok {
			// Never created (refused up front, or the request never landed)
			// is fine only if the journal agrees nothing moved.
			counts["absent"]++
			if len(index(j).transferEv[op.ID]) > 0 {
				r.addf("transfer %s moved money but GET answers nothing", op.ID)
			}
			continue
		}
		counts[st]++
		if st != "completed" && st != "compensated" {
			r.addf("transfer %s ended %q", op.ID, st)
		}
	}
	r.Summary = fmt.Sprintf("%v", counts)
	return r
}

// linInput is one step of an account, for porcupine.
type linInput struct {
	Kind    string // deposit, withdraw, read, debit, credit
	Amount  int64
	Known   bool // the answer is known (else open-ended: it happened, when is unknown)
	Refused bool // withdraw answered insufficient_funds
	Balance int64
	ID      string
}

var accountModel = porcupine.Model{
	Init: func() any { return int64(0) },
	Step: func(state, input, _ any) (bool, any) {
		s := state.(int64)
		in := input.(linInput)
		switch in.Kind {
		case "read":
			return s == in.Balance, s
		case "deposit", "credit":
			n := s + in.Amount
			return !in.Known || n == in.Balance, n
		case "withdraw", "debit":
			if in.Refused {
				return s < in.Amount, s
			}
			n := s - in.Amount
			return s >= in.Amount && (!in.Known || n == in.Balance), n
		}
		return false, s
	},
	Equal: func(a, b any) bool { return a.(int64) == b.(int64) },
	DescribeOperation: func(input, _ any) string {
		in := input.(linInput)
		switch {
		case in.Kind == "read":
			return fmt.Sprintf("read → %d", in.Balance)
		case in.Refused:
			return fmt.Sprintf("%s(%d) → insufficient_funds [%s]", in.Kind, in.Amount, in.ID)
		case in.Known:
			return fmt.Sprintf("%s(%d) → %d [%s]", in.Kind, in.Amount, in.Balance, in.ID)
		}
		return fmt.Sprintf("%s(%d) → ? [%s]", in.Kind, in.Amount, in.ID)
	},
	DescribeState: func(s any) string { return fmt.Sprint(s.(int64)) },
}

// LinearizabilityHistories builds each account's porcupine history. An
// operation whose answer was never learned is kept only when the journal
// shows it applied, with an open-ended return (as porcupine treats a crashed
// client); one the journal does not have changed nothing and is dropped.
func LinearizabilityHistories(ops []Op, j Journal) map[string][]porcupine.Operation {
	idx := index(j)
	var t0 time.Time
	var last int64
	for _, op := range ops {
		if t0.IsZero() || op.Call.Before(t0) {
			t0 = op.Call
		}
	}
	ns := func(t time.Time) int64 { return t.Sub(t0).Nanoseconds() + 1 }
	for _, op := range ops {
		if !op.Return.IsZero() && ns(op.Return) > last {
			last = ns(op.Return)
		}
		if ns(op.Call) > last {
			last = ns(op.Call)
		}
	}
	open := last + 1
	h := map[string][]porcupine.Operation{}
	for a, init := range j.Initial {
		// The opening is the first step of every account.
		h[a] = []porcupine.Operation{{ClientId: 0, Input: linInput{Kind: "credit", Amount: init, Known: true, Balance: init, ID: "open"}, Call: 0, Return: 0}}
	}
	add := func(a string, client int, in linInput, call time.Time, ret int64) {
		if _, ok := h[a]; !ok {
			return
		}
		h[a] = append(h[a], porcupine.Operation{ClientId: client + 1, Input: in, Call: ns(call), Return: ret})
	}
	for _, op := range ops {
		ret := open
		if !op.Return.IsZero() {
			ret = ns(op.Return)
		}
		switch op.Kind {
		case Read:
			if op.Outcome == OK {
				add(op.Account, op.Client, linInput{Kind: "read", Known: true, Balance: op.Balance}, op.Call, ret)
			}
		case Deposit, Withdraw:
			inJournal := len(idx.byOp[op.ID]) > 0
			switch op.Outcome {
			case OK:
				add(op.Account, op.Client, linInput{Kind: string(op.Kind), Amount: op.Amount, Known: true, Balance: op.Balance, ID: op.ID}, op.Call, ret)
			case Insufficient:
				add(op.Account, op.Client, linInput{Kind: string(op.Kind), Amount: op.Amount, Known: true, Refused: true, ID: op.ID}, op.Call, ret)
			case Indeterminate, Refused:
				// A refusal that was applied anyway is reported by
				// CheckJournal; here it is the write the journal has.
				if inJournal {
					add(op.Account, op.Client, linInput{Kind: string(op.Kind), Amount: op.Amount, ID: op.ID}, op.Call, open)
				}
			}
		case Transfer:
			// The legs happen inside the saga: somewhere after the call,
			// and before a final answer (completed, or failed and
			// compensated); otherwise whenever the saga gets to them.
			if op.Outcome == Indeterminate || (op.Outcome == OK && op.Status != "completed") {
				ret = open
			}
			for _, l := range idx.transferEv[op.ID] {
				kind := "credit"
				if l.ev.Type == "MoneyWithdrawn" {
					kind = "debit"
				}
				add(l.account, op.Client, linInput{Kind: kind, Amount: l.ev.Amount, ID: op.ID}, op.Call, ret)
			}
		}
	}
	// The balance read after the run, once everything settled, closes each
	// account's history: a write the history has and the journal lost (or
	// the reverse) shows here even if no client read came after it.
	for a := range h {
		if bal, ok := j.Balances[a]; ok {
			h[a] = append(h[a], porcupine.Operation{ClientId: 0, Input: linInput{Kind: "read", Known: true, Balance: bal, ID: "final"}, Call: open + 1, Return: open + 2})
		}
	}
	return h
}

// CheckLinearizable runs porcupine per account; for an account that is not
// linearizable it writes porcupine's HTML visualisation into dir.
func CheckLinearizable(ops []Op, j Journal, dir string, timeout time.Duration) Report {
	r := Report{Name: "linearizability"}
	h := LinearizabilityHistories(ops, j)
	accts := make([]string, 0, len(h))
	for a := range h {
		accts = append(accts, a)
	}
	sort.Strings(accts)
	var parts []string
	for _, a := range accts {
		res, info := porcupine.CheckOperationsVerbose(accountModel, h[a], timeout)
		parts = append(parts, fmt.Sprintf("%s %s (%d ops)", a, strings.ToLower(string(res)), len(h[a])))
		switch res {
		case porcupine.Ok:
		case porcupine.Illegal:
			msg := fmt.Sprintf("account %s is not linearizable", a)
			if dir != "" {
				path := filepath.Join(dir, "linearizability-"+safe(a)+".html")
				if err := os.MkdirAll(dir, 0o755); err == nil {
					if err := porcupine.VisualizePath(accountModel, info, path); err == nil {
						msg += "; see " + path
					} else {
						msg += fmt.Sprintf("; visualisation failed: %v", err)
					}
				}
			}
			r.addf("%s", msg)
			for _, e := range Explain(ops, j, a, 5) {
				r.addf("  %s", e)
			}
		default:
			r.addf("account %s: porcupine gave no verdict within %s", a, timeout)
		}
	}
	r.Summary = strings.Join(parts, ", ")
	return r
}

func safe(s string) string {
	return strings.Map(func(c rune) rune {
		if c == '/' || c == '\\' || c == '.' {
			return '_'
		}
		return c
	}, s)
}

// Unavailability is, per fault kind, the longest stretch without a
// successful write that began during a fault: from the fault's start, or a
// success within its window, to the next success. A fault's window ends at
// the next fault, the last one's at end: when clients stopped starting
// calls (a success after it counts only for a stretch that began while
// its fault lasted, or within a second of its end).
func Unavailability(ops []Op, faults []Fault, end time.Time) map[string]time.Duration {
	var ok []time.Time
	for _, op := range ops {
		if op.Kind != Read && op.Outcome == OK {
			ok = append(ok, op.Return)
		}
	}
	sort.Slice(ok, func(i, k int) bool { return ok[i].Before(ok[k]) })
	out := map[string]time.Duration{}
	for fi, f := range faults {
		winEnd := end
		if fi+1 < len(faults) {
			winEnd = faults[fi+1].Start
		}
		prev := f.Start
		var worst time.Duration
		closed := false
		for _, t := range ok {
			if t.Before(f.Start) {
				continue
			}
			if t.After(winEnd) {
				worst = max(worst, beyond(prev, t, winEnd, f.End))
				closed = true
				break
			}
			if t.Sub(prev) > worst {
				worst = t.Sub(prev)
			}
			prev = t
		}
		if !closed && prev.After(f.Start) {
			// No success after the last one in the window: the clients
			// kept calling until its end without one.
			worst = max(worst, beyond(prev, winEnd, winEnd, f.End))
		}
		if worst == 0 && len(ok) > 0 && ok[len(ok)-1].Before(f.Start) {
			worst = time.Duration(math.MaxInt64) // never recovered
		}
		if worst > out[f.Kind] {
			out[f.Kind] = worst
		}
	}
	return out
}

// beyond is the stretch from the window's last success prev to the next
// one, next, after the window's end: all of it when it began while the
// fault lasted (or within a second of its end), else the part within the
// window, where clients were still calling without success.
func beyond(prev, next, winEnd, faultEnd time.Time) time.Duration {
	if !prev.Before(winEnd) {
		return 0
	}
	if prev.Before(faultEnd.Add(time.Second)) {
		return next.Sub(prev)
	}
	return winEnd.Sub(prev)
}

// Explain points at what makes an account's history fail, using the
// journal's order (porcupine's verdict says only that no order exists):
// answers whose balance the journal never had at that point, and reads of
// a balance the account did not have while the read was running.
func Explain(ops []Op, j Journal, account string, limit int) []string {
	type point struct {
		bal int64
		at  time.Time
		ver int64
	}
	var states []point // balance after each event
	after := map[string]point{}
	var bal int64
	for _, ev := range j.Events[account] {
		switch ev.Type {
		case "AccountOpened":
			bal = ev.Initial
		case "MoneyDeposited":
			bal += ev.Amount
		case "MoneyWithdrawn":
			bal -= ev.Amount
		}
		p := point{bal, ev.OccurredAt, ev.Version}
		states = append(states, p)
		if ev.Description != "" {
			after[ev.Description] = p
		}
	}
	var out []string
	add := func(format string, args ...any) {
		if len(out) < limit {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	for _, op := range ops {
		if op.Account != account || op.Outcome != OK {
			continue
		}
		switch op.Kind {
		case Deposit, Withdraw:
			if p, ok := after[op.ID]; ok && p.bal != op.Balance {
				hint := ""
				for _, q := range states {
					if q.ver > p.ver && q.bal == op.Balance {
						// Typical of a re-sent command the grain recognised
						// as applied and answered with its current state.
						hint = fmt.Sprintf(" (that is the balance at the later v%d)", q.ver)
						break
					}
				}
				add("%s %s answered balance %d (%s), the journal has %d after its event v%d%s", op.Kind, op.ID, op.Balance, lastAnswer(op), p.bal, p.ver, hint)
			}
		case Read:
			// The balances current at some moment within the read.
			okay := false
			var seen []string
			for i, p := range states {
				var next time.Time
				if i+1 < len(states) {
					next = states[i+1].at
				}
				// State i holds from its event until the next one is
				// committed. occurred_at is when the grain decided, before
				// the append, so the next state may become visible up to a
				// store timeout later: only a read of a balance the account
				// cannot have had is named here.
				if p.at.After(op.Return.Add(5*time.Millisecond)) || (!next.IsZero() && next.Before(op.Call.Add(-3*time.Second))) {
					continue
				}
				seen = append(seen, fmt.Sprintf("v%d=%d", p.ver, p.bal))
				if p.bal == op.Balance {
					okay = true
				}
			}
			if !okay {
				add("read %s (%s, %s..%s) saw %d; during it the journal had %s", op.ID, lastAnswer(op), op.Call.Format("15:04:05.000"), op.Return.Format("15:04:05.000"), op.Balance, strings.Join(seen, " "))
			}
		}
	}
	return out
}
