// Package loadstat turns the samples a load run collects into the numbers `make bench` reports:
// percentiles of latencies, the median and spread of a metric over interleaved rounds, ratios
// between targets, a Markdown table, a JSON document and a verdict per goal.
package loadstat

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of samples by the nearest-rank method:
// the smallest sample at least p percent of the samples are ≤ to. It returns 0 for no samples.
// samples is not modified.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return percentileSorted(s, p)
}

func percentileSorted(s []time.Duration, p float64) time.Duration {
	p = min(max(p, 0), 100)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = max(rank, 1)
	return s[rank-1]
}

// Spread is the median of a metric over rounds and its range.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Summarize returns the median, minimum and maximum of values, ignoring NaNs (a round that did
// not measure the metric). N is the number of values used; all zero when there are none.
func Summarize(values []float64) Spread {
	v := make([]float64, 0, len(values))
	for _, x := range values {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Spread{}
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Spread{Median: med, Min: v[0], Max: v[len(v)-1], N: len(v)}
}

// RelSpread is the range as a fraction of the median ((max-min)/median), 0 when undefined.
func (s Spread) RelSpread() float64 {
	if s.N == 0 || s.Median == 0 {
		return 0
	}
	return (s.Max - s.Min) / math.Abs(s.Median)
}

// Ratio is a/b, NaN when either is missing (zero N) or b is 0.
func Ratio(a, b Spread) float64 {
	if a.N == 0 || b.N == 0 || b.Median == 0 {
		return math.NaN()
	}
	return a.Median / b.Median
}
