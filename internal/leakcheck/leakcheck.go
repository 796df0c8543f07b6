// Package leakcheck owns the goroutine-leak check every test binary ends
// with: goleak, after the grain runtime's warm workers were told to exit,
// so the check fails on a goroutine that is really left behind and never
// on a warm worker still inside its idle wait on a slow machine.
package leakcheck

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"granary/internal/warm"
)

// Main runs the tests and then the leak check, and exits; use it as
// func TestMain(m *testing.M) { leakcheck.Main(m, opts...) }.
func Main(m *testing.M, opts ...goleak.Option) { os.Exit(Run(m, opts...)) }

// Run is Main without the exit, for a TestMain that cleans up after the
// check: it returns the exit code. (goleak.Cleanup is not an option here:
// goleak.Find refuses it.)
func Run(m *testing.M, opts ...goleak.Option) int {
	code := m.Run()
	if code == 0 {
		if err := warm.Quiesce(10 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "leakcheck: %v\n", err)
			code = 1
		}
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: Errors on successful test run: %v\n", err)
			code = 1
		}
	}
	return code
}
