package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHealthcheckAgainstAServer(t *testing.T) {
	var status int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()

	tests := []struct {
		name   string
		status int
		args   []string
		getenv map[string]string
		want   string // "" = healthy
	}{
		{"200 by flag", http.StatusOK, []string{"-url", srv.URL + "/health"}, nil, ""},
		{"200 from GRANARY_HTTP_ADDR", http.StatusOK, nil, map[string]string{"GRANARY_HTTP_ADDR": strings.TrimPrefix(srv.URL, "http://")}, ""},
		{"503", http.StatusServiceUnavailable, []string{"-url", srv.URL + "/health"}, nil, "status 503, want 200"},
		{"wrong path", http.StatusOK, []string{"-url", srv.URL + "/nope"}, nil, "status 404"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status = tc.status
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"healthcheck"}, tc.args...), env(tc.getenv), &stdout, &stderr)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want healthy, got %v", err)
			case tc.want == "" && !strings.Contains(stdout.String(), "healthy"):
				t.Fatalf("stdout %q", stdout.String())
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestHealthcheckGivesUpOnAHungGateway(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	began := time.Now()
	err := run(context.Background(), []string{"healthcheck", "-url", srv.URL + "/health"}, env(nil), &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "no answer within 2s") {
		t.Fatalf("got %v, want a timeout", err)
	}
	if took := time.Since(began); took > healthcheckTimeout+time.Second {
		t.Fatalf("took %v, bound is %v", took, healthcheckTimeout)
	}
}

func TestHealthcheckNothingListening(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/health"
	srv.Close()
	err := run(context.Background(), []string{"healthcheck", "-url", url}, env(nil), &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), url) {
		t.Fatalf("got %v, want an error naming %s", err, url)
	}
}

func TestHealthcheckDefaultURL(t *testing.T) {
	for addr, want := range map[string]string{
		"":               "http://127.0.0.1:8080/health",
		"127.0.0.1:8081": "http://127.0.0.1:8081/health",
		"0.0.0.0:8080":   "http://127.0.0.1:8080/health",
		":9000":          "http://127.0.0.1:9000/health",
		"[::]:8080":      "http://[::1]:8080/health",
		"gw.local:80":    "http://gw.local:80/health",
	} {
		if got := defaultHealthURL(addr); got != want {
			t.Errorf("defaultHealthURL(%q) = %q, want %q", addr, got, want)
		}
	}
}
