package main

import (
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"granary/http/auth"
	"granary/testkit"
)

// Issue 9, item 7: on SIGTERM readiness goes 503 first while the listener
// still answers, a request in flight completes with its real answer, and
// the process exits 0 within the shutdown delay plus the drain timeout.
func TestSIGTERMDrainsBeforeLeaving(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	secret := "0123456789abcdef0123456789abcdef-drain-test"
	const delay, drain = 3 * time.Second, 10 * time.Second
	n := startNode(t, "GRANARY_REDIS_URL="+testkit.RealRedisURL(t), "GRANARY_JWT_SECRET="+secret,
		"GRANARY_HTTP_ADDR=127.0.0.1:0", "GRANARY_KEY_PREFIX=drain-"+randHex(), "GRANARY_RATE_LIMIT=0",
		"GRANARY_SHUTDOWN_DELAY="+delay.String(), "GRANARY_DRAIN_TIMEOUT="+drain.String())
	token, err := auth.Issue([]byte(secret), "drainer", nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := client{base: n.base, token: token, http: &http.Client{Timeout: 20 * time.Second}}
	var acc accountBody
	if code, err := c.do("POST", "/api/v1/accounts", map[string]any{"account_number": "DRN-" + randHex(), "owner_name": "D", "initial_balance": 0}, &acc); code != 201 || err != nil {
		t.Fatalf("open: %d %v", code, err)
	}
	if code, err := c.do("GET", "/ready", nil, nil); code != 200 || err != nil {
		t.Fatalf("/ready before SIGTERM: %d %v", code, err)
	}

	// In flight across the SIGTERM: a summary that waits for a version
	// only the deposit below creates.
	type answer struct {
		code    int
		version uint64
		err     error
	}
	slow := make(chan answer, 1)
	go func() {
		var sum struct {
			Version uint64 `json:"version"`
		}
		code, err := c.do("GET", fmt.Sprintf("/api/v1/accounts/%s/summary?min_version=%d", acc.ID, acc.Version+1), nil, &sum)
		slow <- answer{code, sum.Version, err}
	}()
	time.Sleep(200 * time.Millisecond) // let it reach the server; its wait is what matters, not this pause
	sent := time.Now()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	testkit.WaitFor(t, delay/2, func() error {
		if code, err := c.do("GET", "/ready", nil, nil); code != 503 {
			return fmt.Errorf("/ready after SIGTERM: %d %v, want 503", code, err)
		}
		return nil
	})
	if code, err := c.do("POST", "/api/v1/accounts/"+acc.ID+"/deposits", map[string]any{"amount": 7, "description": "while draining"}, nil); code != 200 || err != nil {
		t.Errorf("deposit while draining: %d %v, want 200", code, err)
	}
	select {
	case a := <-slow:
		if a.code != 200 || a.err != nil || a.version < acc.Version+1 {
			t.Errorf("request in flight at SIGTERM: %d version %d %v, want 200 at version >= %d", a.code, a.version, a.err, acc.Version+1)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request in flight at SIGTERM got no answer in 10s")
	}
	select {
	case <-n.done:
		if code := n.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0:\n%s", code, n.stderr)
		}
		if took := time.Since(sent); took > delay+drain+5*time.Second {
			t.Errorf("exited %v after SIGTERM, want within %v", took, delay+drain+5*time.Second)
		}
	case <-time.After(delay + drain + 10*time.Second):
		t.Fatalf("still running %v after SIGTERM:\n%s", delay+drain+10*time.Second, n.stderr)
	}
}
