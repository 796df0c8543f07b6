package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"granary/http/auth"
	"granary/testkit"
)

// Done-means 3 of issue 9: a real `granary node` that activated 20 000
// distinct grain ids (counters written to, reads of counters and accounts
// that do not exist) and let them passivate returns to within 20 MB of the
// RSS it had before. Before the fix every grain preallocated a 1000-entry
// map (~50 KB), reads of unknown ids kept their grain for the idle timeout,
// and stopped grains stayed reachable through stale PIDs.
//
// RSS is read from /proc/<pid>/status. The baseline is taken after a
// warm-up of the same requests on other ids has passivated, so code pages,
// connection pools and the runtime's own structures are already in it:
// what is compared is what 20 000 more ids leave behind. No GOGC, GOMEMLIMIT
// or debug hook is set: memory comes back through the runtime's own GC and
// scavenger, which the test waits for (with a deadline).
func TestMemoryReturnsAfterDistinctIdsPassivate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process and sends 20 000 requests")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read RSS")
	}
	redisURL := testkit.RealRedisURL(t)
	secret := "0123456789abcdef0123456789abcdef-memory"
	n := startNode(t, "GRANARY_REDIS_URL="+redisURL, "GRANARY_JWT_SECRET="+secret, "GRANARY_HTTP_ADDR=127.0.0.1:0",
		"GRANARY_KEY_PREFIX=memtest-"+randHex(), "GRANARY_RATE_LIMIT=0", "GRANARY_GRAIN_IDLE_TIMEOUT=2s", "GRANARY_LOG_LEVEL=warn")
	token, err := auth.Issue([]byte(secret), "memory-tester", []string{auth.RoleAdmin}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := client{base: n.base, token: token, http: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32}}}
	pid := n.cmd.Process.Pid
	rss := func() float64 { return float64(vmRSS(t, pid)) / (1 << 20) }
	started := rss()

	// activate sends one request per distinct id: a third counters that
	// are incremented (state, passivated by the idle timeout), a third
	// reads of counters and a third reads of accounts nobody created.
	activate := func(prefix string, ids int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for w := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < ids; i += 32 {
					var path string
					var body any
					method := "GET"
					switch i % 3 {
					case 0:
						method, path, body = "POST", fmt.Sprintf("/api/v1/counters/%s-inc-%d/increment", prefix, i), map[string]any{"by": 1}
					case 1:
						path = fmt.Sprintf("/api/v1/counters/%s-read-%d", prefix, i)
					default:
						path = fmt.Sprintf("/api/v1/accounts/%s-acc-%d", prefix, i)
					}
					code, err := c.do(method, path, body, nil)
					if err == nil && code != 200 && code != 404 {
						err = fmt.Errorf("%s %s: %d", method, path, code)
					}
					if err != nil {
						select {
						case errs <- err:
						default:
						}
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	passivated := func(what string) {
		t.Helper()
		testkit.WaitFor(t, 60*time.Second, func() error {
			live := grainActivations(t, c)
			if live["counter"]+live["account"] > 0 {
				return fmt.Errorf("%s: still active: %v", what, live)
			}
			return nil
		})
	}
	// settle waits until RSS is within limit MB of target, so the
	// runtime's GC and background scavenger have run; polling /metrics
	// is enough activity for GC cycles to happen.
	settle := func(target, limit float64) float64 {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			now := rss()
			if now <= target+limit || time.Now().After(deadline) {
				return now
			}
			grainActivations(t, c)
			time.Sleep(500 * time.Millisecond)
		}
	}

	// stable waits (up to 30 s) until RSS stops falling: three readings a
	// second apart within 1 MB of each other.
	stable := func() float64 {
		readings := []float64{rss()}
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			time.Sleep(time.Second)
			grainActivations(t, c)
			readings = append(readings, rss())
			if k := len(readings); k >= 3 && slices.Max(readings[k-3:])-slices.Min(readings[k-3:]) < 1 {
				break
			}
		}
		return readings[len(readings)-1]
	}

	activate("warm", 3000)
	passivated("warm-up")
	base := stable()
	baseHeap := heapSummary(t, c)

	t0 := time.Now()
	activate("load", 20000)
	loadTook := time.Since(t0)
	loaded := rss()
	passivated("load")
	after := settle(base, 20)
	t.Logf("baseline: %s; once passivated: %s", baseHeap, heapSummary(t, c))
	t.Logf("RSS: %.1f MB at start, %.1f MB baseline after warm-up, %.1f MB after 20 000 ids (%v), %.1f MB once passivated (%+.1f MB)",
		started, base, loaded, loadTook.Round(time.Millisecond), after, after-base)
	if after > base+20 {
		t.Fatalf("RSS %.1f MB after the grains passivated, %.1f MB above the %.1f MB baseline (limit 20 MB)", after, after-base, base)
	}
}

// vmRSS reads a process's resident set size in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read RSS: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("parse VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// grainActivations reads granary_grains_active per kind from /metrics.
func grainActivations(t *testing.T, c client) map[string]int {
	t.Helper()
	out := map[string]int{}
	for series, v := range scrape(t, c) {
		if rest, ok := strings.CutPrefix(series, `granary_grains_active{kind="`); ok {
			out[strings.TrimSuffix(rest, `"}`)] = int(v)
		}
	}
	return out
}

// scrape reads every sample of /metrics, keyed by series (name and labels).
func scrape(t *testing.T, c client) map[string]float64 {
	t.Helper()
	resp, err := c.http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return out
}

// heapSummary names the Go runtime's view of the heap, to tell live memory
// from pages the runtime has freed but not yet returned to the kernel.
func heapSummary(t *testing.T, c client) string {
	t.Helper()
	m := scrape(t, c)
	mb := func(k string) float64 { return m[k] / (1 << 20) }
	return fmt.Sprintf("heap in use %.1f MB, idle %.1f MB (released %.1f MB), %v goroutines",
		mb("go_memstats_heap_inuse_bytes"), mb("go_memstats_heap_idle_bytes"), mb("go_memstats_heap_released_bytes"), m["go_goroutines"])
}
