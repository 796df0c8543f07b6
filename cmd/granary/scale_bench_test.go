package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"granary/http/auth"
	"granary/testkit"
	"granary/testkit/rediscluster"
)

// Scale figures (issue 13): deposits/s and p99 through 1, 2 and 3 members
// whose journal is one redis-server or a three-master Redis Cluster, and,
// with 2 and 3, how long a client waits at worst when one member is killed
// -9 under that load. `make bench-scale` runs it; every member, every Redis
// and the load share this machine's cores, so the figures say what the
// design costs here, not what more hosts would give.
func BenchmarkScale(b *testing.B) {
	stores := []struct {
		name string
		url  func(b *testing.B) string
	}{
		{"redis", func(b *testing.B) string { return testkit.RealRedisURL(b) }},
		{"redis-cluster", func(b *testing.B) string { return rediscluster.Start(b).URL }},
	}
	for _, st := range stores {
		b.Run("store="+st.name, func(b *testing.B) {
			url := st.url(b)
			for members := 1; members <= 3; members++ {
				b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) { scaleRound(b, url, members) })
			}
		})
	}
}

const (
	scaleAccounts = 300
	scaleClients  = 64
	scaleWarmup   = 2 * time.Second
	scaleWindow   = 5 * time.Second
)

func scaleRound(b *testing.B, redisURL string, members int) {
	secret := "scale-secret-0123456789abcdef0123"
	prefix := "scale-" + randHex()
	nodes := startMembers(b, redisURL, secret, prefix, members)
	tok, err := auth.Issue([]byte(secret), "root", []string{auth.RoleAdmin}, time.Now(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: scaleClients, IdleConnTimeout: 30 * time.Second}
	b.Cleanup(transport.CloseIdleConnections)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: transport}
	clients := make([]client, len(nodes))
	for i, n := range nodes {
		clients[i] = client{token: tok, http: hc, base: n.base}
	}
	for i := range clients {
		waitMemberCount(b, clients[i], members, 30*time.Second)
	}

	ids := make([]string, scaleAccounts)
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < scaleAccounts; i += 16 {
				var a accountBody
				code, err := clients[i%len(clients)].do("POST", "/api/v1/accounts",
					map[string]any{"account_number": fmt.Sprintf("%s-%d", prefix, i), "owner_name": "Scale"}, &a)
				if err != nil || code != 201 {
					failed.Store(fmt.Sprintf("open %d: %d %v", i, code, err))
					return
				}
				ids[i] = a.ID
			}
		})
	}
	wg.Wait()
	if msg := failed.Load(); msg != nil {
		b.Fatal(msg)
	}

	b.ResetTimer()
	r := driveDeposits(clients, ids, scaleWarmup, scaleWindow, nil)
	b.StopTimer()
	if r.errors > 0 {
		b.Logf("%d deposits failed", r.errors)
	}
	b.ReportMetric(r.opsPerSec, "deposits/s")
	b.ReportMetric(ms(r.p99), "p99-ms")
	b.ReportMetric(ms(r.p50), "p50-ms")
	line := fmt.Sprintf("members=%d: %.0f deposits/s, p50 %.2f ms, p99 %.2f ms, %d errors", members, r.opsPerSec, ms(r.p50), ms(r.p99), r.errors)

	if members > 1 {
		// Kill the last member; clients keep to the others' gateways, so
		// what they wait for is the dead member's grains moving.
		victim := nodes[len(nodes)-1]
		kill := func() { victim.kill(b) }
		f := driveDeposits(clients[:len(clients)-1], ids, time.Second, 8*time.Second, kill)
		b.ReportMetric(ms(f.worst), "failover-worst-ms")
		line += fmt.Sprintf("; kill -9 of one member: worst deposit %.0f ms (retries included), %.0f deposits/s over the 8 s after it", ms(f.worst), f.opsPerSec)
	}
	b.Log(line)
}

// startMembers starts n `granary node` processes on one cluster
// (automanaged membership, every member a seed) sharing redisURL.
func startMembers(b *testing.B, redisURL, secret, prefix string, n int) []*node {
	am, remote, httpPorts := make([]int, n), make([]int, n), make([]int, n)
	var peers []string
	ports := testkit.FreePorts(b, 3*n)
	for i := range n {
		am[i], remote[i], httpPorts[i] = ports[3*i], ports[3*i+1], ports[3*i+2]
		peers = append(peers, fmt.Sprintf("127.0.0.1:%d", am[i]))
	}
	nodes := make([]*node, n)
	for i := range n {
		nodes[i] = startNode(b,
			"GRANARY_REDIS_URL="+redisURL, "GRANARY_JWT_SECRET="+secret, "GRANARY_KEY_PREFIX="+prefix,
			fmt.Sprintf("GRANARY_HTTP_ADDR=127.0.0.1:%d", httpPorts[i]),
			"GRANARY_CLUSTER_PROVIDER=automanaged",
			fmt.Sprintf("GRANARY_CLUSTER_PORT=%d", remote[i]),
			fmt.Sprintf("GRANARY_AUTOMANAGED_PORT=%d", am[i]),
			"GRANARY_CLUSTER_PEERS="+strings.Join(peers, ","),
			"GRANARY_RATE_LIMIT=0", "GRANARY_LOG_LEVEL=warn")
	}
	return nodes
}

func waitMemberCount(b *testing.B, c client, want int, within time.Duration) {
	b.Helper()
	testkit.WaitFor(b, within, func() error {
		var body membersBody
		if code, err := c.do("GET", "/api/v1/cluster/members", nil, &body); err != nil || code != 200 {
			return fmt.Errorf("members via %s: %d %v", c.base, code, err)
		}
		if n := len(body.live()); n != want {
			return fmt.Errorf("%s sees %d live members, want %d", c.base, n, want)
		}
		return nil
	})
}

type scaleResult struct {
	opsPerSec float64
	p50, p99  time.Duration
	worst     time.Duration // the longest deposit, its retries included
	errors    int
}

// driveDeposits runs scaleClients closed-loop depositors over ids through
// clients (round robin) for warmup, then measures for window; at the start
// of the window it calls during, if any. A deposit that fails is sent again
// with its Idempotency-Key until it is answered 200 (or the window ends),
// and is timed from its first attempt.
func driveDeposits(clients []client, ids []string, warmup, window time.Duration, during func()) scaleResult {
	ctx, cancel := context.WithTimeout(context.Background(), warmup+window)
	defer cancel()
	start := time.Now().Add(warmup)
	var mu sync.Mutex
	var lat []time.Duration
	var worst time.Duration
	errs := 0
	var wg sync.WaitGroup
	for w := range scaleClients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for n := 0; ctx.Err() == nil; n++ {
				c := clients[(w+n)%len(clients)]
				id := ids[rng.IntN(len(ids))]
				key := fmt.Sprintf("scale-%d-%d-%s", w, n, randHex())
				began := time.Now()
				ok := false
				for attempt := 0; ctx.Err() == nil; attempt++ {
					code, _, err := c.call("POST", "/api/v1/accounts/"+id+"/deposits", map[string]any{"amount": 1}, nil,
						map[string]string{"Idempotency-Key": key})
					if err == nil && code == 200 {
						ok = true
						break
					}
					c = clients[(w+n+attempt+1)%len(clients)]
					select {
					case <-ctx.Done():
					case <-time.After(20 * time.Millisecond):
					}
				}
				took := time.Since(began)
				if began.Before(start) {
					continue
				}
				mu.Lock()
				if ok {
					lat = append(lat, took)
					worst = max(worst, took)
				} else {
					errs++
				}
				mu.Unlock()
			}
		})
	}
	if during != nil {
		time.Sleep(time.Until(start)) // the window's start is the event, not a wait for a condition
		during()
	}
	wg.Wait()
	slices.Sort(lat)
	r := scaleResult{opsPerSec: float64(len(lat)) / window.Seconds(), worst: worst, errors: errs}
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
