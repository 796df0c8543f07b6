package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// side is one system under test as the load generator sees it: where its
// routes are, the token it sends, and whether it gets an Idempotency-Key
// on every change (Granary does: a real client would send one; the
// baseline ignores it, so it is not sent there).
type side struct {
	name        string // "baseline" or "granary"
	base        string // http://host:port
	prefix      string // "" (baseline) or "/api/v1" (Granary)
	token       string
	idempotency bool
	client      *http.Client
	pid         int           // the server's process, for its CPU figure
	keys        atomic.Uint64 // Idempotency-Key sequence
	nonce       string        // makes keys unique across bench runs
}

func newSide(name, base, prefix, token string, idempotency bool, clients int) *side {
	tr := &http.Transport{
		MaxIdleConns:        clients * 2,
		MaxIdleConnsPerHost: clients * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &side{name: name, base: base, prefix: prefix, token: token, idempotency: idempotency,
		client: &http.Client{Timeout: 10 * time.Second, Transport: tr},
		nonce:  strconv.FormatInt(time.Now().UnixNano(), 36)}
}

func (s *side) accountsPath() string         { return s.prefix + "/accounts" }
func (s *side) accountPath(id string) string { return s.prefix + "/accounts/" + id }
func (s *side) depositPath(id string) string { return s.prefix + "/accounts/" + id + "/deposits" }
func (s *side) transfersPath() string        { return s.prefix + "/transfers" }
func (s *side) closeIdle()                   { s.client.CloseIdleConnections() }
func (s *side) nextKey(worker int) string {
	return fmt.Sprintf("bench-%s-%d-%d", s.nonce, worker, s.keys.Add(1))
}
func (s *side) withKey(change bool) bool { return change && s.idempotency }
func (s *side) url(path string) string   { return s.base + path }
func (s *side) authHeader() string       { return "Bearer " + s.token }
func (s *side) newReq(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.url(path), r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", s.authHeader())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// do sends one request and drains the answer (so the connection is
// reused); out, when not nil, receives the decoded JSON of a 2xx answer.
func (s *side) do(ctx context.Context, worker int, method, path string, body []byte, change bool, out any) (int, error) {
	req, err := s.newReq(ctx, method, path, body)
	if err != nil {
		return 0, err
	}
	if s.withKey(change) {
		req.Header.Set("Idempotency-Key", s.nextKey(worker))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// op is one request of a workload.
type op struct {
	method, path string
	body         []byte
	change       bool // a mutation: gets an Idempotency-Key on Granary
}

// workload makes the next request for a worker from its own random source.
type workload struct {
	name string
	desc string
	next func(s *side, r *rand.Rand) op
}

// roundResult is one side's figures in one measured window.
type roundResult struct {
	Side      string         `json:"side"`
	Round     int            `json:"round"`
	OK        uint64         `json:"ok"`
	OpsPerSec float64        `json:"ops_per_sec"`
	P50ms     float64        `json:"p50_ms"`
	P99ms     float64        `json:"p99_ms"`
	P999ms    float64        `json:"p999_ms"`
	MaxMs     float64        `json:"max_ms"`
	Errors    map[string]int `json:"errors"` // by status ("503") or "transport"
	// CPU the server process and redis-server used in the window, per
	// 2xx answer (0 when /proc could not be read).
	ServerCPUusPerOp float64 `json:"server_cpu_us_per_op"`
	RedisCPUusPerOp  float64 `json:"redis_cpu_us_per_op"`
	// What Redis spent its time on in the window (INFO commandstats).
	RedisCommands []redisCommand `json:"redis_commands,omitempty"`
	// Mean calls per pipeline of each of the node's Redis pipeliners in
	// the window (granary_redis_pipelined_calls_total / _pipelines_total).
	PipelineBatch map[string]float64 `json:"pipeline_batch,omitempty"`
	hist          *hist
}

// run drives s with clients closed-loop workers: each sends its next
// request as soon as the previous one is answered. Requests answered in
// the warm-up are not counted; from then on, those answered before the
// window ends are: their 2xx count is the throughput, their 2xx latencies
// the percentiles, every other answer an error by status.
func run(ctx context.Context, s *side, w workload, clients int, warmup, window time.Duration, redisPid int, rc *redis.Client) roundResult {
	start := time.Now()
	measureFrom, measureTo := start.Add(warmup), start.Add(warmup+window)
	cpu := make(chan [2]time.Duration, 1)
	go func() { cpu <- cpuDuring(ctx, measureFrom, measureTo, s.pid, redisPid) }()
	type probes struct {
		cmds  [2]map[string]cmdStat
		pipes [2]map[string][2]float64
	}
	probed := make(chan probes, 1)
	go func() {
		var p probes
		defer func() { probed <- p }()
		read := func(i int) {
			if rc != nil {
				if st, err := commandStats(ctx, rc); err == nil {
					p.cmds[i] = st
				}
			}
			p.pipes[i] = pipelineCounters(ctx, s.base)
		}
		settle(ctx, time.Until(measureFrom))
		read(0)
		settle(ctx, time.Until(measureTo))
		read(1)
	}()
	hists := make([]*hist, clients)
	errs := make([]map[string]int, clients)
	var wg sync.WaitGroup
	for i := range clients {
		hists[i], errs[i] = &hist{}, map[string]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(i)))
			for ctx.Err() == nil {
				o := w.next(s, r)
				t0 := time.Now()
				status, err := s.do(ctx, i, o.method, o.path, o.body, o.change, nil)
				t1 := time.Now()
				if !t1.Before(measureTo) {
					return
				}
				if t1.Before(measureFrom) {
					continue
				}
				switch {
				case err != nil:
					errs[i]["transport"]++
				case status/100 == 2:
					hists[i].record(t1.Sub(t0))
				default:
					errs[i][strconv.Itoa(status)]++
				}
			}
		}()
	}
	wg.Wait()
	total := &hist{}
	res := roundResult{Side: s.name, Errors: map[string]int{}, hist: total}
	for i := range clients {
		total.merge(hists[i])
		for k, v := range errs[i] {
			res.Errors[k] += v
		}
	}
	res.OK = total.total
	res.OpsPerSec = float64(total.total) / window.Seconds()
	res.P50ms, res.P99ms, res.P999ms = ms(total.quantile(0.50)), ms(total.quantile(0.99)), ms(total.quantile(0.999))
	res.MaxMs = ms(time.Duration(total.max))
	if used := <-cpu; total.total > 0 {
		res.ServerCPUusPerOp = float64(used[0].Microseconds()) / float64(total.total)
		res.RedisCPUusPerOp = float64(used[1].Microseconds()) / float64(total.total)
	}
	p := <-probed
	if p.cmds[0] != nil && p.cmds[1] != nil {
		res.RedisCommands = commandsPerOp(p.cmds[0], p.cmds[1], total.total)
	}
	if p.pipes[0] != nil && p.pipes[1] != nil { // not since the node started
		res.PipelineBatch = batchSizes(p.pipes[0], p.pipes[1])
	}
	return res
}

// cpuDuring is the CPU each of pids used between from and to (0 for one
// whose /proc could not be read).
func cpuDuring(ctx context.Context, from, to time.Time, pids ...int) [2]time.Duration {
	var out [2]time.Duration
	read := func() (r [2]time.Duration, ok bool) {
		ok = true
		for i, pid := range pids[:2] {
			d, err := cpuTime(pid)
			if err != nil {
				ok = false
			}
			r[i] = d
		}
		return r, ok
	}
	settle(ctx, time.Until(from))
	before, ok1 := read()
	settle(ctx, time.Until(to))
	after, ok2 := read()
	if !ok1 || !ok2 || ctx.Err() != nil {
		return out
	}
	for i := range out {
		out[i] = after[i] - before[i]
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// openAccounts opens n accounts named <prefix>-<i> with initial balance,
// concurrency at a time, and returns their ids in order.
func openAccounts(ctx context.Context, s *side, prefix string, n int, initial int64, concurrency int) ([]string, error) {
	return openAccountsCounting(ctx, s, prefix, n, initial, concurrency, nil)
}

// openAccountsCounting is openAccounts adding each account opened to
// counter (when not nil), for progress lines.
func openAccountsCounting(ctx context.Context, s *side, prefix string, n int, initial int64, concurrency int, counter *atomic.Int64) ([]string, error) {
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for w := range min(concurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				body, _ := json.Marshal(map[string]any{"account_number": fmt.Sprintf("%s-%d", prefix, i),
					"owner_name": "Bench Owner", "initial_balance": initial})
				var a struct {
					ID string `json:"id"`
				}
				status, err := s.do(ctx, w, http.MethodPost, s.accountsPath(), body, true, &a)
				if err == nil && (status != http.StatusCreated || a.ID == "") {
					err = fmt.Errorf("open %s-%d on %s: status %d", prefix, i, s.name, status)
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				ids[i] = a.ID
				if counter != nil {
					counter.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return ids, first
}

// Workloads. Every change moves 1 minor unit, so balances opened with
// plenty never run dry and every answer is a 2xx unless something fails.
var depositBody = []byte(`{"amount":1,"description":"bench"}`)

func depositsOver(ids map[string][]string) workload {
	return workload{name: "deposits-1000", desc: "deposits over 1 000 accounts (random account per request)",
		next: func(s *side, r *rand.Rand) op {
			acc := ids[s.name]
			return op{method: http.MethodPost, path: s.depositPath(acc[r.IntN(len(acc))]), body: depositBody, change: true}
		}}
}

func depositsHot(hot map[string]string) workload {
	return workload{name: "deposits-hot", desc: "deposits on one hot account",
		next: func(s *side, _ *rand.Rand) op {
			return op{method: http.MethodPost, path: s.depositPath(hot[s.name]), body: depositBody, change: true}
		}}
}

func reads(ids map[string][]string) workload {
	return workload{name: "reads-1000", desc: "account reads (GET) over 1 000 accounts",
		next: func(s *side, r *rand.Rand) op {
			acc := ids[s.name]
			return op{method: http.MethodGet, path: s.accountPath(acc[r.IntN(len(acc))])}
		}}
}

func transfers(ids map[string][]string) workload {
	return workload{name: "transfers-1000", desc: "transfers between random pairs of the 1 000 accounts (Granary: a saga; baseline: one Lua script)",
		next: func(s *side, r *rand.Rand) op {
			acc := ids[s.name]
			from := r.IntN(len(acc))
			to := (from + 1 + r.IntN(len(acc)-1)) % len(acc)
			body := []byte(`{"from_account":"` + acc[from] + `","to_account":"` + acc[to] + `","amount":1}`)
			return op{method: http.MethodPost, path: s.transfersPath(), body: body, change: true}
		}}
}
