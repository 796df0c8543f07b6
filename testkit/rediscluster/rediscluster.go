// Package rediscluster gives tests a real Redis Cluster: the one named by
// GRANARY_REDIS_CLUSTER_URL when set, else three masters started from
// Debian's redis-server on loopback ports, joined by hand (CLUSTER
// ADDSLOTSRANGE, SET-CONFIG-EPOCH, MEET) and killed when the test ends.
// Without either the test is skipped.
//
// It depends on go-redis only, so that any Granary package's internal
// tests (persistence/redis among them) may use it without an import cycle.
package rediscluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// URLEnv names a running Redis Cluster the tests may share, in go-redis's
// cluster URL form (redis://h1:p1?addr=h2:p2&addr=h3:p3). Tests sharing it
// must keep to key prefixes of their own.
const URLEnv = "GRANARY_REDIS_CLUSTER_URL"

// Masters is the number of masters Start runs; it splits the 16384 slots
// evenly between them.
const Masters = 3

// slots is Redis Cluster's fixed slot count.
const slots = 16384

// startTimeout bounds starting the servers and waiting for the cluster to
// agree on its slots.
const startTimeout = 30 * time.Second

// Cluster is a Redis Cluster a test may use.
type Cluster struct {
	// URL is the cluster in go-redis's cluster URL form.
	URL string
	// Started tells whether Start started the cluster (it is then the
	// test's alone) rather than found it in URLEnv.
	Started bool

	mu    sync.Mutex
	procs map[string]*exec.Cmd // by address, for Kill; nil unless Started
}

// Start returns a Redis Cluster for tb (see the package comment). A
// started cluster is stopped by tb's cleanup.
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	if url := os.Getenv(URLEnv); url != "" {
		return &Cluster{URL: url}
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skipf("needs a Redis Cluster: set %s or install redis-server", URLEnv)
	}
	// A free port may be taken between finding it and binding it; a new
	// set of ports is then worth one more try.
	return startLocal(tb, bin, false)
}

// ReplicaNodeTimeout is the cluster-node-timeout of StartWithReplicas: a
// replica is promoted about this long (plus an election, well under a
// second on loopback) after its master stops answering.
const ReplicaNodeTimeout = time.Second

// StartWithReplicas starts, whatever URLEnv says, Masters masters and one
// replica of each, with cluster-node-timeout ReplicaNodeTimeout and AOF on
// (appendfsync everysec), for tests that kill a master (KillMaster) and
// watch its replica take over. It returns once every replica is in sync.
// Without redis-server the test is skipped; the servers are killed by
// tb's cleanup.
func StartWithReplicas(tb testing.TB) *Cluster {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skip("needs redis-server to start a Redis Cluster with replicas")
	}
	return startLocal(tb, bin, true)
}

func startLocal(tb testing.TB, bin string, replicas bool) *Cluster {
	tb.Helper()
	// A free port may be taken between finding it and binding it; a new
	// set of ports is then worth one more try.
	var lastErr error
	for range 3 {
		c := &Cluster{Started: true, procs: make(map[string]*exec.Cmd)}
		err := c.start(tb, bin, replicas)
		if err == nil {
			return c
		}
		lastErr = err
		tb.Logf("start Redis Cluster: %v; trying again on other ports", err)
	}
	tb.Fatalf("start Redis Cluster: %v", lastErr)
	return nil
}

// Client returns a cluster client with the timeouts Granary uses, closed
// by tb's cleanup.
func (c *Cluster) Client(tb testing.TB) *goredis.ClusterClient {
	tb.Helper()
	opt, err := goredis.ParseClusterURL(c.URL)
	if err != nil {
		tb.Fatalf("%s: %v", URLEnv, err)
	}
	opt.DialTimeout = cmpOr(opt.DialTimeout, 5*time.Second)
	opt.ReadTimeout = cmpOr(opt.ReadTimeout, 3*time.Second)
	opt.WriteTimeout = cmpOr(opt.WriteTimeout, 3*time.Second)
	opt.ContextTimeoutEnabled = true
	client := goredis.NewClusterClient(opt)
	tb.Cleanup(func() { _ = client.Close() })
	return client
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// KeysPerMaster counts, on each master (by address), the keys matching
// pattern (a SCAN MATCH glob).
func KeysPerMaster(ctx context.Context, client *goredis.ClusterClient, pattern string) (map[string]int, error) {
	counts := make(map[string]int)
	var mu sync.Mutex // ForEachMaster visits the masters concurrently
	err := client.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		n := 0
		iter := node.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			n++
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scan %s on %s: %w", pattern, node.Options().Addr, err)
		}
		mu.Lock()
		counts[node.Options().Addr] = n
		mu.Unlock()
		return nil
	})
	return counts, err
}

// DeleteKeys deletes, on every master, the keys starting with prefix. It
// deletes them one by one: keys of different slots cannot share a DEL.
func DeleteKeys(ctx context.Context, client *goredis.ClusterClient, prefix string) error {
	return client.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := node.Del(ctx, iter.Val()).Err(); err != nil {
				return fmt.Errorf("delete %s on %s: %w", iter.Val(), node.Options().Addr, err)
			}
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scan %s* on %s: %w", prefix, node.Options().Addr, err)
		}
		return nil
	})
}

// MasterFor returns the address of the node that serves slot as master
// now, as every node that answers sees it; while they disagree (a
// failover is spreading) it returns an error, so callers poll.
func MasterFor(ctx context.Context, client *goredis.ClusterClient, slot int64) (string, error) {
	var mu sync.Mutex // ForEachShard visits the nodes concurrently
	seen := map[string]bool{}
	err := client.ForEachShard(ctx, func(ctx context.Context, node *goredis.Client) error {
		ranges, err := node.ClusterSlots(ctx).Result()
		if err != nil {
			return nil // a node that is down does not answer; the others do
		}
		for _, r := range ranges {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 && r.Nodes[0].Addr != "" {
				mu.Lock()
				seen[r.Nodes[0].Addr] = true
				mu.Unlock()
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("CLUSTER SLOTS: %w", err)
	}
	if len(seen) != 1 {
		return "", fmt.Errorf("the nodes name %d masters for slot %d: %v", len(seen), slot, seen)
	}
	for addr := range seen {
		return addr, nil
	}
	panic("unreachable")
}

// SlotOf returns the hash slot of key, as the cluster computes it.
func SlotOf(ctx context.Context, client *goredis.ClusterClient, key string) (int64, error) {
	slot, err := client.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return 0, fmt.Errorf("CLUSTER KEYSLOT %s: %w", key, err)
	}
	return slot, nil
}

// Kill kills the started redis-server at addr with SIGKILL, so that it
// neither answers nor rewrites anything, and waits for it to exit.
func (c *Cluster) Kill(addr string) error {
	c.mu.Lock()
	cmd, ok := c.procs[addr]
	delete(c.procs, addr)
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("no started redis-server at %s", addr)
	}
	if err := cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill redis-server at %s: %w", addr, err)
	}
	_ = cmd.Wait() // "signal: killed", which is the point
	return nil
}

// node is one started redis-server.
type node struct {
	port, bus int
	dir       string
	client    *goredis.Client
	replicaOf *node // nil for a master
}

// start runs Masters servers (and a replica of each with replicas),
// joins them and waits until every one of them reports the cluster ok
// with every slot assigned and, with replicas, every replica in sync; it
// sets c.URL. Whatever it started is stopped by tb's cleanup, even when it
// fails.
func (c *Cluster) start(tb testing.TB, bin string, replicas bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	total := Masters
	timeout, aof := "5000", "no"
	if replicas {
		total = 2 * Masters
		timeout, aof = strconv.Itoa(int(ReplicaNodeTimeout/time.Millisecond)), "yes"
	}
	ports, err := freePorts(2 * total)
	if err != nil {
		return err
	}
	nodes := make([]*node, total)
	for i := range nodes {
		n := &node{port: ports[2*i], bus: ports[2*i+1], dir: tb.TempDir()}
		if i >= Masters {
			n.replicaOf = nodes[i-Masters]
		}
		nodes[i] = n
		cmd := exec.Command(bin,
			"--port", strconv.Itoa(n.port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(n.bus),
			"--cluster-config-file", filepath.Join(n.dir, "nodes.conf"),
			"--cluster-node-timeout", timeout,
			// A replica takes over however stale it may be: the tests
			// measure what a failover loses, not whether one happens.
			"--cluster-replica-validity-factor", "0",
			"--dir", n.dir, "--logfile", filepath.Join(n.dir, "redis.log"),
			"--save", "", "--appendonly", aof, "--appendfsync", "everysec")
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start redis-server: %w", err)
		}
		c.mu.Lock()
		c.procs[n.addr()] = cmd
		c.mu.Unlock()
		tb.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		n.client = goredis.NewClient(&goredis.Options{
			Addr: n.addr(), DialTimeout: time.Second, ReadTimeout: 2 * time.Second,
			WriteTimeout: 2 * time.Second, ContextTimeoutEnabled: true, MaxRetries: -1,
		})
		defer n.client.Close()
	}
	for _, n := range nodes {
		if err := waitFor(ctx, func(ctx context.Context) error { return n.client.Ping(ctx).Err() }); err != nil {
			return fmt.Errorf("redis-server on %s never answered: %w%s", n.addr(), err, n.logTail())
		}
	}
	for i, n := range nodes[:Masters] {
		lo, hi := i*slots/Masters, (i+1)*slots/Masters-1
		// Distinct epochs, as redis-cli --cluster create sets them, so the
		// nodes need not resolve a collision before they agree.
		if err := n.client.Do(ctx, "cluster", "set-config-epoch", i+1).Err(); err != nil {
			return fmt.Errorf("CLUSTER SET-CONFIG-EPOCH on %s: %w", n.addr(), err)
		}
		if err := n.client.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			return fmt.Errorf("CLUSTER ADDSLOTSRANGE %d %d on %s: %w", lo, hi, n.addr(), err)
		}
	}
	for _, n := range nodes[1:] {
		if err := nodes[0].client.Do(ctx, "cluster", "meet", "127.0.0.1", n.port, n.bus).Err(); err != nil {
			return fmt.Errorf("CLUSTER MEET %s: %w", n.addr(), err)
		}
	}
	for _, n := range nodes[Masters:] {
		if err := n.replicate(ctx); err != nil {
			return err
		}
	}
	for _, n := range nodes {
		err := waitFor(ctx, func(ctx context.Context) error { return n.agrees(ctx, total) })
		if err != nil {
			return fmt.Errorf("node %s: %w%s", n.addr(), err, n.logTail())
		}
	}
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = "addr=" + n.addr()
	}
	c.URL = "redis://" + nodes[0].addr() + "?" + strings.Join(addrs[1:], "&")
	return nil
}

// replicate makes n a replica of n.replicaOf once n has heard of it, and
// waits until n's link to it is up (the first sync done).
func (n *node) replicate(ctx context.Context) error {
	id, err := n.replicaOf.client.Do(ctx, "cluster", "myid").Text()
	if err != nil {
		return fmt.Errorf("CLUSTER MYID on %s: %w", n.replicaOf.addr(), err)
	}
	err = waitFor(ctx, func(ctx context.Context) error {
		return n.client.Do(ctx, "cluster", "replicate", id).Err()
	})
	if err != nil {
		return fmt.Errorf("CLUSTER REPLICATE %s on %s: %w%s", id, n.addr(), err, n.logTail())
	}
	err = waitFor(ctx, func(ctx context.Context) error {
		info, err := n.client.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up\r\n") {
			return fmt.Errorf("replica not in sync:\n%s", info)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replica %s of %s: %w%s", n.addr(), n.replicaOf.addr(), err, n.logTail())
	}
	return nil
}

func (n *node) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

// agrees is nil once n reports the cluster ok, knowing all total nodes,
// with every slot assigned, and maps the slots to Masters distinct masters.
func (n *node) agrees(ctx context.Context, total int) error {
	info, err := n.client.ClusterInfo(ctx).Result()
	if err != nil {
		return err
	}
	for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:" + strconv.Itoa(slots),
		"cluster_known_nodes:" + strconv.Itoa(total), "cluster_size:" + strconv.Itoa(Masters)} {
		if !strings.Contains(info, want+"\r\n") {
			return fmt.Errorf("CLUSTER INFO lacks %s:\n%s", want, info)
		}
	}
	ranges, err := n.client.ClusterSlots(ctx).Result()
	if err != nil {
		return err
	}
	masters := map[string]bool{}
	for _, r := range ranges {
		if len(r.Nodes) == 0 || r.Nodes[0].Addr == "" {
			return fmt.Errorf("slots %d-%d have no master yet", r.Start, r.End)
		}
		masters[r.Nodes[0].Addr] = true
	}
	if len(masters) != Masters {
		return fmt.Errorf("CLUSTER SLOTS names %d masters, want %d", len(masters), Masters)
	}
	return nil
}

// logTail is the end of n's log, for a failure message.
func (n *node) logTail() string {
	b, err := os.ReadFile(filepath.Join(n.dir, "redis.log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\nredis.log:\n" + string(bytes.TrimSpace(b))
}

// waitFor polls check until it returns nil or ctx ends, returning the last
// error seen.
func waitFor(ctx context.Context, check func(ctx context.Context) error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(callCtx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// freePorts returns n distinct loopback ports free a moment ago. The
// listeners stay open until all are found, so no two are the same.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
