package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"
)

// sagaListBody is GET /api/v1/sagas's answer.
type sagaListBody struct {
	Sagas []struct {
		Kind       string `json:"kind"`
		ID         string `json:"id"`
		Status     string `json:"status"`
		FailedStep string `json:"failed_step"`
		StartedAt  string `json:"started_at"`
		UpdatedAt  string `json:"updated_at"`
	} `json:"sagas"`
	NextCursor *string `json:"next_cursor"`
}

type stepBody struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	Error     string `json:"error"`
	StartedAt string `json:"started_at"`
	UpdatedAt string `json:"updated_at"`
}

type orderBody struct {
	OrderID    string     `json:"order_id"`
	SagaID     string     `json:"saga_id"`
	UserID     string     `json:"user_id"`
	ProductID  string     `json:"product_id"`
	Quantity   int64      `json:"quantity"`
	Amount     int64      `json:"amount"`
	PaymentID  string     `json:"payment_id"`
	Status     string     `json:"status"`
	FailedStep string     `json:"failed_step"`
	Error      string     `json:"error"`
	Steps      []stepBody `json:"steps"`
}

type transferBody struct {
	TransferID  string     `json:"transfer_id"`
	FromAccount string     `json:"from_account"`
	ToAccount   string     `json:"to_account"`
	Amount      int64      `json:"amount"`
	Status      string     `json:"status"`
	FailedStep  string     `json:"failed_step"`
	Error       string     `json:"error"`
	Steps       []stepBody `json:"steps"`
	ExecuteAt   string     `json:"execute_at"`
}

func stepsOf(steps []stepBody) string {
	out := ""
	for _, s := range steps {
		out += s.Name + "=" + s.Status + "(" + s.Error + ") "
	}
	return out
}

// sagaFailure decodes a 422 saga_failed body and the saga it carries.
func sagaFailure(t *testing.T, r *response, field string, v any) {
	t.Helper()
	p := r.problem(t, http.StatusUnprocessableEntity, "saga_failed")
	_ = p
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw[field], v); err != nil {
		t.Fatalf("422 without %q: %s", field, r.body)
	}
}

// The seed's order outcomes over HTTP, with the contract's exact fields.
func TestOrdersOverHTTP(t *testing.T) {
	h := newHarness(t)
	admin, alice, bob := token(t, "root", "admin"), token(t, "alice"), token(t, "bob")
	h.do("PUT", "/api/v1/inventory/product_1", admin, `{"available":100}`).decodeStatus(t, http.StatusOK, &map[string]any{})
	h.do("PUT", "/api/v1/inventory/product_2", alice, `{"available":100}`).problem(t, http.StatusForbidden, "forbidden")

	var o orderBody
	r := h.do("POST", "/api/v1/orders", alice, `{"order_id":"o-1","product_id":"product_1","quantity":2,"amount":5000}`)
	r.decodeStatus(t, http.StatusCreated, &o)
	if o.Status != "completed" || o.UserID != "alice" || !mintedPaymentID.MatchString(o.PaymentID) || o.SagaID == "" || r.header.Get("Location") != "/api/v1/orders/o-1" ||
		stepsOf(o.Steps) != "reserve_inventory=completed() process_payment=completed() create_order=completed() " {
		t.Fatalf("order %+v", o)
	}
	for _, st := range o.Steps {
		started, err1 := time.Parse(time.RFC3339Nano, st.StartedAt)
		updated, err2 := time.Parse(time.RFC3339Nano, st.UpdatedAt)
		if err1 != nil || err2 != nil || updated.Before(started) {
			t.Fatalf("step without timestamps: %+v", st)
		}
	}
	var inv struct {
		ProductID string `json:"product_id"`
		Available int64  `json:"available"`
	}
	h.do("GET", "/api/v1/inventory/product_1", bob, "").decodeStatus(t, http.StatusOK, &inv)
	if inv.Available != 98 {
		t.Fatalf("inventory %+v", inv)
	}
	var pay map[string]any
	h.do("GET", "/api/v1/payments/"+o.PaymentID, alice, "").decodeStatus(t, http.StatusOK, &pay)
	if pay["status"] != "completed" || pay["amount"] != float64(5000) || pay["user_id"] != "alice" {
		t.Fatalf("payment %v", pay)
	}
	h.do("GET", "/api/v1/payments/"+o.PaymentID, bob, "").problem(t, http.StatusNotFound, "not_found")
	h.do("GET", "/api/v1/orders/o-1", bob, "").problem(t, http.StatusForbidden, "forbidden")

	sagaFailure(t, h.do("POST", "/api/v1/orders", alice, `{"order_id":"o-big","product_id":"product_1","quantity":1,"amount":150000}`), "order", &o)
	if o.Status != "compensated" || o.FailedStep != "process_payment" || o.Error != "payment amount too large" ||
		stepsOf(o.Steps) != "reserve_inventory=compensated() process_payment=failed(payment amount too large) create_order=pending() " {
		t.Fatalf("too large: %+v", o)
	}
	h.do("GET", "/api/v1/payments/"+o.PaymentID, alice, "").problem(t, http.StatusNotFound, "not_found")

	sagaFailure(t, h.do("POST", "/api/v1/orders", alice, `{"product_id":"nope","quantity":1,"amount":10}`), "order", &o)
	if o.FailedStep != "reserve_inventory" || o.Error != "product not found" {
		t.Fatalf("unknown product: %+v", o)
	}
	sagaFailure(t, h.do("POST", "/api/v1/orders", alice, `{"product_id":"product_1","quantity":99,"amount":10}`), "order", &o)
	if o.FailedStep != "reserve_inventory" || o.Error != "insufficient inventory" {
		t.Fatalf("insufficient: %+v", o)
	}
	h.do("GET", "/api/v1/inventory/product_1", bob, "").decodeStatus(t, http.StatusOK, &inv)
	if inv.Available != 98 {
		t.Fatalf("inventory after failed orders %+v", inv)
	}
	// Re-posting returns the order and does nothing more.
	h.do("POST", "/api/v1/orders", alice, `{"order_id":"o-1","product_id":"product_1","quantity":50,"amount":1}`).decodeStatus(t, http.StatusCreated, &o)
	if o.Quantity != 2 {
		t.Fatalf("re-post changed the order: %+v", o)
	}
	h.do("POST", "/api/v1/orders", bob, `{"order_id":"o-1","product_id":"product_1","quantity":1,"amount":1}`).problem(t, http.StatusForbidden, "forbidden")
	h.do("GET", "/api/v1/inventory/product_9", bob, "").problem(t, http.StatusNotFound, "not_found")
	for _, body := range []string{`{"product_id":"p","quantity":0,"amount":1}`, `{"product_id":"p","quantity":1}`, `{"quantity":1,"amount":1}`,
		`{"product_id":"a b","quantity":1,"amount":1}`, `{"order_id":"x/y","product_id":"p","quantity":1,"amount":1}`} {
		h.do("POST", "/api/v1/orders", alice, body).problem(t, http.StatusBadRequest, "validation_failed")
	}

	var list sagaListBody
	h.do("GET", "/api/v1/sagas?status=compensated&kind=order", admin, "").decode(t, &list)
	if len(list.Sagas) != 3 || list.Sagas[2].ID != "o-big" || list.Sagas[2].FailedStep != "process_payment" || list.Sagas[0].Kind != "order" {
		t.Fatalf("compensated orders, newest first: %+v", list)
	}
	h.do("GET", "/api/v1/sagas", alice, "").problem(t, http.StatusForbidden, "forbidden")
	h.do("GET", "/api/v1/sagas?status=weird", admin, "").problem(t, http.StatusBadRequest, "validation_failed")
}

func TestTransfersOverHTTP(t *testing.T) {
	h := newHarness(t)
	alice, bob := token(t, "alice"), token(t, "bob")
	a := h.open(alice, "TR-A", 1000)
	b := h.open(bob, "TR-B", 0)
	var tr transferBody
	h.do("POST", "/api/v1/transfers", alice, `{"transfer_id":"t1","from_account":"`+a.ID+`","to_account":"`+b.ID+`","amount":250}`).decodeStatus(t, http.StatusCreated, &tr)
	if tr.Status != "completed" || stepsOf(tr.Steps) != "withdraw=completed() deposit=completed() " || tr.Amount != 250 {
		t.Fatalf("transfer %+v", tr)
	}
	if got := h.do("GET", "/api/v1/accounts/"+b.ID, bob, "").account(t, http.StatusOK); got.Balance != 250 {
		t.Fatalf("target %+v", got)
	}
	// Re-posting moves nothing.
	h.do("POST", "/api/v1/transfers", alice, `{"transfer_id":"t1","from_account":"`+a.ID+`","to_account":"`+b.ID+`","amount":250}`).decodeStatus(t, http.StatusCreated, &tr)
	if got := h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK); got.Balance != 750 {
		t.Fatalf("source after re-post %+v", got)
	}
	sagaFailure(t, h.do("POST", "/api/v1/transfers", alice, `{"from_account":"`+a.ID+`","to_account":"`+b.ID+`","amount":5000}`), "transfer", &tr)
	if tr.FailedStep != "withdraw" || tr.Error != "insufficient funds" || stepsOf(tr.Steps) != "withdraw=failed(insufficient funds) deposit=pending() " {
		t.Fatalf("insufficient: %+v", tr)
	}
	// bob may not move alice's money, nor read her transfer.
	h.do("POST", "/api/v1/transfers", bob, `{"from_account":"`+a.ID+`","to_account":"`+b.ID+`","amount":1}`).problem(t, http.StatusForbidden, "forbidden")
	h.do("GET", "/api/v1/transfers/t1", bob, "").problem(t, http.StatusForbidden, "forbidden")
	h.do("GET", "/api/v1/transfers/t1", alice, "").decodeStatus(t, http.StatusOK, &tr)
	h.do("GET", "/api/v1/transfers/nope", alice, "").problem(t, http.StatusNotFound, "not_found")
	// A closed target gives the money back.
	h.do("POST", "/api/v1/accounts/"+b.ID+"/close", bob, `{"reason":"done"}`).account(t, http.StatusOK)
	sagaFailure(t, h.do("POST", "/api/v1/transfers", alice, `{"from_account":"`+a.ID+`","to_account":"`+b.ID+`","amount":100}`), "transfer", &tr)
	if tr.FailedStep != "deposit" || stepsOf(tr.Steps) != "withdraw=compensated() deposit=failed(account closed) " {
		t.Fatalf("closed target: %+v", tr)
	}
	if got := h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK); got.Balance != 750 {
		t.Fatalf("source after compensation %+v", got)
	}
	for _, body := range []string{`{"from_account":"` + a.ID + `","to_account":"` + a.ID + `","amount":1}`,
		`{"from_account":"x","to_account":"` + b.ID + `","amount":1}`, `{"from_account":"` + a.ID + `","to_account":"` + b.ID + `","amount":0}`} {
		h.do("POST", "/api/v1/transfers", alice, body).problem(t, http.StatusBadRequest, "validation_failed")
	}
	// Every cent is explained by the account's history.
	evs := h.events(alice, a.ID, 100)
	var sum int64
	for _, e := range evs {
		amount := int64(0)
		if v, ok := e.Data["initial_balance"].(float64); ok {
			amount = int64(v)
		}
		if v, ok := e.Data["amount"].(float64); ok {
			amount = int64(v)
			if e.Type == "MoneyWithdrawn" {
				amount = -amount
			}
		}
		sum += amount
	}
	if sum != 750 {
		t.Fatalf("history sums to %d, balance is 750", sum)
	}
}

// The saga list pages with opaque cursors (the contract's "Listing"): every
// saga exactly once, newest first, next_cursor null on the last page, and
// a cursor refused under another filter or when it is not one.
func TestSagaListPages(t *testing.T) {
	h := newHarness(t)
	admin, alice := token(t, "root", "admin"), token(t, "alice")
	a := h.open(alice, "PG-A", 1000)
	b := h.open(alice, "PG-B", 0)
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("pg-%d", i)
		h.do("POST", "/api/v1/transfers", alice, fmt.Sprintf(`{"transfer_id":%q,"from_account":%q,"to_account":%q,"amount":1}`, id, a.ID, b.ID)).
			decodeStatus(t, http.StatusCreated, &map[string]any{})
		want = append(want, id)
	}
	type page = sagaListBody
	var got []string
	path := "/api/v1/sagas?kind=transfer&limit=3"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatalf("more than 5 pages of 3 for 7 sagas: %v", got)
		}
		var p page
		h.do("GET", path, admin, "").decode(t, &p)
		for _, s := range p.Sagas {
			got = append(got, s.ID)
		}
		if p.NextCursor == nil {
			break
		}
		if len(p.Sagas) != 3 {
			t.Fatalf("a page that is not the last has %d sagas, want 3", len(p.Sagas))
		}
		path = "/api/v1/sagas?kind=transfer&limit=3&cursor=" + url.QueryEscape(*p.NextCursor)
	}
	// Newest first: the reverse of the order they were started in (they
	// may share a millisecond; the listing then orders them by id, which
	// is the same reverse order here).
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Fatalf("paged %v, want %v", got, want)
	}

	var first page
	h.do("GET", "/api/v1/sagas?kind=transfer&limit=3", admin, "").decode(t, &first)
	if first.NextCursor == nil {
		t.Fatal("first page of 3 out of 7 has no next_cursor")
	}
	cur := url.QueryEscape(*first.NextCursor)
	h.do("GET", "/api/v1/sagas?kind=order&limit=3&cursor="+cur, admin, "").problem(t, http.StatusBadRequest, "validation_failed")
	h.do("GET", "/api/v1/sagas?kind=transfer&status=completed&limit=3&cursor="+cur, admin, "").problem(t, http.StatusBadRequest, "validation_failed")
	h.do("GET", "/api/v1/sagas?cursor=not-a-cursor", admin, "").problem(t, http.StatusBadRequest, "validation_failed")
	// The same filter spelt in another order is the same listing.
	var again page
	h.do("GET", "/api/v1/sagas?kind=transfer,transfer&limit=3&cursor="+cur, admin, "").decode(t, &again)
	if len(again.Sagas) != 3 || again.Sagas[0].ID != "pg-3" {
		t.Fatalf("second page again: %+v", again)
	}
}

// forgetIdempotencyRecords drops every kept answer, as when a first
// attempt's gateway died before keeping its answer and the claim lapsed.
func (h *harness) forgetIdempotencyRecords(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	keys, err := h.redis.Keys(ctx, h.prefix+":idempotency:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("idempotency records: %v, %v", keys, err)
	}
	if err := h.redis.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
}

// A keyed order or transfer without its own id is named after the key:
// a retry that finds no kept answer finds the saga its first attempt
// started, so it runs once; the same key with another body is refused.
func TestKeyedSagaRetriedWithoutItsRecordRunsOnce(t *testing.T) {
	h := newHarness(t)
	admin, alice := token(t, "root", "admin"), token(t, "alice")
	h.do("PUT", "/api/v1/inventory/product_9", admin, `{"available":10}`).decodeStatus(t, http.StatusOK, &map[string]any{})
	a, b := h.open(alice, "KS-A", 1000), h.open(alice, "KS-B", 0)
	order := `{"product_id":"product_9","quantity":2,"amount":500}`
	transfer := fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":300}`, a.ID, b.ID)

	var o1, o2 orderBody
	h.do("POST", "/api/v1/orders", alice, order, "Idempotency-Key", "ks-1").decodeStatus(t, http.StatusCreated, &o1)
	var t1, t2 transferBody
	h.do("POST", "/api/v1/transfers", alice, transfer, "Idempotency-Key", "ks-2").decodeStatus(t, http.StatusCreated, &t1)
	h.forgetIdempotencyRecords(t)
	h.do("POST", "/api/v1/orders", alice, order, "Idempotency-Key", "ks-1").decodeStatus(t, http.StatusCreated, &o2)
	h.do("POST", "/api/v1/transfers", alice, transfer, "Idempotency-Key", "ks-2").decodeStatus(t, http.StatusCreated, &t2)
	if o2.OrderID != o1.OrderID || o2.PaymentID != o1.PaymentID || t2.TransferID != t1.TransferID {
		t.Fatalf("retries started new sagas: order %s then %s, transfer %s then %s", o1.OrderID, o2.OrderID, t1.TransferID, t2.TransferID)
	}
	var inv struct {
		ProductID string `json:"product_id"`
		Available int64  `json:"available"`
	}
	h.do("GET", "/api/v1/inventory/product_9", alice, "").decodeStatus(t, http.StatusOK, &inv)
	if inv.Available != 8 {
		t.Fatalf("inventory after one order of 2, retried: %d, want 8", inv.Available)
	}
	if got := h.do("GET", "/api/v1/accounts/"+b.ID, alice, "").account(t, http.StatusOK); got.Balance != 300 {
		t.Fatalf("target after one transfer of 300, retried: balance %d", got.Balance)
	}
	h.forgetIdempotencyRecords(t)
	h.do("POST", "/api/v1/orders", alice, `{"product_id":"product_9","quantity":3,"amount":500}`, "Idempotency-Key", "ks-1").
		problem(t, http.StatusConflict, "idempotency_key_reused")
	h.do("POST", "/api/v1/transfers", alice, fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":301}`, a.ID, b.ID), "Idempotency-Key", "ks-2").
		problem(t, http.StatusConflict, "idempotency_key_reused")
	// Without a key every request is its own saga.
	var o3, o4 orderBody
	h.do("POST", "/api/v1/orders", alice, order).decodeStatus(t, http.StatusCreated, &o3)
	h.do("POST", "/api/v1/orders", alice, order).decodeStatus(t, http.StatusCreated, &o4)
	if o3.OrderID == o4.OrderID || o3.OrderID == o1.OrderID {
		t.Fatalf("unkeyed orders share an id: %s, %s (keyed: %s)", o3.OrderID, o4.OrderID, o1.OrderID)
	}
}
