package leakcheck_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"granary/internal/leakcheck"
	"granary/internal/warm"
)

// The child modes run this binary's own TestMain again in a subprocess,
// so what is checked is the real exit code and message of a test binary.
func TestMain(m *testing.M) {
	switch os.Getenv("LEAKCHECK_CHILD") {
	case "leak":
		stop := make(chan struct{})
		go func() { <-stop }() // never closed: a real leak
	case "idle-warm":
		p := warm.New(4, time.Hour) // idle far longer than the check waits
		done := make(chan struct{})
		p.Go(func() { close(done) })
		<-done
	}
	leakcheck.Main(m)
}

func TestNothing(t *testing.T) {}

func child(t *testing.T, mode string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestNothing$")
	cmd.Env = append(os.Environ(), "LEAKCHECK_CHILD="+mode)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestReportsALeftoverGoroutine(t *testing.T) {
	out, err := child(t, "leak")
	if err == nil {
		t.Fatalf("a binary that leaked a goroutine passed:\n%s", out)
	}
	if !strings.Contains(out, "goleak: Errors on successful test run") {
		t.Fatalf("exit %v without the leak report:\n%s", err, out)
	}
}

func TestIdleWarmWorkerIsNoLeak(t *testing.T) {
	if out, err := child(t, "idle-warm"); err != nil {
		t.Fatalf("an idle warm worker failed the check: %v\n%s", err, out)
	}
}
