package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"granary/http/auth"
	"granary/http/gateway"
	"granary/messages"
	"granary/testkit"
	"granary/testkit/fixtures"
)

// TestUsernameIsNotASubject: registering the username that another
// subject goes by (the dev token's, `granary token`'s, an outside
// provider's) gains nothing that subject owns.
func TestUsernameIsNotASubject(t *testing.T) {
	h := newHarness(t)
	for _, victim := range []string{"dev-admin", "alice", "ext-42"} {
		t.Run(victim, func(t *testing.T) {
			h := h.as(t)
			owner := token(t, victim)
			acc := h.open(owner, "VICTIM-"+victim, 500)

			var u userBody
			h.do("POST", "/auth/register", "", fmt.Sprintf(`{"username":%q,"password":"mallory's password"}`, victim)).decodeStatus(t, http.StatusCreated, &u)
			mallory := h.login(t, victim, "mallory's password")
			if sub := subject(t, mallory); sub == victim || sub != u.ID || !messages.UserIDPattern.MatchString(sub) {
				t.Fatalf("login token sub %q (user id %q): must be the user's own id, never the username", sub, u.ID)
			}
			h.do("GET", "/api/v1/accounts/"+acc.ID, mallory, "").problem(t, http.StatusForbidden, "forbidden")
			h.do("POST", "/api/v1/accounts/"+acc.ID+"/withdrawals", mallory, `{"amount":500}`).problem(t, http.StatusForbidden, "forbidden")
			if got := h.do("GET", "/api/v1/accounts/"+acc.ID, owner, "").account(t, http.StatusOK); got.Balance != 500 {
				t.Fatalf("victim's balance %d after the attempt, want 500", got.Balance)
			}
			// The victim's own token is still answered from its claims,
			// not with mallory's profile.
			var me userBody
			h.do("GET", "/api/v1/me", owner, "").decodeStatus(t, http.StatusOK, &me)
			if me.ID != victim || me.DisplayName != "" {
				t.Fatalf("victim's /me %+v: want the token's own claims", me)
			}
		})
	}
}

// A token naming a registered username in preferred_username, but another
// sub, is not that user: /me must not show the user's profile or roles.
func TestMeDoesNotTrustTheUsernameClaim(t *testing.T) {
	h := newHarness(t)
	h.do("POST", "/auth/register", "", `{"username":"gwen","password":"gwen's password","display_name":"Gwen"}`).decodeStatus(t, http.StatusCreated, &userBody{})
	v, err := auth.NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := v.IssueFor(auth.Principal{Subject: fixtures.NewUserID(), Username: "gwen"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var me userBody
	h.do("GET", "/api/v1/me", forged, "").decodeStatus(t, http.StatusOK, &me)
	if me.DisplayName == "Gwen" {
		t.Fatalf("/me %+v: the claim alone found gwen", me)
	}
}

// TestAdminNameIsReserved: a stranger cannot register "admin", before the
// operator's GRANARY_ADMIN_PASSWORD bootstrap or after it, and the
// bootstrap still creates the operator's admin.
func TestAdminNameIsReserved(t *testing.T) {
	h := newHarness(t)
	hostile := `{"username":"admin","password":"i am the admin now"}`
	h.do("POST", "/auth/register", "", hostile).problem(t, http.StatusConflict, "already_exists")
	h.do("POST", "/auth/login", "", `{"username":"admin","password":"i am the admin now"}`).problem(t, http.StatusUnauthorized, "unauthorized")

	// What cmd/granary's seedAdmin does at start.
	m := h.cluster.Member(0)
	v, err := auth.NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	deps := gateway.Deps{Member: m, Store: h.cluster.Store, Verifier: v, Logger: h.cluster.Log, Services: m.Services(), Redis: h.redis}
	admin, err := gateway.RegisterUser(context.Background(), deps, 30*time.Second, messages.AdminUsername, "operator's password", "Administrator", []string{auth.RoleAdmin}, nil)
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}

	h.do("POST", "/auth/register", "", hostile).problem(t, http.StatusConflict, "already_exists")
	h.do("POST", "/auth/login", "", `{"username":"admin","password":"i am the admin now"}`).problem(t, http.StatusUnauthorized, "unauthorized")
	tok := h.login(t, messages.AdminUsername, "operator's password")
	if sub := subject(t, tok); sub != admin.GetUserId() || sub == messages.AdminUsername {
		t.Fatalf("admin token sub %q, want its id %q", sub, admin.GetUserId())
	}
	var me userBody
	h.do("GET", "/api/v1/me", tok, "").decodeStatus(t, http.StatusOK, &me)
	if me.ID != admin.GetUserId() || me.Username != "admin" || len(me.Roles) != 1 || me.Roles[0] != auth.RoleAdmin {
		t.Fatalf("admin's /me %+v", me)
	}
	h.do("GET", "/api/v1/services", tok, "").decodeStatus(t, http.StatusOK, &servicesBody{})
}

// TestLegacyUserGetsAnID: a user stored before users had ids (its
// registration event carries none) logs in, and is given one id, kept.
func TestLegacyUserGetsAnID(t *testing.T) {
	h := newHarness(t)
	if err := fixtures.LegacyUser(context.Background(), h.cluster.Store, "oldtimer", "old password", "Old Timer"); err != nil {
		t.Fatal(err)
	}
	first := subject(t, h.login(t, "oldtimer", "old password"))
	if !messages.UserIDPattern.MatchString(first) {
		t.Fatalf("legacy user's sub %q, want a user id", first)
	}
	if again := subject(t, h.login(t, "oldtimer", "old password")); again != first {
		t.Fatalf("second login sub %q, first %q: the id is issued once", again, first)
	}
	var me userBody
	h.do("GET", "/api/v1/me", h.login(t, "oldtimer", "old password"), "").decodeStatus(t, http.StatusOK, &me)
	if me.ID != first || me.DisplayName != "Old Timer" {
		t.Fatalf("/me %+v", me)
	}
}

// loginThrottled is a gateway configuration whose lockouts are short
// enough to wait out in a test; everything else is the contract's.
func loginThrottled(lockout time.Duration) harnessOption {
	return withGatewayConfig(func(c *gateway.Config) {
		c.Login.Lockout = lockout
		// Every client address believed: shows the throttle ignores them.
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	})
}

func loginBody(username, password string) string {
	return fmt.Sprintf(`{"username":%q,"password":%q}`, username, password)
}

// TestLoginThrottleAcrossGateways: five failures for a username, spread
// over two gateways and many addresses, lock it on both; the right
// password is refused too while locked; unknown usernames alike.
func TestLoginThrottleAcrossGateways(t *testing.T) {
	h := newHarness(t, loginThrottled(time.Minute))
	cfg := gateway.DefaultConfig()
	cfg.Login.Lockout = time.Minute
	other := h.sibling(cfg)
	h.do("POST", "/auth/register", "", loginBody("hana", "hana's password")).decodeStatus(t, http.StatusCreated, &userBody{})
	gws := []*harness{h, other}
	for _, name := range []string{"hana", "nobody-here"} {
		for i := range 5 {
			gws[i%2].do("POST", "/auth/login", "", loginBody(name, "guess "+strconv.Itoa(i)),
				"X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1)).problem(t, http.StatusUnauthorized, "unauthorized")
		}
		for i, g := range gws {
			p := g.do("POST", "/auth/login", "", loginBody(name, "guess 6"), "X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i+1))
			p.problem(t, http.StatusTooManyRequests, "rate_limited")
			if ra, err := strconv.Atoi(p.header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
				t.Fatalf("%s on gateway %d: Retry-After %q, want 1..60 s", name, i, p.header.Get("Retry-After"))
			}
		}
	}
	// Locked means locked: the right password does not skip the wait.
	for _, g := range gws {
		g.do("POST", "/auth/login", "", loginBody("hana", "hana's password")).problem(t, http.StatusTooManyRequests, "rate_limited")
	}
	// Nobody else is locked by hana's guesses.
	h.do("POST", "/auth/register", "", loginBody("ivan", "ivan's password")).decodeStatus(t, http.StatusCreated, &userBody{})
	h.login(t, "ivan", "ivan's password")
}

// TestLoginRetryAfterGrows: each failure after the lockout locks for
// longer; the right password once the wait is over logs in and clears the
// count.
func TestLoginRetryAfterGrows(t *testing.T) {
	// The lockout starts when an attempt is counted, before its password
	// is verified (argon2, slow under -race on a busy machine): 2 s leaves
	// that much room before a doubled lockout could read as no longer.
	const lockout = 2 * time.Second
	h := newHarness(t, loginThrottled(lockout))
	h.do("POST", "/auth/register", "", loginBody("jana", "jana's password")).decodeStatus(t, http.StatusCreated, &userBody{})
	fail := func() {
		for range 5 {
			h.do("POST", "/auth/login", "", loginBody("jana", "wrong")).problem(t, http.StatusUnauthorized, "unauthorized")
		}
	}
	fail()
	retryAfter := func() int {
		r := h.do("POST", "/auth/login", "", loginBody("jana", "wrong"))
		r.problem(t, http.StatusTooManyRequests, "rate_limited")
		n, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
		return n
	}
	// waitOut polls until the lockout is over, with the password given:
	// the first attempt let through ends the wait.
	waitOut := func(password string) *response {
		var last *response
		testkit.WaitFor(t, 30*time.Second, func() error {
			last = h.do("POST", "/auth/login", "", loginBody("jana", password))
			if last.status == http.StatusTooManyRequests {
				return fmt.Errorf("still locked: %s", last)
			}
			return nil
		})
		return last
	}
	first := retryAfter()
	if first < 1 || first > 2 {
		t.Fatalf("first lockout Retry-After %d, want 1..2", first)
	}
	waitOut("wrong").problem(t, http.StatusUnauthorized, "unauthorized")
	if second := retryAfter(); second <= first {
		t.Fatalf("Retry-After %d after a further failure, was %d: must grow", second, first)
	}
	if r := waitOut("jana's password"); r.status != http.StatusOK {
		t.Fatalf("right password after the lockout: %s", r)
	}
	// The success cleared the count: five more failures before a lock.
	fail()
	if got := retryAfter(); got < 1 || got > 2 {
		t.Fatalf("after a success the lockout restarts at 2 s, got Retry-After %d", got)
	}
}

// Without Redis the throttle cannot count, and logins are refused rather
// than left unthrottled.
func TestLoginWithoutRedisFailsClosed(t *testing.T) {
	h := newHarness(t, withDeps(func(d *gateway.Deps, _ string) { d.Redis = nil }))
	h.do("POST", "/auth/register", "", loginBody("kim", "kim's password")).decodeStatus(t, http.StatusCreated, &userBody{})
	r := h.do("POST", "/auth/login", "", loginBody("kim", "kim's password"))
	r.problem(t, http.StatusServiceUnavailable, "service_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}
