package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
)

// A keyed command id is what dedupes a retry whose first attempt got no
// final answer, possibly on a gateway of another build: it must not
// change between builds. The golden value is what the builds up to
// 4 December 2026 derived for this caller, route and key (one build
// derived another form; see git log).
func TestKeyedCommandIDIsStableAcrossBuilds(t *testing.T) {
	e := echo.New()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/accounts/acc_1/deposits", nil)
	req.Header.Set(headerIdempotencyKey, "retry-me")
	id, err := commandID(e.NewContext(req, httptest.NewRecorder()), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if want := "idem-" + goldenKeyedSum; id != want {
		t.Fatalf("keyed command id %q, want %q", id, want)
	}

	// Without a key: random, and never of the keyed form.
	req.Header.Del(headerIdempotencyKey)
	a, _ := commandID(e.NewContext(req, httptest.NewRecorder()), "alice")
	b, _ := commandID(e.NewContext(req, httptest.NewRecorder()), "alice")
	if a == b || len(a) != 22 || len(a) == len(id) {
		t.Fatalf("unkeyed ids %q, %q: want two different 22-character ids", a, b)
	}
}

// goldenKeyedSum is the first 16 bytes, in hex, of
// sha256("alice\x00POST\x00/api/v1/accounts/acc_1/deposits\x00retry-me").
const goldenKeyedSum = "6662a76fd31e6f9a9a3cabb96854a85a"
