package wallet_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"granary/actors/account"
	"granary/cluster"
	"granary/examples/wallet"
	"granary/internal/leakcheck"
	"granary/messages"
	"granary/testkit"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, testkit.LeakOptions()...)
}

func credit(cmd string, amount int64) *wallet.WalletRequest {
	return &wallet.WalletRequest{CommandId: cmd, Command: &wallet.WalletRequest_Credit{Credit: &wallet.Credit{Amount: amount}}}
}

func debit(cmd string, amount int64) *wallet.WalletRequest {
	return &wallet.WalletRequest{CommandId: cmd, Command: &wallet.WalletRequest_Debit{Debit: &wallet.Debit{Amount: amount}}}
}

func get() *wallet.WalletRequest {
	return &wallet.WalletRequest{Command: &wallet.WalletRequest_Get{Get: &wallet.GetWallet{}}}
}

// call sends req to wallet id through member m; a refusal comes back as
// the reply's failure, not as err.
func call(t *testing.T, m *cluster.Member, id string, req *wallet.WalletRequest) *wallet.WalletReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply, err := cluster.CallAs[*wallet.WalletReply](ctx, m, wallet.Kind, id, req)
	if err != nil {
		t.Fatalf("call wallet %s: %v", id, err)
	}
	return reply
}

func wantBalance(t *testing.T, r *wallet.WalletReply, balance int64, version uint64) {
	t.Helper()
	if r.GetFailure() != nil || r.GetBalance() != balance || r.GetVersion() != version {
		t.Fatalf("reply %v, want balance %d at version %d", r, balance, version)
	}
}

func wantDuplicate(t *testing.T, r *wallet.WalletReply) {
	t.Helper()
	if r.GetFailure() != nil || !r.GetDuplicate() {
		t.Fatalf("re-sent command answered %v, want a duplicate", r)
	}
}

// waitPassivated waits until member m hosts no wallet grain any more.
func waitPassivated(t *testing.T, m *cluster.Member) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := m.Cluster.GetClusterKind(wallet.Kind).Count(); n != 0 {
			return fmt.Errorf("%d wallet grains still active", n)
		}
		return nil
	})
}

// short makes grains passivate quickly and snapshot every two events, so
// that a reload reads a snapshot and the journal's tail.
func short(g *account.GrainConfig) {
	g.IdleTimeout = 200 * time.Millisecond
	g.SnapshotEvery = 2
}

func TestExampleWalletGrainInACluster(t *testing.T) {
	c := testkit.NewCluster(t, 1, testkit.WithKinds(wallet.ClusterKind()), testkit.WithGrainConfig(short))
	m := c.Member(0)
	if kinds := m.Members()[0].Kinds; !slices.Contains(kinds, wallet.Kind) {
		t.Fatalf("member advertises kinds %v, want %s among them", kinds, wallet.Kind)
	}

	wantBalance(t, call(t, m, "w1", credit("c1", 500)), 500, 1)
	r := call(t, m, "w1", debit("d1", 200))
	wantBalance(t, r, 300, 2)
	if r.GetServedBy() != m.ID() {
		t.Fatalf("served by %q, want member %q", r.GetServedBy(), m.ID())
	}
	// cluster.Call re-sends after an attempt timeout; the grain must not
	// apply the same command twice.
	wantDuplicate(t, call(t, m, "w1", credit("c1", 500)))
	wantBalance(t, call(t, m, "w1", get()), 300, 2)
	r = call(t, m, "w1", debit("d2", 1000))
	if r.GetFailure().GetCode() != messages.CodeInsufficientFunds {
		t.Fatalf("overdraft answered %v, want %s", r, messages.CodeInsufficientFunds)
	}
	if r = call(t, m, "w1", debit("d3", 0)); r.GetFailure().GetCode() != messages.CodeValidationFailed {
		t.Fatalf("debit of 0 answered %v, want %s", r, messages.CodeValidationFailed)
	}
	wantBalance(t, call(t, m, "w1", credit("c2", 5)), 305, 3)

	// Passivated, the grain comes back from its snapshot (version 2) and
	// the event after it, still knowing which commands it applied.
	waitPassivated(t, m)
	wantBalance(t, call(t, m, "w1", get()), 305, 3)
	wantDuplicate(t, call(t, m, "w1", credit("c2", 5)))
	wantBalance(t, call(t, m, "w1", get()), 305, 3)

	// Wallets are separate streams.
	if r = call(t, m, "w2", get()); r.GetFailure() != nil || r.GetBalance() != 0 || r.GetVersion() != 0 {
		t.Fatalf("new wallet answered %v, want an empty wallet", r)
	}
}

// A whole-cluster restart on the same store, as a redeployed cluster on
// the same Redis: the wallet is read back from the journal.
func TestExampleWalletSurvivesClusterRestart(t *testing.T) {
	store := testkit.NewStore(t)
	t.Run("before", func(t *testing.T) {
		c := testkit.NewCluster(t, 1, testkit.WithStore(store), testkit.WithKinds(wallet.ClusterKind()), testkit.WithGrainConfig(short))
		wantBalance(t, call(t, c.Member(0), "w1", credit("c1", 700)), 700, 1)
		wantBalance(t, call(t, c.Member(0), "w1", debit("d1", 100)), 600, 2)
		wantBalance(t, call(t, c.Member(0), "w1", debit("d2", 50)), 550, 3)
	})
	t.Run("after", func(t *testing.T) {
		c := testkit.NewCluster(t, 1, testkit.WithStore(store), testkit.WithKinds(wallet.ClusterKind()), testkit.WithGrainConfig(short))
		wantBalance(t, call(t, c.Member(0), "w1", get()), 550, 3)
		wantDuplicate(t, call(t, c.Member(0), "w1", debit("d2", 50)))
		wantBalance(t, call(t, c.Member(0), "w1", get()), 550, 3)
	})
}

// Extra kinds are checked with the rest of the configuration: one that
// would replace a built-in kind or a service, or that cannot be built, is
// refused before a member starts.
func TestExampleExtraKindsAreValidated(t *testing.T) {
	base := cluster.DefaultGrainsConfig()
	base.Account.Store, base.Account.Logger = testkit.NewStore(t), testkit.Logger(t)
	named := func(name string) cluster.ExtraKind { k := wallet.ClusterKind(); k.Name = name; return k }
	for _, tc := range []struct {
		name  string
		extra []cluster.ExtraKind
		want  string // "" accepts
	}{
		{"wallet", []cluster.ExtraKind{wallet.ClusterKind()}, ""},
		{"built-in name", []cluster.ExtraKind{named(account.Kind)}, "built-in kind"},
		{"service name", []cluster.ExtraKind{named("auth")}, "service"},
		{"twice", []cluster.ExtraKind{wallet.ClusterKind(), wallet.ClusterKind()}, "twice"},
		{"no name", []cluster.ExtraKind{named("")}, "no Name"},
		{"no props", []cluster.ExtraKind{{Name: "ledger"}}, "no Props"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := base
			g.Extra = tc.extra
			err := g.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// With two members a wallet lives on one of them and the other reaches it
// over gRPC: the reason requests and replies are protobuf. Skipped under
// -race (see testkit.ErrSharedProcessRace); run without it too.
func TestExampleWalletAcrossMembers(t *testing.T) {
	c := testkit.NewCluster(t, 2, testkit.WithKinds(wallet.ClusterKind()))
	remote := 0
	for i := range 20 {
		id := fmt.Sprintf("w%d", i)
		r := call(t, c.Member(0), id, credit("c1", int64(i+1)))
		wantBalance(t, r, int64(i+1), 1)
		if r.GetServedBy() != c.Member(0).ID() {
			remote++
		}
		wantBalance(t, call(t, c.Member(1), id, get()), int64(i+1), 1)
	}
	if remote == 0 {
		t.Fatal("member 1 hosts none of 20 wallets; the test proves nothing about remote calls")
	}
}
