package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"granary/http/problem"
	"granary/http/reqlog"
	"granary/messages"
	"granary/metrics"
)

// Header names.
const (
	HeaderKey = "Idempotency-Key"
	// HeaderReplayed marks an answer that is a replay of the first one.
	HeaderReplayed = "Idempotent-Replayed"
)

// MaxKeyLen is the longest key accepted, in bytes.
const MaxKeyLen = 255

// replayedHeaders are the response headers that belong to the answer
// itself and are replayed with it; the others (X-Request-ID, RateLimit-*,
// Date) describe the current exchange.
var replayedHeaders = []string{
	echo.HeaderContentType, echo.HeaderLocation, "ETag", "Last-Modified", "Link", "X-Served-By",
}

// Config is the middleware's tunables.
type Config struct {
	// Store keeps the records.
	Store Store
	// TTL keeps a final answer (the contract's 24 h).
	TTL time.Duration
	// PendingTTL is how long a first request holds its key: it must
	// outlast any request, since a duplicate arriving after it runs
	// again (harmlessly: grains drop repeated command ids). It is also
	// how long a retry waits when the first attempt's gateway died
	// before storing an answer.
	PendingTTL time.Duration
	// BodyLimit bounds the body read to fingerprint the request.
	BodyLimit int64
	// MaxResponse is the largest answer kept; a larger one is answered
	// but not kept (a retry then runs again).
	MaxResponse int
	// StoreTimeout bounds each call to the store.
	StoreTimeout time.Duration
	// Wait is how long a retry that finds the first attempt still running
	// waits for its answer (the contract: up to the call timeout) before
	// it is told 409 request_in_progress; Poll is how often it looks.
	Wait, Poll time.Duration
}

// DefaultConfig returns the contract's TTL and the defaults; Store and
// BodyLimit are the caller's.
func DefaultConfig() Config {
	return Config{TTL: 24 * time.Hour, PendingTTL: 30 * time.Second, MaxResponse: 1 << 20, StoreTimeout: 2 * time.Second,
		Wait: 5 * time.Second, Poll: 50 * time.Millisecond}
}

// Validate names the first unusable field.
func (c Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("idempotency: Store is required")
	case c.TTL < time.Millisecond:
		return fmt.Errorf("idempotency: TTL %v must be >= 1ms", c.TTL)
	case c.PendingTTL < time.Millisecond:
		return fmt.Errorf("idempotency: PendingTTL %v must be >= 1ms", c.PendingTTL)
	case c.BodyLimit <= 0:
		return fmt.Errorf("idempotency: BodyLimit %d must be > 0", c.BodyLimit)
	case c.MaxResponse <= 0:
		return fmt.Errorf("idempotency: MaxResponse %d must be > 0", c.MaxResponse)
	case c.StoreTimeout <= 0:
		return fmt.Errorf("idempotency: StoreTimeout %v must be > 0", c.StoreTimeout)
	case c.Wait < 0 || c.Poll <= 0:
		return fmt.Errorf("idempotency: Wait %v must be >= 0 and Poll %v > 0", c.Wait, c.Poll)
	case c.PendingTTL <= c.Wait:
		// A claim that lapses while its attempt can still commit would let
		// a retry run beside it.
		return fmt.Errorf("idempotency: PendingTTL %v must be longer than Wait %v", c.PendingTTL, c.Wait)
	}
	return nil
}

// Outcomes counted in granary_idempotency_requests_total.
const (
	outcomeStored     = "stored"      // first request, answer kept
	outcomeNotStored  = "not_stored"  // first request, answer retryable (5xx) or too large
	outcomeReplayed   = "replayed"    // same request again: first answer replayed
	outcomeMismatch   = "mismatch"    // same key, another request: 409
	outcomeInProgress = "in_progress" // same key, the first still ran after Wait: 409
)

// Middleware answers repeated requests from their first answer.
type Middleware struct {
	cfg      Config
	log      *slog.Logger
	outcomes *prometheus.CounterVec
	releases releases
}

// releases are the claims whose release failed (the store was down as the
// attempt ended without a final answer), released again until it works
// or the claim has lapsed: without it a retry of that key is told 409
// request_in_progress until PendingTTL passes, although its first attempt
// ended (30 s, where the store is often back within a second). Bounded;
// one goroutine while any is left, none once Close returned.
type releases struct {
	mu      sync.Mutex
	pending map[string]pendingRelease // by record key
	running bool
	closed  bool
	stop    chan struct{}
	done    chan struct{}
}

type pendingRelease struct {
	token string
	until time.Time
}

// Retrying failed releases: how many at most, and how often.
const (
	maxPendingReleases = 4096
	releaseRetry       = 250 * time.Millisecond
)

// New returns the middleware, registering its metrics on reg.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Middleware, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Middleware{cfg: cfg, log: log, outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Name: "idempotency_requests_total",
		Help: "Requests carrying an Idempotency-Key, by outcome (stored, not_stored, replayed, mismatch, in_progress).",
	}, []string{"outcome"})}
	if err := reg.Register(m.outcomes); err != nil {
		return nil, fmt.Errorf("idempotency: register metrics: %w", err)
	}
	m.releases.pending = map[string]pendingRelease{}
	m.releases.stop = make(chan struct{})
	return m, nil
}

// Close stops retrying failed releases (their claims lapse by themselves)
// and waits until that is done.
func (m *Middleware) Close() {
	r := &m.releases
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	close(r.stop)
	done := r.done
	r.mu.Unlock()
	if done != nil {
		<-done
	}
}

// Func returns the Echo middleware for mutating routes. caller names who
// sends a request ("" for an anonymous one); keys are per caller, so it
// must run after authentication.
//
// A request with a key is fingerprinted (method, path, body). The first
// one claims the key and runs; its answer is kept for TTL if it is final
// (2xx other than 202, 4xx other than 408 and 429), else the claim is
// dropped so a retry runs again. The same request again gets the kept
// answer, marked Idempotent-Replayed: true, and runs nothing. Another
// request with the same key gets 409 idempotency_key_reused.
//
// A duplicate that arrives while the first attempt still runs (its
// gateway or grain slow, frozen or dead) must not be told anything the
// journal may contradict later: it waits up to Wait for that attempt's
// answer and replays it, or runs itself if the attempt gave up without
// one; still nothing by then, it gets 409 request_in_progress with
// Retry-After, which means "unknown yet". If the store cannot be reached
// the request is refused with 503 (the promise cannot be kept).
func (m *Middleware) Func(caller func(echo.Context) string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			key := c.Request().Header.Get(HeaderKey)
			if key == "" {
				return next(c)
			}
			if len(key) > MaxKeyLen {
				return messages.Fail(messages.CodeValidationFailed, "%s: at most %d characters", HeaderKey, MaxKeyLen)
			}
			body, err := m.readBody(c)
			if err != nil {
				return err
			}
			fp := fingerprint(c.Request(), body)
			rkey := recordKey(caller(c), key)

			waitUntil := time.Now().Add(m.cfg.Wait)
			for {
				ctx, cancel := m.storeContext(c.Request().Context())
				token, rec, err := m.cfg.Store.Claim(ctx, rkey, fp, m.cfg.PendingTTL)
				cancel()
				switch {
				case err != nil:
					m.logFor(c).Warn("idempotency store unavailable", "err", err)
					return messages.Fail(messages.CodeServiceUnavailable, "idempotency records unavailable; retry later")
				case rec == nil:
					return m.runFirst(c, next, rkey, token)
				case rec.Fingerprint != fp || !rec.Pending():
					return m.answerExisting(c, rec, fp)
				}
				if !m.pause(c.Request().Context(), waitUntil) {
					m.outcomes.WithLabelValues(outcomeInProgress).Inc()
					c.Response().Header().Set("Retry-After", "1")
					return messages.Fail(messages.CodeRequestInProgress,
						"a request with this %s is still in progress and has no answer yet; it may or may not take effect: retry with the same key", HeaderKey)
				}
			}
		}
	}
}

// pause waits one poll interval unless that would pass until or the
// client hung up; it reports whether the caller may look again.
func (m *Middleware) pause(ctx context.Context, until time.Time) bool {
	left := time.Until(until)
	if left <= 0 {
		return false
	}
	t := time.NewTimer(min(left, m.cfg.Poll))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (m *Middleware) answerExisting(c echo.Context, rec *Record, fp string) error {
	if rec.Fingerprint != fp {
		m.outcomes.WithLabelValues(outcomeMismatch).Inc()
		return messages.Fail(messages.CodeIdempotencyReused, "%s was already used for another request (different path or body); use a new key", HeaderKey)
	}
	m.outcomes.WithLabelValues(outcomeReplayed).Inc()
	h := c.Response().Header()
	for _, name := range replayedHeaders {
		if vs := http.Header(rec.Response.Header).Values(name); len(vs) > 0 {
			h.Del(name)
			for _, v := range vs {
				h.Add(name, v)
			}
		}
	}
	h.Set(HeaderReplayed, "true")
	c.Response().WriteHeader(rec.Response.Status)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	_, err := c.Response().Write(rec.Response.Body)
	return err
}

// logFor is the request's logger, built only when something is logged.
func (m *Middleware) logFor(c echo.Context) *slog.Logger {
	return reqlog.From(c.Request().Context(), m.log)
}

// runFirst runs the request that claimed the key and keeps its answer if
// it is final.
func (m *Middleware) runFirst(c echo.Context, next echo.HandlerFunc, rkey, token string) error {
	rec := &recorder{ResponseWriter: c.Response().Writer, limit: m.cfg.MaxResponse}
	c.Response().Writer = rec
	done := false
	defer func() {
		c.Response().Writer = rec.ResponseWriter
		if !done { // a panic: the answer is the recoverer's 500, so let a retry run
			m.release(c, rkey, token)
		}
	}()
	if err := next(c); err != nil {
		// Render the error now, through the recorder, so the answer can
		// be kept like any other.
		c.Error(err)
	}
	done = true
	resp := c.Response()
	// A refusal of the key itself (a handler found it naming another
	// request's saga) is not the request's answer: kept, it would refuse
	// the first request's own retries as "another request" too.
	code, _ := c.Get(problem.CodeKey).(string)
	if !resp.Committed || !final(resp.Status) || rec.overflow || code == messages.CodeIdempotencyReused {
		m.outcomes.WithLabelValues(outcomeNotStored).Inc()
		m.release(c, rkey, token)
		return rec.send()
	}
	kept := Response{Status: resp.Status, Header: http.Header{}, Body: bytes.Clone(rec.buf.Bytes())}
	for _, name := range replayedHeaders {
		for _, v := range resp.Header().Values(name) {
			http.Header(kept.Header).Add(name, v)
		}
	}
	ctx, cancel := m.storeContext(c.Request().Context())
	defer cancel()
	if err := m.cfg.Store.Complete(ctx, rkey, token, kept, m.cfg.TTL); err != nil {
		m.outcomes.WithLabelValues(outcomeNotStored).Inc()
		m.logFor(c).Warn("idempotency record not stored", "err", err)
		if resp.Status < 300 {
			// Applied either way; a retry finds the command applied in its
			// grain and answers the same.
			return rec.send()
		}
		// A refusal nobody recorded could be decided otherwise by a retry
		// (the money may be there by then): answer "unknown" instead.
		c.Response().Writer = rec.ResponseWriter
		for _, name := range replayedHeaders {
			resp.Header().Del(name)
		}
		resp.Committed, resp.Status, resp.Size = false, 0, 0
		c.Error(messages.Fail(messages.CodeServiceUnavailable, "the answer could not be recorded under this %s; retry with the same key", HeaderKey))
		return nil
	}
	m.outcomes.WithLabelValues(outcomeStored).Inc()
	return rec.send()
}

func (m *Middleware) release(c echo.Context, rkey, token string) {
	ctx, cancel := m.storeContext(c.Request().Context())
	defer cancel()
	if err := m.cfg.Store.Release(ctx, rkey, token); err != nil {
		// The claim expires by itself after PendingTTL; until then it is
		// released again in the background.
		m.logFor(c).Warn("idempotency claim not released; retrying in the background", "err", err)
		m.retryRelease(rkey, token)
	}
}

func (m *Middleware) retryRelease(rkey, token string) {
	r := &m.releases
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if _, ok := r.pending[rkey]; !ok && len(r.pending) >= maxPendingReleases {
		m.log.Warn("too many idempotency claims waiting for release; this one lapses by itself", "pending", len(r.pending))
		return
	}
	r.pending[rkey] = pendingRelease{token: token, until: time.Now().Add(m.cfg.PendingTTL)}
	if !r.running {
		r.running, r.done = true, make(chan struct{})
		go m.releaseLoop(r.done)
	}
}

// releaseLoop releases the pending claims every releaseRetry until none
// is left or Close.
func (m *Middleware) releaseLoop(done chan struct{}) {
	defer close(done)
	r := &m.releases
	t := time.NewTicker(releaseRetry)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-done:
		}
	}()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		r.mu.Lock()
		batch := make(map[string]pendingRelease, len(r.pending))
		for k, p := range r.pending {
			batch[k] = p
		}
		r.mu.Unlock()
		for rkey, p := range batch {
			if time.Now().Before(p.until) {
				sctx, scancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
				err := m.cfg.Store.Release(sctx, rkey, p.token)
				scancel()
				if err != nil {
					// Still down: the others wait for the next tick rather
					// than each waiting out a timeout in turn.
					break
				}
			}
			r.mu.Lock()
			if r.pending[rkey] == p {
				delete(r.pending, rkey)
			}
			r.mu.Unlock()
		}
		r.mu.Lock()
		if len(r.pending) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
}

// storeContext outlives a client that hung up: a claim must still be
// completed or released once the request ran.
func (m *Middleware) storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), m.cfg.StoreTimeout)
}

// final reports whether an answer would be the same if the request were
// sent again: successes and the client's own errors, except those that say
// "not yet" like 5xx do: 202 (accepted, still at work: a retry should see
// how it ended), 408 and 429.
func final(status int) bool {
	switch {
	case status == http.StatusAccepted:
		return false
	case status >= 200 && status < 300:
		return true
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests:
		return false
	case status >= 400 && status < 500:
		return true
	}
	return false
}

// readBody reads the body for the fingerprint and puts it back for the
// handler.
func (m *Middleware) readBody(c echo.Context) ([]byte, error) {
	req := c.Request()
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, m.cfg.BodyLimit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, messages.Fail(messages.CodePayloadTooLarge, "body is larger than %d bytes", m.cfg.BodyLimit)
		}
		return nil, messages.Fail(messages.CodeInvalidJSON, "could not read body: %v", err)
	}
	req.Body = &heldBody{body: body}
	return body, nil
}

// heldBody is a body the middleware read already: a handler may read it
// again, or take its bytes without a copy (HeldBody).
type heldBody struct {
	body []byte
	off  int
}

func (b *heldBody) Read(p []byte) (int, error) {
	if b.off >= len(b.body) {
		return 0, io.EOF
	}
	n := copy(p, b.body[b.off:])
	b.off += n
	return n, nil
}

func (b *heldBody) Close() error { return nil }

// HeldBody returns the unread rest of r's body when the middleware read
// it already (within the body limit), and consumes it; ok is false for a
// body it did not read. Handlers binding JSON use it to skip a second
// read and copy of the same bytes.
func HeldBody(r *http.Request) (body []byte, ok bool) {
	b, ok := r.Body.(*heldBody)
	if !ok {
		return nil, false
	}
	rest := b.body[b.off:]
	b.off = len(b.body)
	return rest, true
}

// fingerprint is what makes two requests "the same": method, path and
// body, byte for byte.
func fingerprint(r *http.Request, body []byte) string {
	h := sha256.New()
	_, _ = io.WriteString(h, r.Method+"\x00"+r.URL.Path+"\x00")
	_, _ = h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// recordKey scopes a key to its caller, with a fixed length whatever the
// key and subject are.
func recordKey(caller, key string) string {
	sum := sha256.Sum256([]byte(caller + "\x00" + key))
	return hex.EncodeToString(sum[:])
}

// recorder holds an answer back until it is recorded, up to limit bytes:
// a client must not hear an answer that a retry could contradict. A
// larger answer streams through and is not kept.
type recorder struct {
	http.ResponseWriter
	status   int
	buf      bytes.Buffer
	limit    int
	overflow bool // passing through: held back no more
	sent     bool
}

func (r *recorder) WriteHeader(status int) {
	if r.overflow {
		r.ResponseWriter.WriteHeader(status)
		return
	}
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if !r.overflow && r.buf.Len()+len(p) > r.limit {
		r.overflow = true
		if err := r.send(); err != nil {
			return 0, err
		}
	}
	if r.overflow {
		return r.ResponseWriter.Write(p)
	}
	return r.buf.Write(p)
}

// send writes what is held back; afterwards the recorder passes through.
func (r *recorder) send() error {
	if r.status == 0 || r.sent {
		return nil // nothing was written, or it went out already
	}
	r.overflow, r.sent = true, true
	held := r.buf.Bytes()
	r.buf = bytes.Buffer{}
	r.ResponseWriter.WriteHeader(r.status)
	if len(held) == 0 {
		return nil
	}
	_, err := r.ResponseWriter.Write(held)
	return err
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
