// Command chaos is `make chaos`: a Jepsen-style run against real processes.
// It starts redis-server and three `granary node` members on loopback,
// runs concurrent clients on every gateway while it kills, freezes and
// stops members and kills Redis on a schedule, then checks the recorded
// history against the journal (see granary/internal/chaos). The last line
// is `chaos: PASS` or `chaos: FAIL <reasons>`; the exit code says the same.
//
// Settings (environment): CHAOS_DURATION (3m), CHAOS_CYCLES (20),
// CHAOS_CLIENTS (8), CHAOS_ACCOUNTS (8), CHAOS_DIR (.chaos),
// CHAOS_HTTP_PORT (8081: gateways on 8081-8083), CHAOS_CLUSTER_PORT (7081),
// CHAOS_AUTOMANAGED_PORT (6331), CHAOS_REDIS_PORT (a free one),
// CHAOS_GRANARY (bin/granary), CHAOS_SEED (time).
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"granary/internal/chaos"
)

// errFailed: the checks failed; the reasons are already printed.
var errFailed = errors.New("checks failed")

type config struct {
	duration        time.Duration
	cycles          int
	clients         int
	accounts        int
	dir             string
	httpPort        int
	clusterPort     int
	automanagedPort int
	redisPort       int
	granary         string
	seed            uint64
}

func loadConfig() (config, error) {
	c := config{duration: 3 * time.Minute, cycles: 20, clients: 8, accounts: 8, dir: ".chaos",
		httpPort: 8081, clusterPort: 7081, automanagedPort: 6331, granary: "bin/granary",
		seed: uint64(time.Now().UnixNano())}
	var errs []error
	dur := func(name string, p *time.Duration) {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s=%q: a positive duration like 60s", name, v))
				return
			}
			*p = d
		}
	}
	num := func(name string, p *int) {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				errs = append(errs, fmt.Errorf("%s=%q: a positive integer", name, v))
				return
			}
			*p = n
		}
	}
	dur("CHAOS_DURATION", &c.duration)
	num("CHAOS_CYCLES", &c.cycles)
	num("CHAOS_CLIENTS", &c.clients)
	num("CHAOS_ACCOUNTS", &c.accounts)
	num("CHAOS_HTTP_PORT", &c.httpPort)
	num("CHAOS_CLUSTER_PORT", &c.clusterPort)
	num("CHAOS_AUTOMANAGED_PORT", &c.automanagedPort)
	num("CHAOS_REDIS_PORT", &c.redisPort)
	if v := os.Getenv("CHAOS_DIR"); v != "" {
		c.dir = v
	}
	if v := os.Getenv("CHAOS_GRANARY"); v != "" {
		c.granary = v
	}
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("CHAOS_SEED=%q: an integer", v))
		}
		c.seed = n
	}
	if c.redisPort == 0 {
		// Any free port; Redis restarts on the same one after kill -9.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			errs = append(errs, fmt.Errorf("a free port for redis: %w", err))
		} else {
			c.redisPort = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
	}
	if c.accounts < 2 {
		errs = append(errs, errors.New("CHAOS_ACCOUNTS: at least 2 (transfers need two)"))
	}
	return c, errors.Join(errs...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx)
	if errors.Is(err, errFailed) {
		os.Exit(1)
	}
	if err != nil {
		fmt.Printf("chaos: FAIL %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("chaos: "+format+"\n", args...)
}

// portsFree refuses to start on ports something else holds: chaos must not
// talk to (or kill) anyone else's cluster.
func portsFree(cfg config) error {
	ports := []int{cfg.redisPort}
	for i := range 3 {
		ports = append(ports, cfg.httpPort+i, cfg.clusterPort+i, cfg.automanagedPort+i)
	}
	for _, p := range ports {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return fmt.Errorf("port %d is in use (set CHAOS_HTTP_PORT, CHAOS_CLUSTER_PORT, CHAOS_AUTOMANAGED_PORT, CHAOS_REDIS_PORT): %w", p, err)
		}
		l.Close()
	}
	return nil
}

func run(ctx context.Context) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return errors.New("redis-server is not installed (Debian: apt-get install -y redis-server)")
	}
	if err := portsFree(cfg); err != nil {
		return err
	}
	// A fresh directory each run: the journal checked is this run's only.
	if err := os.RemoveAll(cfg.dir); err != nil {
		return fmt.Errorf("clean %s: %w", cfg.dir, err)
	}
	if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", cfg.dir, err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("jwt secret: %w", err)
	}
	c := &cluster{cfg: cfg, secret: base64.RawURLEncoding.EncodeToString(secret)}
	defer c.stopAll()
	logf("seed %d, %s, %d fault cycles, %d clients, %d accounts, logs in %s", cfg.seed, cfg.duration, cfg.cycles, cfg.clients, cfg.accounts, cfg.dir)
	if err := c.startRedis(); err != nil {
		return err
	}
	for i := range 3 {
		if err := c.startMember(i); err != nil {
			return err
		}
	}
	if err := c.waitAllReady(ctx, 60*time.Second); err != nil {
		return err
	}
	cmdEnv := exec.Command(cfg.granary, "token", "-sub", "chaos", "-roles", "admin", "-ttl", "2h")
	cmdEnv.Env = append(os.Environ(), "GRANARY_JWT_SECRET="+c.secret)
	out, err := cmdEnv.Output()
	if err != nil {
		return fmt.Errorf("granary token: %w", err)
	}
	a := &api{c: c, token: strings.TrimSpace(string(out)), http: &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
	}}}
	logf("cluster up: redis 127.0.0.1:%d, gateways %s %s %s", cfg.redisPort, c.gateway(0), c.gateway(1), c.gateway(2))

	j := chaos.Journal{Events: map[string][]chaos.Event{}, Balances: map[string]int64{}, Initial: map[string]int64{}, Transfers: map[string]string{}}
	var accounts []string
	for i := range cfg.accounts {
		initial := int64(10000)
		body := map[string]any{"account_number": fmt.Sprintf("CHAOS-%d-%d", cfg.seed%1000000, i), "owner_name": "Chaos", "initial_balance": initial}
		ans := a.do(ctx, i%3, "POST", "/api/v1/accounts", body, fmt.Sprintf("open-%d-%d", cfg.seed, i), 10*time.Second)
		if ans.status != 201 {
			return fmt.Errorf("open account %d: %d %s %v", i, ans.status, ans.code, ans.err)
		}
		var acc accountJSON
		if err := json.Unmarshal(ans.body, &acc); err != nil {
			return fmt.Errorf("open account %d: %w", i, err)
		}
		accounts = append(accounts, acc.ID)
		j.Initial[acc.ID] = initial
	}

	h := &history{}
	stopClients := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cfg.clients {
		wg.Go(func() { a.worker(ctx, stopClients, i, accounts, h, cfg.seed) })
	}
	var fault atomicString
	fault.set("none")
	progressDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(progressDone)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				logf("%3.0fs ops %d (ok %d, indeterminate %d), fault: %s", time.Since(start).Seconds(), h.n.Load(), h.ok.Load(), h.indet.Load(), fault.get())
			case <-stopClients:
				return
			}
		}
	}()
	faults, faultErr := runFaults(ctx, c, cfg, &fault)
	fault.set("none (faults over, letting clients finish)")
	// A last quiet stretch so the history ends with the cluster healthy.
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
	}
	// Where the availability figures end: after this no client starts a
	// call, so a straggler returning later (a retry of a key still held)
	// is no stretch of the cluster's.
	loadEnd := time.Now()
	close(stopClients)
	wg.Wait()
	<-progressDone
	end := time.Now()
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	if faultErr != nil {
		logf("fault schedule: %v", faultErr)
	}
	if err := c.waitAllReady(ctx, 60*time.Second); err != nil {
		return fmt.Errorf("cluster did not recover after the faults: %w", err)
	}
	ops := h.all()
	logf("clients done: %d ops in %s, %d faults; reading the journal", len(ops), end.Sub(start).Round(time.Second), len(faults))
	if err := collect(ctx, a, ops, accounts, &j); err != nil {
		return fmt.Errorf("reading the journal: %w", err)
	}
	// Keep what was checked, to look into a failure afterwards.
	for name, v := range map[string]any{"history.json": ops, "journal.json": j, "faults.json": faults} {
		if b, err := json.MarshalIndent(v, "", " "); err == nil {
			_ = os.WriteFile(filepath.Join(cfg.dir, name), b, 0o644)
		}
	}
	if !report(cfg, ops, j, faults, loadEnd, faultErr) {
		return errFailed // report printed the reasons
	}
	return nil
}

type atomicString struct {
	mu sync.Mutex
	s  string
}

func (a *atomicString) set(s string) { a.mu.Lock(); a.s = s; a.mu.Unlock() }
func (a *atomicString) get() string  { a.mu.Lock(); defer a.mu.Unlock(); return a.s }

var faultKinds = []string{"kill9", "sigstop", "redis-kill9", "sigterm"}

// runFaults injects cfg.cycles faults spread over cfg.duration, each healed
// before the next, and the cluster ready again before the next starts.
func runFaults(ctx context.Context, c *cluster, cfg config, cur *atomicString) ([]chaos.Fault, error) {
	per := cfg.duration / time.Duration(cfg.cycles)
	var faults []chaos.Fault
	for n := range cfg.cycles {
		cycleStart := time.Now()
		kind := faultKinds[n%len(faultKinds)]
		m := (n / len(faultKinds)) % 3
		f := chaos.Fault{Kind: kind, Start: time.Now()}
		var err error
		switch kind {
		case "kill9":
			cur.set(fmt.Sprintf("kill -9 member%d", m+1))
			p := c.member(m)
			_ = p.signal(syscall.SIGKILL)
			p.wait(10 * time.Second)
			sleep(ctx, 2*time.Second)
			f.End = time.Now()
			err = c.startMember(m)
		case "sigstop":
			cur.set(fmt.Sprintf("SIGSTOP member%d for 5s", m+1))
			p := c.member(m)
			_ = p.signal(syscall.SIGSTOP)
			sleep(ctx, 5*time.Second)
			_ = p.signal(syscall.SIGCONT)
			f.End = time.Now()
		case "redis-kill9":
			cur.set("kill -9 redis-server")
			p := c.redisProc()
			_ = p.signal(syscall.SIGKILL)
			p.wait(10 * time.Second)
			sleep(ctx, time.Second)
			f.End = time.Now()
			err = c.startRedis()
		case "sigterm":
			cur.set(fmt.Sprintf("SIGTERM member%d", m+1))
			p := c.member(m)
			_ = p.signal(syscall.SIGTERM)
			if !p.wait(30 * time.Second) {
				err = fmt.Errorf("member%d did not exit within 30s of SIGTERM", m+1)
				_ = p.signal(syscall.SIGKILL)
				p.wait(10 * time.Second)
			}
			f.End = time.Now()
			if e := c.startMember(m); e != nil {
				err = errors.Join(err, e)
			}
		}
		faults = append(faults, f)
		if err != nil {
			return faults, fmt.Errorf("%s: %w", kind, err)
		}
		cur.set("recovering from " + kind)
		if err := c.waitAllReady(ctx, 60*time.Second); err != nil {
			return faults, fmt.Errorf("after %s: %w", kind, err)
		}
		cur.set("none")
		if rest := per - time.Since(cycleStart); rest > 0 {
			sleep(ctx, rest)
		} else {
			sleep(ctx, time.Second)
		}
		if ctx.Err() != nil {
			return faults, ctx.Err()
		}
	}
	return faults, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// get reads a path with retries: after the faults every member should
// answer, but a moment of 503 while grains move is not a finding.
func (a *api) get(ctx context.Context, path string, v any) (int, error) {
	var last answer
	for attempt := range 30 {
		last = a.do(ctx, attempt%3, "GET", path, nil, "", 10*time.Second)
		if last.status == 200 {
			return 200, json.Unmarshal(last.body, v)
		}
		if last.status == 404 {
			return 404, nil
		}
		sleep(ctx, 500*time.Millisecond)
	}
	return last.status, fmt.Errorf("GET %s: %d %s %v", path, last.status, last.code, last.err)
}

// collect waits for every transfer to finish and reads each account's
// journal and balance.
func collect(ctx context.Context, a *api, ops []chaos.Op, accounts []string, j *chaos.Journal) error {
	deadline := time.Now().Add(90 * time.Second)
	for _, op := range ops {
		if op.Kind != chaos.Transfer {
			continue
		}
		for {
			var t transferJSON
			st, err := a.get(ctx, "/api/v1/transfers/"+op.ID, &t)
			if err != nil {
				return err
			}
			if st == 404 {
				break
			}
			j.Transfers[op.ID] = t.Status
			if t.Status == "completed" || t.Status == "compensated" || time.Now().After(deadline) {
				break
			}
			sleep(ctx, 500*time.Millisecond)
		}
	}
	for _, acct := range accounts {
		after := int64(0)
		for {
			var page struct {
				Events []struct {
					Version int64  `json:"version"`
					Type    string `json:"type"`
					Data    struct {
						Amount         int64  `json:"amount"`
						Description    string `json:"description"`
						TransferID     string `json:"transfer_id"`
						InitialBalance int64  `json:"initial_balance"`
					} `json:"data"`
					OccurredAt time.Time `json:"occurred_at"`
				} `json:"events"`
				Next *int64 `json:"next_after_version"`
			}
			if _, err := a.get(ctx, fmt.Sprintf("/api/v1/accounts/%s/events?after_version=%d&limit=1000", acct, after), &page); err != nil {
				return err
			}
			for _, e := range page.Events {
				j.Events[acct] = append(j.Events[acct], chaos.Event{Version: e.Version, Type: e.Type, Amount: e.Data.Amount,
					Description: e.Data.Description, TransferID: e.Data.TransferID, Initial: e.Data.InitialBalance, OccurredAt: e.OccurredAt})
			}
			// Page by the last version seen: it works whether or not the
			// gateway sends next_after_version, and an empty page ends it.
			if len(page.Events) == 0 || (page.Next == nil && len(page.Events) < 1000) {
				break
			}
			after = page.Events[len(page.Events)-1].Version
		}
		var acc accountJSON
		if _, err := a.get(ctx, "/api/v1/accounts/"+acct, &acc); err != nil {
			return err
		}
		j.Balances[acct] = acc.Balance
	}
	return nil
}

// report prints every checker's verdict and the summary; it returns PASS.
func report(cfg config, ops []chaos.Op, j chaos.Journal, faults []chaos.Fault, loadEnd time.Time, faultErr error) bool {
	kinds := map[chaos.Kind]map[chaos.Outcome]int{}
	for _, op := range ops {
		if kinds[op.Kind] == nil {
			kinds[op.Kind] = map[chaos.Outcome]int{}
		}
		kinds[op.Kind][op.Outcome]++
	}
	for _, k := range []chaos.Kind{chaos.Deposit, chaos.Withdraw, chaos.Read, chaos.Transfer} {
		logf("ops %-8s %v", k, kinds[k])
	}
	fk := map[string]int{}
	for _, f := range faults {
		fk[f.Kind]++
	}
	logf("faults %d: %v", len(faults), fk)

	journal, lost := chaos.CheckJournal(ops, j)
	reports := []chaos.Report{
		chaos.CheckStatuses(ops),
		journal,
		chaos.CheckLinearizable(ops, j, cfg.dir, 2*time.Minute),
		chaos.CheckConservation(ops, j),
		chaos.CheckSagas(ops, j),
	}
	var reasons []string
	for _, r := range reports {
		verdict := "ok"
		if !r.OK() {
			verdict = "FAIL"
			reasons = append(reasons, r.Name)
		}
		logf("check %-16s %s: %s", r.Name, verdict, r.Summary)
		for _, p := range r.Problems {
			logf("  %s", p)
		}
	}
	logf("lost acknowledged writes: %d", lost)
	un := chaos.Unavailability(ops, faults, loadEnd)
	names := make([]string, 0, len(un))
	for k := range un {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		logf("longest stretch without a successful write during %-12s %s", k, un[k].Round(10*time.Millisecond))
	}
	if faultErr != nil {
		reasons = append(reasons, "faults")
	}
	logf("history and logs in %s", filepath.Clean(cfg.dir))
	if len(reasons) > 0 {
		fmt.Printf("chaos: FAIL %s\n", strings.Join(reasons, ", "))
		return false
	}
	fmt.Println("chaos: PASS")
	return true
}
