package gateway_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"granary/http/gateway"
)

// BenchmarkDeposit is one deposit through the whole in-process path
// (middleware, handler, grain, journal on the test Redis), served by the
// gateway's handler without a network, so allocs/op is the node's own
// per-request allocation and does not move with the machine's load as
// make bench's ops/s do. The access log is formatted as in production
// (JSON) but written nowhere.
func BenchmarkDeposit(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		name := "unkeyed"
		if keyed {
			name = "keyed"
		}
		b.Run(name, func(b *testing.B) {
			h := newHarness(b, withDeps(func(d *gateway.Deps, _ string) {
				d.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
			}))
			tok := token(b, "bench-user")
			acct := h.open(tok, "ACC-BENCH", 0)
			path := "/api/v1/accounts/" + acct.ID + "/deposits"
			handler := h.gw.Handler()
			deposit := func(i int) {
				// Not httptest.NewRequest: it allocates a 4 KiB reader per
				// request, which the server's own figures would carry.
				req, err := http.NewRequest(http.MethodPost, path, strings.NewReader(`{"amount":1}`))
				if err != nil {
					b.Fatal(err)
				}
				req.RemoteAddr = "127.0.0.1:40000"
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok)
				if keyed {
					req.Header.Set("Idempotency-Key", "bench-"+strconv.Itoa(i))
				}
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("deposit %d: %d %s", i, rec.Code, rec.Body)
				}
			}
			deposit(-1) // activates the grain and warms the token cache
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				deposit(i)
			}
			b.StopTimer()
			if got := h.do("GET", "/api/v1/accounts/"+acct.ID, tok, "").account(b, http.StatusOK); got.Balance != int64(b.N)+1 {
				b.Fatalf("balance %d after %d deposits, want %d", got.Balance, b.N+1, b.N+1)
			}
		})
	}
}
