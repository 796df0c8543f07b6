package testkit

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// RealRedisURL returns the URL of a real redis-server for tests that need
// real durability: GRANARY_REDIS_URL when set, else a redis-server started
// for this test (AOF on, stopped at the end) when the binary is installed.
// Without either the test is skipped.
func RealRedisURL(t testing.TB) string {
	t.Helper()
	if url := os.Getenv(RedisURLEnv); url != "" {
		return url
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skipf("needs a real Redis: set %s or install redis-server", RedisURLEnv)
	}
	port := FreePort(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec")
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	client := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer client.Close()
	WaitFor(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return client.Ping(ctx).Err()
	})
	return url
}

// FreePort is a TCP port free on 127.0.0.1 right now, for a server a test
// starts (another process may take it first; callers that can, retry).
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// FreePorts is n distinct free ports: each listener stays open until all
// are chosen, since the kernel may hand a just-closed port out again (two
// servers of one process given the same port is a flake, not a race).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
