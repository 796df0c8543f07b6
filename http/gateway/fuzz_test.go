package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// quietTB keeps the shared cluster's logs away from f: once the fuzz target
// runs, F.Log panics, and grains and Proto.Actor log from goroutines of
// their own.
type quietTB struct{ testing.TB }

func (quietTB) Log(...any)          {}
func (quietTB) Logf(string, ...any) {}

var fuzzContentTypes = []string{
	"application/json",
	"application/json; charset=utf-8",
	"application/merge-patch+json",
	"", // none
	"text/plain",
	"application/x-www-form-urlencoded",
	"application/json; charset",
	"multipart/form-data; boundary=x",
}

const fuzzAccounts = 4

// FuzzAccountEndpoints posts arbitrary bodies, media types and
// concurrency headers to open, deposit, withdraw and close. Whatever comes
// in, the answer is a 2xx account or a well-formed problem, never a 5xx
// other than 503/504, and the account's grain keeps answering.
func FuzzAccountEndpoints(f *testing.F) {
	h := newHarness(quietTB{f})
	alice := token(f, "alice")
	var ids []string
	for i := 0; i < fuzzAccounts; i++ {
		ids = append(ids, h.open(alice, fmt.Sprintf("FUZZ-%d", i), 1_000_000).ID)
	}

	for i, body := range []string{
		``, `{}`, `null`, `[]`, `"x"`, `{"amount":1}`, `{"amount":100,"description":"rent"}`,
		`{"amount":1.5}`, `{"amount":"100"}`, `{"amount":-1}`, `{"amount":0}`, `{"amount":1000000000000000}`,
		`{"amount":1000000000000001}`, `{"amount":9223372036854775807}`, `{"amount":1e400}`,
		`{"account_number":"F-1","owner_name":"F"}`, `{"account_number":"F-2","owner_name":"F","initial_balance":5}`,
		`{"account_number":"","owner_name":""}`, `{"account_number":"\u0000","owner_name":"\ud800"}`,
		`{"account_number":"F-3","owner_name":7}`, `{"reason":"done"}`, `{"reason":null}`,
		`{"amount":1}{"amount":1}`, `{"amount":1} trailing`, `{"amount":`, "\xff\xfe{", `{"AMOUNT":3}`,
		`{"amount":1,"amount":2}`, strings.Repeat(`[`, 10000), `{"description":"` + strings.Repeat("é", 600) + `","amount":1}`,
	} {
		for op := 0; op < 4; op++ {
			f.Add(uint8(op+4*(i%fuzzAccounts)), uint8(i%len(fuzzContentTypes)), []byte(body), "", "")
		}
	}
	f.Add(uint8(1), uint8(0), []byte(`{"amount":1}`), `"1"`, "")
	f.Add(uint8(1), uint8(0), []byte(`{"amount":1}`), `W/"999"`, "k")
	f.Add(uint8(2), uint8(0), []byte(`{"amount":1}`), "*", strings.Repeat("k", 256))
	f.Add(uint8(3), uint8(0), []byte(`{}`), "\x00", "\r\n")

	paths := func(account uint8) []string {
		base := "/api/v1/accounts/" + ids[int(account)%len(ids)]
		return []string{"/api/v1/accounts", base + "/deposits", base + "/withdrawals", base + "/close"}
	}
	f.Fuzz(func(t *testing.T, endpoint, contentType uint8, body []byte, ifMatch, idempotencyKey string) {
		path := paths(endpoint / 4)[endpoint%4]
		headers := http.Header{"Authorization": {"Bearer " + alice}}
		if ct := fuzzContentTypes[int(contentType)%len(fuzzContentTypes)]; ct != "" {
			headers.Set("Content-Type", ct)
		}
		if ifMatch != "" {
			headers.Set("If-Match", ifMatch)
		}
		if idempotencyKey != "" {
			headers.Set("Idempotency-Key", idempotencyKey)
		}
		r := serve(h, "POST", path, headers, body)
		checkFuzzAnswer(t, "POST "+path, r)

		if endpoint%4 != 0 {
			// The grain survived whatever it was sent.
			account := path[:strings.LastIndex(path, "/")]
			if r := serve(h, "GET", account, http.Header{"Authorization": {"Bearer " + alice}}, nil); r.status != http.StatusOK {
				t.Fatalf("GET %s after POST %s %q: %s", account, path, body, r)
			}
		}
	})
}

// serve runs one request through the handler in process: much faster than
// a socket, and a panic would surface here.
func serve(h *harness, method, path string, headers http.Header, body []byte) *response {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	for k, v := range headers {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.gw.Handler().ServeHTTP(rec, req)
	return &response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func checkFuzzAnswer(t *testing.T, what string, r *response) {
	t.Helper()
	if err := checkInvariants("POST", what, r); err != nil {
		t.Fatal(err)
	}
	if r.status < 400 {
		var a accountBody
		if err := json.Unmarshal(r.body, &a); err != nil || a.ID == "" || a.Version == 0 {
			t.Fatalf("%s: %d with body %s (%v)", what, r.status, r.body, err)
		}
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s: %d with Content-Type %q", what, r.status, ct)
	}
	var p problemBody
	if err := json.Unmarshal(r.body, &p); err != nil || p.Status != r.status || p.Code == "" || p.Detail == "" {
		t.Fatalf("%s: malformed problem %s (%v)", what, r.body, err)
	}
	// The grain turns its own panics into this 503 so callers are not left
	// waiting; with storage up, only a panic produces it.
	if p.Status == http.StatusServiceUnavailable && strings.Contains(p.Detail, "grain failed") {
		t.Fatalf("%s: the account grain panicked: %s", what, r.body)
	}
}

// FuzzCounterEndpoints posts arbitrary bodies, media types, names and
// Idempotency-Keys to the counter and counter-group commands. Whatever
// comes in, the answer is a 2xx JSON object or a well-formed problem,
// never a 5xx other than 503/504; a key reused with another body is 409,
// and the same request under a key is a replay that changes nothing.
func FuzzCounterEndpoints(f *testing.F) {
	h := newHarness(quietTB{f})
	alice := token(f, "alice")
	for i, body := range []string{
		``, `{}`, `null`, `{"by":1}`, `{"by":0}`, `{"by":-5}`, `{"by":1.5}`, `{"by":"2"}`, `{"by":1000000000000000}`,
		`{"by":1000000000000001}`, `{"command":"increment"}`, `{"command":"reset"}`, `{"command":"explode"}`,
		`{"command":7}`, `{"by":1}{"by":1}`, "\xff", strings.Repeat(`{"a":`, 500),
	} {
		for op := range 4 {
			f.Add(uint8(op), uint8(i%len(fuzzContentTypes)), []byte(body), "c1", "")
		}
	}
	f.Add(uint8(0), uint8(0), []byte(`{"by":2}`), "c2", "key-1")
	f.Add(uint8(0), uint8(0), []byte(`{"by":3}`), "c2", "key-1")
	f.Add(uint8(2), uint8(0), []byte(``), "g1", "spawn-1")
	f.Add(uint8(0), uint8(0), []byte(`{}`), "../x", "")
	f.Add(uint8(1), uint8(0), []byte(`{}`), strings.Repeat("n", 300), strings.Repeat("k", 256))

	f.Fuzz(func(t *testing.T, op, contentType uint8, body []byte, name, idempotencyKey string) {
		if name == "" || name == "." || name == ".." {
			name = "c1" // a path segment, not a path
		}
		name = url.PathEscape(name)
		paths := []string{
			"/api/v1/counters/" + name + "/increment", "/api/v1/counters/" + name + "/reset",
			"/api/v1/counter-groups/" + name + "/counters", "/api/v1/counter-groups/" + name + "/broadcast",
		}
		path := paths[int(op)%len(paths)]
		headers := http.Header{"Authorization": {"Bearer " + alice}}
		if ct := fuzzContentTypes[int(contentType)%len(fuzzContentTypes)]; ct != "" {
			headers.Set("Content-Type", ct)
		}
		if idempotencyKey != "" {
			headers.Set("Idempotency-Key", idempotencyKey)
		}
		r := serve(h, "POST", path, headers, body)
		checkFuzzProblemOrJSON(t, "POST "+path, r)
		if idempotencyKey == "" || r.status >= 500 || r.status == http.StatusConflict {
			return
		}
		// The same request again under the key: the first answer, replayed.
		again := serve(h, "POST", path, headers, body)
		checkFuzzProblemOrJSON(t, "replay of POST "+path, again)
		if r.status == http.StatusBadRequest && strings.Contains(string(r.body), "Idempotency-Key") {
			return // the key itself was refused
		}
		if again.status != r.status || !bytes.Equal(again.body, r.body) {
			t.Fatalf("POST %s under key %q: first %s, again %s", path, idempotencyKey, r, again)
		}
	})
}

func checkFuzzProblemOrJSON(t *testing.T, what string, r *response) {
	t.Helper()
	if err := checkInvariants("POST", what, r); err != nil {
		t.Fatal(err)
	}
	if r.status < 400 {
		var v map[string]any
		if err := json.Unmarshal(r.body, &v); err != nil {
			t.Fatalf("%s: %d with body %q (%v)", what, r.status, r.body, err)
		}
		return
	}
	var p problemBody
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s: %d with Content-Type %q", what, r.status, ct)
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Status != r.status || p.Code == "" || p.Detail == "" {
		t.Fatalf("%s: malformed problem %s (%v)", what, r.body, err)
	}
}
