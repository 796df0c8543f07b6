package redis

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"granary/persistence"
)

// benchServer is the real server when GRANARY_REDIS_URL is set, else a
// miniredis (which measures the client and the codec more than Redis).
func benchServer() server {
	if os.Getenv(envURL) != "" {
		return server{"redis", realClient}
	}
	return server{"miniredis", miniredisClient}
}

func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1, 16} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, _ := newStore(b, benchServer(), 4)
			events := make([]persistence.EventData, size)
			for i := range events {
				events[i] = persistence.EventData{Type: "bench", Data: bytes.Repeat([]byte{'x'}, 256)}
			}
			var v uint64
			b.ReportAllocs()
			for b.Loop() {
				res, err := s.Append(b.Context(), "bench", v, events)
				if err != nil {
					b.Fatal(err)
				}
				v = res.Version
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func BenchmarkReadStream(b *testing.B) {
	const total = 2000
	s, _ := newStore(b, benchServer(), 4)
	batch := make([]persistence.EventData, 500)
	for i := range batch {
		batch[i] = persistence.EventData{Type: "bench", Data: bytes.Repeat([]byte{'x'}, 256)}
	}
	for v := uint64(0); v < total; v += uint64(len(batch)) {
		if _, err := s.Append(b.Context(), "bench", v, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		evs, err := s.ReadStream(b.Context(), "bench", 0, 0)
		if err != nil || len(evs) != total {
			b.Fatalf("read %d events: %v", len(evs), err)
		}
	}
	b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "events/s")
}
