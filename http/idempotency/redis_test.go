package idempotency_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"granary/http/idempotency"
	"granary/internal/testnet"
	"granary/testkit"
)

// The pipelined store meets the same contract, closed or not (closed, it
// goes to Redis one round trip per operation).
func TestPipelinedRedisStore(t *testing.T) {
	for _, closed := range []bool{false, true} {
		t.Run("closed="+strconv.FormatBool(closed), func(t *testing.T) {
			runStoreSuite(t, func(t *testing.T) (idempotency.Store, func(time.Duration)) {
				rdb, prefix, advance := testRedis(t)
				s, err := idempotency.NewPipelinedRedisStore(rdb, prefix)
				if err != nil {
					t.Fatal(err)
				}
				if closed {
					_ = s.Close()
				}
				t.Cleanup(func() { _ = s.Close() }) // goleak: no pipeline left
				return s, advance
			})
		})
	}
}

// Requests still draining when the store closes finish: an operation
// after Close goes straight to Redis, and one record is seen both ways.
func TestPipelinedRedisStoreClose(t *testing.T) {
	rdb, prefix, _ := testRedis(t)
	s, err := idempotency.NewPipelinedRedisStore(rdb, prefix)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	token, _, err := s.Claim(ctx, "k", "fp", time.Minute)
	if err != nil || token == "" {
		t.Fatalf("Claim: %q, %v", token, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, "k", token, idempotency.Response{Status: 200}, time.Minute); err != nil {
		t.Fatalf("Complete after Close: %v", err)
	}
	if _, rec, err := s.Claim(ctx, "k", "fp", time.Minute); err != nil || rec == nil || rec.Response == nil || rec.Response.Status != 200 {
		t.Fatalf("Claim after Close: %+v, %v", rec, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A Redis that stops answering fails an operation within its deadline.
func TestPipelinedRedisStoreFrozen(t *testing.T) {
	addr := testnet.Blackhole(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, ReadTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := idempotency.NewPipelinedRedisStore(rdb, "frozen")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err = s.Claim(ctx, "k", "fp", time.Minute)
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 400*time.Millisecond {
		t.Fatalf("Claim on a frozen Redis: %v after %v", err, took)
	}
}

// BenchmarkRedisStore: 64 requests at a time, each a Claim then a
// Complete of a key of its own, on a round trip each (direct) or through
// the pipeline. Real Redis only: miniredis answers in-process, which says
// nothing of round trips.
func BenchmarkRedisStore(b *testing.B) {
	url := os.Getenv(testkit.RedisURLEnv)
	if url == "" {
		b.Skipf("%s not set", testkit.RedisURLEnv)
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	const requests = 64
	for _, mode := range []string{"direct", "pipelined"} {
		b.Run(mode, func(b *testing.B) {
			rdb := goredis.NewClient(opt)
			defer rdb.Close()
			prefix := "idembench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			newStore := idempotency.NewRedisStore
			if mode == "pipelined" {
				newStore = idempotency.NewPipelinedRedisStore
			}
			s, err := newStore(rdb, prefix)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			resp := idempotency.Response{Status: 200, Header: map[string][]string{"Content-Type": {"application/json"}}, Body: make([]byte, 200)}
			var next atomic.Uint64
			b.SetParallelism(max(1, requests/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					key := strconv.FormatUint(next.Add(1), 10)
					token, _, err := s.Claim(ctx, key, "fp", time.Minute)
					if err == nil {
						err = s.Complete(ctx, key, token, resp, time.Minute)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
			b.StopTimer()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
			for iter.Next(ctx) {
				rdb.Del(ctx, iter.Val())
			}
		})
	}
}

// A key under the store's prefix that the store did not write is reported,
// never claimed over or read as a record: a foreign string is corrupt, a
// key of another type is Redis's WRONGTYPE.
func TestRedisStoreForeignKeys(t *testing.T) {
	for _, piped := range []bool{false, true} {
		t.Run("pipelined="+strconv.FormatBool(piped), func(t *testing.T) {
			rdb, prefix, _ := testRedis(t)
			var s *idempotency.RedisStore
			var err error
			if piped {
				s, err = idempotency.NewPipelinedRedisStore(rdb, prefix)
				t.Cleanup(func() { _ = s.Close() })
			} else {
				s, err = idempotency.NewRedisStore(rdb, prefix)
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if err := rdb.Set(ctx, prefix+":idempotency:str", "not a record", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			if err := rdb.RPush(ctx, prefix+":idempotency:list", "x").Err(); err != nil {
				t.Fatal(err)
			}
			if tok, rec, err := s.Claim(ctx, "str", "fp", time.Minute); !errors.Is(err, idempotency.ErrCorruptRecord) {
				t.Fatalf("claim over a foreign string: token %q, record %v, err %v; want ErrCorruptRecord", tok, rec, err)
			}
			tok, rec, err := s.Claim(ctx, "list", "fp", time.Minute)
			if err == nil || !goredis.HasErrorPrefix(errors.Unwrap(err), "WRONGTYPE") {
				t.Fatalf("claim over a list: token %q, record %v, err %v; want WRONGTYPE", tok, rec, err)
			}
			if v, err := rdb.Get(ctx, prefix+":idempotency:str").Result(); err != nil || v != "not a record" {
				t.Fatalf("the foreign string became %q (%v)", v, err)
			}
		})
	}
}
