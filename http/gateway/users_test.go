package gateway_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"granary/http/auth"
	"granary/messages"
)

type userBody struct {
	ID          string   `json:"id"`
	Username    string   `json:"username"`
	DisplayName string   `json:"display_name"`
	Roles       []string `json:"roles"`
}

type loginReply struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

type servicesBody struct {
	Services []struct {
		Name      string `json:"name"`
		Strategy  string `json:"strategy"`
		Breaker   string `json:"breaker"`
		Instances []struct {
			ID       string `json:"id"`
			MemberID string `json:"member_id"`
			InFlight int64  `json:"in_flight"`
			Served   uint64 `json:"served"`
		} `json:"instances"`
	} `json:"services"`
}

func (h *harness) authServed(t *testing.T) uint64 {
	t.Helper()
	var s servicesBody
	h.do("GET", "/api/v1/services", token(t, "root", "admin"), "").decodeStatus(t, http.StatusOK, &s)
	var n uint64
	for _, svc := range s.Services {
		if svc.Name == "auth" {
			for _, in := range svc.Instances {
				n += in.Served
			}
		}
	}
	return n
}

func TestRegisterLoginAndMe(t *testing.T) {
	h := newHarness(t)
	var u userBody
	h.do("POST", "/auth/register", "", `{"username":"frida","password":"correct horse","display_name":"Frida K"}`).decodeStatus(t, http.StatusCreated, &u)
	if !messages.UserIDPattern.MatchString(u.ID) || u.Username != "frida" || u.DisplayName != "Frida K" || len(u.Roles) != 0 {
		t.Fatalf("registered %+v", u)
	}
	h.do("POST", "/auth/register", "", `{"username":"frida","password":"another one","display_name":"X"}`).problem(t, http.StatusConflict, "already_exists")

	var l loginReply
	h.do("POST", "/auth/login", "", `{"username":"frida","password":"correct horse"}`).decodeStatus(t, http.StatusOK, &l)
	if l.TokenType != "Bearer" || l.ExpiresIn != 3600 || strings.Count(l.AccessToken, ".") != 2 {
		t.Fatalf("login %+v", l)
	}
	var me userBody
	h.do("GET", "/api/v1/me", l.AccessToken, "").decodeStatus(t, http.StatusOK, &me)
	if me.ID != u.ID || me.Username != "frida" || me.DisplayName != "Frida K" || len(me.Roles) != 0 {
		t.Fatalf("me %+v, registered %+v", me, u)
	}
	if sub := subject(t, l.AccessToken); sub != u.ID {
		t.Fatalf("token sub %q, want the user's id %q", sub, u.ID)
	}
	// The issued token works like any other: frida opens and owns an account.
	acc := h.open(l.AccessToken, "FRIDA-1", 10)
	if acc.Owner != u.ID {
		t.Fatalf("account owner %q, want %q", acc.Owner, u.ID)
	}
}

// A failed login says the same thing, and does the same work (one password
// verification on an auth instance), whichever half was wrong.
func TestLoginFailureIsUniform(t *testing.T) {
	h := newHarness(t)
	h.do("POST", "/auth/register", "", `{"username":"gus","password":"right password"}`).decodeStatus(t, http.StatusCreated, &userBody{})
	var bodies []problemBody
	for _, body := range []string{
		`{"username":"gus","password":"wrong password"}`,
		`{"username":"nobody","password":"right password"}`,
		`{"username":"NOT VALID","password":"right password"}`,
	} {
		before := h.authServed(t)
		p := h.do("POST", "/auth/login", "", body).problem(t, http.StatusUnauthorized, "unauthorized")
		if got := h.authServed(t) - before; got != 1 {
			t.Fatalf("%s: %d password verifications, want exactly 1", body, got)
		}
		bodies = append(bodies, p)
	}
	for _, p := range bodies[1:] {
		if p.Detail != bodies[0].Detail || p.Title != bodies[0].Title {
			t.Fatalf("failures differ: %+v vs %+v", p, bodies[0])
		}
	}
}

func TestRegisterValidation(t *testing.T) {
	h := newHarness(t)
	for body, field := range map[string]string{
		`{"password":"long enough"}`:                                                   "username",
		`{"username":"ab","password":"long enough"}`:                                   "username",
		`{"username":"Upper","password":"long enough"}`:                                "username",
		`{"username":"ok_name"}`:                                                       "password",
		`{"username":"ok_name","password":"short"}`:                                    "password",
		fmt.Sprintf(`{"username":"ok_name","password":%q}`, strings.Repeat("p", 1025)): "password",
		fmt.Sprintf(`{"username":"ok_name","password":"long enough","display_name":%q}`, strings.Repeat("d", 201)): "display_name",
	} {
		p := h.do("POST", "/auth/register", "", body).problem(t, http.StatusBadRequest, "validation_failed")
		if !strings.HasPrefix(p.Detail, field) {
			t.Errorf("%s: detail %q does not name %s", body, p.Detail, field)
		}
	}
	h.do("POST", "/auth/register", "", `{"username":5}`).problem(t, http.StatusBadRequest, "invalid_json")
	h.do("POST", "/auth/login", "", `{"username":"x"}`).problem(t, http.StatusBadRequest, "validation_failed")
}

func TestMeFromAnOutsideToken(t *testing.T) {
	h := newHarness(t)
	var me userBody
	h.do("GET", "/api/v1/me", token(t, "ext|42", "auditor"), "").decodeStatus(t, http.StatusOK, &me)
	if me.ID != "ext|42" || len(me.Roles) != 1 || me.Roles[0] != "auditor" {
		t.Fatalf("me %+v", me)
	}
	h.do("GET", "/api/v1/me", "", "").problem(t, http.StatusUnauthorized, "unauthorized")
}

func TestServicesIsForAdmins(t *testing.T) {
	h := newHarness(t)
	h.do("GET", "/api/v1/services", token(t, "eve"), "").problem(t, http.StatusForbidden, "forbidden")
	var s servicesBody
	h.do("GET", "/api/v1/services", token(t, "root", "admin"), "").decodeStatus(t, http.StatusOK, &s)
	if len(s.Services) == 0 || s.Services[0].Name != "auth" || s.Services[0].Strategy != "least_connections" ||
		s.Services[0].Breaker != "closed" || len(s.Services[0].Instances) != 2 || s.Services[0].Instances[0].MemberID != h.cluster.Member(0).ID() {
		t.Fatalf("services %+v", s)
	}
}

// subject is the sub of a token the gateway issued.
func subject(t testing.TB, tok string) string {
	t.Helper()
	v, err := auth.NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	return p.Subject
}

// login logs username in and returns the token.
func (h *harness) login(t *testing.T, username, password string) string {
	t.Helper()
	var l loginReply
	h.do("POST", "/auth/login", "", fmt.Sprintf(`{"username":%q,"password":%q}`, username, password)).decodeStatus(t, http.StatusOK, &l)
	return l.AccessToken
}
