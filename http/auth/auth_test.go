package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"granary/http/auth"
)

var secret = []byte("auth-unit-tests-secret-0123456789abcdef")

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewVerifierRefusesShortSecrets(t *testing.T) {
	for _, s := range [][]byte{nil, {}, []byte("short"), []byte(strings.Repeat("x", auth.MinSecretLen-1))} {
		if _, err := auth.NewVerifier(s); err == nil {
			t.Errorf("NewVerifier accepted a %d-byte secret", len(s))
		}
	}
	if _, err := auth.NewVerifier([]byte(strings.Repeat("x", auth.MinSecretLen))); err != nil {
		t.Errorf("NewVerifier refused a %d-byte secret: %v", auth.MinSecretLen, err)
	}
}

func TestVerifyAcceptsValidTokens(t *testing.T) {
	v, err := auth.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	issued, err := auth.Issue(secret, "alice", []string{"admin", "ops"}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(issued)
	if err != nil || p.Subject != "alice" || !slices.Equal(p.Roles, []string{"admin", "ops"}) || !p.Admin() {
		t.Fatalf("Verify(issued) = %+v, %v", p, err)
	}

	// What an external identity provider may send: only the required
	// claims, or all the optional ones too.
	for name, claims := range map[string]jwt.MapClaims{
		"minimal": {"sub": "bob", "exp": now.Add(time.Minute).Unix()},
		"full": {"sub": "bob", "exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
			"iss": "https://idp.example", "roles": []string{"viewer"}},
		// Clocks drift: a token that just expired is still honoured.
		"expired within leeway": {"sub": "bob", "exp": now.Add(-2 * time.Second).Unix()},
	} {
		p, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, claims))
		if err != nil || p.Subject != "bob" || p.Admin() {
			t.Errorf("%s: Verify = %+v, %v", name, p, err)
		}
	}
}

func TestVerifyRefusesAttacks(t *testing.T) {
	v, err := auth.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	valid := func() jwt.MapClaims { return jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()} }
	with := func(k string, val any) jwt.MapClaims {
		c := valid()
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Key confusion: RS256 in the header, HMAC-SHA256 with the shared
	// secret as the signature.
	confused := jwt.NewWithClaims(jwt.SigningMethodHS256, valid())
	confused.Header["alg"] = "RS256"
	keyConfusion, err := confused.SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	good := sign(t, jwt.SigningMethodHS256, secret, valid())
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"root","roles":["admin"],"exp":9999999999}`)) + "." + parts[2]

	// NewVerifier caches what it accepted: with good cached, a token that
	// shares its header and signature (tampered payload) or is a prefix of
	// it must still be refused, on first sight and after.
	if _, err := v.Verify(good); err != nil {
		t.Fatal(err)
	}
	attacks := map[string]string{
		"empty":                   "",
		"garbage":                 "not-a-token",
		"two parts":               parts[0] + "." + parts[1],
		"tampered payload":        tampered,
		"expired":                 sign(t, jwt.SigningMethodHS256, secret, with("exp", now.Add(-time.Minute).Unix())),
		"no exp":                  sign(t, jwt.SigningMethodHS256, secret, with("exp", nil)),
		"exp not a number":        sign(t, jwt.SigningMethodHS256, secret, with("exp", "tomorrow")),
		"wrong secret":            sign(t, jwt.SigningMethodHS256, []byte("some-other-secret-with-32-bytes-or-more"), valid()),
		"alg none":                sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid()),
		"HS384":                   sign(t, jwt.SigningMethodHS384, secret, valid()),
		"HS512":                   sign(t, jwt.SigningMethodHS512, secret, valid()),
		"RS256 header, HMAC body": keyConfusion,
		"RS256":                   sign(t, jwt.SigningMethodRS256, rsaKey, valid()),
		"ES256":                   sign(t, jwt.SigningMethodES256, ecKey, valid()),
		"nbf in the future":       sign(t, jwt.SigningMethodHS256, secret, with("nbf", now.Add(time.Hour).Unix())),
		"missing sub":             sign(t, jwt.SigningMethodHS256, secret, with("sub", nil)),
		"empty sub":               sign(t, jwt.SigningMethodHS256, secret, with("sub", "")),
		"roles not a list":        sign(t, jwt.SigningMethodHS256, secret, with("roles", "admin")),
		"good without signature":  parts[0] + "." + parts[1] + ".",
		"good with a longer tail": good + "A",
	}
	for round := range 2 {
		for name, tok := range attacks {
			name := fmt.Sprintf("%s (round %d)", name, round+1)
			p, err := v.Verify(tok)
			if err == nil {
				t.Errorf("%s: accepted as %+v", name, p)
				continue
			}
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("%s: error %v does not match ErrInvalidToken", name, err)
			}
			if p.Subject != "" || p.Roles != nil {
				t.Errorf("%s: refused but returned principal %+v", name, p)
			}
		}
	}
	if p, err := v.Verify(good); err != nil || p.Subject != "alice" {
		t.Fatalf("the good token after the attacks: %+v, %v", p, err)
	}
}

// A login token carries the user's id as sub and the username beside it.
func TestIssueForCarriesUsername(t *testing.T) {
	v, err := auth.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := v.IssueFor(auth.Principal{Subject: "usr_x", Username: "alice", Roles: []string{"ops"}}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(tok)
	if err != nil || p.Subject != "usr_x" || p.Username != "alice" || !slices.Equal(p.Roles, []string{"ops"}) {
		t.Fatalf("Verify = %+v, %v", p, err)
	}
	// Tokens without the claim (granary token, outside providers) have none.
	tok, err = auth.Issue(secret, "bob", nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(tok); err != nil || p.Username != "" {
		t.Fatalf("Verify = %+v, %v", p, err)
	}
}

// Keyed names are stable under one secret and differ under another, and
// with the data.
func TestKeyedDependsOnSecretAndData(t *testing.T) {
	mk := func(secret string) *auth.Verifier {
		v, err := auth.NewVerifier([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a, a2, b := mk(strings.Repeat("a", 32)), mk(strings.Repeat("a", 32)), mk(strings.Repeat("b", 32))
	if a.Keyed([]byte("x")) != a2.Keyed([]byte("x")) {
		t.Fatal("one secret, one datum: two names")
	}
	if a.Keyed([]byte("x")) == b.Keyed([]byte("x")) || a.Keyed([]byte("x")) == a.Keyed([]byte("y")) {
		t.Fatal("another secret or datum gave the same name")
	}
}
