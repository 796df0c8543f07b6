package gateway

import (
	"encoding/json"
	"testing"
)

// What a client is told about a body json.Unmarshal refuses.
func TestDescribeJSONError(t *testing.T) {
	var dst struct {
		Amount int64 `json:"amount"`
	}
	for body, want := range map[string]string{
		`{"amount":5} {"amount":6}`: "body must hold exactly one JSON value",
		`{"amount":5}x`:             "body must hold exactly one JSON value",
		`{"amount":5`:               "malformed JSON: unexpected end of JSON input",
		`{"amount":"5"}`:            "amount: expected int64, got JSON string",
		`[1]`:                       "body must be a JSON object",
		`{"amount":}`:               "malformed JSON: invalid character '}' looking for beginning of value",
	} {
		err := json.Unmarshal([]byte(body), &dst)
		if err == nil {
			t.Fatalf("%s: decoded", body)
		}
		if got := describeJSONError(err); got != want {
			t.Errorf("%s: %q, want %q", body, got, want)
		}
	}
}
