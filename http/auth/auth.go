// Package auth owns bearer tokens: verifying the HS256 JWTs the gateway
// accepts and issuing them (dev tokens now, logins later). Parsing and
// signature checks are golang-jwt's; this package only fixes the policy.
package auth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MinSecretLen is the shortest HS256 secret accepted (bytes).
const MinSecretLen = 32

// RoleAdmin may do everything.
const RoleAdmin = "admin"

// Principal is an authenticated caller.
type Principal struct {
	Subject string
	Roles   []string
	// Username is the token's preferred_username claim ("" when absent):
	// a hint for finding a Granary user, never an identity (see Subject).
	Username string
}

// Admin reports whether the principal has the admin role.
func (p Principal) Admin() bool { return slices.Contains(p.Roles, RoleAdmin) }

// Claims are the JWT claims Granary reads: the registered ones plus roles.
type Claims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles,omitempty"`
	// Username is set on tokens from /auth/login (OIDC's claim name), so
	// /me can find the user without an index from id to username.
	Username string `json:"preferred_username,omitempty"`
}

// Verifier checks tokens against one secret.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
}

// ErrInvalidToken wraps every reason a token is refused.
var ErrInvalidToken = errors.New("invalid token")

// NewVerifier refuses a secret shorter than MinSecretLen.
func NewVerifier(secret []byte) (*Verifier, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("JWT secret is %d bytes, need at least %d", len(secret), MinSecretLen)
	}
	return &Verifier{
		secret: secret,
		// HS256 only: a token naming any other alg (none, HS384, RS256…)
		// is refused before its signature is looked at.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(5*time.Second),
		),
	}, nil
}

// Verify returns the principal of a valid token, or an error wrapping
// ErrInvalidToken that says why (safe to show the client).
func (v *Verifier) Verify(token string) (Principal, error) {
	var claims Claims
	_, err := v.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return v.secret, nil })
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if claims.Subject == "" {
		return Principal{}, fmt.Errorf("%w: missing sub claim", ErrInvalidToken)
	}
	return Principal{Subject: claims.Subject, Roles: claims.Roles, Username: claims.Username}, nil
}

// Issue signs a token for subject with roles, valid for ttl from now.
func Issue(secret []byte, subject string, roles []string, now time.Time, ttl time.Duration) (string, error) {
	return issue(secret, Principal{Subject: subject, Roles: roles}, now, ttl)
}

func issue(secret []byte, p Principal, now time.Time, ttl time.Duration) (string, error) {
	subject, roles := p.Subject, p.Roles
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			Issuer:    "granary",
		},
		Roles:    roles,
		Username: p.Username,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token for %s: %w", subject, err)
	}
	return s, nil
}

// Issue signs a token for subject with this verifier's secret.
func (v *Verifier) Issue(subject string, roles []string, now time.Time, ttl time.Duration) (string, error) {
	return Issue(v.secret, subject, roles, now, ttl)
}

// IssueFor signs a token for p (its Username too) with this verifier's
// secret.
func (v *Verifier) IssueFor(p Principal, now time.Time, ttl time.Duration) (string, error) {
	return issue(v.secret, p, now, ttl)
}
