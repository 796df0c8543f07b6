//go:build linux

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"granary/http/auth"
	"granary/testkit"
)

// Done-means of issue 13, with real processes: a real etcd (Debian's
// etcd-server, which .ci/run installs) and three `granary node` members
// configured only through GRANARY_CLUSTER_PROVIDER=etcd and the
// GRANARY_ETCD_* variables. They see each other and serve one account
// through any gateway; a member killed with SIGKILL (no lease revoke) is
// dropped by the others within its lease TTL; a restarted process rejoins as
// a new member.
func TestEtcdMembershipAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	// etcd's smallest lease with its default election settings: the
	// shortest crash-detection wait the provider can have.
	const ttl = 2 * time.Second
	endpoint := startEtcdServer(t)
	redisURL := testkit.RealRedisURL(t)
	secret := "etcd-process-secret-0123456789abcdef"
	run := "etcd-" + randHex()

	c := &cluster3{t: t}
	ports := testkit.FreePorts(t, 6)
	for i := range 3 {
		c.env[i] = []string{
			"GRANARY_REDIS_URL=" + redisURL, "GRANARY_JWT_SECRET=" + secret, "GRANARY_KEY_PREFIX=" + run,
			fmt.Sprintf("GRANARY_HTTP_ADDR=127.0.0.1:%d", ports[2*i]),
			fmt.Sprintf("GRANARY_CLUSTER_PORT=%d", ports[2*i+1]),
			"GRANARY_CLUSTER_PROVIDER=etcd",
			"GRANARY_ETCD_ENDPOINTS=" + endpoint,
			// A prefix of its own, so a concurrent run on the same etcd
			// cannot join this cluster.
			"GRANARY_ETCD_PREFIX=/" + run,
			"GRANARY_ETCD_LEASE_TTL=" + ttl.String(),
			"GRANARY_ETCD_CALL_TIMEOUT=500ms",
			"GRANARY_RATE_LIMIT=0",
		}
	}
	for i := range 3 {
		c.nodes[i] = startNode(t, c.env[i]...)
	}
	tok, err := auth.Issue([]byte(secret), "root", []string{auth.RoleAdmin}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 10 * time.Second}
	t.Cleanup(transport.CloseIdleConnections)
	admin := client{token: tok, http: &http.Client{Timeout: 5 * time.Second, Transport: transport}}
	ids := func(which ...int) []string {
		var out []string
		for _, i := range which {
			out = append(out, c.nodes[i].member)
		}
		return out
	}
	for i := range 3 {
		c.waitMembers(admin, i, ids(0, 1, 2), 20*time.Second)
	}
	for i := range 3 {
		admin.base = c.nodes[i].base
		if code, err := admin.do("GET", "/ready", nil, nil); code != 200 || err != nil {
			t.Fatalf("node %d not ready with etcd membership: %d %v", i, code, err)
		}
	}

	// One account, written through node 0 and read through the others:
	// whichever member owns it, at least one of these calls crosses members.
	admin.base = c.nodes[0].base
	var acc accountBody
	if code, err := admin.do("POST", "/api/v1/accounts", map[string]any{"account_number": "ETCD-" + randHex(), "owner_name": "E", "initial_balance": 250}, &acc); code != 201 || err != nil {
		t.Fatalf("open via node 0: %d %v", code, err)
	}
	if code, err := admin.do("POST", "/api/v1/accounts/"+acc.ID+"/deposits", map[string]any{"amount": 50, "description": "via node 0"}, nil); code != 200 || err != nil {
		t.Fatalf("deposit via node 0: %d %v", code, err)
	}
	readBalance := func(i int, want int64) func() error {
		return func() error {
			a := admin
			a.base = c.nodes[i].base
			var got accountBody
			if code, err := a.do("GET", "/api/v1/accounts/"+acc.ID, nil, &got); code != 200 || err != nil {
				return fmt.Errorf("get via node %d: %d %v", i, code, err)
			}
			if got.Balance != want {
				return fmt.Errorf("node %d reads balance %d, want %d", i, got.Balance, want)
			}
			return nil
		}
	}
	for i := 1; i < 3; i++ {
		if err := readBalance(i, 300)(); err != nil {
			t.Fatal(err)
		}
	}

	// SIGKILL: the member cannot revoke its lease, so only its expiry
	// removes the key. It was last renewed at most TTL/3 before the kill,
	// so it expires at most TTL after; etcd checks expiries every 500ms, the
	// watch and the test's polling (100ms) add a little, hence the slack. The
	// limit stays below the gossip heartbeat expiration (5s), so it is the
	// lease that dropped the member.
	gone := c.nodes[2].member
	killedAt := time.Now()
	c.nodes[2].kill(t)
	testkit.WaitFor(t, ttl+5*time.Second, func() error {
		for i := range 2 {
			a := admin
			a.base = c.nodes[i].base
			var body membersBody
			if code, err := a.do("GET", "/api/v1/cluster/members", nil, &body); code != 200 || err != nil {
				return fmt.Errorf("members via node %d: %d %v", i, code, err)
			}
			for _, m := range body.live() {
				if m.ID == gone {
					return fmt.Errorf("node %d still lists killed member %s as %s", i, gone, m.Status)
				}
			}
			if live := body.live(); len(live) != 2 {
				return fmt.Errorf("node %d lists %d live members, want 2: %+v", i, len(live), body.Members)
			}
		}
		return nil
	})
	dropped := time.Since(killedAt)
	if limit := ttl + 2*time.Second; dropped > limit {
		t.Fatalf("killed member dropped after %v, want within its lease TTL %v (+%v slack)", dropped, ttl, limit-ttl)
	}
	t.Logf("member %s killed with SIGKILL: both survivors dropped it %v later (lease TTL %v)", gone, dropped.Round(10*time.Millisecond), ttl)

	// The survivors still serve the account, whichever member owned it.
	for i := range 2 {
		testkit.WaitFor(t, 10*time.Second, readBalance(i, 300))
	}

	// A restarted process joins as a new member (the killed id stays
	// blocked) and everyone sees it.
	c.nodes[2] = startNode(t, c.env[2]...)
	if c.nodes[2].member == gone {
		t.Fatalf("restarted member reused the id %s", gone)
	}
	for i := range 3 {
		c.waitMembers(admin, i, ids(0, 1, 2), 20*time.Second)
	}
	testkit.WaitFor(t, 10*time.Second, readBalance(2, 300))
	admin.base = c.nodes[2].base
	if code, err := admin.do("POST", "/api/v1/accounts/"+acc.ID+"/deposits", map[string]any{"amount": 7, "description": "via restarted node 2"}, nil); code != 200 || err != nil {
		t.Fatalf("deposit via restarted node 2: %d %v", code, err)
	}
	if err := readBalance(0, 307)(); err != nil {
		t.Fatal(err)
	}
}

// startEtcdServer runs a one-member etcd on free loopback ports with a
// temporary data dir and returns its client URL; it skips when there is no
// etcd binary. The process is killed at cleanup, which runs after the
// members' (registered later), so they stop while etcd still answers.
func startEtcdServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("no etcd binary on PATH (Debian: apt-get install etcd-server)")
	}
	dir := t.TempDir()
	etcdPorts := testkit.FreePorts(t, 2)
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPorts[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPorts[1])
	logPath := filepath.Join(dir, "etcd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--name", "granary-process-test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "granary-process-test="+peerURL,
		"--initial-cluster-state", "new",
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies without its cleanups (a timeout panic), the
	// kernel ends etcd rather than leaving it on the ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
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
	// No keep-alive: an idle connection would outlive the test and trip
	// the leak check in TestMain.
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
	return clientURL
}
