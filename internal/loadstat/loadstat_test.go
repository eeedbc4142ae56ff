package loadstat

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	us := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Microsecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Microsecond // reversed: Percentile must sort
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", us(7), 99, 7 * time.Microsecond},
		{"median of odd", us(3, 1, 2), 50, 2 * time.Microsecond},
		{"median of even takes the lower", us(4, 1, 3, 2), 50, 2 * time.Microsecond},
		{"p99 of 100", hundred, 99, 99 * time.Microsecond},
		{"p100 is the max", hundred, 100, 100 * time.Microsecond},
		{"p0 is the min", hundred, 0, 1 * time.Microsecond},
		{"above 100 clamps", us(1, 2), 150, 2 * time.Microsecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]time.Duration(nil), tc.samples...)
			if got := Percentile(tc.samples, tc.p); got != tc.want {
				t.Fatalf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
			for i := range before {
				if before[i] != tc.samples[i] {
					t.Fatal("Percentile modified its input")
				}
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		in   []float64
		want Spread
		rel  float64
	}{
		{"none", nil, Spread{}, 0},
		{"all NaN", []float64{nan, nan}, Spread{}, 0},
		{"odd", []float64{3, 1, 2}, Spread{Median: 2, Min: 1, Max: 3, N: 3}, 1},
		{"even averages the middle", []float64{4, 1, 3, 2}, Spread{Median: 2.5, Min: 1, Max: 4, N: 4}, 1.2},
		{"NaN skipped", []float64{10, nan, 20, 30}, Spread{Median: 20, Min: 10, Max: 30, N: 3}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Summarize(tc.in)
			if got != tc.want {
				t.Fatalf("Summarize = %+v, want %+v", got, tc.want)
			}
			if r := got.RelSpread(); math.Abs(r-tc.rel) > 1e-9 {
				t.Fatalf("RelSpread = %v, want %v", r, tc.rel)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	a := Spread{Median: 3, N: 1}
	if got := Ratio(a, Spread{Median: 2, N: 1}); got != 1.5 {
		t.Fatalf("Ratio = %v, want 1.5", got)
	}
	for name, b := range map[string]Spread{"missing": {}, "zero": {Median: 0, N: 2}} {
		if got := Ratio(a, b); !math.IsNaN(got) {
			t.Fatalf("%s: Ratio = %v, want NaN", name, got)
		}
	}
}

// sample builds results where scpgate meets every target except the ones named in miss.
func sample() []Target {
	round := func(m map[string]float64) []map[string]float64 {
		// three rounds around the value, so the median is the value itself
		lo, hi := map[string]float64{}, map[string]float64{}
		for k, v := range m {
			lo[k], hi[k] = v*0.9, v*1.1
		}
		return []map[string]float64{lo, m, hi}
	}
	return []Target{
		{Direct, round(map[string]float64{SetupP50: 50, SetupP99: 100, Bulk1Up: 1000, Bulk1Down: 1000})},
		{SpliceProxy, round(map[string]float64{IdleKiB: 17})},
		{Squid, round(map[string]float64{SetupP50: 181, SetupP99: 437, RateTPS: 5000, CPUPerTunnel: 150, IdleKiB: 31})},
		{Tinyproxy, round(map[string]float64{SetupP50: 102, SetupP99: 265, RateTPS: 6000, CPUPerTunnel: 122, IdleKiB: 19})},
		{Scpgate, round(map[string]float64{SetupP50: 90, SetupP99: 200, RateTPS: 6500, CPUPerTunnel: 100, IdleKiB: 10, IdleFDs: 2, Bulk1Up: 850, Bulk1Down: 820, CPUPerGiB: 0.12, ErrorsInRound: 0})},
		{ScpgateAuth, round(map[string]float64{SetupP50: 95, SetupP99: 210})},
		{ScpgateTLS, round(map[string]float64{SetupP50: 100})},
		{ScpgateTunnelTLS, round(map[string]float64{SetupP50: 400})},
		{ScpgateSNI, round(map[string]float64{SetupP50: 420})},
	}
}

func TestBuildRatios(t *testing.T) {
	rs := Build(sample())
	scp := find(rs, Scpgate)
	if scp == nil || scp.Metrics[SetupP50].Median != 90 || scp.Metrics[SetupP50].N != 3 {
		t.Fatalf("scpgate setup = %+v", scp)
	}
	if scp.ToScpgate != nil {
		t.Fatalf("scpgate has ratios to itself: %v", scp.ToScpgate)
	}
	if got := scp.ToDirect[SetupP50]; math.Abs(got-1.8) > 1e-9 {
		t.Fatalf("scpgate/direct setup = %v, want 1.8", got)
	}
	sq := find(rs, Squid)
	if got := sq.ToScpgate[RateTPS]; math.Abs(got-5000.0/6500) > 1e-9 {
		t.Fatalf("squid/scpgate rate = %v", got)
	}
	if _, ok := sq.ToDirect[RateTPS]; ok {
		t.Fatal("a ratio to a metric direct did not measure")
	}
}

func TestVerdicts(t *testing.T) {
	all := func(ts []Target) map[string]string {
		out := map[string]string{}
		for _, v := range Verdicts(Build(ts)) {
			out[v.Goal] = v.Status
		}
		return out
	}
	got := all(sample())
	if len(got) != 10 {
		t.Fatalf("%d verdicts, want 10: %v", len(got), got)
	}
	for goal, status := range got {
		if status != "pass" {
			t.Errorf("%s: %s, want pass", goal, status)
		}
	}

	ts := sample()
	ts[4].Rounds[1][SetupP99] = 300 // the median of scpgate's p99 rises above tinyproxy's
	ts[4].Rounds[0][SetupP99] = 300
	ts[4].Rounds[2][SetupP99] = 300
	got = all(ts)
	if s := got["scpgate setup p50 and p99 below squid's and tinyproxy's"]; s != "miss" {
		t.Fatalf("p99 above tinyproxy's: %s, want miss", s)
	}
	if s := got["scpgate+auth setup p50 and p99 below squid's and tinyproxy's"]; s != "pass" {
		t.Fatalf("auth row: %s, want pass", s)
	}

	got = all(sample()[:5]) // no auth, TLS or SNI rows
	if s := got["SNI check ≤ 1.15× setup latency without it"]; s != "not measured" {
		t.Fatalf("SNI without rows: %s, want not measured", s)
	}
}

func TestReportRendering(t *testing.T) {
	rs := Build(sample())
	r := Report{Started: time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC), Rounds: 3, Workload: []string{"2,000 sequential tunnels"}, Results: rs, Verdicts: Verdicts(rs)}
	md := r.Markdown()
	for _, want := range []string{
		"# scpgate bench — 2026-12-01T20:00:00Z",
		"Medians of 3 interleaved rounds",
		"| scpgate | 90 [81–99] | 200 [180–220] |",
		"| direct | 50 [45–55] |",
		"Ratio to direct",
		"| scpgate | 1.80× |",
		"PASS: proxy CPU per tunnel ≤ tinyproxy's — 100 µs vs 122 µs",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	// Every table row has as many cells as the header.
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| scpgate |") && strings.Count(line, "|") != len(Metrics())+2 && strings.Count(line, "|") != len(Metrics())+1 {
			t.Errorf("row with %d cells: %s", strings.Count(line, "|"), line)
		}
	}
	js, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatalf("JSON does not parse: %v", err)
	}
	if got := back.Results[4].Metrics[SetupP50].Median; got != 90 {
		t.Fatalf("JSON round trip: scpgate p50 = %v", got)
	}
	if len(back.Verdicts) != 10 {
		t.Fatalf("JSON verdicts = %d", len(back.Verdicts))
	}
}
