package projection_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"granary/actors/projection"
	"granary/persistence"
	"granary/persistence/memory"
	"granary/testkit"
)

// BenchmarkCatchUp measures how fast the AccountSummary projection folds a
// journal: each iteration rebuilds the read model from position 0 (the
// same work as catching up from scratch) and swaps it in. Run against a
// real server with GRANARY_REDIS_URL set; without it, "redis" is miniredis.
func BenchmarkCatchUp(b *testing.B) {
	for _, bc := range []struct {
		name string
		open func(b *testing.B) persistence.Store
	}{
		{"memory", func(*testing.B) persistence.Store { return memory.New(4) }},
		{"redis", func(b *testing.B) persistence.Store { return testkit.NewStoreWithPartitions(b, 4) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := bc.open(b)
			l := newLedger()
			writeAccounts(b, s, l, rand.New(rand.NewPCG(21, 22)), "bench", 1000)
			var events uint64
			for p := range s.Partitions() {
				h, _ := s.Head(context.Background(), p)
				events += h
			}
			cfg := driverConfig(b, s, time.Now)
			cfg.BatchSize = projection.DefaultSettings().BatchSize
			cfg.StepBudget = projection.DefaultSettings().StepBudget
			cfg.RetireGrace = 0
			d := projection.NewDriver(projection.AccountSummary{}, cfg)
			stepUntilIdle(b, d) // the live generation, so it does not share the timing
			b.ResetTimer()
			for range b.N {
				meta, _, err := d.RequestRebuild(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				for d.Meta().Current != meta.Next || d.Meta().Retired != 0 {
					if _, err := d.Step(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			checkSummaries(b, s, l.want())
		})
	}
}
