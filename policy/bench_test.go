package policy

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// benchPolicySource generates a deterministic policy of n rules in groups of 50: about
// 60% exact names, 30% "*." suffixes and 10% in-label globs (each with its own literal
// suffix, as in Microsoft's lists).
func benchPolicySource(n int) []byte {
	var b strings.Builder
	b.WriteString("version: 1\ndeny: [\"*.evil.example.org\"]\ngroups:\n")
	for i := 0; i < n; i++ {
		if i%50 == 0 {
			fmt.Fprintf(&b, "  group-%d:\n    enabled: true\n    hosts:\n", i/50)
		}
		switch k := i % 10; {
		case k < 6:
			fmt.Fprintf(&b, "      - host%d.svc%d.example%d.com\n", i, i%97, i%13)
		case k < 9:
			fmt.Fprintf(&b, "      - \"*.zone%d.example%d.net\"\n", i, i%13)
		default:
			fmt.Fprintf(&b, "      - \"node%d-*.pool%d.cloudapp.net\"\n", i%7, i)
		}
	}
	return []byte(b.String())
}

// benchQueries is the fixed mixed query set: hits of each kind and misses. The names refer
// to rules 0..9, which exist at every size.
var benchQueries = []string{
	"host0.svc0.example0.com",              // exact hit
	"host3.svc3.example3.com",              // exact hit
	"a.zone6.example6.net",                 // suffix hit
	"x.y.zone7.example7.net",               // suffix hit, two labels deep
	"node2-abc.pool9.cloudapp.net",         // glob hit
	"www.nowhere.example.org",              // miss
	"other.svc0.example0.com",              // miss under a known domain
	"zone8.example8.net",                   // apex of a suffix rule: miss
	"a.b.c.d.e.f.deep.nowhere.example.org", // long miss
	"x.evil.example.org",                   // deny pattern
}

func benchSetup(b *testing.B, n int) (*Policy, []Request) {
	b.Helper()
	p, err := Parse("bench.yaml", benchPolicySource(n))
	if err != nil {
		b.Fatal(err)
	}
	if got := len(p.idx.exact) + len(p.idx.suffix) + len(p.idx.globs); got != n {
		b.Fatalf("index holds %d keys, want %d", got, n)
	}
	reqs := make([]Request, len(benchQueries))
	for i, q := range benchQueries {
		h, err := ParseHost(q)
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = Request{Host: h, Port: 443, Method: "CONNECT"}
	}
	for i, want := range []bool{true, true, true, true, true, false, false, false, false, false} {
		if d := p.Decide(reqs[i]); d.Allow != want {
			b.Fatalf("rules=%d: %s allow=%v (%s)", n, benchQueries[i], d.Allow, d.Detail)
		}
	}
	return p, reqs
}

func decideLoop(p *Policy, reqs []Request) func(*testing.B) {
	return func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			p.Decide(reqs[i%len(reqs)])
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		p, reqs := benchSetup(b, n)
		b.Run(fmt.Sprintf("rules=%d", n), decideLoop(p, reqs))
	}
}

var sink Decision

// nsPerDecide times Decide over reqs for at least d and returns ns/op. It does what
// testing.Benchmark does; testing.Benchmark itself cannot be used here because a running
// benchmark holds the testing package's benchmark lock, so calling it from a benchmark
// deadlocks (Go 1.26).
func nsPerDecide(p *Policy, reqs []Request, d time.Duration) float64 {
	n := 1000
	for {
		start := time.Now()
		for i := range n {
			sink = p.Decide(reqs[i%len(reqs)])
		}
		el := time.Since(start)
		if el >= d {
			return float64(el.Nanoseconds()) / float64(n)
		}
		next := int(float64(n) * 1.2 * float64(d) / float64(max(el, time.Microsecond)))
		n = min(max(next, 2*n), 100*n)
	}
}

// BenchmarkDecideScaling measures 10 and 10,000 rules in one run (interleaved, best of
// three rounds of 300ms each) and reports both costs and their ratio; it fails above 2.
func BenchmarkDecideScaling(b *testing.B) {
	small, smallReqs := benchSetup(b, 10)
	large, largeReqs := benchSetup(b, 10000)
	s, l := math.Inf(1), math.Inf(1)
	for range 3 {
		s = min(s, nsPerDecide(small, smallReqs, 300*time.Millisecond))
		l = min(l, nsPerDecide(large, largeReqs, 300*time.Millisecond))
	}
	ratio := l / s
	// ns/op of this benchmark itself: the mixed query set at 10,000 rules.
	for i := 0; b.Loop(); i++ {
		sink = large.Decide(largeReqs[i%len(largeReqs)])
	}
	b.ReportMetric(s, "ns/op_rules=10")
	b.ReportMetric(l, "ns/op_rules=10000")
	b.ReportMetric(ratio, "ratio_10000_vs_10")
	b.Logf("Decide: %.1f ns/op at 10 rules, %.1f ns/op at 10000 rules, ratio %.2f", s, l, ratio)
	if ratio > 2 {
		b.Errorf("Decide at 10000 rules costs %.2fx what it costs at 10 (limit 2)", ratio)
	}
}
