package loadstat

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// Metric keys: one per number a round measures for a target.
const (
	SetupP50      = "setup_p50_us"
	SetupP99      = "setup_p99_us"
	RateTPS       = "rate_tunnels_per_s"
	CPUPerTunnel  = "cpu_us_per_tunnel"
	Bulk1Up       = "bulk1_up_mib_s"
	Bulk1Down     = "bulk1_down_mib_s"
	Bulk8Up       = "bulk8_up_mib_s"
	Bulk8Down     = "bulk8_down_mib_s"
	CPUPerGiB     = "cpu_s_per_gib"
	IdleKiB       = "idle_kib_per_tunnel"
	IdleFDs       = "idle_fds_per_tunnel"
	ErrorsInRound = "errors"
)

// Metric describes one column of the report.
type Metric struct {
	Key    string
	Title  string
	Lower  bool   // lower is better
	Format string // fmt verb for one value
}

// Metrics lists the report's columns in order.
func Metrics() []Metric {
	return []Metric{
		{SetupP50, "setup p50 µs", true, "%.0f"},
		{SetupP99, "setup p99 µs", true, "%.0f"},
		{RateTPS, "tunnels/s @32", false, "%.0f"},
		{CPUPerTunnel, "CPU µs/tunnel", true, "%.0f"},
		{Bulk1Up, "1 tunnel ↑ MiB/s", false, "%.0f"},
		{Bulk1Down, "1 tunnel ↓ MiB/s", false, "%.0f"},
		{Bulk8Up, "8 tunnels ↑ MiB/s", false, "%.0f"},
		{Bulk8Down, "8 tunnels ↓ MiB/s", false, "%.0f"},
		{CPUPerGiB, "CPU s/GiB", true, "%.2f"},
		{IdleKiB, "KiB/idle tunnel", true, "%.1f"},
		{IdleFDs, "fds/idle tunnel", true, "%.2f"},
		{ErrorsInRound, "errors", true, "%.0f"},
	}
}

// Target names the report knows how to judge.
const (
	Direct           = "direct"
	SpliceProxy      = "go-splice"
	Squid            = "squid"
	Tinyproxy        = "tinyproxy"
	Scpgate          = "scpgate"
	ScpgateAuth      = "scpgate+auth"
	ScpgateTLS       = "scpgate+tls-listener"
	ScpgateTunnelTLS = "scpgate+tls-in-tunnel"
	ScpgateSNI       = "scpgate+sni"
)

// Target is what one target measured, one map per round (a missing key: not measured).
type Target struct {
	Name   string
	Rounds []map[string]float64
}

// Result is one target's summary.
type Result struct {
	Name      string             `json:"name"`
	Metrics   map[string]Spread  `json:"metrics"`
	ToDirect  map[string]float64 `json:"ratio_to_direct,omitempty"`
	ToScpgate map[string]float64 `json:"ratio_to_scpgate,omitempty"`
}

// Report is a whole `make bench` run.
type Report struct {
	Started  time.Time `json:"started"`
	Rounds   int       `json:"rounds"`
	Workload []string  `json:"workload"`
	Notes    []string  `json:"notes,omitempty"`
	Results  []Result  `json:"results"`
	Verdicts []Verdict `json:"verdicts"`
}

// Build summarises every target and computes its ratios to the direct and scpgate rows.
func Build(targets []Target) []Result {
	out := make([]Result, 0, len(targets))
	for _, t := range targets {
		r := Result{Name: t.Name, Metrics: map[string]Spread{}}
		for _, m := range Metrics() {
			vals := make([]float64, 0, len(t.Rounds))
			for _, round := range t.Rounds {
				if v, ok := round[m.Key]; ok {
					vals = append(vals, v)
				}
			}
			if s := Summarize(vals); s.N > 0 {
				r.Metrics[m.Key] = s
			}
		}
		out = append(out, r)
	}
	direct, scp := find(out, Direct), find(out, Scpgate)
	for i := range out {
		out[i].ToDirect = ratios(out[i], direct)
		out[i].ToScpgate = ratios(out[i], scp)
	}
	return out
}

func ratios(r Result, base *Result) map[string]float64 {
	if base == nil || base.Name == r.Name {
		return nil
	}
	m := map[string]float64{}
	for k, s := range r.Metrics {
		if k == ErrorsInRound {
			continue
		}
		if q := Ratio(s, base.Metrics[k]); !math.IsNaN(q) && !math.IsInf(q, 0) {
			m[k] = q
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func find(rs []Result, name string) *Result {
	for i := range rs {
		if rs[i].Name == name {
			return &rs[i]
		}
	}
	return nil
}

// JSON renders the report as indented JSON.
func (r Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// Markdown renders the report: a table of medians with their range, a table of ratios to
// direct and to scpgate, and the verdicts.
func (r Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# scpgate bench — %s\n\n", r.Started.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Medians of %d interleaved rounds; the range over rounds in brackets.\n\n", r.Rounds)
	for _, w := range r.Workload {
		fmt.Fprintf(&b, "- %s\n", w)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	ms := Metrics()
	b.WriteString("\n| target |")
	for _, m := range ms {
		fmt.Fprintf(&b, " %s |", m.Title)
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---:|", len(ms)))
	b.WriteString("\n")
	for _, res := range r.Results {
		fmt.Fprintf(&b, "| %s |", res.Name)
		for _, m := range ms {
			s, ok := res.Metrics[m.Key]
			if !ok {
				b.WriteString(" — |")
				continue
			}
			med := fmt.Sprintf(m.Format, s.Median)
			if s.N > 1 && s.Min != s.Max {
				fmt.Fprintf(&b, " %s [%s–%s] |", med, fmt.Sprintf(m.Format, s.Min), fmt.Sprintf(m.Format, s.Max))
			} else {
				fmt.Fprintf(&b, " %s |", med)
			}
		}
		b.WriteString("\n")
	}
	for _, base := range []struct {
		title string
		get   func(Result) map[string]float64
	}{
		{"Ratio to direct", func(r Result) map[string]float64 { return r.ToDirect }},
		{"Ratio to scpgate", func(r Result) map[string]float64 { return r.ToScpgate }},
	} {
		fmt.Fprintf(&b, "\n%s (median / median):\n\n| target |", base.title)
		for _, m := range ms[:len(ms)-1] {
			fmt.Fprintf(&b, " %s |", m.Title)
		}
		b.WriteString("\n|---|")
		b.WriteString(strings.Repeat("---:|", len(ms)-1))
		b.WriteString("\n")
		for _, res := range r.Results {
			q := base.get(res)
			if q == nil {
				continue
			}
			fmt.Fprintf(&b, "| %s |", res.Name)
			for _, m := range ms[:len(ms)-1] {
				if v, ok := q[m.Key]; ok {
					fmt.Fprintf(&b, " %.2f× |", v)
				} else {
					b.WriteString(" — |")
				}
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\nVerdicts:\n\n")
	for _, v := range r.Verdicts {
		fmt.Fprintf(&b, "- %s\n", v.Line())
	}
	return b.String()
}
