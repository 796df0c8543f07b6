package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

const testSecret = "0123456789abcdef0123456789abcdef-bench"

func newTestBaseline(t *testing.T) *httptest.Server {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	srv := httptest.NewServer(newBaseline(rdb, []byte(testSecret), "bl", nil))
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, srv *httptest.Server, tok, method, path string, body any, out any) int {
	t.Helper()
	var r *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	} else {
		r = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

func TestBaselineAnswers(t *testing.T) {
	srv := newTestBaseline(t)
	alice, err := token([]byte(testSecret), "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := token([]byte(testSecret), "bob", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := call(t, srv, "", "GET", "/accounts/x", nil, nil); got != http.StatusUnauthorized {
		t.Fatalf("no token: %d", got)
	}
	forged, _ := token([]byte("another-secret-another-secret-another"), "alice", nil)
	if got := call(t, srv, forged, "GET", "/accounts/x", nil, nil); got != http.StatusUnauthorized {
		t.Fatalf("forged token: %d", got)
	}

	var a, b baselineAccount
	if got := call(t, srv, alice, "POST", "/accounts", map[string]any{"account_number": "A-1", "owner_name": "Alice", "initial_balance": 100}, &a); got != http.StatusCreated {
		t.Fatalf("open: %d", got)
	}
	if a.Balance != 100 || a.Version != 1 || a.Owner != "alice" || a.ID == "" {
		t.Fatalf("opened %+v", a)
	}
	if got := call(t, srv, alice, "POST", "/accounts", map[string]any{"account_number": "A-1", "owner_name": "Alice"}, nil); got != http.StatusConflict {
		t.Fatalf("open twice: %d", got)
	}
	if got := call(t, srv, bob, "POST", "/accounts", map[string]any{"account_number": "B-1", "owner_name": "Bob"}, &b); got != http.StatusCreated {
		t.Fatalf("open bob: %d", got)
	}

	var after baselineAccount
	if got := call(t, srv, alice, "POST", "/accounts/"+a.ID+"/deposits", map[string]any{"amount": 25}, &after); got != http.StatusOK {
		t.Fatalf("deposit: %d", got)
	}
	if after.Balance != 125 || after.Version != 2 || after.AccountNumber != "A-1" {
		t.Fatalf("after deposit %+v", after)
	}
	if got := call(t, srv, alice, "POST", "/accounts/"+a.ID+"/deposits", map[string]any{"amount": 0}, nil); got != http.StatusBadRequest {
		t.Fatalf("zero deposit: %d", got)
	}
	if got := call(t, srv, bob, "POST", "/accounts/"+a.ID+"/deposits", map[string]any{"amount": 1}, nil); got != http.StatusForbidden {
		t.Fatalf("deposit to someone else's account: %d", got)
	}
	if got := call(t, srv, alice, "POST", "/accounts/nope/deposits", map[string]any{"amount": 1}, nil); got != http.StatusNotFound {
		t.Fatalf("deposit to unknown: %d", got)
	}

	if got := call(t, srv, alice, "POST", "/transfers", map[string]any{"from_account": a.ID, "to_account": b.ID, "amount": 120}, nil); got != http.StatusCreated {
		t.Fatalf("transfer: %d", got)
	}
	if got := call(t, srv, alice, "POST", "/transfers", map[string]any{"from_account": a.ID, "to_account": b.ID, "amount": 6}, nil); got != http.StatusUnprocessableEntity {
		t.Fatalf("transfer without the money: %d", got)
	}
	if got := call(t, srv, bob, "POST", "/transfers", map[string]any{"from_account": a.ID, "to_account": b.ID, "amount": 1}, nil); got != http.StatusForbidden {
		t.Fatalf("transfer from someone else's account: %d", got)
	}
	var ga, gb baselineAccount
	if got := call(t, srv, alice, "GET", "/accounts/"+a.ID, nil, &ga); got != http.StatusOK {
		t.Fatalf("get: %d", got)
	}
	if got := call(t, srv, bob, "GET", "/accounts/"+b.ID, nil, &gb); got != http.StatusOK {
		t.Fatalf("get bob: %d", got)
	}
	if ga.Balance != 5 || ga.Version != 3 || gb.Balance != 120 || gb.Version != 2 {
		t.Fatalf("after transfer: %+v %+v", ga, gb)
	}
	if got := call(t, srv, bob, "GET", "/accounts/"+a.ID, nil, nil); got != http.StatusForbidden {
		t.Fatalf("read someone else's account: %d", got)
	}
}
