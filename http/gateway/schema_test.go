package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// contract is docs/openapi.yaml loaded for response validation, once per
// test binary: every harness's client checks its answers against it.
type contract struct {
	doc    *openapi3.T
	router routers.Router
}

var loadContract = sync.OnceValues(func() (*contract, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../../docs/openapi.yaml")
	if err != nil {
		return nil, fmt.Errorf("load docs/openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("docs/openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	closeObjects(doc)
	// The document's server is the dev address; the tests' servers listen
	// on random ports, so routes are matched on the path alone.
	doc.Servers = openapi3.Servers{{URL: "/"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route docs/openapi.yaml: %w", err)
	}
	return &contract{doc: doc, router: router}, nil
})

// closeObjects makes every documented object exact for the tests: a field
// the server sends but the document does not name is a mismatch, not a
// silent extension. The document itself leaves objects open, so clients
// keep working when a field is added; the tests hold the server to what
// the document names. Objects composed with allOf are closed at the
// composition (unevaluatedProperties), since closing a part would refuse
// the other parts' fields.
func closeObjects(doc *openapi3.T) {
	closed := map[*openapi3.Schema]bool{}
	seen := map[*openapi3.Schema]bool{}
	var composed []*openapi3.Schema
	var walk func(ref *openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		ap := s.AdditionalProperties
		if len(s.Properties) > 0 && ap.Has == nil && ap.Schema == nil {
			no := false
			s.AdditionalProperties.Has = &no
			closed[s] = true
		}
		if len(s.AllOf) > 0 {
			composed = append(composed, s)
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		for _, group := range []openapi3.SchemaRefs{s.AllOf, s.OneOf, s.AnyOf} {
			for _, m := range group {
				walk(m)
			}
		}
	}
	for _, s := range doc.Components.Schemas {
		walk(s)
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, r := range op.Responses.Map() {
				if r.Value == nil {
					continue
				}
				for _, mt := range r.Value.Content {
					walk(mt.Schema)
				}
			}
		}
	}
	for _, s := range composed {
		var parts bool
		for i, m := range s.AllOf {
			if m.Value == nil || !closed[m.Value] {
				continue
			}
			open := *m.Value
			open.AdditionalProperties = openapi3.AdditionalProperties{}
			s.AllOf[i] = &openapi3.SchemaRef{Value: &open}
			parts = true
		}
		if parts && s.UnevaluatedProperties.Has == nil && s.UnevaluatedProperties.Schema == nil {
			no := false
			s.UnevaluatedProperties.Has = &no
		}
	}
}

// checkResponse validates one answer against the document: its status
// must be documented for the operation and, for JSON, its body must match
// the schema of that status and content type. Requests the document does
// not describe (proxied routes, OPTIONS, unknown paths) are not checked;
// neither are streams, whose bodies never end.
func (c *contract) checkResponse(req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := c.router.FindRoute(req)
	if errors.Is(err, routers.ErrPathNotFound) || errors.Is(err, routers.ErrMethodNotAllowed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find route: %w", err)
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	if !isJSON(header.Get("Content-Type")) {
		opts.ExcludeResponseBody = true
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                opts,
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(req.Context(), in)
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// schemaCheck is the harness client's transport: it passes every request
// on and checks the answer against docs/openapi.yaml, failing t for each
// mismatch. A JSON body is read whole and handed on unchanged; other
// bodies (streams among them) pass through unread.
type schemaCheck struct {
	t     testing.TB
	c     *contract
	inner http.RoundTripper
}

func newSchemaCheck(t testing.TB, inner http.RoundTripper) *schemaCheck {
	t.Helper()
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	return &schemaCheck{t: t, c: c, inner: inner}
}

func (s *schemaCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.inner.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	var body []byte
	if isJSON(resp.Header.Get("Content-Type")) && req.Method != http.MethodHead {
		body, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			// The test reading the body sees it cut short; nothing to check.
			return resp, nil
		}
	}
	if err := s.c.checkResponse(req, resp.StatusCode, resp.Header, body); err != nil {
		s.t.Errorf("%s %s: answer %d does not match docs/openapi.yaml: %v\nbody: %s",
			req.Method, req.URL.RequestURI(), resp.StatusCode, err, body)
	}
	return resp, nil
}

// CloseIdleConnections lets httptest.Server.Close reach the inner
// transport's idle connections.
func (s *schemaCheck) CloseIdleConnections() {
	if ci, ok := s.inner.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// TestSchemaCheckRejects: the check fails answers that break the document,
// so the live checks in the other tests mean something.
func TestSchemaCheckRejects(t *testing.T) {
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	account := `{"id":"a1","account_number":"ACC-1","owner":"u1","owner_name":"O","balance":100,"version":1,"closed":false}`
	// A problem composed with allOf (Problem plus the saga) is exact too.
	failed := `{"type":"about:blank","title":"Unprocessable Entity","status":422,"detail":"d","code":"saga_failed",` +
		`"transfer":{"transfer_id":"t1","from_account":"a","to_account":"b","amount":5,"status":"compensated",` +
		`"failed_step":"deposit","error":"e","steps":[]}}`
	// An event's data is checked against the schema of its type.
	deposit := `{"events":[{"version":2,"type":"MoneyDeposited","occurred_at":"2026-01-02T03:04:05Z",` +
		`"data":{"amount":5,"description":""}}],"next_after_version":null}`
	const (
		getAccount = "GET /api/v1/accounts/a1"
		transfer   = "POST /api/v1/transfers"
		events     = "GET /api/v1/accounts/a1/events"
		// Paths the document does not describe are the proxy's, not checked.
		proxied = "GET /api/bench/anything"
	)
	cases := []struct {
		name, op string
		status   int
		body     string
		ok       bool
	}{
		{"the documented shape", getAccount, http.StatusOK, account, true},
		{"balance as a string", getAccount, http.StatusOK, strings.Replace(account, `"balance":100`, `"balance":"100"`, 1), false},
		{"a required field missing", getAccount, http.StatusOK, strings.Replace(account, `"closed":false`, `"x":1`, 1), false},
		{"an undocumented field", getAccount, http.StatusOK, strings.Replace(account, `}`, `,"extra":1}`, 1), false},
		{"an undocumented status", getAccount, http.StatusTeapot, account, false},
		{"a saga problem", transfer, http.StatusUnprocessableEntity, failed, true},
		{"a saga problem with an extra field", transfer, http.StatusUnprocessableEntity, strings.Replace(failed, `"code"`, `"extra":1,"code"`, 1), false},
		{"a saga problem with an extra saga field", transfer, http.StatusUnprocessableEntity, strings.Replace(failed, `"steps":[]`, `"steps":[],"extra":1`, 1), false},
		{"a deposit event", events, http.StatusOK, deposit, true},
		{"a deposit of a string amount", events, http.StatusOK, strings.Replace(deposit, `"amount":5`, `"amount":"5"`, 1), false},
		{"a closing with a deposit's data", events, http.StatusOK, strings.Replace(deposit, `"MoneyDeposited"`, `"AccountClosed"`, 1), false},
		{"an unknown event type", events, http.StatusOK, strings.Replace(deposit, `"MoneyDeposited"`, `"MoneyLost"`, 1), false},
		{"a proxied path", proxied, http.StatusTeapot, `{}`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method, path, _ := strings.Cut(tc.op, " ")
			req, err := http.NewRequest(method, "http://127.0.0.1"+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			ct := "application/json"
			if tc.status >= 400 && tc.status != http.StatusTeapot {
				ct = "application/problem+json"
			}
			err = c.checkResponse(req, tc.status, http.Header{"Content-Type": {ct}}, []byte(tc.body))
			if tc.ok && err != nil {
				t.Errorf("%s %d refused: %v", tc.op, tc.status, err)
			}
			if !tc.ok && err == nil {
				t.Errorf("%s %d accepted %s", tc.op, tc.status, tc.body)
			}
		})
	}
}
