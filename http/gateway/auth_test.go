package gateway_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// forge signs claims with method and key, for tokens auth.Issue would
// never make.
func forge(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestUnauthorized: every way a token can be missing, malformed, expired or
// badly signed is a 401 with a WWW-Authenticate challenge, and nothing is
// recorded.
func TestUnauthorized(t *testing.T) {
	h := newHarness(t)
	alice := token(t, "alice")
	a := h.open(alice, "AUTH-1", 100)
	dep := "/api/v1/accounts/" + a.ID + "/deposits"

	now := time.Now()
	valid := jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for ck, cv := range valid {
			c[ck] = cv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	// Key confusion: an RS256 header over an HMAC made with the shared
	// secret, for verifiers that let the token pick the algorithm.
	rs256Header := jwt.NewWithClaims(jwt.SigningMethodHS256, valid)
	rs256Header.Header["alg"] = "RS256"
	confused, err := rs256Header.SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name          string
		authorization string // the whole header; "" sends none
	}{
		{"no header", ""},
		{"basic scheme", "Basic YWxpY2U6c2VjcmV0"},
		{"token without scheme", alice},
		{"bearer without token", "Bearer "},
		{"garbage token", "Bearer not.a.jwt"},
		{"expired", "Bearer " + forge(t, jwt.SigningMethodHS256, testSecret, with("exp", now.Add(-time.Minute).Unix()))},
		{"no exp", "Bearer " + forge(t, jwt.SigningMethodHS256, testSecret, with("exp", nil))},
		{"wrong secret", "Bearer " + forge(t, jwt.SigningMethodHS256, []byte("another-secret-of-at-least-32-bytes!!"), valid)},
		{"alg none", "Bearer " + forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid)},
		{"HS384", "Bearer " + forge(t, jwt.SigningMethodHS384, testSecret, valid)},
		{"HS512", "Bearer " + forge(t, jwt.SigningMethodHS512, testSecret, valid)},
		{"RS256 header", "Bearer " + confused},
		{"nbf in the future", "Bearer " + forge(t, jwt.SigningMethodHS256, testSecret, with("nbf", now.Add(time.Hour).Unix()))},
		{"missing sub", "Bearer " + forge(t, jwt.SigningMethodHS256, testSecret, with("sub", nil))},
		{"empty sub", "Bearer " + forge(t, jwt.SigningMethodHS256, testSecret, with("sub", ""))},
		{"roles not a list", "Bearer " + forge(t, jwt.SigningMethodHS256, testSecret, with("roles", "admin"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := h.as(t)
			for _, req := range []struct{ method, path, body string }{
				{"GET", "/api/v1/accounts/" + a.ID, ""},
				{"POST", dep, `{"amount":1}`},
				{"POST", "/api/v1/accounts", `{"account_number":"AUTH-2","owner_name":"Mallory"}`},
			} {
				r := h.do(req.method, req.path, "", req.body, "Authorization", tc.authorization)
				r.problem(t, http.StatusUnauthorized, "unauthorized")
				if r.header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s %s: no WWW-Authenticate", req.method, req.path)
				}
				if r.header.Get("X-Served-By") != "" {
					t.Errorf("%s %s: an unauthenticated request reached a grain", req.method, req.path)
				}
			}
		})
	}

	if got := h.do("GET", "/api/v1/accounts/"+a.ID, alice, "").account(t, http.StatusOK); got.Version != 1 || got.Balance != 100 {
		t.Fatalf("refused tokens changed the account: %+v", got)
	}
	// Any token signed with the secret and carrying the claims is
	// accepted, whoever issued it.
	external := forge(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{
		"sub": "alice", "exp": now.Add(time.Minute).Unix(), "iss": "https://idp.example", "iat": now.Unix(), "nbf": now.Unix(),
	})
	h.do("GET", "/api/v1/accounts/"+a.ID, external, "").account(t, http.StatusOK)
}

// TestForbidden: a user may act on their own accounts only; admin may act
// on any.
func TestForbidden(t *testing.T) {
	h := newHarness(t)
	alice, bob := token(t, "alice"), token(t, "bob", "auditor")
	admin := token(t, "root", "admin")
	a := h.open(alice, "OWNED-1", 500)
	base := "/api/v1/accounts/" + a.ID

	attempts := []struct{ name, method, path, body string }{
		{"read", "GET", base, ""},
		{"read in the past", "GET", base + "?at_version=1", ""},
		{"list events", "GET", base + "/events", ""},
		{"deposit", "POST", base + "/deposits", `{"amount":1}`},
		{"withdraw", "POST", base + "/withdrawals", `{"amount":1}`},
		{"close", "POST", base + "/close", `{"reason":"mine now"}`},
	}
	for _, at := range attempts {
		t.Run("bob "+at.name, func(t *testing.T) {
			h.as(t).do(at.method, at.path, bob, at.body).problem(t, http.StatusForbidden, "forbidden")
		})
	}
	if got := h.do("GET", base, alice, "").account(t, http.StatusOK); got.Version != 1 || got.Balance != 500 || got.Closed {
		t.Fatalf("bob changed alice's account: %+v", got)
	}

	h.do("GET", base, admin, "").account(t, http.StatusOK)
	if r := h.do("GET", base+"/events", admin, ""); r.status != http.StatusOK {
		t.Fatalf("admin lists events: %s", r)
	}
	if got := h.do("POST", base+"/deposits", admin, `{"amount":5}`).account(t, http.StatusOK); got.Balance != 505 {
		t.Fatalf("admin deposit: %+v", got)
	}
	if got := h.do("POST", base+"/close", admin, `{"reason":"compliance"}`).account(t, http.StatusOK); !got.Closed || got.Owner != "alice" {
		t.Fatalf("admin close: %+v", got)
	}
}
