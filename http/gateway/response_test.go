package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

// response is what a test looks at: status, headers and the raw body.
type response struct {
	status int
	header http.Header
	body   []byte
}

// problemBody is the contract's error body.
type problemBody struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	RequestID string `json:"request_id"`
}

type accountBody struct {
	ID            string `json:"id"`
	AccountNumber string `json:"account_number"`
	Owner         string `json:"owner"`
	OwnerName     string `json:"owner_name"`
	Balance       int64  `json:"balance"`
	Version       uint64 `json:"version"`
	Closed        bool   `json:"closed"`
}

type eventBody struct {
	Version    uint64         `json:"version"`
	Type       string         `json:"type"`
	Data       map[string]any `json:"data"`
	OccurredAt string         `json:"occurred_at"`
}

// checkInvariants holds for every answer the gateway gives.
func checkInvariants(method, path string, r *response) error {
	// An outside service's own 500 is relayed unchanged (the test
	// upstreams mark theirs): not Granary's.
	if r.status >= 500 && r.status != http.StatusServiceUnavailable && r.status != http.StatusGatewayTimeout && r.header.Get("X-Upstream") == "" {
		return fmt.Errorf("%s %s: status %d is a bug (only 503 and 504 are allowed): %s", method, path, r.status, r.body)
	}
	if r.header.Get("X-Request-ID") == "" {
		return fmt.Errorf("%s %s: no X-Request-ID", method, path)
	}
	return nil
}

func (r *response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// decode unmarshals the body strictly into v.
func (r *response) decode(t testing.TB, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, r, err)
	}
}

// account asserts status and returns the Account body.
func (r *response) account(t testing.TB, status int) accountBody {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var a accountBody
	r.decode(t, &a)
	return a
}

// problem asserts that r is a problem+json answer with status and code,
// and returns it.
func (r *response) problem(t testing.TB, status int, code string) problemBody {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (%s): %s", r.status, status, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json: %s", ct, r.body)
	}
	var p problemBody
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body: %v: %s", err, r.body)
	}
	if p.Status != status || p.Code != code || p.Title != http.StatusText(status) || p.Detail == "" {
		t.Fatalf("problem %+v, want status %d, code %q, title %q and a detail", p, status, code, http.StatusText(status))
	}
	return p
}
