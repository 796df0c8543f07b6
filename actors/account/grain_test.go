package account_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"granary/actors/account"
	"granary/messages"
	"granary/persistence"
	"granary/testkit"
)

// activation is one grain actor hosting an account outside any cluster, so
// a test can run several activations of one identity at once, as a
// membership change can.
type activation struct {
	system *actor.ActorSystem
	pid    *actor.PID
}

func activate(t testing.TB, system *actor.ActorSystem, cfg account.GrainConfig, id string) activation {
	t.Helper()
	pid := system.Root.Spawn(account.Props(cfg))
	system.Root.Send(pid, &pcluster.ClusterInit{Identity: pcluster.NewClusterIdentity(id, account.Kind)})
	return activation{system, pid}
}

func (a activation) call(t testing.TB, req *messages.AccountRequest) *messages.AccountReply {
	t.Helper()
	res, err := a.system.Root.RequestFuture(a.pid, req, 10*time.Second).Result()
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	return res.(*messages.AccountReply)
}

func (a activation) stop() { _ = a.system.Root.StopFuture(a.pid).Wait() }

func grainConfig(t testing.TB, store persistence.Store) account.GrainConfig {
	cfg := account.DefaultGrainConfig()
	cfg.Store = store
	cfg.Logger = testkit.Logger(t)
	cfg.MemberID = "test-member"
	return cfg
}

func newSystem(t testing.TB) *actor.ActorSystem {
	log := testkit.Logger(t)
	s := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return log }))
	t.Cleanup(s.Shutdown)
	return s
}

func withID(req *messages.AccountRequest, id string) *messages.AccountRequest {
	req = proto.Clone(req).(*messages.AccountRequest)
	req.CommandId = id
	return req
}

func TestGrainAppliesACommandIDOnce(t *testing.T) {
	store := testkit.NewStore(t)
	a := activate(t, newSystem(t), grainConfig(t, store), "acc")
	a.call(t, openReq("ACC-1", 100))
	first := a.call(t, withID(deposit(10), "cmd-1"))
	again := a.call(t, withID(deposit(10), "cmd-1"))
	if first.GetAccount().GetBalance() != 110 || again.GetAccount().GetBalance() != 110 || !again.GetDuplicate() {
		t.Fatalf("first %v, again %v: want balance 110 once, second marked duplicate", first, again)
	}
	if v, _ := store.StreamVersion(context.Background(), account.StreamFor("acc")); v != 2 {
		t.Fatalf("journal has %d events, want 2", v)
	}
}

func TestGrainRemembersCommandIDsAcrossActivations(t *testing.T) {
	store := testkit.NewStore(t)
	system := newSystem(t)
	cfg := grainConfig(t, store)
	cfg.SnapshotEvery = 3
	a := activate(t, system, cfg, "acc")
	a.call(t, openReq("ACC-1", 0))
	for i := range 7 {
		a.call(t, withID(deposit(1), fmt.Sprintf("cmd-%d", i)))
	}
	a.stop()
	// The new activation starts from the snapshot at version 6 and replays
	// 7..8; ids from before and after the snapshot are both remembered.
	b := activate(t, system, cfg, "acc")
	// Each answers with the state it left (cmd-i was version i+2).
	for i, id := range map[int]string{0: "cmd-0", 6: "cmd-6"} {
		r := b.call(t, withID(deposit(1), id))
		if !r.GetDuplicate() || r.GetAccount().GetBalance() != int64(i+1) || r.GetAccount().GetVersion() != uint64(i+2) {
			t.Fatalf("re-sent %s after reactivation: %v", id, r)
		}
	}
	snap, ok, err := store.LoadSnapshot(context.Background(), account.StreamFor("acc"))
	if err != nil || !ok || snap.Version != 6 {
		t.Fatalf("snapshot: %+v %v %v, want version 6", snap, ok, err)
	}
}

// Two activations of one account, as a membership change can briefly make:
// the second writer's append is refused by the journal, it catches up and
// decides again, so both deposits land in one linear history.
func TestSecondActivationCatchesUpInsteadOfForking(t *testing.T) {
	store := testkit.NewStore(t)
	system := newSystem(t)
	cfg := grainConfig(t, store)
	a := activate(t, system, cfg, "acc")
	b := activate(t, system, cfg, "acc")
	a.call(t, openReq("ACC-1", 100))
	if r := b.call(t, withID(deposit(1), "warm-b")); r.GetAccount().GetVersion() != 2 {
		t.Fatalf("b: %v", r) // b loads the open, then deposits: version 2
	}
	// a still believes the account is at version 1.
	r := a.call(t, withID(deposit(10), "a-1"))
	if r.GetFailure() != nil || r.GetAccount().GetVersion() != 3 || r.GetAccount().GetBalance() != 111 {
		t.Fatalf("a after b wrote: %v; want version 3 balance 111", r)
	}
	r = b.call(t, withID(withdraw(111), "b-2"))
	if r.GetFailure() != nil || r.GetAccount().GetBalance() != 0 {
		t.Fatalf("b withdraws all it now sees: %v", r)
	}
	// a's stale view must not let it overdraw.
	if r := a.call(t, withID(withdraw(1), "a-2")); r.GetFailure().GetCode() != messages.CodeInsufficientFunds {
		t.Fatalf("a overdraws from a stale view: %v", r)
	}
	assertLinearHistory(t, store, "acc", 4, 0)
}

func TestConcurrentActivationsKeepOneHistory(t *testing.T) {
	store := testkit.NewStore(t)
	system := newSystem(t)
	cfg := grainConfig(t, store)
	acts := []activation{activate(t, system, cfg, "acc"), activate(t, system, cfg, "acc"), activate(t, system, cfg, "acc")}
	acts[0].call(t, openReq("ACC-1", 0))
	const perWriter = 60
	var acked atomic.Int64
	var wg sync.WaitGroup
	for w, a := range acts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				r := a.call(t, withID(deposit(int64(w+1)), fmt.Sprintf("w%d-%d", w, i)))
				if r.GetFailure() == nil {
					acked.Add(int64(w + 1))
				} else if r.GetFailure().GetCode() != messages.CodeServiceUnavailable {
					t.Errorf("writer %d: %v", w, r.GetFailure())
				}
			}
		}()
	}
	wg.Wait()
	balance := assertLinearHistory(t, store, "acc", 0, -1)
	if balance != acked.Load() {
		t.Fatalf("journal balance %d, acknowledged deposits %d", balance, acked.Load())
	}
	t.Logf("acknowledged %d of %d deposits; the rest answered a retryable error", acked.Load(), 6*perWriter)
}

// assertLinearHistory folds the journal: versions 1..n, contiguous, every
// command id once, and (when wantVersion > 0 / wantBalance >= 0) the expected
// totals. It returns the balance.
func assertLinearHistory(t *testing.T, store persistence.Store, id string, wantVersion uint64, wantBalance int64) int64 {
	t.Helper()
	events, err := store.ReadStream(context.Background(), account.StreamFor(id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var s account.State
	seen := map[string]bool{}
	for i, e := range events {
		if e.Version != uint64(i+1) {
			t.Fatalf("event %d has version %d", i, e.Version)
		}
		ev, err := account.DecodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetCommandId() != "" && seen[ev.GetCommandId()] {
			t.Fatalf("command %s stored twice", ev.GetCommandId())
		}
		seen[ev.GetCommandId()] = true
		s = account.Apply(s, id, ev)
		if s.Balance < 0 {
			t.Fatalf("balance negative at version %d", s.Version)
		}
	}
	if wantVersion > 0 && s.Version != wantVersion {
		t.Fatalf("journal at version %d, want %d", s.Version, wantVersion)
	}
	if wantBalance >= 0 && s.Balance != wantBalance {
		t.Fatalf("journal balance %d, want %d", s.Balance, wantBalance)
	}
	return s.Balance
}

// failingStore fails or panics on Append; everything else is the real store.
type failingStore struct {
	persistence.Store
	mode atomic.Value // "", "fail", "panic"
}

func (f *failingStore) Append(ctx context.Context, stream string, v uint64, evs []persistence.EventData, opts ...persistence.AppendOption) (persistence.AppendResult, error) {
	switch f.mode.Load() {
	case "fail":
		return persistence.AppendResult{}, errors.New("connection reset")
	case "panic":
		panic("store exploded")
	}
	return f.Store.Append(ctx, stream, v, evs, opts...)
}

func TestGrainAnswersStorageFailuresAndPanicsAndRecovers(t *testing.T) {
	fs := &failingStore{Store: testkit.NewStore(t)}
	fs.mode.Store("")
	a := activate(t, newSystem(t), grainConfig(t, fs), "acc")
	a.call(t, openReq("ACC-1", 100))
	version := uint64(1)
	for _, mode := range []string{"fail", "panic"} {
		fs.mode.Store(mode)
		r := a.call(t, deposit(5))
		if r.GetFailure().GetCode() != messages.CodeServiceUnavailable {
			t.Fatalf("%s: got %v, want service_unavailable", mode, r)
		}
		fs.mode.Store("")
		version++
		if r := a.call(t, deposit(5)); r.GetFailure() != nil || r.GetAccount().GetVersion() != version || r.GetAccount().GetBalance() != 105 {
			t.Fatalf("after %s: %v, want balance 105 at version %d: the failed deposit left no trace", mode, r, version)
		}
		a.call(t, withdraw(5))
		version++
	}
	assertLinearHistory(t, fs.Store, "acc", version, 100)
}

func TestGrainRefusesExpiredRequests(t *testing.T) {
	store := testkit.NewStore(t)
	a := activate(t, newSystem(t), grainConfig(t, store), "acc")
	a.call(t, openReq("ACC-1", 100))
	req := deposit(5)
	req.DeadlineUnixMs = time.Now().Add(-time.Second).UnixMilli()
	if r := a.call(t, req); r.GetFailure().GetCode() != messages.CodeTimeout {
		t.Fatalf("expired request: %v", r)
	}
	assertLinearHistory(t, store, "acc", 1, 100)
}

// A refusal is a definite answer: an activation that decides the same
// command later on an older view (a member that froze and woke up) must
// not apply it, even once the money is there.
func TestRefusalStandsAgainstAStaleActivation(t *testing.T) {
	store := testkit.NewStore(t)
	system := newSystem(t)
	cfg := grainConfig(t, store)
	stale := activate(t, system, cfg, "acc")
	stale.call(t, openReq("ACC-1", 100)) // stale holds version 1
	live := activate(t, system, cfg, "acc")
	if r := live.call(t, withID(withdraw(150), "w-1")); r.GetFailure().GetCode() != messages.CodeInsufficientFunds {
		t.Fatalf("live activation: %v, want insufficient_funds", r)
	}
	if r := live.call(t, withID(deposit(100), "d-1")); r.GetAccount().GetBalance() != 200 {
		t.Fatalf("deposit: %v", r)
	}
	// The stale activation now gets the same command (a cluster re-send
	// that sat in its mailbox): it must not withdraw what was refused.
	r := stale.call(t, withID(withdraw(150), "w-1"))
	if r.GetFailure() == nil {
		t.Fatalf("stale activation applied a refused command: %v", r)
	}
	assertLinearHistory(t, store, "acc", 2, 200)
}

// An attempt that reaches the journal after its caller's deadline (its
// member checked the deadline, then froze) stores nothing: the caller was
// told "timed out" and may already be retrying.
func TestLateAttemptCannotCommit(t *testing.T) {
	store := testkit.NewStore(t)
	cfg := grainConfig(t, store)
	// The member's clock runs behind: its own deadline check passes.
	cfg.Now = func() time.Time { return time.Now().Add(-time.Minute) }
	a := activate(t, newSystem(t), cfg, "acc")
	a.call(t, openReq("ACC-1", 100))
	req := withID(deposit(5), "late-1")
	req.DeadlineUnixMs = time.Now().Add(-time.Second).UnixMilli()
	if r := a.call(t, req); r.GetFailure().GetCode() != messages.CodeTimeout {
		t.Fatalf("late attempt: %v, want timeout", r)
	}
	assertLinearHistory(t, store, "acc", 1, 100)
	// The grain still works: nothing was stored, so nothing is in doubt.
	if r := a.call(t, withID(deposit(5), "on-time")); r.GetAccount().GetBalance() != 105 {
		t.Fatalf("next deposit: %v", r)
	}
}

// A re-sent command is answered with the state it left: "the account
// after the deposit", not after writes that others made since.
func TestDuplicateAnswersTheStateItLeft(t *testing.T) {
	store := testkit.NewStore(t)
	a := activate(t, newSystem(t), grainConfig(t, store), "acc")
	a.call(t, openReq("ACC-1", 100))
	a.call(t, withID(deposit(10), "mine"))
	a.call(t, withID(deposit(5), "theirs"))
	r := a.call(t, withID(deposit(10), "mine"))
	if !r.GetDuplicate() || r.GetAccount().GetBalance() != 110 || r.GetAccount().GetVersion() != 2 {
		t.Fatalf("re-sent deposit answered %v, want balance 110 at version 2", r)
	}
	assertLinearHistory(t, store, "acc", 3, 115)
}

// A retry that comes after its command left the grain's window of recent
// ids (a busy account, the first attempt's claim lapsed) is still applied
// once: the journal remembers the command, and the answer is the state it
// left.
func TestRetryPastTheRecentWindowIsNotAppliedTwice(t *testing.T) {
	store := testkit.NewStore(t)
	cfg := grainConfig(t, store)
	cfg.RecentCommands = 3
	a := activate(t, newSystem(t), cfg, "acc")
	a.call(t, openReq("ACC-1", 100))
	a.call(t, withID(withdraw(10), "mine"))
	for i := range 5 {
		a.call(t, withID(deposit(1), fmt.Sprintf("other-%d", i)))
	}
	r := a.call(t, withID(withdraw(10), "mine"))
	if !r.GetDuplicate() || r.GetAccount().GetBalance() != 90 || r.GetAccount().GetVersion() != 2 {
		t.Fatalf("retry answered %v, want the state after the first withdrawal", r)
	}
	assertLinearHistory(t, store, "acc", 7, 95)
}

// versionCounter counts the journal's version checks.
type versionCounter struct {
	persistence.Store
	checks atomic.Int32
}

func (v *versionCounter) StreamVersion(ctx context.Context, stream string) (uint64, error) {
	v.checks.Add(1)
	return v.Store.StreamVersion(ctx, stream)
}

// An authorize-only read is answered from the state a loaded grain holds:
// no version check, and still the owner's rule. An account the grain does
// not know is looked up as any read is (another activation may have opened
// it).
func TestAuthorizeOnlyReadSkipsTheVersionCheck(t *testing.T) {
	store := &versionCounter{Store: testkit.NewStore(t)}
	system := newSystem(t)
	a := activate(t, system, grainConfig(t, store), "acc")
	a.call(t, openReq("ACC-1", 100))
	authorize := func(sub string) *messages.AccountRequest {
		return &messages.AccountRequest{Caller: owner(sub), Command: &messages.AccountRequest_Get{Get: &messages.GetAccount{AuthorizeOnly: true}}}
	}
	before := store.checks.Load()
	if r := a.call(t, authorize("alice")); r.GetFailure() != nil || r.GetAccount().GetVersion() != 1 {
		t.Fatalf("owner's authorize = %v", r)
	}
	if r := a.call(t, authorize("mallory")); r.GetFailure().GetCode() != messages.CodeForbidden {
		t.Fatalf("stranger's authorize = %v, want forbidden", r)
	}
	if n := store.checks.Load() - before; n != 0 {
		t.Fatalf("authorize-only reads made %d version checks, want none", n)
	}
	get := &messages.AccountRequest{Caller: owner("alice"), Command: &messages.AccountRequest_Get{Get: &messages.GetAccount{}}}
	a.call(t, get)
	if n := store.checks.Load() - before; n != 1 {
		t.Fatalf("a plain read made %d version checks, want one", n)
	}

	// An account that does not exist is not settled: not_found.
	b := activate(t, system, grainConfig(t, store), "none")
	if r := b.call(t, authorize("alice")); r.GetFailure().GetCode() != messages.CodeNotFound {
		t.Fatalf("authorize on an unopened account = %v, want not_found", r)
	}
}
