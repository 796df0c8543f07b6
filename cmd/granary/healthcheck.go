package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthcheckTimeout bounds the whole probe: a container engine runs it on
// an interval, so a hung gateway must fail it, not pile probes up.
const healthcheckTimeout = 2 * time.Second

// healthcheck probes a gateway's /health for container engines, whose
// minimal images have no curl: exit 0 on 200, otherwise an error.
func healthcheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", defaultHealthURL(getenv("GRANARY_HTTP_ADDR")), "URL to GET (default from GRANARY_HTTP_ADDR)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", *url, err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("healthcheck %s: no answer within %v", *url, healthcheckTimeout)
		}
		return fmt.Errorf("healthcheck %s: %w", *url, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck %s: status %d, want 200", *url, res.StatusCode)
	}
	fmt.Fprintf(stdout, "healthy: %s\n", *url)
	return nil
}

// defaultHealthURL turns a listen address into one to dial: a wildcard host
// (0.0.0.0, ::, empty) listens on loopback too, and loopback is what a probe
// inside the container can reach.
func defaultHealthURL(addr string) string {
	if strings.TrimSpace(addr) == "" {
		addr = "127.0.0.1:8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/health"
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/health"
}
