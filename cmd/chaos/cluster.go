package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one process chaos started; only these are ever signalled.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) signal(s syscall.Signal) error {
	if !p.alive() {
		return nil
	}
	return p.cmd.Process.Signal(s)
}

// wait waits for the process to exit, up to d.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// cluster is redis-server and three granary members on loopback, laid out
// as `make cluster` lays them out, with ports and directory configurable.
type cluster struct {
	cfg     config
	secret  string
	mu      sync.Mutex
	redis   *proc
	members []*proc
}

func (c *cluster) gateway(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.cfg.httpPort+i)
}

func (c *cluster) start(name string, env []string, out string, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(filepath.Join(c.cfg.dir, out), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: a Ctrl-C in the terminal reaches chaos, which
	// stops its children itself, instead of killing them mid-check.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (c *cluster) startRedis() error {
	dir, err := filepath.Abs(filepath.Join(c.cfg.dir, "redis"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("redis dir: %w", err)
	}
	p, err := c.start("redis", nil, "redis.log", "redis-server",
		"--port", fmt.Sprint(c.cfg.redisPort), "--bind", "127.0.0.1", "--dir", dir, "--save", "",
		"--appendonly", "yes", "--appendfsync", "everysec")
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.redis = p
	c.mu.Unlock()
	return c.waitRedis(20 * time.Second)
}

func (c *cluster) waitRedis(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if redisPing(fmt.Sprintf("127.0.0.1:%d", c.cfg.redisPort)) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("redis on port %d not answering PING after %s (see %s)", c.cfg.redisPort, d, filepath.Join(c.cfg.dir, "redis.log"))
}

// redisPing reports whether Redis answers PING and has loaded its AOF
// (a loading Redis answers -LOADING).
func redisPing(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

func (c *cluster) memberEnv(i int) []string {
	var peers []string
	for k := 1; k <= 3; k++ {
		peers = append(peers, fmt.Sprintf("127.0.0.1:%d", c.cfg.automanagedPort+k-1))
	}
	return []string{
		"GRANARY_JWT_SECRET=" + c.secret,
		fmt.Sprintf("GRANARY_REDIS_URL=redis://127.0.0.1:%d/0", c.cfg.redisPort),
		fmt.Sprintf("GRANARY_HTTP_ADDR=127.0.0.1:%d", c.cfg.httpPort+i),
		"GRANARY_CLUSTER_PROVIDER=automanaged",
		fmt.Sprintf("GRANARY_CLUSTER_PORT=%d", c.cfg.clusterPort+i),
		fmt.Sprintf("GRANARY_AUTOMANAGED_PORT=%d", c.cfg.automanagedPort+i),
		"GRANARY_CLUSTER_PEERS=" + strings.Join(peers, ","),
		// Chaos clients are one subject hammering the cluster on purpose.
		"GRANARY_RATE_LIMIT=0",
	}
}

func (c *cluster) startMember(i int) error {
	p, err := c.start(fmt.Sprintf("member%d", i+1), c.memberEnv(i), fmt.Sprintf("member%d.log", i+1), c.cfg.granary, "node")
	if err != nil {
		return err
	}
	c.mu.Lock()
	if len(c.members) <= i {
		c.members = append(c.members, make([]*proc, i+1-len(c.members))...)
	}
	c.members[i] = p
	c.mu.Unlock()
	return nil
}

func (c *cluster) member(i int) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i]
}

func (c *cluster) redisProc() *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.redis
}

// waitReady waits for member i's /ready to answer 200.
func (c *cluster) waitReady(ctx context.Context, i int, d time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p := c.member(i); p != nil && !p.alive() {
			return fmt.Errorf("member%d exited (see %s)", i+1, filepath.Join(c.cfg.dir, fmt.Sprintf("member%d.log", i+1)))
		}
		resp, err := client.Get(c.gateway(i) + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("member%d not ready after %s", i+1, d)
}

func (c *cluster) waitAllReady(ctx context.Context, d time.Duration) error {
	var errs []error
	for i := range 3 {
		if err := c.waitReady(ctx, i, d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stopAll ends every process chaos started (and nothing else): SIGCONT
// first so a frozen one can die, then SIGKILL; the data is thrown away.
func (c *cluster) stopAll() {
	c.mu.Lock()
	ps := append([]*proc{c.redis}, c.members...)
	c.mu.Unlock()
	for _, p := range ps {
		if p != nil && p.alive() {
			_ = p.signal(syscall.SIGCONT)
			_ = p.signal(syscall.SIGKILL)
		}
	}
	for _, p := range ps {
		if p != nil {
			p.wait(10 * time.Second)
		}
	}
}
