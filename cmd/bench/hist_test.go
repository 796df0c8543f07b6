package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsAreContiguousAndCoverTheirValues(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<20 + 1, 1<<39 - 1} {
		i := bucketOf(v)
		if i < prev {
			t.Fatalf("bucketOf(%d) = %d, below bucketOf of a smaller value (%d)", v, i, prev)
		}
		prev = i
		if high := bucketHigh(i); high < v {
			t.Fatalf("bucketHigh(bucketOf(%d)) = %d, below the value", v, high)
		}
		if i > 0 && bucketHigh(i-1) >= v {
			t.Fatalf("value %d also fits bucket %d (high %d)", v, i-1, bucketHigh(i-1))
		}
	}
	if got := bucketOf(1 << 50); got != histBuckets-1 {
		t.Fatalf("a huge value went to bucket %d, want the last (%d)", got, histBuckets-1)
	}
}

func TestQuantilesMatchASortedSample(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h hist
	var sample []time.Duration
	for range 100_000 {
		// Log-normal-ish latencies from 50 µs to ~1 s.
		d := time.Duration(50_000 * (1 + r.ExpFloat64()*r.ExpFloat64()*20))
		h.record(d)
		sample = append(sample, d)
	}
	slices.Sort(sample)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := sample[max(0, int(q*float64(len(sample)))-1)]
		got := h.quantile(q)
		if got < want || float64(got-want) > float64(want)/subBuckets {
			t.Errorf("q%.3f = %v, want %v within 1/%d above", q, got, want, subBuckets)
		}
	}
	if h.quantile(1) != sample[len(sample)-1] {
		t.Errorf("q1 = %v, want the max %v", h.quantile(1), sample[len(sample)-1])
	}
}

func TestQuantileSmallAndEmpty(t *testing.T) {
	var h hist
	if h.quantile(0.99) != 0 {
		t.Fatal("an empty histogram has a p99")
	}
	for _, v := range []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10} {
		h.record(v)
	}
	for q, want := range map[float64]time.Duration{0.5: 5, 0.9: 9, 0.99: 10, 0.1: 1} {
		if got := h.quantile(q); got != want {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	var other hist
	other.record(100)
	h.merge(&other)
	if h.total != 11 || h.quantile(1) != 100 {
		t.Fatalf("after merge: total %d, max %v", h.total, h.quantile(1))
	}
}
