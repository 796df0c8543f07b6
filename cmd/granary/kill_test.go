package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"granary/http/auth"
	"granary/testkit"
)

type accountBody struct {
	ID      string `json:"id"`
	Balance int64  `json:"balance"`
	Version uint64 `json:"version"`
}

type eventJSONBody struct {
	Version uint64 `json:"version"`
	Type    string `json:"type"`
	Data    struct {
		Amount      int64  `json:"amount"`
		Description string `json:"description"`
	} `json:"data"`
}

type eventsBody struct {
	Events []eventJSONBody `json:"events"`
}

// Done-means 4 of issue 2: deposits acknowledged by a real granary process
// survive its SIGKILL, because a 2xx is only sent once the journal (a real
// redis-server with AOF) has the event.
func TestAcknowledgedDepositsSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	redisURL := testkit.RealRedisURL(t)
	secret := "0123456789abcdef0123456789abcdef-kill-test"
	prefix := "killtest-" + randHex()
	env := []string{"GRANARY_REDIS_URL=" + redisURL, "GRANARY_JWT_SECRET=" + secret,
		"GRANARY_HTTP_ADDR=127.0.0.1:0", "GRANARY_KEY_PREFIX=" + prefix, "GRANARY_RATE_LIMIT=0"}
	token, err := auth.Issue([]byte(secret), "kill-tester", nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	first := startNode(t, env...)
	c := client{base: first.base, token: token, http: &http.Client{Timeout: 10 * time.Second}}
	var acc accountBody
	if code, err := c.do("POST", "/api/v1/accounts", map[string]any{"account_number": "KILL-" + randHex(), "owner_name": "K", "initial_balance": 0}, &acc); code != 201 || err != nil {
		t.Fatalf("open: %d %v", code, err)
	}

	// Eight clients deposit 1..n with unique descriptions; the process is
	// killed once 150 deposits are acknowledged, while others are in flight.
	var (
		mu     sync.Mutex
		acked  = map[string]int64{}
		sent   atomic.Int64
		killed = make(chan struct{})
		once   sync.Once
		wg     sync.WaitGroup
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-killed:
					return
				default:
				}
				desc := fmt.Sprintf("w%d-%d", w, i)
				amount := int64(w + 1)
				sent.Add(1)
				code, err := c.do("POST", "/api/v1/accounts/"+acc.ID+"/deposits", map[string]any{"amount": amount, "description": desc}, nil)
				if err == nil && code == 200 {
					mu.Lock()
					acked[desc] = amount
					n := len(acked)
					mu.Unlock()
					if n >= 150 {
						once.Do(func() { first.kill(t); close(killed) })
					}
				}
				if err != nil {
					return // the process is gone
				}
			}
		}()
	}
	select {
	case <-killed:
	case <-time.After(60 * time.Second):
		t.Fatal("150 deposits were not acknowledged within 60s")
	}
	wg.Wait()

	second := startNode(t, env...)
	c.base = second.base
	events := allEvents(t, c, acc.ID)
	stored := map[string]int64{}
	var sum int64
	for _, e := range events {
		if e.Type != "MoneyDeposited" {
			continue
		}
		if _, dup := stored[e.Data.Description]; dup {
			t.Fatalf("deposit %s stored twice", e.Data.Description)
		}
		stored[e.Data.Description] = e.Data.Amount
		sum += e.Data.Amount
	}
	for desc, amount := range acked {
		if stored[desc] != amount {
			t.Fatalf("acknowledged deposit %s (%d) is missing after SIGKILL", desc, amount)
		}
	}
	var after accountBody
	if code, err := c.do("GET", "/api/v1/accounts/"+acc.ID, nil, &after); code != 200 || err != nil {
		t.Fatalf("get after restart: %d %v", code, err)
	}
	if after.Balance != sum || after.Version != uint64(len(events)) {
		t.Fatalf("account %+v does not match its journal (sum %d, %d events)", after, sum, len(events))
	}
	t.Logf("acknowledged %d deposits before SIGKILL, %d sent; journal holds %d (the extra were in flight)", len(acked), sent.Load(), len(stored))
}

func randHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
