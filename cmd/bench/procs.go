package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one process the bench started. Only these are ever signalled,
// and procs.stopAll ends every one of them on any exit path.
type proc struct {
	name string
	log  string // where its stdout and stderr go
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	// addr receives the first address the process announces on stdout
	// ("… listening on http://…"), when it announces one.
	addr chan string
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs and waits.
func (p *proc) stop(grace time.Duration) error {
	if !p.alive() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return fmt.Errorf("%s ignored SIGTERM for %s and was killed", p.name, grace)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL for 10s", p.name, p.cmd.Process.Pid)
	}
}

type procs struct {
	dir string // logs and Redis data
	mu  sync.Mutex
	all []*proc
}

// start runs bin with args and env added to ours, output appended to
// dir/<name>.log, in its own process group so a Ctrl-C reaches only the
// bench, which then stops its children in order.
func (ps *procs) start(name string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(filepath.Join(ps.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = f
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stdout of %s: %w", name, err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, log: f.Name(), cmd: cmd, done: make(chan struct{}), addr: make(chan string, 1)}
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(f, line)
			if _, rest, ok := strings.Cut(line, " listening on "); ok && strings.HasPrefix(rest, "http://") {
				select {
				case p.addr <- strings.TrimPrefix(strings.TrimSpace(rest), "http://"):
				default:
				}
			}
		}
		_, _ = io.Copy(f, stdout)
	}()
	go func() {
		<-copied // Wait must follow the last read of the pipe
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// stopAll stops every process still running, newest first (the node
// before Redis, so it does not spend its drain retrying a dead store).
func (ps *procs) stopAll() []error {
	ps.mu.Lock()
	all := slices.Clone(ps.all)
	ps.mu.Unlock()
	slices.Reverse(all)
	var errs []error
	for _, p := range all {
		if err := p.stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// waitAddr waits for p to announce its address.
func waitAddr(ctx context.Context, p *proc, d time.Duration) (string, error) {
	select {
	case a := <-p.addr:
		return a, nil
	case <-p.done:
		return "", fmt.Errorf("%s exited before listening (see %s)", p.name, p.log)
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(d):
		return "", fmt.Errorf("%s did not announce its address in %s (see %s)", p.name, d, p.log)
	}
}

// waitHTTP polls url until it answers 200.
func waitHTTP(ctx context.Context, p *proc, url string, d time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		if !p.alive() {
			return fmt.Errorf("%s exited (see %s)", p.name, p.log)
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready at %s after %s: %v (see %s)", p.name, url, d, last, p.log)
}

// freePort asks the kernel for a free loopback port. Another process
// could take it before Redis binds it; Redis then fails to start and the
// bench says so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startRedis starts redis-server as a durable deployment would run it:
// AOF on, appendfsync everysec, no RDB snapshots. Automatic AOF rewrites
// are off so a rewrite cannot land in one side's window and not the
// other's.
func startRedis(ctx context.Context, ps *procs) (*proc, string, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, "", errors.New("redis-server is not installed (Debian: apt-get install -y redis-server)")
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(ps.dir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("redis dir: %w", err)
	}
	p, err := ps.start("redis", nil, "redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
		"--auto-aof-rewrite-percentage", "0")
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for !redisPing(addr) {
		if !p.alive() {
			return nil, "", fmt.Errorf("redis-server exited (see %s)", filepath.Join(ps.dir, "redis.log"))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, "", fmt.Errorf("redis on %s not answering PING", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p, "redis://" + addr + "/0", nil
}

// redisPing reports whether Redis answers PING (a loading one does not).
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

// vmRSS reads a process's resident set size from /proc (bytes).
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read RSS of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("parse VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuTime is the CPU (user + system) a process has used so far, from
// /proc/<pid>/stat. On a machine others use too, CPU per request is a
// steadier figure than requests per second.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields from the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	var ut, st int64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return 0, fmt.Errorf("utime of %d: %w", pid, err)
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return 0, fmt.Errorf("stime of %d: %w", pid, err)
	}
	return time.Duration(ut+st) * clockTick, nil
}
