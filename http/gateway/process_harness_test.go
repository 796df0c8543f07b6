package gateway_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"granary/testkit"
)

// processHarness, when set, makes newHarness start real `granary node`
// processes instead of an in-process gateway: the same tests then speak
// HTTP to the binary a user runs (issue 11: the registry and proxy contract
// against real processes). It is set only for the duration of one
// TestOnProcesses subtest; tests that use it call newHarness without
// options and touch the harness only through do, send and sibling.
var processHarness func(t testing.TB) *harness

// TestRegistryContractOnProcesses runs the registry, route and proxy
// contract tests, and the counter scenario, against two `granary node`
// processes on one cluster and
// a real redis-server; the upstream instances are servers in this test
// process, reached by the nodes' proxies over loopback.
func TestRegistryContractOnProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	redisURL := testkit.RealRedisURL(t)
	bin := testkit.BuildBinary(t, "granary/cmd/granary")
	tests := []struct {
		name string
		run  func(*testing.T)
	}{
		{"Lifecycle", TestRegistryLifecycle},
		{"RefusesBadRegistrations", TestRegistryRefusesBadRegistrations},
		{"ExpiresSilentInstances", TestRegistryExpiresSilentInstances},
		{"HealthProbes", TestRegistryHealthProbes},
		{"RoutesAreValidatedAndKept", TestRoutesAreValidatedAndKept},
		{"ProxyRoutesToInstances", TestProxyRoutesToInstances},
		{"RouteChangesReachEveryGateway", TestRouteChangesReachEveryGateway},
		{"ProxyBreakerOpensAndHalfOpens", TestProxyBreakerOpensAndHalfOpens},
		{"ProxyTimeouts", TestProxyTimeouts},
		{"LeastConnectionsCountsEveryGateway", TestLeastConnectionsCountsEveryGateway},
		// The seed's counter scenario: spawn under a supervisor, broadcast,
		// reset only one.
		{"Counters", TestCountersOverHTTP},
		{"CounterGroups", TestCounterGroupsOverHTTP},
		{"CounterGroupChild", TestCounterGroupChildOverHTTP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			processHarness = func(t testing.TB) *harness { return startProcessPair(t, bin, redisURL) }
			defer func() { processHarness = nil }()
			tc.run(t)
		})
	}
}

// startProcessPair starts two members of one cluster, each with its
// gateway, under a key prefix of their own, and returns the harness of
// the first with the second as its sibling.
func startProcessPair(t testing.TB, bin, redisURL string) *harness {
	t.Helper()
	var r [6]byte
	_, _ = rand.Read(r[:])
	prefix := "gwproc-" + hex.EncodeToString(r[:])
	var am, remote, httpPorts [2]int
	var peers []string
	ports := testkit.FreePorts(t, 6)
	for i := range 2 {
		am[i], remote[i], httpPorts[i] = ports[3*i], ports[3*i+1], ports[3*i+2]
		peers = append(peers, fmt.Sprintf("127.0.0.1:%d", am[i]))
	}
	var hs [2]*harness
	for i := range 2 {
		base := startGranaryProcess(t, bin,
			"GRANARY_REDIS_URL="+redisURL, "GRANARY_JWT_SECRET="+string(testSecret), "GRANARY_KEY_PREFIX="+prefix,
			fmt.Sprintf("GRANARY_HTTP_ADDR=127.0.0.1:%d", httpPorts[i]),
			"GRANARY_CLUSTER_PROVIDER=automanaged",
			fmt.Sprintf("GRANARY_CLUSTER_PORT=%d", remote[i]),
			fmt.Sprintf("GRANARY_AUTOMANAGED_PORT=%d", am[i]),
			"GRANARY_CLUSTER_PEERS="+strings.Join(peers, ","),
			"GRANARY_RATE_LIMIT=0", "GRANARY_REGISTRY_ALLOWED_HOSTS=127.0.0.1")
		tr := &http.Transport{MaxIdleConnsPerHost: 100, IdleConnTimeout: 30 * time.Second}
		t.Cleanup(tr.CloseIdleConnections)
		hs[i] = &harness{t: t, base: base, client: &http.Client{Timeout: 30 * time.Second, Transport: newSchemaCheck(t, tr)}}
	}
	// Both members see each other before a test starts: a grain placed
	// while they disagree would be placed twice.
	admin := token(t, "root", "admin")
	for _, h := range hs {
		testkit.WaitFor(t, 30*time.Second, func() error {
			r, err := h.send("GET", "/api/v1/cluster/members", admin, "")
			if err != nil {
				return err
			}
			if n := strings.Count(string(r.body), `"address"`); r.status != http.StatusOK || n != 2 {
				return fmt.Errorf("%s: %d, %d members: %s", h.base, r.status, n, r.body)
			}
			return nil
		})
	}
	hs[0].siblingProc = hs[1]
	return hs[0]
}

// startGranaryProcess runs `granary node` with env and returns its base
// URL once it announces it; it is killed when t ends, and its stderr is
// shown if t failed.
func startGranaryProcess(t testing.TB, bin string, env ...string) string {
	t.Helper()
	cmd := exec.Command(bin, "node")
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("granary node stderr (last 4 KiB):\n%s", tail(stderr.String(), 4096))
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "Granary listening on "); ok {
				select {
				case addr <- strings.TrimSpace(rest):
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case base := <-addr:
		return base
	case <-done:
		t.Fatalf("granary node exited before listening:\n%s", tail(stderr.String(), 4096))
	case <-time.After(60 * time.Second):
		t.Fatalf("granary node did not announce its address in 60s:\n%s", tail(stderr.String(), 4096))
	}
	return ""
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
