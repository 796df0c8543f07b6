// Command granary runs a Granary cluster member with its HTTP gateway.
//
//	granary dev    one process on an embedded store, with a dev token
//	granary node   a member configured by GRANARY_* variables
//	granary token  prints a token signed with GRANARY_JWT_SECRET
//	granary example-service  a demo upstream that registers with a gateway
//	granary version  module version, commit and Go version of this binary
//	granary healthcheck  exits 0 when the gateway's /health answers 200
//	granary help   lists every setting
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "granary:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return errUsage
	}
	switch args[0] {
	case "dev":
		warnUnknownEnv(stderr, os.Environ(), getenv)
		return start(ctx, modeDev, getenv, stdout, stderr)
	case "node":
		warnUnknownEnv(stderr, os.Environ(), getenv)
		return start(ctx, modeNode, getenv, stdout, stderr)
	case "token":
		return issueToken(args[1:], getenv, stdout, stderr)
	case "example-service":
		return exampleService(ctx, args[1:], getenv, stdout, stderr)
	case "version", "-version", "--version":
		printVersion(stdout, buildInfo())
		return nil
	case "healthcheck":
		return healthcheck(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "--help":
		printUsage(stdout)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n", args[0])
		printUsage(stderr)
		return errUsage
	}
}
