// Package auth owns bearer tokens: verifying the HS256 JWTs the gateway
// accepts and issuing them (dev tokens now, logins later). Parsing and
// signature checks are golang-jwt's; this package only fixes the policy.
package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
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

// Verifier checks tokens against one secret. It is safe for concurrent
// use. Tokens it accepted are remembered (see VerifierConfig.CacheSize),
// so a client sending the same token on every request pays for parsing and
// the HMAC once.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
	now    func() time.Time
	cache  *tokenCache // nil: off
}

// leeway is the clock drift allowed on exp and nbf. The cache serves a
// token only until its exp itself, never into the leeway.
const leeway = 5 * time.Second

// ErrInvalidToken wraps every reason a token is refused.
var ErrInvalidToken = errors.New("invalid token")

// VerifierConfig tunes a Verifier beyond its secret.
type VerifierConfig struct {
	// CacheSize bounds how many verified tokens are remembered; 0 turns
	// the cache off (every call parses and checks the signature).
	CacheSize int
	// Now is the clock for exp and nbf; nil means time.Now. Tests move it.
	Now func() time.Time
}

// DefaultVerifierConfig is what NewVerifier uses.
func DefaultVerifierConfig() VerifierConfig {
	return VerifierConfig{CacheSize: DefaultCacheSize}
}

// Validate names the first bad field.
func (c VerifierConfig) Validate() error {
	if c.CacheSize < 0 {
		return fmt.Errorf("verifier CacheSize is %d, want 0 (off) or more", c.CacheSize)
	}
	return nil
}

// NewVerifier refuses a secret shorter than MinSecretLen. Its cache holds
// DefaultCacheSize tokens.
func NewVerifier(secret []byte) (*Verifier, error) {
	return NewVerifierWithConfig(secret, DefaultVerifierConfig())
}

// NewVerifierWithConfig is NewVerifier with a cache size and clock.
func NewVerifierWithConfig(secret []byte, cfg VerifierConfig) (*Verifier, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("JWT secret is %d bytes, need at least %d", len(secret), MinSecretLen)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{
		secret: secret,
		now:    now,
		// HS256 only: a token naming any other alg (none, HS384, RS256…)
		// is refused before its signature is looked at.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(leeway),
			jwt.WithTimeFunc(now),
		),
	}
	if cfg.CacheSize > 0 {
		v.cache = newTokenCache(cfg.CacheSize)
	}
	return v, nil
}

// Keyed is an HMAC-SHA256 of data under the secret tokens are signed
// with: a name derived from what a client sent that nobody without the
// secret can compute ahead of it (the gateway names a keyed request's saga
// so). It changes when the secret does.
func (v *Verifier) Keyed(data []byte) [sha256.Size]byte {
	m := hmac.New(sha256.New, v.secret)
	m.Write(data)
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// Verify returns the principal of a valid token, or an error wrapping
// ErrInvalidToken that says why (safe to show the client). A token seen
// valid before is answered from the cache until its exp; a refused token
// is never cached, so it is checked in full every time.
func (v *Verifier) Verify(token string) (Principal, error) {
	if v.cache == nil {
		p, _, err := v.verify(token)
		return p, err
	}
	// []byte(token) would allocate for anything over 32 bytes; a token of
	// usual size is copied onto the stack instead.
	var buf [1024]byte
	key := sha256.Sum256(append(buf[:0], token...))
	now := unixMicro(v.now())
	if p, ok := v.cache.get(&key, now); ok {
		return p, nil
	}
	p, claims, err := v.verify(token)
	if err != nil {
		return Principal{}, err
	}
	tok := cachedToken{p: p, notBefore: math.MinInt64, expires: unixMicro(claims.ExpiresAt.Time)}
	if claims.NotBefore != nil {
		tok.notBefore = unixMicro(claims.NotBefore.Add(-leeway))
	}
	// A token accepted only thanks to the leeway (exp just passed) is not
	// worth remembering: no later call may be served from the cache.
	if tok.validAt(now) {
		v.cache.put(&key, tok, now)
	}
	return p, nil
}

// verify parses and checks token in full. On success the claims have an
// exp (the parser requires it).
func (v *Verifier) verify(token string) (Principal, *Claims, error) {
	var claims Claims
	_, err := v.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return v.secret, nil })
	if err != nil {
		return Principal{}, nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if claims.Subject == "" {
		return Principal{}, nil, fmt.Errorf("%w: missing sub claim", ErrInvalidToken)
	}
	if claims.ExpiresAt == nil { // unreachable with WithExpirationRequired; never cache without one
		return Principal{}, nil, fmt.Errorf("%w: missing exp claim", ErrInvalidToken)
	}
	return Principal{Subject: claims.Subject, Roles: claims.Roles, Username: claims.Username}, &claims, nil
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
