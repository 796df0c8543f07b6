package cluster_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	"granary/actors/account"
	"granary/cluster"
	"granary/messages"
	"granary/persistence"
	"granary/persistence/memory"
	"granary/testkit"
)

// Issue 10 asks for at most 2 KiB of memory per idle activated account.
// These measure what one costs on a member: N distinct accounts are opened
// through the cluster (each a real activation holding one event) on one
// in-process member, and the live heap (HeapAlloc after GC) is compared
// with the heap before, after a warm-up round on other ids passivated.
//
// The store is the in-memory one, whose copy of the events is in the same
// heap; with GRANARY_REDIS_URL set it is that Redis, out of process, and
// the total is what the member holds per grain, nothing else. With the
// memory store, passivating every grain afterwards tells the two apart:
// what the heap gives back is the grains' (a slight undercount: Go maps do
// not shrink, so the room a grain took in the process registry's and the
// placement actor's maps stays).
//
//	go test ./cluster -run '^$' -bench IdleAccountGrainMemory -benchtime 1x
//	GRAINMEM_N=100000 GRAINMEM_PROFILE=/tmp/grains.pprof go test ./cluster -run '^$' -bench IdleAccountGrainMemory -benchtime 1x
//	go tool pprof -top -sample_index=inuse_space /tmp/grains.pprof
//
// GRAINMEM_PROFILE writes a heap profile taken while the grains are idle
// (every allocation sampled: set before the grains activate).

// grainMemEnvN names the number of accounts to open (default 20 000).
const grainMemEnvN = "GRAINMEM_N"

// grainMemEnvProfile names the file a heap profile of the idle grains is
// written to.
const grainMemEnvProfile = "GRAINMEM_PROFILE"

type grainMem struct {
	n int
	// total is the live heap per idle grain (HeapAlloc after GC, against
	// the warmed-up baseline), store included; inuse the same in whole
	// spans (HeapInuse).
	total, inuse float64
	// released is what passivating the grains gave back, per grain: their
	// own memory without the memory store's copy of their events.
	released float64
}

func BenchmarkIdleAccountGrainMemory(b *testing.B) {
	n := 20_000
	if s := os.Getenv(grainMemEnvN); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("%s=%q: want a positive number", grainMemEnvN, s)
		}
		n = v
	}
	var m grainMem
	for range b.N {
		m = measureIdleGrains(b, n, os.Getenv(grainMemEnvProfile))
	}
	b.ReportMetric(m.total, "B/grain")
	b.ReportMetric(m.inuse, "inuse-B/grain")
	b.ReportMetric(m.released, "released-B/grain")
}

// TestIdleAccountGrainMemoryBound keeps the diet: a bound at about twice
// what passivating an idle account gave back once the cuts of issue 10
// were made (~2.2 KB), so that only a real regression (a per-grain map,
// logger or buffer coming back) trips it, not GC noise.
func TestIdleAccountGrainMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 5 000 accounts")
	}
	const bound = 4608
	m := measureIdleGrains(t, 5_000, "")
	t.Logf("%d idle accounts: %.0f B/grain live heap (store included), %.0f B/grain in-use spans, %.0f B/grain given back by passivation",
		m.n, m.total, m.inuse, m.released)
	if m.released > bound {
		t.Fatalf("an idle account grain holds %.0f B of heap, more than the %d B bound", m.released, bound)
	}
}

func measureIdleGrains(tb testing.TB, n int, profile string) grainMem {
	tb.Helper()
	if profile != "" {
		// Sample every allocation from here on: the profile should
		// attribute the grains' bytes exactly, not by 512 KiB samples.
		old := runtime.MemProfileRate
		runtime.MemProfileRate = 1
		tb.Cleanup(func() { runtime.MemProfileRate = old })
	}
	var store persistence.Store = memory.New(1)
	if os.Getenv(testkit.RedisURLEnv) != "" {
		store = testkit.NewStore(tb)
	}
	c := testkit.NewCluster(tb, 1, testkit.WithStore(store))
	m := c.Member(0)
	kind, ok := m.Cluster.TryGetClusterKind(account.Kind)
	if !ok {
		tb.Fatal("member hosts no account kind")
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = account.IDFor(fmt.Sprintf("MEM-%d", i))
	}
	admin := &messages.Caller{Subject: "mem", Admin: true}
	open := func(from, to int) error {
		for i := from; i < to; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			reply, err := cluster.CallAs[*messages.AccountReply](ctx, m, account.Kind, ids[i], &messages.AccountRequest{
				CommandId: "open-" + ids[i], Caller: admin,
				Command: &messages.AccountRequest_Open{Open: &messages.OpenAccount{
					AccountNumber: fmt.Sprintf("MEM-%d", i), OwnerName: "Mem", InitialBalance: 100}}})
			cancel()
			if err != nil {
				return fmt.Errorf("open %s: %w", ids[i], err)
			}
			if f := reply.GetFailure(); f != nil || reply.GetAccount().GetVersion() != 1 {
				return fmt.Errorf("open %s: %v", ids[i], reply)
			}
		}
		return nil
	}
	// A warm-up round on other ids brings the member's own structures
	// (placement maps, dispatcher, store partitions) to size, so the
	// baseline holds them.
	warm := min(n/10+1, 1000)
	if err := openRange(open, 0, warm); err != nil {
		tb.Fatal(err)
	}
	passivateAll(tb, c, ids[:warm])
	base := heapAfterGC()

	if err := openRange(open, warm, n); err != nil {
		tb.Fatal(err)
	}
	live := n - warm
	if got := kind.Count(); got != int32(live) {
		tb.Fatalf("%d account grains active, want %d", got, live)
	}
	idle := heapAfterGC()
	if profile != "" {
		writeHeapProfile(tb, profile)
	}
	passivateAll(tb, c, ids[warm:])
	gone := heapAfterGC()
	runtime.KeepAlive(ids)
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(live) }
	return grainMem{n: live,
		total:    per(idle.HeapAlloc, base.HeapAlloc),
		inuse:    per(idle.HeapInuse, base.HeapInuse),
		released: per(idle.HeapAlloc, gone.HeapAlloc),
	}
}

// openRange opens accounts from..to-1 from a few callers at once.
func openRange(open func(from, to int) error, from, to int) error {
	const workers = 8
	var wg sync.WaitGroup
	errs := make([]error, workers)
	chunk := (to - from + workers - 1) / workers
	for w := range workers {
		lo, hi := from+w*chunk, min(from+(w+1)*chunk, to)
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = open(lo, hi)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// passivateAll stops the grains of ids, as their idle timeout would, and
// waits until the member counts none of them.
func passivateAll(tb testing.TB, c *testkit.Cluster, ids []string) {
	tb.Helper()
	m := c.Member(0)
	for _, id := range ids {
		if pid := m.Cluster.Get(id, account.Kind); pid != nil {
			m.System.Root.Poison(pid)
		}
	}
	kind, _ := m.Cluster.TryGetClusterKind(account.Kind)
	testkit.WaitFor(tb, time.Minute, func() error {
		if got := kind.Count(); got != 0 {
			return fmt.Errorf("%d account grains still active", got)
		}
		return nil
	})
}

func heapAfterGC() runtime.MemStats {
	var ms runtime.MemStats
	// Twice: finalizers and sync.Pool victims of the first cycle go in
	// the second.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms
}

func writeHeapProfile(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatalf("heap profile: %v", err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		tb.Fatalf("heap profile %s: %v", path, err)
	}
}
