package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"granary/http/auth"
	"granary/testkit"
	"granary/testkit/rediscluster"
)

// Issue 13, Done means 1: a `granary node` whose GRANARY_REDIS_URL is a
// real three-master Redis Cluster serves accounts, transfers, orders and
// summaries, and its journal is spread over every master (16 partitions by
// default on a cluster URL, one hash slot each).
func TestNodeOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	cl := rediscluster.Start(t)
	prefix := "rcnode-" + randHex()
	c := startClusterNode(t, cl, prefix)

	must := func(what string, want int, method, path string, body, out any) {
		t.Helper()
		code, err := c.do(method, path, body, out)
		if err != nil || code != want {
			t.Fatalf("%s: %s %s = %d, %v; want %d", what, method, path, code, err, want)
		}
	}

	// Accounts: enough of them that the 16 partitions all get streams.
	var accts []accountBody
	for i := range 40 {
		var a accountBody
		must("open", 201, "POST", "/api/v1/accounts",
			map[string]any{"account_number": fmt.Sprintf("RC-%s-%02d", prefix, i), "owner_name": "Cluster", "initial_balance": 1_000}, &a)
		accts = append(accts, a)
	}
	a, b := accts[0], accts[1]
	var got accountBody
	must("deposit", 200, "POST", "/api/v1/accounts/"+a.ID+"/deposits", map[string]any{"amount": 500}, &got)
	must("withdraw", 200, "POST", "/api/v1/accounts/"+a.ID+"/withdrawals", map[string]any{"amount": 200}, &got)
	if got.Balance != 1_300 || got.Version != 3 {
		t.Fatalf("after deposit and withdrawal: %+v, want balance 1300 at version 3", got)
	}
	if code, _ := c.do("POST", "/api/v1/accounts/"+b.ID+"/withdrawals", map[string]any{"amount": 5_000}, nil); code != http.StatusConflict {
		t.Fatalf("overdraft: %d, want 409 insufficient_funds", code)
	}
	var evs eventsBody
	must("events", 200, "GET", "/api/v1/accounts/"+a.ID+"/events", nil, &evs)
	if len(evs.Events) != 3 || evs.Events[1].Type != "MoneyDeposited" || evs.Events[1].Data.Amount != 500 {
		t.Fatalf("events: %+v", evs.Events)
	}
	must("time travel", 200, "GET", "/api/v1/accounts/"+a.ID+"?at_version=2", nil, &got)
	if got.Balance != 1_500 {
		t.Fatalf("at_version=2: %+v, want balance 1500", got)
	}

	// A transfer: the saga's journal and index live on the cluster too.
	var tr struct {
		Status string `json:"status"`
	}
	tid := "rc-tr-" + randHex()
	must("transfer", 201, "POST", "/api/v1/transfers", map[string]any{"transfer_id": tid, "from_account": a.ID, "to_account": b.ID, "amount": 300}, &tr)
	if tr.Status != "completed" {
		t.Fatalf("transfer: %+v", tr)
	}
	must("transfer again", 200, "GET", "/api/v1/transfers/"+tid, nil, &tr)
	for id, want := range map[string]int64{a.ID: 1_000, b.ID: 1_300} {
		must("balance", 200, "GET", "/api/v1/accounts/"+id, nil, &got)
		if got.Balance != want {
			t.Fatalf("%s after the transfer: %d, want %d", id, got.Balance, want)
		}
	}

	// An order: inventory, payment and the order saga.
	product := "rc-prod-" + randHex()
	must("stock", 200, "PUT", "/api/v1/inventory/"+product, map[string]any{"available": 5}, nil)
	var order struct {
		Status string `json:"status"`
	}
	oid := "rc-ord-" + randHex()
	must("order", 201, "POST", "/api/v1/orders", map[string]any{"order_id": oid, "product_id": product, "quantity": 2, "amount": 700}, &order)
	if order.Status != "completed" {
		t.Fatalf("order: %+v", order)
	}
	var stock struct {
		Available int64 `json:"available"`
	}
	must("stock after", 200, "GET", "/api/v1/inventory/"+product, nil, &stock)
	if stock.Available != 3 {
		t.Fatalf("stock after the order: %d, want 3", stock.Available)
	}

	// Summaries: the projection reads every partition of the cluster.
	var sum struct {
		Balance int64  `json:"current_balance"`
		Version uint64 `json:"version"`
	}
	must("summary", 200, "GET", fmt.Sprintf("/api/v1/accounts/%s/summary?min_version=4", a.ID), nil, &sum)
	if sum.Balance != 1_000 || sum.Version < 4 {
		t.Fatalf("summary of %s: %+v, want balance 1000 at version >= 4", a.ID, sum)
	}
	last := accts[len(accts)-1]
	must("summary of another partition", 200, "GET", "/api/v1/accounts/"+last.ID+"/summary?min_version=1", nil, &sum)
	if sum.Balance != 1_000 {
		t.Fatalf("summary of %s: %+v", last.ID, sum)
	}

	// Every master holds part of the journal.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	counts, err := rediscluster.KeysPerMaster(ctx, cl.Client(t), prefix+":{p*")
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != rediscluster.Masters {
		t.Fatalf("journal keys on %d masters (%v), want %d", len(counts), counts, rediscluster.Masters)
	}
	var where []string
	for addr, n := range counts {
		where = append(where, fmt.Sprintf("%s=%d", addr, n))
		if n == 0 {
			t.Errorf("master %s holds no journal key: %v", addr, counts)
		}
	}
	t.Logf("journal keys per master: %s", strings.Join(where, " "))
}

// startClusterNode starts one `granary node` on the Redis Cluster cl under
// key prefix (its keys deleted at the end) and returns an admin client of
// its gateway, once it is ready.
func startClusterNode(t *testing.T, cl *rediscluster.Cluster, prefix string, env ...string) client {
	t.Helper()
	secret := "redis-cluster-secret-0123456789abcdef"
	ports := testkit.FreePorts(t, 2)
	n := startNode(t, append([]string{
		"GRANARY_REDIS_URL=" + cl.URL, "GRANARY_JWT_SECRET=" + secret, "GRANARY_KEY_PREFIX=" + prefix,
		fmt.Sprintf("GRANARY_HTTP_ADDR=127.0.0.1:%d", ports[0]),
		fmt.Sprintf("GRANARY_CLUSTER_PORT=%d", ports[1]),
		"GRANARY_RATE_LIMIT=0"}, env...)...)
	t.Cleanup(func() {
		n.kill(t) // before reading what it wrote
		if t.Failed() {
			t.Logf("node stderr:\n%s", n.stderr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rediscluster.DeleteKeys(ctx, cl.Client(t), prefix+":"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	tok, err := auth.Issue([]byte(secret), "root", []string{auth.RoleAdmin}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 32}
	t.Cleanup(transport.CloseIdleConnections)
	c := client{token: tok, http: &http.Client{Timeout: 15 * time.Second, Transport: transport}, base: n.base}
	waitReady(t, c, 60*time.Second)
	return c
}

// waitReady waits until the node answers /ready with 200.
func waitReady(t *testing.T, c client, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, err := c.do("GET", "/ready", nil, nil)
		if err == nil && code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready within %v: last %d %v", within, code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
