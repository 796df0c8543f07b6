//go:build linux

package cluster_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"granary/actors/account"
	"granary/cluster"
	"granary/messages"
	"granary/testkit"
)

// TestEtcdProviderFormsCluster runs a real etcd (Debian's etcd-server, which
// .ci/run installs) and proves that two members find each other through it
// and serve one account end to end, that a member leaving gracefully drops
// out at once, and that one stopped as if it crashed drops out when its
// lease expires.
func TestEtcdProviderFormsCluster(t *testing.T) {
	if testkit.RaceEnabled {
		// Besides grpclog, Proto.Actor reads its member list and the
		// disthash ring without locks while the provider's watch goroutine
		// replaces them, so two members with calls and membership changes
		// in one process always trip the race detector. `make test` runs
		// this again without -race.
		t.Skip(testkit.ErrSharedProcessRace)
	}
	endpoint := startEtcd(t)

	grains := cluster.DefaultGrainsConfig()
	grains.Account.Store = testkit.NewStore(t)
	grains.Account.Logger = testkit.Logger(t)
	cfg := cluster.DefaultConfig()
	cfg.Provider = cluster.ProviderEtcd
	cfg.EtcdEndpoints = []string{endpoint}
	cfg.EtcdPrefix = "/granary-test"
	// etcd's smallest lease with default election settings; keeps the
	// crash-detection wait short.
	cfg.EtcdLeaseTTL = 2 * time.Second

	members := make([]*cluster.Member, 2)
	stopped := make([]bool, 2)
	stop := func(i int, graceful bool) {
		if members[i] != nil && !stopped[i] {
			stopped[i] = true
			members[i].Stop(graceful)
		}
	}
	// Registered after startEtcd's cleanup, so it runs first: members stop
	// while etcd still answers.
	t.Cleanup(func() {
		for i := range members {
			stop(i, false)
		}
	})
	for i := range members {
		m, err := cluster.Start(cfg, grains.Account.Logger, grains)
		if err != nil {
			t.Fatalf("start member %d: %v", i, err)
		}
		members[i] = m
	}

	sees := func(want int, which ...int) func() error {
		return func() error {
			for _, i := range which {
				if got := members[i].Members(); len(got) != want {
					return fmt.Errorf("member %d sees %d members, want %d: %v", i, len(got), want, got)
				}
			}
			return nil
		}
	}
	testkit.WaitFor(t, 15*time.Second, sees(2, 0, 1))
	for i, m := range members {
		if !m.Joined() {
			t.Fatalf("member %d (%s) does not see itself: %v", i, m.ID(), m.Members())
		}
	}

	// Open through member 0, read through member 1: both must route the
	// identity to the same owner, so one of the two calls crosses members.
	id := account.IDFor("ETCD-1")
	admin := &messages.Caller{Subject: "alice"}
	open := call(t, members[0], id, &messages.AccountRequest{CommandId: "etcd-open", Caller: admin,
		Command: &messages.AccountRequest_Open{Open: &messages.OpenAccount{AccountNumber: "ETCD-1", OwnerName: "Alice", InitialBalance: 100}}})
	if open.GetFailure() != nil || open.GetAccount().GetVersion() != 1 {
		t.Fatalf("open via member 0: %v", open)
	}
	got := call(t, members[1], id, &messages.AccountRequest{CommandId: "etcd-get", Caller: admin,
		Command: &messages.AccountRequest_Get{Get: &messages.GetAccount{}}})
	if got.GetFailure() != nil || got.GetAccount().GetBalance() != 100 {
		t.Fatalf("get via member 1: %v", got)
	}
	if got.GetServedBy() != open.GetServedBy() {
		t.Fatalf("served by %q, then by %q: the members disagree on the owner", open.GetServedBy(), got.GetServedBy())
	}
	t.Logf("account served by %s (members %s, %s)", open.GetServedBy(), members[0].ID(), members[1].ID())

	// A graceful leave revokes the lease, which deletes the key: member 0
	// drops member 1 at once, long before Stop(true) returns (Proto.Actor
	// then sleeps 2s for hand-over).
	stopped[1] = true
	left := make(chan struct{})
	began := time.Now()
	go func() {
		defer close(left)
		members[1].Stop(true)
	}()
	testkit.WaitFor(t, 10*time.Second, sees(1, 0))
	t.Logf("member 0 saw member 1 leave %v after Stop(true) began", time.Since(began).Round(time.Millisecond))
	<-left

	// Stop(false) is a crash: nothing is revoked, the member only stops
	// renewing, so its key goes when the lease expires. (This is done to the
	// last member on purpose: a survivor would keep dialling the dead one,
	// and Proto.Actor's endpoint writer leaks a gRPC connection per failed
	// dial, which the leak check would report.)
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	prefix := cfg.EtcdPrefix + "/" + cfg.Name + "/"
	if keys := etcdKeys(t, etcd, prefix); len(keys) != 1 || keys[0] != prefix+members[0].ID() {
		t.Fatalf("keys before the crash: %v, want only member 0's", keys)
	}
	began = time.Now()
	stop(0, false)
	testkit.WaitFor(t, 10*time.Second, func() error {
		if keys := etcdKeys(t, etcd, prefix); len(keys) != 0 {
			return fmt.Errorf("still registered: %v", keys)
		}
		return nil
	})
	t.Logf("member 0's key expired %v after Stop(false) (lease TTL %v)", time.Since(began).Round(time.Millisecond), cfg.EtcdLeaseTTL)
}

// etcdKeys lists the keys under prefix.
func etcdKeys(t *testing.T, c *clientv3.Client, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("list %s: %v", prefix, err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

func TestEtcdConfigValidate(t *testing.T) {
	ok := cluster.DefaultConfig()
	ok.Provider = cluster.ProviderEtcd
	ok.EtcdEndpoints = []string{"127.0.0.1:2379"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults with one endpoint: %v", err)
	}
	for name, change := range map[string]func(*cluster.Config){
		"no endpoints":          func(c *cluster.Config) { c.EtcdEndpoints = nil },
		"empty endpoint":        func(c *cluster.Config) { c.EtcdEndpoints = []string{""} },
		"https without TLS":     func(c *cluster.Config) { c.EtcdEndpoints = []string{"https://etcd:2379"} },
		"relative prefix":       func(c *cluster.Config) { c.EtcdPrefix = "granary" },
		"slash in name":         func(c *cluster.Config) { c.Name = "a/b" },
		"sub-second TTL":        func(c *cluster.Config) { c.EtcdLeaseTTL = 500 * time.Millisecond },
		"call timeout >= TTL":   func(c *cluster.Config) { c.EtcdLeaseTTL, c.EtcdCallTimeout = 2*time.Second, 2*time.Second },
		"negative dial timeout": func(c *cluster.Config) { c.EtcdDialTimeout = -time.Second },
	} {
		c := ok
		change(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
}

// startEtcd runs a one-node etcd on free loopback ports with its data in a
// temporary directory, waits until it is healthy and returns its client
// endpoint (host:port). It skips the test when no etcd binary is on PATH.
func startEtcd(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("no etcd binary on PATH (Debian: apt-get install etcd-server)")
	}
	dir := t.TempDir()
	clientAddr, peerAddr := freeAddr(t), freeAddr(t)
	clientURL, peerURL := "http://"+clientAddr, "http://"+peerAddr
	logPath := filepath.Join(dir, "etcd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--name", "granary-test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "granary-test="+peerURL,
		"--initial-cluster-state", "new",
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies without running cleanups (a timeout panic),
	// the kernel kills etcd rather than leaving it on the ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("etcd log:\n%s", b)
			}
		}
	})

	// No keep-alive: an idle connection's goroutines would outlive the test
	// and trip the leak check.
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	testkit.WaitFor(t, 20*time.Second, func() error {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("etcd exited at start: %v", err)
		default:
		}
		resp, err := hc.Get(clientURL + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
			return fmt.Errorf("etcd /health: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	t.Logf("etcd %s on %s", bin, clientAddr)
	return clientAddr
}

// freeAddr returns a loopback address with a port that was free a moment
// ago (etcd binds it itself, so a tiny window remains).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
}
