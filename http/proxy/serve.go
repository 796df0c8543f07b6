package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// maxAttempts is the first try plus the contract's "at most 2 more".
const maxAttempts = 3

// errUpstreamTimeout is the cause of an attempt's context when the instance did
// not send response headers within the route's timeout.
var errUpstreamTimeout = errors.New("upstream did not answer in time")

// attempt is one try of a request on one instance; it rides in the outgoing
// request's context so the ReverseProxy hooks can reach it.
type attempt struct {
	w      http.ResponseWriter
	route  *Route
	id     *Identity
	target Target
	reqID  string
	client string
	timer  *time.Timer
	err    error       // set by the ErrorHandler: nothing was written to w
	sent   atomic.Bool // the request headers reached the connection
	wrote  bool        // response headers are being relayed: no retry, no problem
	status int
}

type attemptKey struct{}

// outcome classifies a failed attempt for the retry decision.
type outcome int

const (
	relayed     outcome = iota // the instance's answer went to the client, whatever its status
	undelivered                // refused, unreachable, reset before sending: retry on any method
	timedOut                   // sent, no answer in time: retry for GET/HEAD only
	failed                     // broke after sending: answer now, a retry could repeat it
	clientGone                 // nobody to answer
)

// Serve proxies r, whose path starts with route.PathPrefix, to an UP instance
// of route.Service as the contract's Routing paragraph says. It always answers
// w unless the client has gone.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, route Route, id Identity) {
	reqID := p.cfg.RequestID(r)
	body, ok := p.bufferBody(w, r)
	if !ok {
		return
	}
	client := clientAddr(r)
	if p.cfg.ClientIP != nil {
		if ip := p.cfg.ClientIP(r); ip != "" {
			client = ip
		}
	}
	now := time.Now().Truncate(time.Second).UnixNano()
	rot := p.rr.get(route.Name, now)
	excluded := map[string]bool{}
	idempotent := r.Method == http.MethodGet || r.Method == http.MethodHead
	var anyTimeout, anyTarget bool
	for tries := 0; tries < maxAttempts; {
		targets := p.cfg.Targets(route.Service)
		anyTarget = anyTarget || len(targets) > 0
		in, allOpen := p.pick(route, targets, excluded, rot, now)
		if in == nil {
			if allOpen && !anyTimeout && tries == 0 {
				p.unavailable(w, r, 5, fmt.Sprintf("every instance of %q has its circuit breaker open", route.Service))
				return
			}
			break
		}
		done, err := in.inst.breaker.Allow()
		if err != nil {
			// Opened, or half-open with its probe in flight, since pick looked.
			excluded[in.target.ID] = true
			continue
		}
		tries++
		excluded[in.target.ID] = true
		att := &attempt{w: w, route: &route, id: &id, target: in.target, reqID: reqID, client: client}
		res := p.try(att, in.inst, r, body)
		switch {
		case res == clientGone:
			done(errClientGone)
		case res == relayed && att.status >= 500:
			done(fmt.Errorf("upstream answered %d", att.status))
		case res == relayed:
			done(nil)
		default:
			done(att.err)
		}
		switch res {
		case relayed:
			return
		case clientGone:
			p.cfg.Logger.Debug("proxy: client gone", "route", route.Name, "instance", in.target.ID, "request_id", reqID)
			return
		case undelivered:
			p.cfg.Logger.Warn("proxy: upstream refused, trying another instance",
				"route", route.Name, "instance", in.target.ID, "request_id", reqID, "err", att.err)
			continue
		case timedOut:
			anyTimeout = true
			p.cfg.Logger.Warn("proxy: upstream timed out",
				"route", route.Name, "instance", in.target.ID, "request_id", reqID, "timeout", route.Timeout)
			if idempotent {
				continue
			}
			p.cfg.Problem(w, r, http.StatusGatewayTimeout, "timeout",
				fmt.Sprintf("service %q did not answer within %s", route.Service, route.Timeout))
			return
		default:
			p.cfg.Logger.Error("proxy: upstream failed",
				"route", route.Name, "instance", in.target.ID, "request_id", reqID, "err", att.err)
			p.unavailable(w, r, 1, fmt.Sprintf("service %q failed: %v", route.Service, att.err))
			return
		}
	}
	switch {
	case anyTimeout:
		p.cfg.Problem(w, r, http.StatusGatewayTimeout, "timeout",
			fmt.Sprintf("service %q did not answer within %s", route.Service, route.Timeout))
	case !anyTarget:
		p.unavailable(w, r, 1, fmt.Sprintf("service %q has no UP instance", route.Service))
	default:
		p.unavailable(w, r, 1, fmt.Sprintf("no instance of service %q accepted the request", route.Service))
	}
}

func (p *Proxy) unavailable(w http.ResponseWriter, r *http.Request, retryAfter int, detail string) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	p.cfg.Problem(w, r, http.StatusServiceUnavailable, "service_unavailable", detail)
}

// bufferBody reads the request body so that a retry can replay it. The gateway
// has already limited it; the limit here only keeps the buffer bounded.
func (p *Proxy) bufferBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, p.cfg.MaxBodyBytes+1))
	_ = r.Body.Close()
	if err != nil {
		if r.Context().Err() == nil {
			p.cfg.Logger.Warn("proxy: read request body", "err", err)
			p.cfg.Problem(w, r, http.StatusBadRequest, "bad_request", "the request body could not be read")
		}
		return nil, false
	}
	if int64(len(b)) > p.cfg.MaxBodyBytes {
		p.cfg.Problem(w, r, http.StatusRequestEntityTooLarge, "payload_too_large",
			fmt.Sprintf("body is larger than %d bytes", p.cfg.MaxBodyBytes))
		return nil, false
	}
	return b, true
}

// try sends r to one instance and says what became of it.
func (p *Proxy) try(att *attempt, in *instance, r *http.Request, body []byte) outcome {
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	if att.route.Timeout > 0 {
		att.timer = time.AfterFunc(att.route.Timeout, func() { cancel(errUpstreamTimeout) })
		defer att.timer.Stop()
	}
	ctx = context.WithValue(ctx, attemptKey{}, att)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { att.sent.Store(true) }})
	out := r.WithContext(ctx)
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}

	p.cfg.Counts.Add(att.target.ID, 1)
	in.inFlight.Add(1)
	defer func() {
		// Deferred so that ReverseProxy's ErrAbortHandler panic (the client or
		// upstream broke mid-body) still releases the counts.
		in.inFlight.Add(-1)
		p.cfg.Counts.Add(att.target.ID, -1)
		if att.wrote {
			in.served.Add(1)
		}
	}()
	p.rp.ServeHTTP(att.w, out)

	switch {
	case att.wrote:
		return relayed
	case r.Context().Err() != nil:
		return clientGone
	case isDialError(att.err) || (!att.sent.Load() && errors.Is(att.err, syscall.ECONNRESET)):
		return undelivered
	case errors.Is(att.err, errUpstreamTimeout) || errors.Is(context.Cause(ctx), errUpstreamTimeout):
		return timedOut
	default:
		return failed
	}
}

func isDialError(err error) bool {
	var d *dialError
	return errors.As(err, &d)
}

func clientAddr(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// rewrite is the ReverseProxy's Rewrite hook: target, path, forwarded and identity headers.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	att := pr.In.Context().Value(attemptKey{}).(*attempt)
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = net.JoinHostPort(att.target.Host, strconv.Itoa(att.target.Port))
	out.Host = ""
	out.URL.Path = rewritePath(pr.In.URL.Path, att.route.PathPrefix, att.route.RewritePrefix)
	out.URL.RawPath = ""
	if raw := pr.In.URL.RawPath; raw != "" && strings.HasPrefix(raw, att.route.PathPrefix) {
		out.URL.RawPath = rewritePath(raw, att.route.PathPrefix, att.route.RewritePrefix)
	}
	for k := range out.Header {
		if len(k) >= len(granaryPrefix) && strings.EqualFold(k[:len(granaryPrefix)], granaryPrefix) {
			delete(out.Header, k)
		}
	}
	pr.SetXForwarded()
	out.Header.Set("X-Forwarded-For", att.client)
	if att.reqID != "" {
		out.Header.Set("X-Request-ID", att.reqID)
	}
	if !att.route.Public {
		if att.id.Subject != "" {
			out.Header.Set("X-Granary-Subject", att.id.Subject)
		}
		if len(att.id.Roles) > 0 {
			out.Header.Set("X-Granary-Roles", strings.Join(att.id.Roles, ","))
		}
	}
}

const granaryPrefix = "X-Granary-"

// rewritePath replaces prefix with rewrite at the start of path.
func rewritePath(path, prefix, rewrite string) string {
	rest := strings.TrimPrefix(path, prefix)
	switch {
	case rewrite == "" && rest == "":
		return "/"
	case rewrite == "":
		if !strings.HasPrefix(rest, "/") {
			return "/" + rest
		}
		return rest
	case strings.HasSuffix(rewrite, "/") && strings.HasPrefix(rest, "/"):
		return rewrite + rest[1:]
	}
	return rewrite + rest
}

// modifyResponse runs once the instance's response headers have arrived.
func (p *Proxy) modifyResponse(res *http.Response) error {
	att := res.Request.Context().Value(attemptKey{}).(*attempt)
	if att.timer != nil && !att.timer.Stop() {
		// The timeout fired first; the context is (being) cancelled.
		return errUpstreamTimeout
	}
	// Set on the client's writer, not res.Header, which ReverseProxy adds to it:
	// the gateway may already have set X-Request-ID there.
	res.Header.Del("X-Request-ID")
	res.Header.Del("X-Served-By")
	h := att.w.Header()
	if att.reqID != "" {
		h.Set("X-Request-ID", att.reqID)
	}
	h.Set("X-Served-By", att.target.ID)
	att.wrote = true
	att.status = res.StatusCode
	return nil
}

// recordError is the ReverseProxy's ErrorHandler: nothing has been written to
// the client yet, so Serve decides between retrying and answering.
func (p *Proxy) recordError(_ http.ResponseWriter, r *http.Request, err error) {
	att := r.Context().Value(attemptKey{}).(*attempt)
	if att.wrote {
		// ModifyResponse succeeded, so this is an upgrade failing after the
		// 101 was relayed: nothing more can be said to the client.
		p.cfg.Logger.Warn("proxy: upgraded connection failed", "instance", att.target.ID, "err", err)
	}
	att.err = err
}
