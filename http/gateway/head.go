package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// headKey marks, in a request's context, a HEAD routed as GET.
type headKey struct{}

// answerHeadAsGet answers HEAD wherever GET is, with GET's status and
// headers: Echo routes the request as the GET of its path, through the
// same middleware and handler, while net/http, which still holds the
// request as HEAD, sends no body (and the Content-Length the body would
// have had). Doing it in front of the router covers every GET route,
// those registered later included.
func answerHeadAsGet(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			// A shallow copy: the server's own request stays HEAD.
			r = r.WithContext(context.WithValue(r.Context(), headKey{}, true))
			r.Method = http.MethodGet
		}
		next.ServeHTTP(w, r)
	})
}

// allowHead makes Allow headers (OPTIONS, 405) name HEAD beside GET, as
// answerHeadAsGet answers it.
func allowHead(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		res := c.Response()
		res.Before(func() {
			if allow := res.Header().Get(echo.HeaderAllow); allow != "" {
				res.Header().Set(echo.HeaderAllow, withHead(allow))
			}
		})
		return next(c)
	}
}

// isHead tells a handler whose GET never ends (a stream) that the client
// asked only for the headers.
func isHead(c echo.Context) bool {
	head, _ := c.Request().Context().Value(headKey{}).(bool)
	return head
}

// withHead adds HEAD after GET in an Allow list that has GET but not HEAD.
func withHead(allow string) string {
	methods := strings.Split(allow, ",")
	hasGet := false
	for i := range methods {
		methods[i] = strings.TrimSpace(methods[i])
		switch methods[i] {
		case http.MethodHead:
			return allow
		case http.MethodGet:
			hasGet = true
		}
	}
	if !hasGet {
		return allow
	}
	out := make([]string, 0, len(methods)+1)
	for _, m := range methods {
		out = append(out, m)
		if m == http.MethodGet {
			out = append(out, http.MethodHead)
		}
	}
	return strings.Join(out, ", ")
}
