package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// node is the Granary member under test; restart replaces its process.
type node struct {
	ps   *procs
	bin  string
	env  []string
	proc *proc
	base string // http://host:port
	runs int
}

func (n *node) start(ctx context.Context) error {
	n.runs++
	p, err := n.ps.start("granary", n.env, n.bin, "node")
	if err != nil {
		return err
	}
	n.proc = p
	addr, err := waitAddr(ctx, p, 60*time.Second)
	if err != nil {
		return err
	}
	n.base = "http://" + addr
	return waitHTTP(ctx, p, n.base+"/ready", 60*time.Second)
}

// restart stops the node with SIGTERM (it drains and leaves) and starts a
// new process on the same store; it returns how long that took.
func (n *node) restart(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	if err := n.proc.stop(30 * time.Second); err != nil {
		return 0, err
	}
	if err := n.start(ctx); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// heapInuse reads go_memstats_heap_inuse_bytes from the node's /metrics;
// ok is false when the node does not expose it.
func heapInuse(ctx context.Context, base string) (int64, bool) {
	return metricValue(ctx, base, "go_memstats_heap_inuse_bytes ")
}

// metricValue reads the sample starting with prefix from the node's
// /metrics.
func metricValue(ctx context.Context, base, prefix string) (int64, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return int64(f), err == nil
		}
	}
	return 0, false
}

// waitQuiet waits (up to d) until every read-model projection of the
// node has caught up with the journal, so the catch-up after a Granary
// round does not eat the CPU of the next round, whichever side it is.
func waitQuiet(ctx context.Context, admin *side, d time.Duration) (time.Duration, error) {
	t0 := time.Now()
	for {
		var st struct {
			Projections []struct {
				Lag uint64 `json:"lag"`
			} `json:"projections"`
		}
		status, err := admin.do(ctx, 0, http.MethodGet, "/api/v1/projections", nil, false, &st)
		if err == nil && status == http.StatusOK {
			var lag uint64
			for _, p := range st.Projections {
				lag += p.Lag
			}
			if lag == 0 {
				return time.Since(t0), nil
			}
			err = fmt.Errorf("projection lag %d", lag)
		} else if err == nil {
			err = fmt.Errorf("GET /api/v1/projections: %d", status)
		}
		if time.Since(t0) > d {
			return time.Since(t0), fmt.Errorf("granary not quiet after %s: %w", d, err)
		}
		select {
		case <-ctx.Done():
			return time.Since(t0), ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// measureMemory opens count accounts on a freshly started node (one that
// has served only a handful of requests) and reads
// its RSS (and heap, when /metrics has it) before and after. A warm-up of
// the same requests on other accounts comes first, so code pages,
// connection pools and the runtime's own structures are already in the
// "before" figure. The accounts stay activated: they passivate only after
// GRANARY_GRAIN_IDLE_TIMEOUT (5 m), well after the reading.
func measureMemory(ctx context.Context, n *node, s *side, count, concurrency int, pprofAddr, heapProfile string) (*memoryResult, error) {
	if _, err := openAccounts(ctx, s, "memwarm", 2000, 0, concurrency); err != nil {
		return nil, fmt.Errorf("memory warm-up: %w", err)
	}
	settle(ctx, 2*time.Second)
	pid := n.proc.cmd.Process.Pid
	res := &memoryResult{Accounts: count}
	var err error
	if res.RSSBefore, err = vmRSS(pid); err != nil {
		return nil, err
	}
	res.HeapInuseBefore, res.HeapMetricsAvailable = heapInuse(ctx, n.base)
	res.LiveHeapBefore, _ = liveHeap(ctx, n.base, pprofAddr, "")
	if res.RSSBefore, err = vmRSS(pid); err != nil { // after that GC, like RSSAfterGC
		return nil, err
	}
	progress := startProgress(ctx, "memory: opened", count)
	t0 := time.Now()
	_, err = openAccountsCounting(ctx, s, "mem", count, 0, concurrency, progress.done)
	progress.stop()
	if err != nil {
		return nil, fmt.Errorf("open %d accounts: %w", count, err)
	}
	res.OpenS = time.Since(t0).Seconds()
	// Let the requests' garbage be collected before reading.
	settle(ctx, 2*time.Second)
	if res.RSSAfter, err = vmRSS(pid); err != nil {
		return nil, err
	}
	res.RSSPerAccount = float64(res.RSSAfter-res.RSSBefore) / float64(count)
	if after, ok := heapInuse(ctx, n.base); ok && res.HeapMetricsAvailable {
		res.HeapInuseAfter = after
		res.HeapInusePerAccount = float64(after-res.HeapInuseBefore) / float64(count)
	} else {
		res.HeapMetricsAvailable = false
	}
	// The fixed cost of an idle account, apart from the collector's
	// headroom: with GOGC=100 Go lets the heap grow to twice what is live
	// before collecting, and keeps about that much resident.
	if after, ok := liveHeap(ctx, n.base, pprofAddr, heapProfile); ok && res.LiveHeapBefore > 0 {
		res.LiveHeapAfter = after
		res.LiveHeapPerAccount = float64(after-res.LiveHeapBefore) / float64(count)
		// And what stays resident once the collector has run.
		if rss, err := vmRSS(pid); err == nil {
			res.RSSAfterGC = rss
			res.RSSAfterGCPerAccount = float64(rss-res.RSSBefore) / float64(count)
		}
	}
	return res, nil
}

// liveHeap forces a GC on the node (pprof's heap profile with gc=1) and
// reads go_memstats_heap_alloc_bytes: what is live. The profile itself is
// written to saveTo when that is not empty.
func liveHeap(ctx context.Context, base, pprofAddr, saveTo string) (int64, bool) {
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(c, http.MethodGet, "http://"+pprofAddr+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return 0, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	var sink io.Writer = io.Discard
	if saveTo != "" {
		f, err := os.Create(saveTo)
		if err != nil {
			logf("heap profile: %v", err)
		} else {
			defer f.Close()
			sink = f
		}
	}
	if _, err := io.Copy(sink, resp.Body); err != nil && saveTo != "" {
		logf("heap profile %s: %v", saveTo, err)
	}
	resp.Body.Close()
	return metricValue(ctx, base, "go_memstats_heap_alloc_bytes ")
}

// settle waits d (or until ctx ends): a measuring pause, not a test's
// wait for a condition.
func settle(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// progress prints "<what> <done>/<total>" on stderr every 5 s.
type progress struct {
	done *atomic.Int64
	quit chan struct{}
	wg   sync.WaitGroup
}

func startProgress(ctx context.Context, what string, total int) *progress {
	p := &progress{done: &atomic.Int64{}, quit: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-p.quit:
				return
			case <-t.C:
				fmt.Fprintf(os.Stderr, "bench: %s %d/%d\n", what, p.done.Load(), total)
			}
		}
	}()
	return p
}

func (p *progress) stop() { close(p.quit); p.wg.Wait() }

// depositN sends n deposits of 1 to account id with concurrency workers.
// No Idempotency-Key: this only builds history to replay.
func depositN(ctx context.Context, s *side, id string, n, concurrency int, counter *atomic.Int64) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := range min(concurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				status, err := s.do(ctx, w, http.MethodPost, s.depositPath(id), depositBody, false, nil)
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("deposit to %s: status %d", id, status)
				}
				if err != nil {
					once.Do(func() { first = err })
					return
				}
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
	return first
}

// timedGet is one GET of an account, in milliseconds.
func timedGet(ctx context.Context, s *side, id string) (float64, error) {
	t0 := time.Now()
	status, err := s.do(ctx, 0, http.MethodGet, s.accountPath(id), nil, false, nil)
	d := time.Since(t0)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("GET %s: status %d", id, status)
	}
	return ms(d), err
}

// measureActivation gives fewAccounts accounts `few` events each and one
// account `many` events (1 AccountOpened + deposits, through the API, so
// snapshots are taken as the grain takes them), restarts the node, and
// times the first GET of each: the activation (snapshot + tail) is in it.
func measureActivation(ctx context.Context, n *node, s *side, few, many, fewAccounts, concurrency int) (*activationResult, error) {
	res := &activationResult{FewEvents: int64(few), ManyEvents: int64(many)}
	t0 := time.Now()
	fewIDs, err := openAccounts(ctx, s, "act-few", fewAccounts, 0, concurrency)
	if err != nil {
		return nil, err
	}
	manyIDs, err := openAccounts(ctx, s, "act-many", 1, 0, 1)
	if err != nil {
		return nil, err
	}
	warmIDs, err := openAccounts(ctx, s, "act-warm", 1, 0, 1)
	if err != nil {
		return nil, err
	}
	for _, id := range fewIDs {
		if err := depositN(ctx, s, id, few-1, concurrency, nil); err != nil {
			return nil, err
		}
	}
	prog := startProgress(ctx, "activation: events on the big account", many)
	err = depositN(ctx, s, manyIDs[0], many-1, concurrency, prog.done)
	prog.stop()
	if err != nil {
		return nil, err
	}
	res.BuildS = time.Since(t0).Seconds()
	fmt.Fprintf(os.Stderr, "bench: activation: history built in %.1fs; restarting granary\n", res.BuildS)
	d, err := n.restart(ctx)
	if err != nil {
		return nil, fmt.Errorf("restart granary: %w", err)
	}
	res.RestartS = d.Seconds()
	s.base = n.base
	s.closeIdle()
	// The first request after a start pays for things no account owns
	// (connections, the first placement); an unrelated account takes it.
	if _, err := timedGet(ctx, s, warmIDs[0]); err != nil {
		return nil, err
	}
	for _, id := range fewIDs {
		t, err := timedGet(ctx, s, id)
		if err != nil {
			return nil, err
		}
		res.FirstGetFewMs = append(res.FirstGetFewMs, t)
	}
	if res.FirstGetMany, err = timedGet(ctx, s, manyIDs[0]); err != nil {
		return nil, err
	}
	var warm []float64
	for range 5 {
		t, err := timedGet(ctx, s, manyIDs[0])
		if err != nil {
			return nil, err
		}
		warm = append(warm, t)
	}
	res.FirstGetFew, res.WarmGetMs = median(res.FirstGetFewMs), median(warm)
	return res, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
