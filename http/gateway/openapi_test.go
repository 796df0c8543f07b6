package gateway_test

import (
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"granary/http/gateway"
)

// notYetRegistered are operations docs/openapi.yaml documents (the whole
// contract) that no gateway serves yet. Each names the issue that brings
// it; that work deletes its line, and the test fails until it does.
var notYetRegistered = map[string]string{}

var pathParam = regexp.MustCompile(`\{[^}/]+\}`)

// operationKey names an operation whatever its path parameters are called
// ({id} in Echo, {order_id} in the contract).
func operationKey(method, path string) string {
	return method + " " + pathParam.ReplaceAllString(path, "{}")
}

type openAPIDoc struct {
	Paths map[string]map[string]yaml.Node `yaml:"paths"`
}

func loadOpenAPI(t *testing.T) (openAPIDoc, []byte) {
	t.Helper()
	raw, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPIDoc
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	return doc, raw
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPICoversRoutes: every registered route is documented, and every
// documented operation is registered (but the listed ones of later issues).
func TestOpenAPICoversRoutes(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for method := range item {
			if slices.Contains(httpMethods, method) {
				documented[operationKey(strings.ToUpper(method), path)] = true
			}
		}
	}
	h := newHarness(t)
	registered := map[string]bool{}
	for _, r := range h.gw.Routes() {
		key := operationKey(r.Method, r.Path)
		registered[key] = true
		if !documented[key] {
			t.Errorf("%s %s is served but not in docs/openapi.yaml", r.Method, r.Path)
		}
	}
	for key := range documented {
		why, pending := notYetRegistered[key]
		switch {
		case registered[key] && pending:
			t.Errorf("%s is served now (%s): delete it from notYetRegistered", key, why)
		case !registered[key] && !pending:
			t.Errorf("%s is documented but not served", key)
		}
	}
	for key := range notYetRegistered {
		if !documented[key] {
			t.Errorf("notYetRegistered lists %s, which docs/openapi.yaml does not document", key)
		}
	}
}

// TestOpenAPIRefsResolve: a $ref to a component that does not exist is a
// broken document.
func TestOpenAPIRefsResolve(t *testing.T) {
	_, raw := loadOpenAPI(t)
	var full map[string]any
	if err := yaml.Unmarshal(raw, &full); err != nil {
		t.Fatal(err)
	}
	components, _ := full["components"].(map[string]any)
	for _, m := range regexp.MustCompile(`\$ref: "#/components/([^/"]+)/([^"]+)"`).FindAllStringSubmatch(string(raw), -1) {
		section, _ := components[m[1]].(map[string]any)
		if _, ok := section[m[2]]; !ok {
			t.Errorf("$ref to missing #/components/%s/%s", m[1], m[2])
		}
	}
}

// notMutating are POST routes without the Idempotency-Key middleware on
// purpose: logging in changes nothing and its answer (a token) must not be
// replayed.
var notMutating = map[string]string{
	"POST /auth/login": "issues a token, records nothing",
}

// missingMutating are mutating POSTs still registered without
// g.mutating(); whoever attaches it deletes the line (the test fails
// until then).
var missingMutating = map[string]string{}

// TestMutatingRoutesHonourIdempotencyKey: every POST route keeps the first
// answer to a key, which shows as 409 idempotency_key_reused when the key
// comes back with another body. (A handler that merely derives command ids
// from the key does not do that.)
func TestMutatingRoutesHonourIdempotencyKey(t *testing.T) {
	h := newHarness(t)
	admin := token(t, "root", "admin")
	for _, r := range h.gw.Routes() {
		if r.Method != http.MethodPost {
			continue
		}
		key := operationKey(r.Method, r.Path)
		if _, ok := notMutating[key]; ok {
			continue
		}
		path := pathParam.ReplaceAllString(r.Path, "idem-route-check")
		idemKey := "route-check " + key
		h.do("POST", path, admin, `{}`, "Idempotency-Key", idemKey)
		second := h.do("POST", path, admin, `{"another":"body"}`, "Idempotency-Key", idemKey)
		honoured := second.status == http.StatusConflict && strings.Contains(string(second.body), `"idempotency_key_reused"`)
		why, missing := missingMutating[key]
		switch {
		case honoured && missing:
			t.Errorf("%s honours Idempotency-Key now: delete it from missingMutating (%s)", key, why)
		case !honoured && !missing:
			t.Errorf("%s ignores Idempotency-Key (another body under the key got %s): register it with g.mutating()", key, second)
		}
	}
	for key := range missingMutating {
		if !slices.ContainsFunc(h.gw.Routes(), func(r gateway.Route) bool { return operationKey(r.Method, r.Path) == key }) {
			t.Errorf("missingMutating lists %s, which is not registered", key)
		}
	}
}
