package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"granary/testkit"
)

// granaryBinary builds the real binary once per test run.
func granaryBinary(t testing.TB) string {
	t.Helper()
	return testkit.BuildBinary(t, "granary/cmd/granary")
}

// node is a granary child process.
type node struct {
	cmd    *exec.Cmd
	base   string
	member string
	stderr *bytes.Buffer
	done   chan struct{}
}

// startNode runs `granary node` with env and waits until it announces its
// address.
func startNode(t testing.TB, env ...string) *node {
	t.Helper()
	cmd := exec.Command(granaryBinary(t), "node")
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	n := &node{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{w: n.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	member := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "Granary listening on "); ok {
				addr <- strings.TrimSpace(rest)
			}
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "member:"); ok {
				member <- strings.Fields(rest)[0]
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(n.done) }()
	t.Cleanup(func() { n.kill(t) })
	select {
	case n.base = <-addr:
		n.member = <-member
	case <-n.done:
		t.Fatalf("granary node exited before listening:\n%s", n.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("granary node did not announce its address in 30s:\n%s", n.stderr)
	}
	return n
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill(t testing.TB) {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Kill()
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		t.Errorf("granary node survived SIGKILL for 10s")
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// client is a minimal JSON client for the tests.
type client struct {
	base, token string
	http        *http.Client
}

func (c client) do(method, path string, body any, out any) (int, error) {
	status, _, err := c.call(method, path, body, out, nil)
	return status, err
}

// call is do with request headers, returning the response headers too.
func (c client) call(method, path string, body any, out any, headers map[string]string) (int, http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, err
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, resp.Header, fmt.Errorf("decode %s: %w", data, err)
		}
	}
	if resp.StatusCode >= 500 && resp.StatusCode != 503 && resp.StatusCode != 504 {
		return resp.StatusCode, resp.Header, fmt.Errorf("%s %s: %d is a bug: %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode, resp.Header, nil
}
