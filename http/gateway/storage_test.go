package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"granary/cluster"
	"granary/http/gateway"
	"granary/persistence"
	"granary/persistence/redis"
	"granary/testkit"
)

// TestStorageDown: when Redis goes away, changes are 503 with Retry-After
// (never 500), /ready names the storage check, and /health still answers.
func TestStorageDown(t *testing.T) {
	// Our own miniredis even when GRANARY_REDIS_URL is set: this test
	// stops the server.
	mr := miniredis.RunT(t)
	client := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	store, err := redis.New(client, redis.Options{KeyPrefix: "storage-down"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	h := newHarness(t, withClusterOptions(testkit.WithStore(store)))
	alice := token(t, "alice")
	a := h.open(alice, "DOWN-1", 100)
	base := "/api/v1/accounts/" + a.ID
	h.do("POST", base+"/deposits", alice, `{"amount":1}`).account(t, http.StatusOK)
	if r := h.do("GET", "/ready", "", ""); r.status != http.StatusOK {
		t.Fatalf("ready before the outage: %s", r)
	}

	mr.Close()

	for _, r := range []struct{ name, method, path, body string }{
		{"deposit", "POST", base + "/deposits", `{"amount":1}`},
		{"withdrawal", "POST", base + "/withdrawals", `{"amount":1}`},
		{"open", "POST", "/api/v1/accounts", `{"account_number":"DOWN-2","owner_name":"D"}`},
		{"events", "GET", base + "/events", ""},
		{"past state", "GET", base + "?at_version=1", ""},
	} {
		resp := h.do(r.method, r.path, alice, r.body)
		resp.problem(t, http.StatusServiceUnavailable, "service_unavailable")
		if resp.header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", r.name)
		}
	}

	r := h.do("GET", "/ready", "", "")
	p := r.problem(t, http.StatusServiceUnavailable, "service_unavailable")
	var ready struct {
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(r.body, &ready); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ready.Checks["storage"], "unavailable") || ready.Checks["cluster"] != "ok" {
		t.Fatalf("ready checks %v (%+v), want storage unavailable and cluster ok", ready.Checks, p)
	}
	if r.header.Get("Retry-After") == "" {
		t.Errorf("/ready 503 without Retry-After")
	}
	if r := h.do("GET", "/health", "", ""); r.status != http.StatusOK {
		t.Fatalf("health during the outage: %s", r)
	}
}

// stallingStore is a journal whose appends never complete: each blocks
// until its caller gives up or the test releases it.
type stallingStore struct {
	persistence.Store
	release  chan struct{}
	inFlight atomic.Int32
}

func (s *stallingStore) Append(ctx context.Context, _ string, _ uint64, _ []persistence.EventData, _ ...persistence.AppendOption) (persistence.AppendResult, error) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	select {
	case <-ctx.Done():
		return persistence.AppendResult{}, ctx.Err()
	case <-s.release:
		return persistence.AppendResult{}, errors.New("stalling store released")
	}
}

// TestGrainTimeout: a grain that does not answer within the call timeout is
// a 504, not a hung request.
func TestGrainTimeout(t *testing.T) {
	store := &stallingStore{Store: testkit.NewStore(t), release: make(chan struct{})}
	const callTimeout, storeTimeout = 300 * time.Millisecond, 3 * time.Second
	h := newHarness(t,
		withClusterOptions(
			testkit.WithStore(store),
			// Longer than the call, so the grain is still busy when the
			// gateway stops waiting.
			testkit.WithGrainsConfig(func(c *cluster.GrainsConfig) { c.Account.StoreTimeout = storeTimeout }),
			testkit.WithClusterConfig(func(c *cluster.Config) { c.RequestTimeout = time.Minute }),
		),
		withGatewayConfig(func(c *gateway.Config) { c.CallTimeout = callTimeout }),
	)
	// Runs before the member stops, so no grain is left blocked in Append.
	t.Cleanup(func() {
		close(store.release)
		testkit.WaitFor(t, 5*time.Second, func() error {
			if n := store.inFlight.Load(); n > 0 {
				return fmt.Errorf("%d appends still blocked", n)
			}
			return nil
		})
	})
	alice := token(t, "alice")
	start := time.Now()
	r := h.do("POST", "/api/v1/accounts", alice, `{"account_number":"SLOW-1","owner_name":"S"}`)
	took := time.Since(start)
	r.problem(t, http.StatusGatewayTimeout, "timeout")
	// Answering only once the grain gave up would mean the call timeout
	// was not applied.
	if took >= storeTimeout {
		t.Errorf("504 after %v, want about %v", took, callTimeout)
	}
}
