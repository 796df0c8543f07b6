package testkit_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"granary/internal/leakcheck"
	"granary/testkit"
)

func TestMain(m *testing.M) { leakcheck.Main(m, testkit.LeakOptions()...) }

// fakeT stands in for t where a test checks that a helper fails: it
// records Fatal and Error reports instead of failing the test, and ends
// the goroutine on Fatal as testing does. Everything else goes to the real
// t, so cleanups still run at the end of the test.
type fakeT struct {
	testing.TB
	mu       sync.Mutex
	failures []string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	runtime.Goexit()
}

// run calls fn on its own goroutine, as t.Run would, and returns what it
// reported.
func (f *fakeT) run(t *testing.T, fn func()) []string {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("helper under test did not return within 10s")
	}
	return f.reports()
}

func (f *fakeT) reports() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.failures...)
}

// wantFailure fails t unless exactly one report contains want.
func wantFailure(t *testing.T, reports []string, want string) {
	t.Helper()
	if len(reports) != 1 || !strings.Contains(reports[0], want) {
		t.Fatalf("reports %q, want one containing %q", reports, want)
	}
}
