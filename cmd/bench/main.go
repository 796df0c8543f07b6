// Command bench is `make bench`: Granary against a hand-written baseline
// service, measured from outside in the same run on the same Redis.
//
// It starts a real redis-server (AOF on, appendfsync everysec, no RDB
// snapshots, automatic AOF rewrites off), one `granary node` and the
// baseline (this binary's `baseline` subcommand: Echo + golang-jwt +
// go-redis, one Lua script per change, no actors), all on 127.0.0.1 and
// free ports, with logs and Redis data in a temporary directory. Then it
// drives both with the same closed-loop load generator, alternating
// baseline, Granary, baseline, Granary for every workload (each round a
// warm-up and a fixed window; for the proxy workload the two sides are an
// upstream in this process called directly and the same upstream behind
// the node's gateway route), measures Granary's memory per idle
// activated account and its activation time at few and many events, and
// prints a table on stdout, progress on stderr, and everything as JSON
// under bench/results/. The last line is
// `deposits vs baseline: throughput <x>x, p99 <y>x`.
//
// Every process it starts is stopped when it ends, also on Ctrl-C or a
// failure.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "baseline" {
		if err := runBaseline(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "baseline:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := runBench(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAIL:", err)
		os.Exit(1)
	}
}

type options struct {
	granary        string
	clients        int
	warmup, window time.Duration
	rounds         int
	accounts       int
	memAccounts    int
	actFew         int
	actMany        int
	actFewAccounts int
	workloads      string
	resultsDir     string
	cpuProfile     string
	heapProfile    string
	profWorkload   string
	pprofAddr      string
	keep           bool
	accessLog      bool
	idempotency    bool
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.granary, "granary", "bin/granary", "granary binary")
	fs.IntVar(&o.clients, "clients", 64, "closed-loop clients per round")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up of each round (not counted)")
	fs.DurationVar(&o.window, "window", 7*time.Second, "measured window of each round")
	fs.IntVar(&o.rounds, "rounds", 2, "rounds per side and workload (A/B/A/B…)")
	fs.IntVar(&o.accounts, "accounts", 1000, "accounts of the spread workloads, per side")
	fs.IntVar(&o.memAccounts, "memory-accounts", 100000, "idle accounts activated for the memory figure (0 = skip)")
	fs.IntVar(&o.actMany, "activation-events", 100000, "events of the big account for the activation figure (0 = skip)")
	fs.IntVar(&o.actFew, "activation-events-few", 100, "events of each small account for the activation figure")
	fs.IntVar(&o.actFewAccounts, "activation-few-accounts", 5, "small accounts timed (median)")
	fs.StringVar(&o.workloads, "workloads", "deposits-1000,deposits-hot,reads-1000,transfers-1000,proxy", "workloads to run, comma-separated")
	fs.StringVar(&o.resultsDir, "results", "bench/results", "where the JSON goes")
	fs.StringVar(&o.cpuProfile, "cpuprofile-granary", "", "write a 5 s CPU profile of the node, taken in the first Granary round of -cpuprofile-workload")
	fs.StringVar(&o.heapProfile, "heapprofile-granary", "", "write the node's heap profile (after a forced GC) taken once the memory phase's accounts are open")
	fs.StringVar(&o.profWorkload, "cpuprofile-workload", "deposits-1000", "the workload whose first Granary round -cpuprofile-granary profiles")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "host:port of the node's net/http/pprof (passed to it as GRANARY_PPROF_ADDR)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, Redis data) after a successful run")
	fs.BoolVar(&o.idempotency, "idempotency-keys", true, "send a unique Idempotency-Key with every change to Granary, as a real client would (false: measure without that cost)")
	fs.BoolVar(&o.accessLog, "baseline-access-log", true, "the baseline logs one line per request, as Granary's node does")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.clients < 1 || o.rounds < 1 || o.accounts < 2 || o.window <= 0 || o.warmup < 0 || o.actFew < 1 || o.actFewAccounts < 1 {
		return o, errors.New("need -clients ≥ 1, -rounds ≥ 1, -accounts ≥ 2, -window > 0, -warmup ≥ 0, -activation-events-few ≥ 1, -activation-few-accounts ≥ 1")
	}
	return o, nil
}

func token(secret []byte, sub string, roles []string) (string, error) {
	now := time.Now()
	claims := jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(), "iss": "bench"}
	if len(roles) > 0 {
		claims["roles"] = roles
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token for %s: %w", sub, err)
	}
	return s, nil
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...) }

func runBench(ctx context.Context, args []string) (err error) {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	res := &results{StartedAt: time.Now().UTC(), Host: hostInfo{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}}
	res.Host.Hostname, _ = os.Hostname()
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		res.Host.Redis = strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(o.granary); err != nil {
		return fmt.Errorf("granary binary: %w (make bench builds it)", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary for the baseline: %w", err)
	}
	dir, err := os.MkdirTemp("", "granary-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	ps := &procs{dir: dir}
	defer func() {
		for _, e := range ps.stopAll() {
			logf("stop: %v", e)
		}
		if err == nil && !o.keep {
			os.RemoveAll(dir)
		} else {
			logf("logs and Redis data kept in %s", dir)
		}
	}()

	secretBytes := make([]byte, 32)
	if _, err := rand.Read(secretBytes); err != nil {
		return fmt.Errorf("make JWT secret: %w", err)
	}
	secret := hex.EncodeToString(secretBytes)
	userToken, err := token([]byte(secret), "bench-user", nil)
	if err != nil {
		return err
	}
	adminToken, err := token([]byte(secret), "bench-admin", []string{"admin"})
	if err != nil {
		return err
	}

	redisProc, redisURL, err := startRedis(ctx, ps)
	if err != nil {
		return err
	}
	granaryEnv := []string{
		"GRANARY_REDIS_URL=" + redisURL,
		"GRANARY_HTTP_ADDR=127.0.0.1:0",
		"GRANARY_CLUSTER_PROVIDER=local",
		"GRANARY_CLUSTER_HOST=127.0.0.1",
		"GRANARY_CLUSTER_PORT=0",
		// The baseline does no rate limiting; one bench subject at full
		// speed would be throttled at 600/min.
		"GRANARY_RATE_LIMIT=0",
	}
	if o.pprofAddr == "" {
		// pprof also lets the memory phase force a GC and read the live
		// heap, so it is always on (loopback only).
		port, err := freePort()
		if err != nil {
			return fmt.Errorf("pprof port: %w", err)
		}
		o.pprofAddr = fmt.Sprintf("127.0.0.1:%d", port)
	}
	granaryEnv = append(granaryEnv, "GRANARY_PPROF_ADDR="+o.pprofAddr)
	res.Config = benchConfig{Clients: o.clients, WarmupS: o.warmup.Seconds(), WindowS: o.window.Seconds(), Rounds: o.rounds,
		Accounts: o.accounts, MemoryAccounts: o.memAccounts, ActivationFew: o.actFew, ActivationMany: o.actMany,
		RedisFsync: "everysec", GranaryEnv: granaryEnv}
	res.Notes = append(res.Notes,
		"GRANARY_RATE_LIMIT=0 on the node: the baseline does no rate limiting",
		"same redis-server for both (AOF on, appendfsync everysec, --save '', auto AOF rewrite off); both verify the HS256 JWT on every request",
		"transfers: Granary runs a durable saga (withdraw, then deposit); the baseline one Lua script moving both balances atomically",
		"ops/s counts 2xx answers in the window; percentiles are of 2xx answers; other statuses are listed as errors",
		"before each round the bench waits until Granary's read-model projections have caught up (lag 0), so one round's catch-up does not run in the next round's window")
	if o.idempotency {
		res.Notes = append(res.Notes, "Granary gets a unique Idempotency-Key on every deposit, transfer and open (a real client sends one; Granary records it in Redis); the baseline gets none (-idempotency-keys=false to measure without)")
	} else {
		res.Notes = append(res.Notes, "-idempotency-keys=false: Granary got no Idempotency-Key (it makes a command id itself), like the baseline")
	}
	if o.accessLog {
		res.Notes = append(res.Notes, "both log one line per request (Granary's access log at info, the baseline's slog line), to files")
	}
	if strings.Contains(o.workloads, proxyWorkload) {
		res.Notes = append(res.Notes, "proxy: A is GET /users/<n> on an upstream inside the bench process (net/http, small JSON), B the same GET as /api/bench/<n> through the node's route (auth required: the gateway verifies the JWT, then proxies); ratios are B/A; the direct arm has no server CPU figure (its server is the bench process), so its CPU ratio is 0")
	}
	if o.cpuProfile == "" {
		res.Notes = append(res.Notes, "no CPU profile taken: pass -cpuprofile-granary <file>")
	}
	env := append(granaryEnv, "GRANARY_JWT_SECRET="+secret)
	n := &node{ps: ps, bin: o.granary, env: env}
	if err := n.start(ctx); err != nil {
		return fmt.Errorf("start granary: %w", err)
	}
	blArgs := []string{"baseline", "-addr", "127.0.0.1:0", "-redis", redisURL}
	if !o.accessLog {
		blArgs = append(blArgs, "-access-log=false")
	}
	bl, err := ps.start("baseline", []string{"BENCH_JWT_SECRET=" + secret}, self, blArgs...)
	if err != nil {
		return err
	}
	blAddr, err := waitAddr(ctx, bl, 30*time.Second)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, bl, "http://"+blAddr+"/health", 30*time.Second); err != nil {
		return err
	}
	logf("redis %s, granary %s (pid %d), baseline http://%s (pid %d), logs in %s", redisURL, n.base, n.proc.cmd.Process.Pid, blAddr, bl.cmd.Process.Pid, dir)

	sides := []*side{
		newSide("baseline", "http://"+blAddr, "", userToken, false, o.clients),
		newSide("granary", n.base, "/api/v1", userToken, o.idempotency, o.clients),
	}
	sides[0].pid, sides[1].pid = bl.cmd.Process.Pid, n.proc.cmd.Process.Pid
	admin := newSide("granary-admin", n.base, "", adminToken, false, 1)

	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("parse %s: %w", redisURL, err)
	}
	rc := redis.NewClient(opt)
	defer rc.Close()
	if err := runWorkloads(ctx, o, res, sides, admin, redisProc.cmd.Process.Pid, rc); err != nil {
		return err
	}
	granary := sides[1]
	// Activation first: its restart also gives the memory figure a fresh
	// process, and stopping a node that holds few grains is quick.
	if o.actMany > 0 {
		if res.Activation, err = measureActivation(ctx, n, granary, o.actFew, o.actMany, o.actFewAccounts, o.clients); err != nil {
			return fmt.Errorf("activation: %w", err)
		}
		logf("activation: first GET %.1f ms at %d events, %.1f ms at %d events, warm %.1f ms",
			res.Activation.FirstGetFew, o.actFew, res.Activation.FirstGetMany, o.actMany, res.Activation.WarmGetMs)
	} else if o.memAccounts > 0 {
		logf("memory: restarting granary for a clean figure")
		if _, err := n.restart(ctx); err != nil {
			return fmt.Errorf("restart granary: %w", err)
		}
		granary.base = n.base
		granary.closeIdle()
	}
	if o.memAccounts > 0 {
		if res.Memory, err = measureMemory(ctx, n, granary, o.memAccounts, 128, o.pprofAddr, o.heapProfile); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		logf("memory: %d accounts: RSS %.1f → %.1f MiB, %.0f B/account", res.Memory.Accounts, mib(res.Memory.RSSBefore), mib(res.Memory.RSSAfter), res.Memory.RSSPerAccount)
		// Stopping a node that holds that many grains is a figure too
		// (and done here, so nothing is printed after the last line).
		t0 := time.Now()
		stopErr := n.proc.stop(30 * time.Second)
		res.Memory.StopS = time.Since(t0).Seconds()
		if stopErr != nil {
			res.Memory.StopKilled = true
			res.Notes = append(res.Notes, fmt.Sprintf("granary holding %d activated accounts did not exit within 30s of SIGTERM and was killed", o.memAccounts))
		}
		logf("memory: granary stopped %.1fs after SIGTERM (killed: %v)", res.Memory.StopS, res.Memory.StopKilled)
	}

	res.FinishedAt = time.Now().UTC()
	res.DurationS = res.FinishedAt.Sub(res.StartedAt).Seconds()
	res.Summary = summaryLine(res.Workloads)
	res.ProxySummary = proxySummaryLine(res.Workloads)
	path, err := writeJSON(o.resultsDir, res)
	if err != nil {
		return err
	}
	printTable(os.Stdout, res)
	fmt.Printf("results: %s (%.0fs)\n", path, res.DurationS)
	if res.ProxySummary != "" {
		fmt.Println(res.ProxySummary)
	}
	fmt.Println(res.Summary)
	return nil
}

// runWorkloads opens the accounts on both sides and runs every workload
// A/B/A/B.
func runWorkloads(ctx context.Context, o options, res *results, sides []*side, admin *side, redisPid int, rc *redis.Client) error {
	var selected []string
	needAccounts := false
	for _, name := range strings.Split(o.workloads, ",") {
		name = strings.TrimSpace(name)
		if name == "" { // -workloads "" measures only memory and activation
			continue
		}
		selected = append(selected, name)
		needAccounts = needAccounts || name != proxyWorkload
	}
	ids := map[string][]string{}
	hot := map[string]string{}
	for _, s := range sides {
		if !needAccounts {
			break
		}
		t0 := time.Now()
		acc, err := openAccounts(ctx, s, "acct", o.accounts, 1_000_000_000_000, o.clients)
		if err != nil {
			return fmt.Errorf("open accounts on %s: %w", s.name, err)
		}
		h, err := openAccounts(ctx, s, "hot", 1, 0, 1)
		if err != nil {
			return fmt.Errorf("open hot account on %s: %w", s.name, err)
		}
		ids[s.name], hot[s.name] = acc, h[0]
		logf("opened %d accounts on %s in %.1fs", o.accounts+1, s.name, time.Since(t0).Seconds())
	}
	all := map[string]workload{}
	for _, w := range []workload{depositsOver(ids), depositsHot(hot), reads(ids), transfers(ids), proxied()} {
		all[w.name] = w
	}
	for _, name := range selected {
		if _, ok := all[name]; !ok {
			return fmt.Errorf("unknown workload %q", name)
		}
	}
	for _, name := range selected {
		w := all[name]
		wr := workloadResult{Name: w.name, Description: w.desc}
		wSides := sides
		if w.name == proxyWorkload {
			px, err := setupProxy(ctx, admin, sides[1].base, sides[1].token, o.clients, sides[1].pid)
			if err != nil {
				return fmt.Errorf("proxy workload: %w", err)
			}
			defer px.close()
			wSides = []*side{px.direct, px.gateway}
			wr.Sides = []string{px.direct.name, px.gateway.name}
			logf("proxy: upstream http://%s registered as %s/%s, route %s → %s", px.up.addr, proxyService, proxyInstance, proxyPrefix, proxyRewrite)
		}
		for round := 1; round <= o.rounds; round++ {
			for _, s := range wSides {
				if d, err := waitQuiet(ctx, admin, 60*time.Second); err != nil {
					res.Notes = append(res.Notes, fmt.Sprintf("%s %s round %d: %v", w.name, s.name, round, err))
					logf("%v", err)
				} else if d > time.Second {
					logf("waited %.1fs for granary's projections to catch up", d.Seconds())
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				var profile chan error
				if o.cpuProfile != "" && s.name == "granary" && w.name == o.profWorkload && round == 1 {
					profile = make(chan error, 1)
					go func() { profile <- fetchProfile(ctx, o.pprofAddr, o.cpuProfile, o.warmup) }()
				}
				r := run(ctx, s, w, o.clients, o.warmup, o.window, redisPid, rc)
				r.Round = round
				if profile != nil {
					if err := <-profile; err != nil {
						res.Notes = append(res.Notes, "cpu profile: "+err.Error())
						logf("cpu profile: %v", err)
					} else {
						res.CPUProfile = o.cpuProfile
						res.Notes = append(res.Notes, "the first Granary round of "+w.name+" ran under a 5 s CPU profile (written to "+o.cpuProfile+")")
						logf("cpu profile of granary written to %s", o.cpuProfile)
					}
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				wr.Rounds = append(wr.Rounds, r)
				logf("%s %s round %d/%d: %.0f ops/s, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, cpu/op %.0f µs server + %.0f µs redis, errors %s",
					w.name, s.name, round, o.rounds, r.OpsPerSec, r.P50ms, r.P99ms, r.P999ms, r.ServerCPUusPerOp, r.RedisCPUusPerOp, errorsText(r.Errors))
				var parts []string
				if len(r.RedisCommands) > 0 {
					parts = append(parts, "redis per op: "+commandsText(r.RedisCommands))
				}
				if len(r.PipelineBatch) > 0 {
					parts = append(parts, "mean pipeline batch: "+batchText(r.PipelineBatch))
				}
				if len(parts) > 0 {
					logf("%s %s round %d/%d: %s", w.name, s.name, round, o.rounds, strings.Join(parts, "; "))
				}
			}
		}
		summarise(&wr)
		res.Workloads = append(res.Workloads, wr)
	}
	return nil
}

// fetchProfile waits out the warm-up, then takes a 5 s CPU profile from
// the node's pprof endpoint into path.
func fetchProfile(ctx context.Context, addr, path string, after time.Duration) error {
	settle(ctx, after)
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/profile?seconds=5", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch profile from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch profile from %s: status %d", addr, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.ReadFrom(resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
