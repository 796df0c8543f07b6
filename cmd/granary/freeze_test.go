package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"granary/http/auth"
	"granary/testkit"
)

// ownRedis starts a redis-server this test owns, so it may SIGSTOP it.
func ownRedis(t *testing.T) (url string, proc *exec.Cmd) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("needs redis-server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", t.TempDir(), "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	rc := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer rc.Close()
	testkit.WaitFor(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return rc.Ping(ctx).Err()
	})
	return fmt.Sprintf("redis://127.0.0.1:%d/0", port), cmd
}

// Issue 9, item 7: with Redis frozen (SIGSTOP), /ready says 503 within 1 s
// and a deposit gets 503 + Retry-After within the call timeout, not 504
// after 9 s; after SIGCONT the member serves again.
func TestFrozenRedisAnswers503Fast(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	redisURL, redisProc := ownRedis(t)
	secret := "0123456789abcdef0123456789abcdef-freeze-test"
	n := startNode(t, "GRANARY_REDIS_URL="+redisURL, "GRANARY_JWT_SECRET="+secret,
		"GRANARY_HTTP_ADDR=127.0.0.1:0", "GRANARY_RATE_LIMIT=600")
	token, err := auth.Issue([]byte(secret), "freezer", nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := client{base: n.base, token: token, http: &http.Client{Timeout: 20 * time.Second}}
	var acc accountBody
	if code, err := c.do("POST", "/api/v1/accounts", map[string]any{"account_number": "FRZ-" + randHex(), "owner_name": "F", "initial_balance": 0}, &acc); code != 201 || err != nil {
		t.Fatalf("open: %d %v", code, err)
	}
	deposit := func(key string) (int, http.Header, time.Duration, error) {
		start := time.Now()
		h := map[string]string{}
		if key != "" {
			h["Idempotency-Key"] = key
		}
		code, hdr, err := c.call("POST", "/api/v1/accounts/"+acc.ID+"/deposits", map[string]any{"amount": 5, "description": "frozen"}, nil, h)
		return code, hdr, time.Since(start), err
	}
	if code, _, _, err := deposit(""); code != 200 || err != nil {
		t.Fatalf("deposit before the freeze: %d %v", code, err)
	}

	if err := redisProc.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := true
	t.Cleanup(func() {
		if frozen {
			_ = redisProc.Process.Signal(syscall.SIGCONT)
		}
	})

	start := time.Now()
	code, _, err := c.call("GET", "/ready", nil, nil, nil)
	if took := time.Since(start); code != 503 || err != nil || took > time.Second {
		t.Errorf("/ready with Redis frozen: %d %v after %v, want 503 within 1s", code, err, took)
	}
	const callTimeout = 5 * time.Second
	for i, key := range []string{"", "freeze-" + randHex()} {
		code, hdr, took, err := deposit(key)
		t.Logf("deposit %d with Redis frozen: %d Retry-After=%q after %v", i, code, hdr.Get("Retry-After"), took)
		if code != 503 || err != nil || hdr.Get("Retry-After") == "" || took > callTimeout+500*time.Millisecond {
			t.Errorf("deposit %d with Redis frozen: %d %v Retry-After=%q after %v, want 503 with Retry-After within %v",
				i, code, err, hdr.Get("Retry-After"), took, callTimeout)
		}
	}

	if err := redisProc.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	frozen = false
	testkit.WaitFor(t, 15*time.Second, func() error {
		if code, _, err := c.call("GET", "/ready", nil, nil, nil); code != 200 {
			return fmt.Errorf("/ready: %d %v", code, err)
		}
		if code, _, _, err := deposit("after-" + randHex()); code != 200 {
			return fmt.Errorf("deposit: %d %v", code, err)
		}
		return nil
	})
}
