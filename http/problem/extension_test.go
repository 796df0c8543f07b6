package problem_test

import (
	"encoding/json"
	"errors"
	"testing"

	"granary/http/problem"
	"granary/messages"
)

// An extension member rides along with the standard members, and the
// failure under it still decides status and code.
func TestWithAddsMember(t *testing.T) {
	type saga struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	err := problem.With(messages.Fail(messages.CodeSagaFailed, "debit failed: insufficient_funds"), "transfer", saga{ID: "t-1", Status: "compensated"})
	r := render(t, "POST", err, nil)
	if r.status != 422 || r.body.Code != messages.CodeSagaFailed || r.body.Detail != "debit failed: insufficient_funds" || r.body.RequestID != "rid-1" {
		t.Fatalf("got %d %+v", r.status, r.body)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.raw), &raw); err != nil {
		t.Fatalf("body %q: %v", r.raw, err)
	}
	var got saga
	if err := json.Unmarshal(raw["transfer"], &got); err != nil || got != (saga{ID: "t-1", Status: "compensated"}) {
		t.Fatalf("transfer member %s (%v)", raw["transfer"], err)
	}
	var f *messages.Failure
	if !errors.As(err, &f) || f.GetCode() != messages.CodeSagaFailed {
		t.Fatalf("With hides its failure: %v", err)
	}
}

// A value that cannot be marshalled leaves the plain problem, not a
// broken body.
func TestWithUnmarshalableValue(t *testing.T) {
	r := render(t, "POST", problem.With(messages.Fail(messages.CodeSagaFailed, "x"), "order", func() {}), nil)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.raw), &raw); err != nil {
		t.Fatalf("body %q: %v", r.raw, err)
	}
	if _, ok := raw["order"]; ok || r.status != 422 {
		t.Fatalf("got %d %s", r.status, r.raw)
	}
}
