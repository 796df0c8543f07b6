package gateway_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestBadBodies: every malformed or out-of-range body is a 400 whose detail
// names the field, and none of them records anything.
func TestBadBodies(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	a := h.open(alice, "BODY-1", 1000)
	const open = "/api/v1/accounts"
	base := open + "/" + a.ID
	dep, wd, cl := base+"/deposits", base+"/withdrawals", base+"/close"
	long := func(n int) string { return strings.Repeat("x", n) }

	cases := []struct {
		name, path, body string
		code             string
		field            string // must appear in detail when set
	}{
		{"not JSON", dep, `amount=5`, "invalid_json", ""},
		{"trailing garbage", dep, `{"amount":5} x`, "invalid_json", ""},
		{"two values", dep, `{"amount":5}{"amount":5}`, "invalid_json", ""},
		{"truncated", dep, `{"amount":`, "invalid_json", ""},
		{"fractional amount", dep, `{"amount":1.5}`, "invalid_json", "amount"},
		{"exponent amount", wd, `{"amount":1e3}`, "invalid_json", "amount"},
		{"amount as string", dep, `{"amount":"100"}`, "invalid_json", "amount"},
		{"amount beyond int64", dep, `{"amount":99999999999999999999}`, "invalid_json", "amount"},
		{"array instead of object", dep, `[{"amount":5}]`, "invalid_json", ""},
		{"owner_name wrong type", open, `{"account_number":"BODY-2","owner_name":5}`, "invalid_json", "owner_name"},
		{"initial_balance fractional", open, `{"account_number":"BODY-2","owner_name":"B","initial_balance":0.5}`, "invalid_json", "initial_balance"},
		{"reason wrong type", cl, `{"reason":["no"]}`, "invalid_json", "reason"},

		{"missing amount", dep, `{"description":"x"}`, "validation_failed", "amount"},
		{"empty body has no amount", wd, ``, "validation_failed", "amount"},
		{"null amount", dep, `{"amount":null}`, "validation_failed", "amount"},
		{"missing account_number", open, `{"owner_name":"B"}`, "validation_failed", "account_number"},
		{"missing owner_name", open, `{"account_number":"BODY-2"}`, "validation_failed", "owner_name"},
		{"amount zero", dep, `{"amount":0}`, "validation_failed", "amount"},
		{"amount negative", wd, `{"amount":-5}`, "validation_failed", "amount"},
		{"amount above 10^15", dep, `{"amount":1000000000000001}`, "validation_failed", "amount"},
		{"initial_balance negative", open, `{"account_number":"BODY-2","owner_name":"B","initial_balance":-1}`, "validation_failed", "initial_balance"},
		{"initial_balance above 10^15", open, `{"account_number":"BODY-2","owner_name":"B","initial_balance":1000000000000001}`, "validation_failed", "initial_balance"},
		{"account_number empty", open, `{"account_number":"","owner_name":"B"}`, "validation_failed", "account_number"},
		{"account_number 65 chars", open, fmt.Sprintf(`{"account_number":%q,"owner_name":"B"}`, long(65)), "validation_failed", "account_number"},
		{"owner_name empty", open, `{"account_number":"BODY-2","owner_name":""}`, "validation_failed", "owner_name"},
		{"owner_name 201 chars", open, fmt.Sprintf(`{"account_number":"BODY-2","owner_name":%q}`, long(201)), "validation_failed", "owner_name"},
		{"description 501 chars", dep, fmt.Sprintf(`{"amount":5,"description":%q}`, long(501)), "validation_failed", "description"},
		{"reason 501 chars", cl, fmt.Sprintf(`{"reason":%q}`, long(501)), "validation_failed", "reason"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := h.as(t)
			p := h.do("POST", tc.path, alice, tc.body).problem(t, http.StatusBadRequest, tc.code)
			if !strings.Contains(p.Detail, tc.field) {
				t.Errorf("detail %q does not name %s", p.Detail, tc.field)
			}
		})
	}

	after := h.do("GET", base, alice, "").account(t, http.StatusOK)
	if after.Balance != 1000 || after.Version != 1 || after.Closed {
		t.Fatalf("bad bodies changed the account: %+v", after)
	}
	// None of the refused opens of BODY-2 reached the journal.
	if b := h.open(alice, "BODY-2", 0); b.Version != 1 {
		t.Fatalf("BODY-2 opened at version %d", b.Version)
	}
}

// TestBodyLimitsAccepted: the edges of every range are inside it, so the
// 400s above are about the range and not about the field.
func TestBodyLimitsAccepted(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	n64, name200 := strings.Repeat("n", 64), strings.Repeat("é", 200)
	body := fmt.Sprintf(`{"account_number":%q,"owner_name":%q,"initial_balance":1000000000000000}`, n64, name200)
	a := h.do("POST", "/api/v1/accounts", alice, body).account(t, http.StatusCreated)
	if a.AccountNumber != n64 || a.OwnerName != name200 || a.Balance != 1_000_000_000_000_000 {
		t.Fatalf("opened %+v", a)
	}
	base := "/api/v1/accounts/" + a.ID
	desc := strings.Repeat("d", 500)
	w := h.do("POST", base+"/withdrawals", alice, fmt.Sprintf(`{"amount":1000000000000000,"description":%q}`, desc)).account(t, http.StatusOK)
	if w.Balance != 0 {
		t.Fatalf("after withdrawing 10^15: %+v", w)
	}
	d := h.do("POST", base+"/deposits", alice, `{"amount":1}`, "Content-Type", "application/json; charset=utf-8").account(t, http.StatusOK)
	if d.Balance != 1 {
		t.Fatalf("after depositing 1: %+v", d)
	}
	// Close takes an optional body.
	if c := h.do("POST", base+"/close", alice, "").account(t, http.StatusOK); !c.Closed {
		t.Fatalf("close without body: %+v", c)
	}
	b := h.open(alice, "DEFAULTS-1", 0)
	if b.Balance != 0 {
		t.Fatalf("opened with initial_balance 0: %+v", b)
	}
	c := h.do("POST", "/api/v1/accounts", alice, `{"account_number":"DEFAULTS-2","owner_name":"C"}`).account(t, http.StatusCreated)
	if c.Balance != 0 || c.Version != 1 {
		t.Fatalf("opened without initial_balance: %+v", c)
	}
}
