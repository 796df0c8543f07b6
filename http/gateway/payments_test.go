package gateway_test

import (
	"context"
	"net/http"
	"regexp"
	"testing"
	"time"

	"granary/messages"
	"granary/testkit/fixtures"
)

type paymentBody struct {
	PaymentID string `json:"payment_id"`
	UserID    string `json:"user_id"`
	Amount    int64  `json:"amount"`
	Status    string `json:"status"`
}

func (h *harness) order(t *testing.T, tok, body string) orderBody {
	t.Helper()
	var o orderBody
	h.do("POST", "/api/v1/orders", tok, body).decodeStatus(t, http.StatusCreated, &o)
	return o
}

var mintedPaymentID = regexp.MustCompile(`^pay_[0-9a-f]{32}$`)

// The payment id of an order that chose none used to be pay_<order_id>, so
// anyone could charge it first and fail the owner's order with "payment id
// already used". It is now 128 random bits, chosen once per order.
func TestDefaultPaymentIDCannotBeSquatted(t *testing.T) {
	h := newHarness(t)
	admin, alice, bob := token(t, "root", "admin"), token(t, "alice"), token(t, "bob")
	h.do("PUT", "/api/v1/inventory/product_1", admin, `{"available":100}`).decodeStatus(t, http.StatusOK, &map[string]any{})

	// Bob takes what the old scheme would have named Alice's payment.
	if o := h.order(t, bob, `{"order_id":"bob-1","product_id":"product_1","quantity":1,"amount":10,"payment_id":"pay_o-alice"}`); o.PaymentID != "pay_o-alice" {
		t.Fatalf("bob's chosen payment id: %+v", o)
	}
	o := h.order(t, alice, `{"order_id":"o-alice","product_id":"product_1","quantity":1,"amount":500}`)
	if o.Status != "completed" || !mintedPaymentID.MatchString(o.PaymentID) {
		t.Fatalf("alice's order: %+v (want completed with a pay_ + 32 hex id)", o)
	}
	var pay paymentBody
	h.do("GET", "/api/v1/payments/"+o.PaymentID, alice, "").decodeStatus(t, http.StatusOK, &pay)
	if pay != (paymentBody{PaymentID: o.PaymentID, UserID: "alice", Amount: 500, Status: "completed"}) {
		t.Fatalf("alice's payment %+v", pay)
	}
	// A re-post of the order (a client's retry without Idempotency-Key)
	// keeps the id the order recorded instead of minting another.
	var again orderBody
	h.do("POST", "/api/v1/orders", alice, `{"order_id":"o-alice","product_id":"product_1","quantity":1,"amount":500}`).decodeStatus(t, http.StatusCreated, &again)
	if again.PaymentID != o.PaymentID {
		t.Fatalf("retry of the order got payment id %q, the order has %q", again.PaymentID, o.PaymentID)
	}
	if other := h.order(t, alice, `{"product_id":"product_1","quantity":1,"amount":500}`); other.PaymentID == o.PaymentID || !mintedPaymentID.MatchString(other.PaymentID) {
		t.Fatalf("another order's payment id %q (first %q)", other.PaymentID, o.PaymentID)
	}
}

// A payment is read by its user and admins only; anyone else is told it
// does not exist, exactly as for an id nobody used, so a chosen id's
// existence does not leak.
func TestPaymentOfAnotherUserIsNotFound(t *testing.T) {
	h := newHarness(t)
	admin, alice, bob := token(t, "root", "admin"), token(t, "alice"), token(t, "bob")
	h.do("PUT", "/api/v1/inventory/product_1", admin, `{"available":100}`).decodeStatus(t, http.StatusOK, &map[string]any{})
	h.order(t, alice, `{"product_id":"product_1","quantity":1,"amount":300,"payment_id":"alice-pay-1"}`)

	var pay paymentBody
	h.do("GET", "/api/v1/payments/alice-pay-1", admin, "").decodeStatus(t, http.StatusOK, &pay)
	if pay.UserID != "alice" || pay.Amount != 300 {
		t.Fatalf("admin reading alice's payment: %+v", pay)
	}
	stranger := h.do("GET", "/api/v1/payments/alice-pay-1", bob, "").problem(t, http.StatusNotFound, "not_found")
	missing := h.do("GET", "/api/v1/payments/nobody-pay-1", bob, "").problem(t, http.StatusNotFound, "not_found")
	if stranger.Detail != missing.Detail {
		t.Fatalf("bob can tell alice's payment from a missing one: %q vs %q", stranger.Detail, missing.Detail)
	}
}

// Bob's order naming Alice's chosen payment id fails and changes nothing
// about her payment, including when his charge's outcome was unknown at
// the saga's deadline, so his compensation refunds "it".
func TestOrderCannotTakeAnothersPaymentID(t *testing.T) {
	h := newHarness(t)
	admin, alice, bob := token(t, "root", "admin"), token(t, "alice"), token(t, "bob")
	h.do("PUT", "/api/v1/inventory/product_1", admin, `{"available":100}`).decodeStatus(t, http.StatusOK, &map[string]any{})
	h.order(t, alice, `{"order_id":"o-alice","product_id":"product_1","quantity":1,"amount":300,"payment_id":"alice-pay-1"}`)
	alicePaid := paymentBody{PaymentID: "alice-pay-1", UserID: "alice", Amount: 300, Status: "completed"}
	check := func(when string) {
		t.Helper()
		var pay paymentBody
		h.do("GET", "/api/v1/payments/alice-pay-1", alice, "").decodeStatus(t, http.StatusOK, &pay)
		if pay != alicePaid {
			t.Fatalf("alice's payment after %s: %+v, want %+v", when, pay, alicePaid)
		}
	}

	var o orderBody
	sagaFailure(t, h.do("POST", "/api/v1/orders", bob, `{"order_id":"o-bob","product_id":"product_1","quantity":1,"amount":300,"payment_id":"alice-pay-1"}`), "order", &o)
	if o.FailedStep != "process_payment" || o.Error != "payment id already used" || o.UserID != "bob" {
		t.Fatalf("bob's order: %+v", o)
	}
	check("bob's refused order")

	// Bob's order whose charge of that id has no known outcome at its
	// deadline (its member died mid-step): re-posting it drives it on, and
	// it compensates by undoing the charge it may have made.
	now := time.Now()
	if err := fixtures.OrderDiedInPayment(context.Background(), h.cluster.Store,
		&messages.OrderInput{OrderId: "o-bob-2", UserId: "bob", ProductId: "product_1", Quantity: 1, Amount: 300, PaymentId: "alice-pay-1"},
		now.Add(-time.Minute), now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	sagaFailure(t, h.do("POST", "/api/v1/orders", bob, `{"order_id":"o-bob-2","product_id":"product_1","quantity":1,"amount":300}`), "order", &o)
	if o.Status != "compensated" || o.FailedStep != "process_payment" || o.PaymentID != "alice-pay-1" {
		t.Fatalf("bob's second order: %+v", o)
	}
	check("bob's compensated order")
}
