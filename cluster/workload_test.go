package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"granary/actors/account"
	"granary/cluster"
	"granary/messages"
	"granary/testkit"
)

// The membership-change tests share this workload: accounts spread over
// the members, two clients per account depositing through the members that
// stay, each re-sending a deposit with its command id until it gets a
// definite answer, and a journal check at the end.

var admin = &messages.Caller{Subject: "root", Admin: true}

// hostedAccount is an account opened for a test and the member that served
// its opening.
type hostedAccount struct {
	id, home string
}

// openUntilHosted opens accounts through via until the member with id
// target hosts at least onTarget of them and at least total are open.
// Placement is the cluster's rendezvous hash, so it takes a few.
func openUntilHosted(t *testing.T, via *cluster.Member, prefix, target string, onTarget, total int) []hostedAccount {
	t.Helper()
	var out []hostedAccount
	hosted := 0
	for n := 0; n < 100 && (len(out) < total || hosted < onTarget); n++ {
		number := fmt.Sprintf("%s-%d", prefix, n)
		id := account.IDFor(number)
		r := call(t, via, id, &messages.AccountRequest{CommandId: "open-" + number, Caller: admin,
			Command: &messages.AccountRequest_Open{Open: &messages.OpenAccount{AccountNumber: number, OwnerName: "F"}}})
		if r.GetFailure() != nil {
			t.Fatalf("open %s: %v", number, r.GetFailure())
		}
		if r.GetServedBy() == target {
			hosted++
		}
		out = append(out, hostedAccount{id, r.GetServedBy()})
	}
	if hosted < onTarget {
		t.Fatalf("member %s hosts %d of %d accounts, want %d", target, hosted, len(out), onTarget)
	}
	return out
}

// depositor deposits into one account. Grains drop a command id they have
// applied, so re-sending a deposit until it gets a definite answer applies
// it exactly once, whoever hosts the account meanwhile.
type depositor struct {
	id  string
	via []*cluster.Member

	mu       sync.Mutex
	acked    map[string]int64 // command id -> amount
	served   []served
	resends  int      // answers that said "try again"
	samples  []string // the first few of them
	maxTries int
}

type served struct {
	at time.Time
	by string
}

// retryable reports whether a deposit may simply be sent again: the grain
// was unreachable or did not answer in time. It may have been applied; the
// command id makes re-sending safe.
func retryable(f *messages.Failure) bool {
	return f.GetCode() == messages.CodeServiceUnavailable || f.GetCode() == messages.CodeTimeout
}

// run deposits until stop closes; worker w sends its first try through
// via[w] and moves to the next member on each re-send.
func (d *depositor) run(w int, stop <-chan struct{}) error {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		cmdID := fmt.Sprintf("%s-w%d-%d", d.id, w, i)
		amount := int64(i%7 + 1)
		req := &messages.AccountRequest{CommandId: cmdID, Caller: admin,
			Command: &messages.AccountRequest_Deposit{Deposit: &messages.Deposit{Amount: amount, Description: cmdID}}}
		deadline := time.Now().Add(30 * time.Second)
		for try := 1; ; try++ {
			m := d.via[(w+try-1)%len(d.via)]
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, err := cluster.CallAs[*messages.AccountReply](ctx, m, account.Kind, d.id, req)
			cancel()
			var f *messages.Failure
			switch {
			case err == nil && r.GetFailure() == nil:
				d.mu.Lock()
				d.acked[cmdID] = amount
				d.served = append(d.served, served{time.Now(), r.GetServedBy()})
				d.maxTries = max(d.maxTries, try)
				d.mu.Unlock()
			case err == nil:
				f = r.GetFailure()
			case !errors.As(err, &f):
				return fmt.Errorf("deposit %s: %w", cmdID, err)
			}
			if f == nil {
				break
			}
			if !retryable(f) {
				return fmt.Errorf("deposit %s via %s: %v", cmdID, m.ID(), f)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("deposit %s: no definite answer within 30s (last %v)", cmdID, f)
			}
			d.mu.Lock()
			d.resends++
			if len(d.samples) < 3 {
				d.samples = append(d.samples, fmt.Sprintf("%s via %s: %v", time.Now().Format("15:04:05.000"), m.ID(), f))
			}
			d.mu.Unlock()
		}
	}
}

// servedAfter reports when the account was first served after since by a
// member other than not.
func (d *depositor) servedAfter(since time.Time, not string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.served {
		if s.at.After(since) && s.by != not {
			return s.at, true
		}
	}
	return time.Time{}, false
}

// workload runs two depositing clients per account.
type workload struct {
	accounts []hostedAccount
	deps     []*depositor
	done     chan struct{}
	errs     chan error
	wg       sync.WaitGroup
	once     sync.Once
}

// startWorkload starts the clients; they call through the members via. The
// workload stops when Finish is called or, at the latest, before the
// cluster does (it must be started after NewCluster).
func startWorkload(t *testing.T, accounts []hostedAccount, via ...*cluster.Member) *workload {
	w := &workload{accounts: accounts, done: make(chan struct{}), errs: make(chan error, 2*len(accounts))}
	for _, a := range accounts {
		d := &depositor{id: a.id, via: via, acked: map[string]int64{}}
		w.deps = append(w.deps, d)
		for worker := range 2 {
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				if err := d.run(worker, w.done); err != nil {
					w.errs <- err
				}
			}()
		}
	}
	t.Cleanup(w.stop)
	return w
}

func (w *workload) stop() {
	w.once.Do(func() {
		close(w.done)
		w.wg.Wait()
		close(w.errs)
	})
}

func (w *workload) acked() int {
	n := 0
	for _, d := range w.deps {
		d.mu.Lock()
		n += len(d.acked)
		d.mu.Unlock()
	}
	return n
}

// waitAcked waits until at least n deposits are acknowledged.
func (w *workload) waitAcked(t *testing.T, n int) {
	t.Helper()
	testkit.WaitFor(t, 15*time.Second, func() error {
		if got := w.acked(); got < n {
			return fmt.Errorf("%d deposits acknowledged, want %d", got, n)
		}
		return nil
	})
}

// waitMoved waits until every account that gone hosted is served by another
// member after since, and returns how long the slowest took.
func (w *workload) waitMoved(t *testing.T, gone string, since time.Time, deadline time.Duration) time.Duration {
	t.Helper()
	var slowest time.Duration
	moved := 0
	for i, a := range w.accounts {
		if a.home != gone {
			continue
		}
		testkit.WaitFor(t, deadline-time.Since(since), func() error {
			at, ok := w.deps[i].servedAfter(since, gone)
			if !ok {
				return fmt.Errorf("account %s (hosted by %s) not served by another member since %v", a.id, gone, since.Format("15:04:05.000"))
			}
			slowest = max(slowest, at.Sub(since))
			return nil
		})
		moved++
	}
	if moved == 0 {
		t.Fatalf("no account was hosted by %s", gone)
	}
	return slowest
}

// finish stops the clients, fails the test on any error they met, checks
// every account's journal and returns the number of re-sends.
func (w *workload) finish(t *testing.T, c *testkit.Cluster, via *cluster.Member) (resends int) {
	t.Helper()
	w.stop()
	for err := range w.errs {
		t.Error(err)
	}
	maxTries := 0
	for _, d := range w.deps {
		checkJournal(t, c, via, d)
		resends += d.resends
		maxTries = max(maxTries, d.maxTries)
		for _, s := range d.samples {
			t.Logf("re-sent after: %s", s)
		}
	}
	t.Logf("%d deposits acknowledged over %d accounts, each in the journal once; %d re-sends, at most %d tries for one deposit",
		w.acked(), len(w.accounts), resends, maxTries)
	return resends
}

// checkJournal asserts that every acknowledged deposit is in the account's
// journal exactly once, nothing else was deposited, the history is linear,
// and the balance the grain reports is the acknowledged sum.
func checkJournal(t *testing.T, c *testkit.Cluster, via *cluster.Member, d *depositor) {
	t.Helper()
	events, err := c.Store.ReadStream(context.Background(), account.StreamFor(d.id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int64{}
	var s account.State
	for i, e := range events {
		if e.Version != uint64(i+1) {
			t.Fatalf("%s: event %d has version %d: history forked", d.id, i+1, e.Version)
		}
		ev, err := account.DecodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		s = account.Apply(s, d.id, ev)
		if dep := ev.GetDeposited(); dep != nil {
			if _, dup := stored[ev.GetCommandId()]; dup {
				t.Fatalf("%s: deposit %s stored twice", d.id, ev.GetCommandId())
			}
			stored[ev.GetCommandId()] = dep.GetAmount()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var sum int64
	for cmdID, amount := range d.acked {
		if got, ok := stored[cmdID]; !ok || got != amount {
			t.Fatalf("%s: acknowledged deposit %s of %d not in the journal", d.id, cmdID, amount)
		}
		sum += amount
	}
	if len(stored) != len(d.acked) || s.Balance != sum {
		t.Fatalf("%s: journal holds %d deposits, balance %d; acknowledged %d deposits summing to %d",
			d.id, len(stored), s.Balance, len(d.acked), sum)
	}
	r := call(t, via, d.id, &messages.AccountRequest{CommandId: "get-" + d.id, Caller: admin,
		Command: &messages.AccountRequest_Get{Get: &messages.GetAccount{}}})
	if r.GetFailure() != nil || r.GetAccount().GetBalance() != sum {
		t.Fatalf("%s: grain answers %v, want balance %d", d.id, r, sum)
	}
}
