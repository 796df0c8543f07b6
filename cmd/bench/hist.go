package main

import (
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram in the manner of HdrHistogram:
// values (nanoseconds) below subBuckets are exact, above that every power
// of two is cut into subBuckets equal parts, so a reported percentile is
// within 1/subBuckets (< 0.8 %) of the true value, whatever the range. It
// has a fixed size (no allocation per sample) and is not safe for
// concurrent use: each load worker has its own and they are merged.
type hist struct {
	counts [histBuckets]uint64
	total  uint64
	max    int64
}

const (
	subBucketBits = 7
	subBuckets    = 1 << subBucketBits // 128
	// Values up to 2^40 ns (~18 min) keep their precision; longer ones
	// are clamped into the last bucket (no request lives that long here).
	histMaxBits = 40
	histBuckets = (histMaxBits - subBucketBits + 1) * subBuckets
)

// bucketOf maps a value to its bucket index.
func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < subBuckets {
		return int(u)
	}
	shift := bits.Len64(u) - subBucketBits - 1 // u>>shift is in [128, 256)
	if shift+subBucketBits+1 > histMaxBits {
		return histBuckets - 1
	}
	return (shift+1)*subBuckets + int(u>>shift) - subBuckets
}

// bucketHigh is the largest value that falls in bucket i: percentiles
// report it, so they never understate a latency.
func bucketHigh(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	shift := i/subBuckets - 1
	sub := i%subBuckets + subBuckets
	return int64((uint64(sub+1) << shift) - 1)
}

func (h *hist) record(d time.Duration) {
	v := int64(d)
	h.counts[bucketOf(v)]++
	h.total++
	if v > h.max {
		h.max = v
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantile returns the value at quantile q (0 < q ≤ 1): the smallest
// recorded bucket below which at least q of the samples lie, capped at the
// largest sample seen. It is 0 for an empty histogram.
func (h *hist) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	// The rank of the sample at q, 1-based, rounded up (nearest-rank).
	rank := uint64(q * float64(h.total))
	if float64(rank) < q*float64(h.total) {
		rank++
	}
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), h.max))
		}
	}
	return time.Duration(h.max)
}
