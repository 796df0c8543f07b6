package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"granary/http/auth"
)

// issueToken implements `granary token`: sign a token with
// GRANARY_JWT_SECRET, for operators and scripts (make cluster).
func issueToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "admin", "subject (user id) of the token")
	roles := fs.String("roles", "", "comma-separated roles, e.g. admin")
	ttl := fs.Duration("ttl", 24*time.Hour, "validity")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	secret := getenv("GRANARY_JWT_SECRET")
	if secret == "" {
		return errors.New("token: GRANARY_JWT_SECRET is not set")
	}
	if *ttl <= 0 || *sub == "" {
		return errors.New("token: -sub must be set and -ttl positive")
	}
	if _, err := auth.NewVerifier([]byte(secret)); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	tok, err := auth.Issue([]byte(secret), *sub, splitList(*roles), time.Now(), *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
