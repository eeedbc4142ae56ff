package loadstat

import (
	"fmt"
	"strings"
)

// Verdict is the outcome of one of the targets.
type Verdict struct {
	Goal   string `json:"goal"`
	Status string `json:"status"` // "pass", "miss" or "not measured"
	Detail string `json:"detail"`
}

// Line renders the verdict as one line.
func (v Verdict) Line() string {
	return fmt.Sprintf("%s: %s — %s", strings.ToUpper(v.Status), v.Goal, v.Detail)
}

// judge collects the medians a verdict compares and reports "not measured" when one is missing.
type judge struct {
	rs      []Result
	missing []string
}

func (j *judge) get(target, key string) float64 {
	r := find(j.rs, target)
	if r == nil {
		j.missing = append(j.missing, target)
		return 0
	}
	s, ok := r.Metrics[key]
	if !ok {
		j.missing = append(j.missing, target+" "+key)
		return 0
	}
	return s.Median
}

func (j *judge) verdict(goal string, pass bool, detail string) Verdict {
	if len(j.missing) > 0 {
		v := Verdict{Goal: goal, Status: "not measured", Detail: "missing " + strings.Join(j.missing, ", ")}
		j.missing = nil
		return v
	}
	status := "miss"
	if pass {
		status = "pass"
	}
	return Verdict{Goal: goal, Status: status, Detail: detail}
}

// Verdicts judges the results against the targets of issue 12 (ratios of medians in one run).
func Verdicts(rs []Result) []Verdict {
	j := &judge{rs: rs}
	var out []Verdict
	for _, name := range []string{Scpgate, ScpgateAuth} {
		p50, p99 := j.get(name, SetupP50), j.get(name, SetupP99)
		sq50, sq99 := j.get(Squid, SetupP50), j.get(Squid, SetupP99)
		tp50, tp99 := j.get(Tinyproxy, SetupP50), j.get(Tinyproxy, SetupP99)
		out = append(out, j.verdict(name+" setup p50 and p99 below squid's and tinyproxy's",
			p50 < sq50 && p50 < tp50 && p99 < sq99 && p99 < tp99,
			fmt.Sprintf("p50 %.0f µs (squid %.0f, tinyproxy %.0f), p99 %.0f µs (squid %.0f, tinyproxy %.0f)", p50, sq50, tp50, p99, sq99, tp99)))
	}
	a50, p50 := j.get(ScpgateAuth, SetupP50), j.get(Scpgate, SetupP50)
	out = append(out, j.verdict("Basic auth setup p50 within 1.10× of without", a50 <= 1.10*p50,
		fmt.Sprintf("%.0f µs vs %.0f µs = %.2f×", a50, p50, a50/p50)))

	rate, sqRate, tpRate := j.get(Scpgate, RateTPS), j.get(Squid, RateTPS), j.get(Tinyproxy, RateTPS)
	out = append(out, j.verdict("new tunnels/s ≥ 1.2× squid's and ≥ tinyproxy's", rate >= 1.2*sqRate && rate >= tpRate,
		fmt.Sprintf("%.0f/s = %.2f× squid (%.0f), %.2f× tinyproxy (%.0f)", rate, rate/sqRate, sqRate, rate/tpRate, tpRate)))

	cpu, tpCPU := j.get(Scpgate, CPUPerTunnel), j.get(Tinyproxy, CPUPerTunnel)
	out = append(out, j.verdict("proxy CPU per tunnel ≤ tinyproxy's", cpu <= tpCPU,
		fmt.Sprintf("%.0f µs vs %.0f µs", cpu, tpCPU)))

	kib := j.get(Scpgate, IdleKiB)
	peers := []string{Squid, Tinyproxy, SpliceProxy}
	below := kib <= 12
	parts := []string{fmt.Sprintf("%.1f KiB", kib)}
	for _, p := range peers {
		v := j.get(p, IdleKiB)
		below = below && kib < v
		parts = append(parts, fmt.Sprintf("%s %.1f", p, v))
	}
	out = append(out, j.verdict("memory per idle tunnel ≤ 12 KiB and below every peer", below, strings.Join(parts, ", ")))

	fds := j.get(Scpgate, IdleFDs)
	out = append(out, j.verdict("2 file descriptors per idle tunnel", fds <= 2.05, fmt.Sprintf("%.2f", fds)))

	up, down := j.get(Scpgate, Bulk1Up), j.get(Scpgate, Bulk1Down)
	dUp, dDown := j.get(Direct, Bulk1Up), j.get(Direct, Bulk1Down)
	gib := j.get(Scpgate, CPUPerGiB)
	out = append(out, j.verdict("1-tunnel bulk ≥ 0.8× direct both ways and ≤ 0.15 CPU-s/GiB",
		up >= 0.8*dUp && down >= 0.8*dDown && gib <= 0.15,
		fmt.Sprintf("↑ %.2f×, ↓ %.2f× direct, %.2f CPU-s/GiB", up/dUp, down/dDown, gib)))

	sni, tun := j.get(ScpgateSNI, SetupP50), j.get(ScpgateTunnelTLS, SetupP50)
	out = append(out, j.verdict("SNI check ≤ 1.15× setup latency without it", sni <= 1.15*tun,
		fmt.Sprintf("CONNECT+TLS handshake p50 %.0f µs with the check vs %.0f µs without = %.2f×", sni, tun, sni/tun)))

	tls := j.get(ScpgateTLS, SetupP50)
	out = append(out, j.verdict("TLS proxy listener ≤ 1.15× plain setup latency", tls <= 1.15*p50,
		fmt.Sprintf("%.0f µs vs %.0f µs = %.2f×", tls, p50, tls/p50)))
	return out
}
