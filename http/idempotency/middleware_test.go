package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"granary/http/idempotency"
	"granary/http/problem"
	"granary/messages"
	"granary/testkit"
)

// app is an Echo server with the middleware on POST /things/:id, whose
// handler answers what the test tells it to and counts its runs.
type app struct {
	e       *echo.Echo
	reg     *prometheus.Registry
	runs    atomic.Int32
	handler func(c echo.Context) error
}

func newApp(t *testing.T, store idempotency.Store, tweak ...func(*idempotency.Config)) *app {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := idempotency.DefaultConfig()
	cfg.Store, cfg.BodyLimit = store, 1<<10
	for _, f := range tweak {
		f(&cfg)
	}
	a := &app{e: echo.New(), reg: prometheus.NewRegistry()}
	m, err := idempotency.New(cfg, log, a.reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	a.e.HTTPErrorHandler = problem.Handler(log)
	a.e.Logger.SetOutput(io.Discard) // the recoverer's stack traces
	a.e.Use(middleware.Recover())
	caller := func(c echo.Context) string { return c.Request().Header.Get("X-Caller") }
	a.handler = func(c echo.Context) error {
		body, _ := io.ReadAll(c.Request().Body)
		c.Response().Header().Set("ETag", `"7"`)
		c.Response().Header().Set("X-Request-ID", "per-exchange")
		return c.JSON(http.StatusCreated, map[string]any{"run": a.runs.Load(), "echo": string(body)})
	}
	a.e.POST("/things/:id", func(c echo.Context) error {
		a.runs.Add(1)
		return a.handler(c)
	}, m.Func(caller))
	return a
}

func (a *app) post(path, body string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	a.e.ServeHTTP(rec, req)
	return rec
}

func outcome(a *app, name string) float64 {
	mfs, _ := a.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "granary_idempotency_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == name {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func wantProblem(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status || !strings.Contains(rec.Body.String(), `"code":"`+code+`"`) {
		t.Fatalf("got %d %s, want %d %s", rec.Code, rec.Body, status, code)
	}
}

func TestReplay(t *testing.T) {
	a := newApp(t, idempotency.NewMemoryStore(0, nil))
	first := a.post("/things/1", `{"n":1}`, "Idempotency-Key", "k1", "X-Caller", "alice")
	again := a.post("/things/1", `{"n":1}`, "Idempotency-Key", "k1", "X-Caller", "alice")
	if a.runs.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1", a.runs.Load())
	}
	if again.Code != first.Code || again.Body.String() != first.Body.String() ||
		again.Header().Get("ETag") != `"7"` || again.Header().Get("Content-Type") != first.Header().Get("Content-Type") {
		t.Fatalf("replay %d %v %s, want %d %v %s", again.Code, again.Header(), again.Body, first.Code, first.Header(), first.Body)
	}
	if again.Header().Get(idempotency.HeaderReplayed) != "true" || first.Header().Get(idempotency.HeaderReplayed) != "" {
		t.Fatalf("Idempotent-Replayed: first %q, replay %q", first.Header().Get(idempotency.HeaderReplayed), again.Header().Get(idempotency.HeaderReplayed))
	}
	if got := again.Header().Get("X-Request-ID"); got != "" {
		t.Fatalf("replay carries the first exchange's X-Request-ID %q", got)
	}
	// The key is the caller's own: another caller's same key is a new request.
	a.post("/things/1", `{"n":1}`, "Idempotency-Key", "k1", "X-Caller", "bob")
	// No key, no memory.
	a.post("/things/1", `{"n":1}`)
	a.post("/things/1", `{"n":1}`)
	if a.runs.Load() != 4 {
		t.Fatalf("handler ran %d times, want 4", a.runs.Load())
	}
	if outcome(a, "stored") != 2 || outcome(a, "replayed") != 1 {
		t.Fatalf("outcomes stored %v replayed %v", outcome(a, "stored"), outcome(a, "replayed"))
	}
}

func TestKeyReusedForAnotherRequest(t *testing.T) {
	a := newApp(t, idempotency.NewMemoryStore(0, nil))
	a.post("/things/1", `{"n":1}`, "Idempotency-Key", "k")
	wantProblem(t, a.post("/things/1", `{"n":2}`, "Idempotency-Key", "k"), http.StatusConflict, messages.CodeIdempotencyReused)
	wantProblem(t, a.post("/things/2", `{"n":1}`, "Idempotency-Key", "k"), http.StatusConflict, messages.CodeIdempotencyReused)
	if a.runs.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1", a.runs.Load())
	}
}

func TestKeyLength(t *testing.T) {
	a := newApp(t, idempotency.NewMemoryStore(0, nil))
	if rec := a.post("/things/1", `{}`, "Idempotency-Key", strings.Repeat("k", idempotency.MaxKeyLen)); rec.Code != http.StatusCreated {
		t.Fatalf("key of %d: %d %s", idempotency.MaxKeyLen, rec.Code, rec.Body)
	}
	rec := a.post("/things/1", `{}`, "Idempotency-Key", strings.Repeat("k", idempotency.MaxKeyLen+1))
	wantProblem(t, rec, http.StatusBadRequest, messages.CodeValidationFailed)
	if !strings.Contains(rec.Body.String(), "Idempotency-Key") {
		t.Fatalf("detail does not name the header: %s", rec.Body)
	}
}

func TestOnlyFinalAnswersAreKept(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail error
		kept bool
	}{
		{"unavailable", messages.Fail(messages.CodeServiceUnavailable, "down"), false},
		{"timeout", messages.Fail(messages.CodeTimeout, "slow"), false},
		{"bug", errors.New("boom"), false},
		{"rate limited", messages.Fail(messages.CodeRateLimited, "slow down"), false},
		{"accepted, still at work", nil, false},
		{"not found", messages.Fail(messages.CodeNotFound, "no such thing"), true},
		{"conflict", messages.Fail(messages.CodeInsufficientFunds, "poor"), true},
		{"invalid", messages.Fail(messages.CodeValidationFailed, "bad"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newApp(t, idempotency.NewMemoryStore(0, nil))
			fail := tc.fail
			a.handler = func(c echo.Context) error {
				if fail == nil {
					return c.JSON(http.StatusAccepted, map[string]string{"status": "started"})
				}
				return fail
			}
			first := a.post("/things/1", `{}`, "Idempotency-Key", "k")
			again := a.post("/things/1", `{}`, "Idempotency-Key", "k")
			runs := a.runs.Load()
			if tc.kept && (runs != 1 || again.Body.String() != first.Body.String() || again.Code != first.Code) {
				t.Fatalf("%d runs; first %d %s, again %d %s; want one run and the same answer", runs, first.Code, first.Body, again.Code, again.Body)
			}
			if !tc.kept && runs != 2 {
				t.Fatalf("%d runs, want the retry to run again", runs)
			}
		})
	}
}

// A duplicate that arrives while the first request still runs is not run
// and is never told anything the first attempt may contradict: it waits
// for the first answer and replays it.
func TestConcurrentDuplicateWaitsForTheFirstAnswer(t *testing.T) {
	a := newApp(t, idempotency.NewMemoryStore(0, nil), func(c *idempotency.Config) { c.Wait = 10 * time.Second })
	entered, release := make(chan struct{}), make(chan struct{})
	a.handler = func(c echo.Context) error {
		close(entered)
		<-release
		return c.JSON(http.StatusOK, map[string]string{"ok": "yes"})
	}
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- a.post("/things/1", `{}`, "Idempotency-Key", "k") }()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("first request never reached the handler")
	}
	dupDone := make(chan *httptest.ResponseRecorder, 1)
	go func() { dupDone <- a.post("/things/1", `{}`, "Idempotency-Key", "k") }()
	select {
	case dup := <-dupDone:
		t.Fatalf("duplicate answered %d %s before the first attempt had an answer", dup.Code, dup.Body)
	case <-time.After(200 * time.Millisecond): // it must still be waiting; a wrong early answer shows up here
	}
	close(release)
	first, dup := <-done, <-dupDone
	if dup.Code != first.Code || dup.Body.String() != first.Body.String() || dup.Header().Get(idempotency.HeaderReplayed) != "true" {
		t.Fatalf("duplicate %d %s, first %d %s: want the first answer replayed", dup.Code, dup.Body, first.Code, first.Body)
	}
	if a.runs.Load() != 1 || outcome(a, "replayed") != 1 {
		t.Fatalf("%d runs, %v replays", a.runs.Load(), outcome(a, "replayed"))
	}
}

// A first attempt that stays without an answer for longer than Wait
// leaves its duplicate with 409 request_in_progress ("unknown yet"), never
// idempotency_key_reused, which would read as "not applied".
func TestDuplicateOfAStuckAttemptIsInProgress(t *testing.T) {
	a := newApp(t, idempotency.NewMemoryStore(0, nil), func(c *idempotency.Config) { c.Wait = 100 * time.Millisecond })
	entered, release := make(chan struct{}), make(chan struct{})
	a.handler = func(c echo.Context) error {
		close(entered)
		<-release
		return c.JSON(http.StatusOK, map[string]string{"ok": "yes"})
	}
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- a.post("/things/1", `{}`, "Idempotency-Key", "k") }()
	<-entered
	dup := a.post("/things/1", `{}`, "Idempotency-Key", "k")
	wantProblem(t, dup, http.StatusConflict, messages.CodeRequestInProgress)
	if ra := dup.Header().Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After %q", ra)
	}
	close(release)
	first := <-done
	after := a.post("/things/1", `{}`, "Idempotency-Key", "k")
	if after.Code != first.Code || after.Body.String() != first.Body.String() || a.runs.Load() != 1 {
		t.Fatalf("after the first finished: %d %s (%d runs)", after.Code, after.Body, a.runs.Load())
	}
	if outcome(a, "in_progress") != 1 {
		t.Fatalf("in_progress outcomes %v", outcome(a, "in_progress"))
	}
}

// A waiting duplicate whose first attempt gave up without a final answer
// (a 504: its claim is dropped) runs itself instead of waiting on.
func TestDuplicateRunsWhenTheFirstGaveUp(t *testing.T) {
	a := newApp(t, idempotency.NewMemoryStore(0, nil), func(c *idempotency.Config) { c.Wait = 10 * time.Second })
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	a.handler = func(c echo.Context) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
			return messages.Fail(messages.CodeTimeout, "grain did not answer")
		}
		return c.JSON(http.StatusOK, map[string]string{"ok": "second"})
	}
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- a.post("/things/1", `{}`, "Idempotency-Key", "k") }()
	<-entered
	dupDone := make(chan *httptest.ResponseRecorder, 1)
	go func() { dupDone <- a.post("/things/1", `{}`, "Idempotency-Key", "k") }()
	close(release)
	if first := <-done; first.Code != http.StatusGatewayTimeout {
		t.Fatalf("first %d %s", first.Code, first.Body)
	}
	if dup := <-dupDone; dup.Code != http.StatusOK || !strings.Contains(dup.Body.String(), "second") {
		t.Fatalf("duplicate %d %s, want it to run once the first gave up", dup.Code, dup.Body)
	}
}

// A panicking handler's claim is dropped so that the retry runs.
func TestPanicReleasesTheKey(t *testing.T) {
	a := newApp(t, idempotency.NewMemoryStore(0, nil))
	a.handler = func(echo.Context) error { panic("boom") }
	if rec := a.post("/things/1", `{}`, "Idempotency-Key", "k"); rec.Code != http.StatusInternalServerError {
		t.Fatalf("panic answered %d", rec.Code)
	}
	a.handler = func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }
	if rec := a.post("/things/1", `{}`, "Idempotency-Key", "k"); rec.Code != http.StatusNoContent || a.runs.Load() != 2 {
		t.Fatalf("retry after a panic: %d after %d runs", rec.Code, a.runs.Load())
	}
}

// An answer too big to keep is sent whole but not kept.
func TestLargeAnswersAreNotKept(t *testing.T) {
	a := newApp(t, idempotency.NewMemoryStore(0, nil), func(c *idempotency.Config) { c.MaxResponse = 64 })
	big := strings.Repeat("x", 100)
	a.handler = func(c echo.Context) error { return c.String(http.StatusOK, big) }
	for i := range 2 {
		if rec := a.post("/things/1", `{}`, "Idempotency-Key", "k"); rec.Body.String() != big {
			t.Fatalf("answer %d cut: %d bytes", i, rec.Body.Len())
		}
	}
	if a.runs.Load() != 2 {
		t.Fatalf("%d runs, want 2", a.runs.Load())
	}
}

func TestBodyLimit(t *testing.T) {
	a := newApp(t, idempotency.NewMemoryStore(0, nil))
	wantProblem(t, a.post("/things/1", strings.Repeat(" ", 2<<10), "Idempotency-Key", "k"), http.StatusRequestEntityTooLarge, messages.CodePayloadTooLarge)
}

// failingStore cannot be reached.
type failingStore struct{}

func (failingStore) Claim(context.Context, string, string, time.Duration) (string, *idempotency.Record, error) {
	return "", nil, errors.New("connection refused")
}
func (failingStore) Complete(context.Context, string, string, idempotency.Response, time.Duration) error {
	return errors.New("connection refused")
}
func (failingStore) Release(context.Context, string, string) error {
	return errors.New("connection refused")
}

// Without its records the promise cannot be kept: refuse rather than risk
// a second execution with another answer.
func TestStoreDown(t *testing.T) {
	a := newApp(t, failingStore{})
	wantProblem(t, a.post("/things/1", `{}`, "Idempotency-Key", "k"), http.StatusServiceUnavailable, messages.CodeServiceUnavailable)
	if a.runs.Load() != 0 {
		t.Fatal("ran without a claim")
	}
	if rec := a.post("/things/1", `{}`); rec.Code != http.StatusCreated {
		t.Fatalf("request without a key: %d", rec.Code)
	}
}

func TestConfigValidate(t *testing.T) {
	good := idempotency.DefaultConfig()
	good.Store, good.BodyLimit = idempotency.NewMemoryStore(0, nil), 1
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(*idempotency.Config){
		"Store": func(c *idempotency.Config) { c.Store = nil }, "TTL": func(c *idempotency.Config) { c.TTL = 0 },
		"PendingTTL": func(c *idempotency.Config) { c.PendingTTL = time.Microsecond }, "BodyLimit": func(c *idempotency.Config) { c.BodyLimit = 0 },
		"MaxResponse": func(c *idempotency.Config) { c.MaxResponse = 0 }, "StoreTimeout": func(c *idempotency.Config) { c.StoreTimeout = 0 },
	} {
		c := good
		f(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// failingComplete is a store that claims but cannot record answers.
type failingComplete struct{ idempotency.Store }

func (failingComplete) Complete(context.Context, string, string, idempotency.Response, time.Duration) error {
	return errors.New("store went away")
}

// An answer that could not be recorded is sent only if a retry cannot
// contradict it: a success stands (the grain remembers the command), a
// refusal becomes 503, since a retry may decide otherwise.
func TestUnrecordedRefusalIsNotDefinite(t *testing.T) {
	a := newApp(t, failingComplete{idempotency.NewMemoryStore(0, nil)})
	a.handler = func(echo.Context) error { return messages.Fail(messages.CodeInsufficientFunds, "not enough") }
	rec := a.post("/things/1", `{}`, "Idempotency-Key", "k")
	wantProblem(t, rec, http.StatusServiceUnavailable, messages.CodeServiceUnavailable)
	a.handler = func(c echo.Context) error { return c.JSON(http.StatusCreated, map[string]string{"ok": "yes"}) }
	if rec := a.post("/things/2", `{}`, "Idempotency-Key", "k2"); rec.Code != http.StatusCreated || !strings.Contains(rec.Body.String(), "yes") {
		t.Fatalf("unrecorded success: %d %s", rec.Code, rec.Body)
	}
}

// A handler gets the body the middleware read for the fingerprint: as a
// reader (what is left of it after a partial read), or as its bytes
// through HeldBody, once; a request the middleware did not read has none.
func TestHeldBody(t *testing.T) {
	a := newApp(t, idempotency.NewMemoryStore(0, nil))
	var got []string
	a.handler = func(c echo.Context) error {
		req := c.Request()
		head := make([]byte, 3)
		n, _ := io.ReadFull(req.Body, head)
		rest, ok := idempotency.HeldBody(req)
		again, okAgain := idempotency.HeldBody(req)
		tail, _ := io.ReadAll(req.Body)
		got = append(got, fmt.Sprintf("%s|%s|%v|%q|%v|%q", head[:n], rest, ok, again, okAgain, tail))
		return c.NoContent(http.StatusNoContent)
	}
	a.post("/things/1", `{"n":12}`, "Idempotency-Key", "k1", "X-Caller", "alice")
	a.post("/things/1", `{"n":12}`)
	want := []string{`{"n|":12}|true|""|true|""`, `{"n||false|""|false|"\":12}"`}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("handler saw\n%q\nwant\n%q", got, want)
	}
}

// flakyRelease is a memory store whose releases fail while down is set:
// the store went away as an attempt ended without a final answer.
type flakyRelease struct {
	idempotency.Store
	down     atomic.Bool
	releases atomic.Int32
}

func (f *flakyRelease) Release(ctx context.Context, key, token string) error {
	f.releases.Add(1)
	if f.down.Load() {
		return errors.New("connection refused")
	}
	return f.Store.Release(ctx, key, token)
}

// A claim whose release failed is released again once the store is back,
// so a retry runs as soon as it can instead of being told "in progress"
// until the claim lapses (PendingTTL).
func TestFailedReleaseIsRetried(t *testing.T) {
	store := &flakyRelease{Store: idempotency.NewMemoryStore(0, nil)}
	a := newApp(t, store, func(c *idempotency.Config) { c.Wait, c.PendingTTL = 0, time.Hour })
	store.down.Store(true)
	a.handler = func(c echo.Context) error {
		return messages.Fail(messages.CodeServiceUnavailable, "storage unavailable")
	}
	wantProblem(t, a.post("/things/1", `{}`, "Idempotency-Key", "k", "X-Caller", "alice"), http.StatusServiceUnavailable, messages.CodeServiceUnavailable)
	wantProblem(t, a.post("/things/1", `{}`, "Idempotency-Key", "k", "X-Caller", "alice"), http.StatusConflict, messages.CodeRequestInProgress)

	store.down.Store(false)
	a.handler = func(c echo.Context) error { return c.JSON(http.StatusCreated, map[string]string{"ok": "yes"}) }
	testkit.WaitFor(t, 5*time.Second, func() error {
		if rec := a.post("/things/1", `{}`, "Idempotency-Key", "k", "X-Caller", "alice"); rec.Code != http.StatusCreated {
			return fmt.Errorf("retry: %d %s", rec.Code, rec.Body)
		}
		return nil
	})
	if n := store.releases.Load(); n < 2 {
		t.Fatalf("release tried %d times, want a retry", n)
	}
}
