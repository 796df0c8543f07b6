package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"time"
)

// The pprof listener's timeouts. Its write timeout bounds a CPU profile or
// trace too (pprof refuses ?seconds= at or past it), so it is generous.
const (
	pprofReadHeaderTimeout = 5 * time.Second
	pprofWriteTimeout      = 2 * time.Minute
	pprofStopTimeout       = time.Second
)

// checkPprofAddr admits host:port on a loopback address only: profiles and
// /debug/pprof/cmdline show memory contents, stacks and the command line,
// which must not reach anyone who can reach the gateway.
func checkPprofAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want a loopback host:port such as 127.0.0.1:6060: %w", err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	if host == "localhost" {
		return nil // startPprof checks what it resolved to
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return fmt.Errorf("host %q is not a loopback address: pprof is served only on 127.0.0.1, ::1 or localhost", host)
	}
	return nil
}

// startPprof serves net/http/pprof on addr (checked by checkPprofAddr)
// until stop is called; stop returns once the server's goroutine has
// ended, cutting requests (a long profile) still running after
// pprofStopTimeout.
func startPprof(addr string, log *slog.Logger) (stop func(), bound net.Addr, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("GRANARY_PPROF_ADDR: listen on %s: %w", addr, err)
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err != nil || !ap.Addr().IsLoopback() {
		ln.Close()
		return nil, nil, fmt.Errorf("GRANARY_PPROF_ADDR: %s is bound to %s, which is not loopback", addr, ln.Addr())
	}
	// Our own mux: importing net/http/pprof also registers its handlers on
	// http.DefaultServeMux, which nothing in this process serves.
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: pprofReadHeaderTimeout,
		ReadTimeout:       pprofReadHeaderTimeout,
		WriteTimeout:      pprofWriteTimeout,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof server stopped", "err", err)
		}
	}()
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), pprofStopTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close() // a profile still running: cut it
		}
		<-done
	}
	return stop, ln.Addr(), nil
}
