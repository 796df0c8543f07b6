package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"granary/http/gateway"
	"granary/http/idempotency"
	"granary/testkit"
)

// TestIdempotencyKey: a retried request with the same key is answered
// without being applied again.
func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	const openBody = `{"account_number":"IDEM-1","owner_name":"I","initial_balance":100}`

	first := h.do("POST", "/api/v1/accounts", alice, openBody, "Idempotency-Key", "open-IDEM-1").account(t, http.StatusCreated)
	// Without the key the retry would be a 409 already_exists.
	again := h.do("POST", "/api/v1/accounts", alice, openBody, "Idempotency-Key", "open-IDEM-1").account(t, http.StatusCreated)
	if again != first {
		t.Fatalf("retried open = %+v, want %+v", again, first)
	}
	dep := "/api/v1/accounts/" + first.ID + "/deposits"
	key := strings.Repeat("k", 255)
	d1 := h.do("POST", dep, alice, `{"amount":40}`, "Idempotency-Key", key).account(t, http.StatusOK)
	d2 := h.do("POST", dep, alice, `{"amount":40}`, "Idempotency-Key", key).account(t, http.StatusOK)
	if d1.Balance != 140 || d1.Version != 2 || d2 != d1 {
		t.Fatalf("deposit %+v, retried %+v; want balance 140 at version 2 both times", d1, d2)
	}
	// A new key is a new deposit.
	if d3 := h.do("POST", dep, alice, `{"amount":40}`, "Idempotency-Key", "another").account(t, http.StatusOK); d3.Balance != 180 {
		t.Fatalf("deposit with a new key: %+v", d3)
	}
	// The same key from another caller is that caller's own request.
	bob := token(t, "bob")
	b := h.open(bob, "IDEM-2", 0)
	h.do("POST", "/api/v1/accounts/"+b.ID+"/deposits", bob, `{"amount":40}`, "Idempotency-Key", "another").account(t, http.StatusOK)

	events := h.events(alice, first.ID, 100)
	if len(events) != 3 {
		t.Fatalf("%d events, want open and two deposits: %+v", len(events), events)
	}

	p := h.do("POST", dep, alice, `{"amount":40}`, "Idempotency-Key", key+"k").problem(t, http.StatusBadRequest, "validation_failed")
	if !strings.Contains(p.Detail, "Idempotency-Key") {
		t.Errorf("detail %q does not name Idempotency-Key", p.Detail)
	}
	if got := h.do("GET", "/api/v1/accounts/"+first.ID, alice, "").account(t, http.StatusOK); got.Balance != 180 || got.Version != 3 {
		t.Fatalf("final %+v", got)
	}
}

// TestIdempotencyReplay: the replay is the first answer (status, body,
// Location, ETag, X-Served-By) marked as a replay, with this exchange's
// own request id; another request under the same key is refused.
func TestIdempotencyReplay(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	const body = `{"account_number":"IDEM-R","owner_name":"R","initial_balance":7}`
	first := h.do("POST", "/api/v1/accounts", alice, body, "Idempotency-Key", "open-R", "X-Request-ID", "first-try")
	again := h.do("POST", "/api/v1/accounts", alice, body, "Idempotency-Key", "open-R", "X-Request-ID", "second-try")
	if first.status != http.StatusCreated || again.status != first.status || string(again.body) != string(first.body) {
		t.Fatalf("first %s, replay %s", first, again)
	}
	for _, name := range []string{"Location", "ETag", "X-Served-By", "Content-Type"} {
		if first.header.Get(name) == "" || again.header.Get(name) != first.header.Get(name) {
			t.Errorf("%s: first %q, replay %q", name, first.header.Get(name), again.header.Get(name))
		}
	}
	if again.header.Get("Idempotent-Replayed") != "true" || first.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("Idempotent-Replayed: first %q, replay %q", first.header.Get("Idempotent-Replayed"), again.header.Get("Idempotent-Replayed"))
	}
	if again.header.Get("X-Request-ID") != "second-try" {
		t.Errorf("replay X-Request-ID %q, want this exchange's", again.header.Get("X-Request-ID"))
	}

	// Same key, another body or another path: 409.
	h.do("POST", "/api/v1/accounts", alice, `{"account_number":"IDEM-R","owner_name":"Other","initial_balance":7}`,
		"Idempotency-Key", "open-R").problem(t, http.StatusConflict, "idempotency_key_reused")
	a := first.account(t, http.StatusCreated)
	h.do("POST", "/api/v1/accounts/"+a.ID+"/deposits", alice, body, "Idempotency-Key", "open-R").
		problem(t, http.StatusConflict, "idempotency_key_reused")

	// A refusal is an answer too, replayed like a success: the second
	// withdrawal is not tried again even though the deposit in between
	// would now cover it.
	wd := "/api/v1/accounts/" + a.ID + "/withdrawals"
	h.do("POST", wd, alice, `{"amount":10}`, "Idempotency-Key", "wd-1").problem(t, http.StatusConflict, "insufficient_funds")
	h.do("POST", "/api/v1/accounts/"+a.ID+"/deposits", alice, `{"amount":10}`).account(t, http.StatusOK)
	r := h.do("POST", wd, alice, `{"amount":10}`, "Idempotency-Key", "wd-1")
	r.problem(t, http.StatusConflict, "insufficient_funds")
	if r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("refusal not replayed: %s", r)
	}
	if got := h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK); got.Balance != 17 || got.Version != 2 {
		t.Fatalf("account %+v, want balance 17 at version 2", got)
	}

	// Counters honour keys too.
	inc := "/api/v1/counters/idem-c/increment"
	c1 := h.do("POST", inc, alice, `{"by":5}`, "Idempotency-Key", "inc-1")
	c2 := h.do("POST", inc, alice, `{"by":5}`, "Idempotency-Key", "inc-1")
	if c1.status != http.StatusOK || string(c2.body) != string(c1.body) || !strings.Contains(string(c1.body), `"value":5`) {
		t.Fatalf("increment %s, replay %s", c1, c2)
	}
}

// holdingStore is the gateways' shared store as a gateway sees it whose
// process dies right after its grain committed: the claim was stored, the
// answer never is.
type holdingStore struct{ idempotency.Store }

func (holdingStore) Complete(context.Context, string, string, idempotency.Response, time.Duration) error {
	return nil
}

// TestIdempotencyAfterMemberDied: the first attempt commits, then its
// member and gateway die before the answer is stored or sent. A retry
// through another gateway, on a member started after the death, is held
// off while the dead attempt's claim lasts, then runs: the account grain,
// re-activated from the journal on the new member, recognises the command
// id and answers with the money moved once.
func TestIdempotencyAfterMemberDied(t *testing.T) {
	// The claim must outlast the kill, the new member and the retry's wait
	// on a real Redis, whose clock runs.
	const callTimeout, pendingTTL = 2 * time.Second, 8 * time.Second
	cfg := func(c *gateway.Config) { c.CallTimeout, c.IdempotencyPendingTTL = callTimeout, pendingTTL }
	var shared idempotency.Store
	a := newHarness(t, withGatewayConfig(cfg), withDeps(func(d *gateway.Deps, prefix string) {
		s, err := idempotency.NewRedisStore(d.Redis, prefix)
		if err != nil {
			t.Fatal(err)
		}
		shared = s
		d.Idempotency = holdingStore{s}
	}))
	alice := token(t, "alice")
	acc := a.open(alice, "IDEM-KILL", 100)
	dep := "/api/v1/accounts/" + acc.ID + "/deposits"
	a.do("POST", dep, alice, `{"amount":25}`, "Idempotency-Key", "dep-kill").account(t, http.StatusOK)

	a.cluster.Kill(0)
	// The retry's member starts after the death, on the same journal: as
	// a restarted process, it knows nothing the dead one held in memory.
	// (A cluster of its own, so it never dials the dead member: Proto.Actor
	// leaks the gRPC connection of a failed dial.)
	survivor := testkit.NewCluster(t, 1, testkit.WithStore(a.cluster.Store))
	bc := gateway.DefaultConfig()
	cfg(&bc)
	b := a.siblingOn(survivor.Member(0), bc, func(d *gateway.Deps) { d.Idempotency = shared })

	// It waits up to the call timeout for the dead attempt's answer, then
	// hears "unknown yet", never "another request".
	r := b.do("POST", dep, alice, `{"amount":25}`, "Idempotency-Key", "dep-kill")
	r.problem(t, http.StatusConflict, "request_in_progress")
	if retry, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || retry < 1 || retry > int(pendingTTL/time.Second) {
		t.Fatalf("Retry-After %q while the dead attempt's claim lasts, want 1..%d", r.header.Get("Retry-After"), int(pendingTTL/time.Second))
	}

	a.advance(pendingTTL)
	var retried accountBody
	testkit.WaitFor(t, 15*time.Second, func() error {
		r, err := b.send("POST", dep, alice, `{"amount":25}`, "Idempotency-Key", "dep-kill")
		if err != nil {
			return err
		}
		if r.status != http.StatusOK {
			return fmt.Errorf("retry: %s", r)
		}
		return json.Unmarshal(r.body, &retried)
	})
	if retried.Balance != 125 || retried.Version != 2 {
		t.Fatalf("retry answered %+v, want balance 125 at version 2 (deposited once)", retried)
	}
	if events := b.events(alice, acc.ID, 100); len(events) != 2 {
		t.Fatalf("%d events, want the opening and one deposit: %+v", len(events), events)
	}
	// From now on the answer is kept.
	r = b.do("POST", dep, alice, `{"amount":25}`, "Idempotency-Key", "dep-kill")
	if r.status != http.StatusOK || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("third try: %s (%v)", r, r.header)
	}
}

// TestIdempotencyStorageDown: without its records the gateway cannot keep
// the promise, so a keyed request is refused with 503 and runs nothing.
func TestIdempotencyStorageDown(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	acc := h.open(alice, "IDEM-DOWN", 0)
	_ = h.redis.Close()
	r := h.do("POST", "/api/v1/accounts/"+acc.ID+"/deposits", alice, `{"amount":1}`, "Idempotency-Key", "k")
	r.problem(t, http.StatusServiceUnavailable, "service_unavailable")
	if got := h.do("GET", "/api/v1/accounts/"+acc.ID, alice, "").account(t, http.StatusOK); got.Version != 1 {
		t.Fatalf("account %+v changed", got)
	}
}
