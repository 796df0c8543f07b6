package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"granary/http/auth"
	"granary/testkit"
)

// sagaClient posts sagas through whichever gateway answers and, for an
// unknown outcome (a dead member, a timeout), posts again with the same id
// — which returns the saga and does nothing more — until the saga ends.
type sagaClient struct {
	c        client
	mu       sync.Mutex
	gateways []string
}

func (s *sagaClient) setGateways(g ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gateways = g
}

// final posts body to path (and polls GET getPath) until the saga is
// completed or compensated; it returns the final body.
func (s *sagaClient) final(t *testing.T, seed int, path, getPath string, body map[string]any) map[string]any {
	deadline := time.Now().Add(3 * time.Minute)
	for attempt := seed; time.Now().Before(deadline); attempt++ {
		s.mu.Lock()
		c := s.c
		c.base = s.gateways[attempt%len(s.gateways)]
		s.mu.Unlock()
		var out map[string]any
		code, _, err := c.call("POST", path, body, &out, nil)
		if err != nil && strings.Contains(err.Error(), "is a bug") {
			t.Error(err)
			return nil
		}
		switch code {
		case 201:
			return out
		case 422:
			var problem map[string]any
			if _, _, err := c.call("GET", getPath, nil, &problem, nil); err == nil && problem != nil && (problem["status"] == "compensated") {
				return problem
			}
		case 202, 503, 504, 0:
			if code == 202 {
				var cur map[string]any
				if code, _, err := c.call("GET", getPath, nil, &cur, nil); err == nil && code == 200 && (cur["status"] == "completed" || cur["status"] == "compensated") {
					return cur
				}
			}
		default:
			t.Errorf("POST %s: unexpected status %d", path, code)
			return nil
		}
		time.Sleep(100 * time.Millisecond) // back off before re-posting; not waiting for a condition
	}
	t.Errorf("POST %s: no final answer in 3 minutes", path)
	return nil
}

// Issue 5, Done-means 2: 300 concurrent random transfers among 20 accounts
// and concurrent orders, while one member is killed with SIGKILL twice
// (restarted in between). Afterwards every saga is completed or
// compensated, the sum of balances is unchanged, and available stock plus
// the units of completed orders equals the stock set.
func TestSagasConserveMoneyAndStockAcrossSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	redisURL := testkit.RealRedisURL(t)
	secret := "conservation-test-secret-0123456789ab"
	cl := startCluster3(t, redisURL, secret, "conserve-"+randHex(), "GRANARY_SAGA_SWEEP_INTERVAL=1s")
	tok, err := auth.Issue([]byte(secret), "root", []string{auth.RoleAdmin}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	admin := client{token: tok, http: &http.Client{Timeout: 30 * time.Second}, base: cl.nodes[0].base}
	cl.waitFormed(admin, 20*time.Second)

	const accounts, initial, transfers, orders, stock = 20, 10_000, 300, 120, 250
	var accts []string
	for i := range accounts {
		var a accountBody
		if code, err := admin.do("POST", "/api/v1/accounts", map[string]any{"account_number": fmt.Sprintf("CONS-%s-%d", randHex(), i), "owner_name": "C", "initial_balance": initial}, &a); code != 201 || err != nil {
			t.Fatalf("open: %d %v", code, err)
		}
		accts = append(accts, a.ID)
	}
	product := "cons-" + randHex()
	if code, err := admin.do("PUT", "/api/v1/inventory/"+product, map[string]any{"available": stock}, nil); code != 200 || err != nil {
		t.Fatalf("stock: %d %v", code, err)
	}

	sc := &sagaClient{c: admin}
	sc.setGateways(cl.nodes[0].base, cl.nodes[1].base, cl.nodes[2].base)
	var wg sync.WaitGroup
	var mu sync.Mutex
	transferStatus := map[string]int{}
	completedUnits := int64(0)
	orderStatus := map[string]int{}
	started := make(chan struct{}, transfers+orders)
	// Spread the sagas over the kills: one starts every 10 ms (a load
	// shape, not a wait for a condition).
	pace := make(chan struct{})
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for range transfers + orders {
			<-tick.C
			pace <- struct{}{}
		}
	}()
	for i := range transfers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 7))
			from := r.IntN(accounts)
			to := (from + 1 + r.IntN(accounts-1)) % accounts
			id := fmt.Sprintf("tr-%d", i)
			<-pace
			started <- struct{}{}
			out := sc.final(t, i, "/api/v1/transfers", "/api/v1/transfers/"+id, map[string]any{
				"transfer_id": id, "from_account": accts[from], "to_account": accts[to], "amount": 1 + r.IntN(4000)})
			mu.Lock()
			transferStatus[fmt.Sprint(out["status"])]++
			mu.Unlock()
		}()
	}
	for i := range orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qty := 1 + i%5
			id := fmt.Sprintf("ord-%d", i)
			<-pace
			started <- struct{}{}
			out := sc.final(t, i, "/api/v1/orders", "/api/v1/orders/"+id, map[string]any{
				"order_id": id, "product_id": product, "quantity": qty, "amount": 100 + i})
			mu.Lock()
			orderStatus[fmt.Sprint(out["status"])]++
			if out["status"] == "completed" {
				completedUnits += int64(qty)
			}
			mu.Unlock()
		}()
	}
	// Kill member 1 mid-flight, restart it, kill it again, each time with
	// sagas still being started.
	for round := range 2 {
		for range []int{100, 150}[round] {
			<-started
		}
		cl.nodes[1].kill(t)
		sc.setGateways(cl.nodes[0].base, cl.nodes[2].base)
		t.Logf("round %d: killed member %s", round+1, cl.nodes[1].member)
		if round == 0 {
			cl.nodes[1] = startNode(t, cl.env[1]...)
			sc.setGateways(cl.nodes[0].base, cl.nodes[1].base, cl.nodes[2].base)
			t.Logf("restarted as member %s", cl.nodes[1].member)
		}
	}
	wg.Wait()
	t.Logf("transfers: %v; orders: %v", transferStatus, orderStatus)
	if transferStatus["completed"]+transferStatus["compensated"] != transfers || orderStatus["completed"]+orderStatus["compensated"] != orders {
		t.Fatalf("not every saga ended: transfers %v orders %v", transferStatus, orderStatus)
	}

	// Nothing in flight, and nothing created or destroyed.
	var open struct {
		Sagas []map[string]any `json:"sagas"`
	}
	if code, err := admin.do("GET", "/api/v1/sagas?status=started,compensating", nil, &open); code != 200 || err != nil || len(open.Sagas) != 0 {
		t.Fatalf("open sagas: %d %v %v", code, err, open.Sagas)
	}
	var sum int64
	for _, id := range accts {
		var a accountBody
		if code, err := admin.do("GET", "/api/v1/accounts/"+id, nil, &a); code != 200 || err != nil {
			t.Fatalf("get %s: %d %v", id, code, err)
		}
		if a.Balance < 0 {
			t.Fatalf("%s overdrawn: %d", id, a.Balance)
		}
		sum += a.Balance
	}
	if sum != accounts*initial {
		t.Fatalf("sum of balances %d, want %d", sum, accounts*initial)
	}
	var inv struct {
		Available int64 `json:"available"`
	}
	if code, err := admin.do("GET", "/api/v1/inventory/"+product, nil, &inv); code != 200 || err != nil {
		t.Fatalf("inventory: %d %v", code, err)
	}
	if inv.Available+completedUnits != stock {
		t.Fatalf("available %d + completed units %d != stock %d", inv.Available, completedUnits, stock)
	}
}
