package metrics

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scpgate/scpgate/gateway/audit"
)

func allowClose(group string, up, down int64, ms float64) audit.Record {
	return audit.Record{Event: audit.EventClose, Decision: audit.DecisionAllow, Group: group,
		Host: "manage.microsoft.com", Port: 443, BytesUp: up, BytesDown: down, DurationMS: ms}
}

func denyDecision(reason, group string) audit.Record {
	return audit.Record{Event: audit.EventDecision, Decision: audit.DecisionDeny, Reason: reason,
		Group: group, Host: "evil.example", Port: 443, Status: 403, DurationMS: 0.2}
}

func TestObserveRequests(t *testing.T) {
	tests := []struct {
		name    string
		records []audit.Record
		want    string // exposition of scpgate_requests_total
	}{
		{
			name:    "one allowed tunnel",
			records: []audit.Record{allowClose("intune", 10, 20, 1500)},
			want: `
# HELP scpgate_requests_total Proxy requests and tunnels by outcome, counted once when decided (denials) or when closed (allowed).
# TYPE scpgate_requests_total counter
scpgate_requests_total{decision="allow",group="intune",reason="none"} 1
`,
		},
		{
			name: "denials and would-deny",
			records: []audit.Record{
				denyDecision("no_rule", ""),
				denyDecision("no_rule", ""),
				denyDecision("port_not_allowed", "intune"),
				{Event: audit.EventClose, Decision: audit.DecisionWouldDeny, Reason: "no_rule", Group: "", DurationMS: 5},
			},
			want: `
# HELP scpgate_requests_total Proxy requests and tunnels by outcome, counted once when decided (denials) or when closed (allowed).
# TYPE scpgate_requests_total counter
scpgate_requests_total{decision="deny",group="intune",reason="port_not_allowed"} 1
scpgate_requests_total{decision="deny",group="none",reason="no_rule"} 2
scpgate_requests_total{decision="would_deny",group="none",reason="no_rule"} 1
`,
		},
		{
			name: "unknown values are folded",
			records: []audit.Record{
				{Event: audit.EventDecision, Decision: "maybe", Reason: "made_up", Group: "bad group!"},
				{Event: audit.EventClose, Decision: "", Reason: "", Group: ""},
			},
			want: `
# HELP scpgate_requests_total Proxy requests and tunnels by outcome, counted once when decided (denials) or when closed (allowed).
# TYPE scpgate_requests_total counter
scpgate_requests_total{decision="none",group="none",reason="none"} 1
scpgate_requests_total{decision="other",group="none",reason="other"} 1
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			for _, r := range tt.records {
				m.Observe(r)
			}
			if err := gatherAndCompare(m.Registry(), tt.want, "scpgate_requests_total"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestObserveBytesAndDuration(t *testing.T) {
	m := New()
	m.Observe(allowClose("intune", 100, 2000, 1500))                                    // 1.5 s
	m.Observe(allowClose("intune", 1, 0, 600_000))                                      // 10 min
	m.Observe(allowClose("graph", 0, 7, 2))                                             // 2 ms
	m.Observe(denyDecision("denied_pattern", ""))                                       // no bytes: no byte series
	m.Observe(audit.Record{Decision: "allow", Group: "x", BytesUp: -5, DurationMS: -1}) // nonsense is not fatal

	bytesWant := `
# HELP scpgate_tunnel_bytes_total Bytes relayed, up (client to destination) and down (destination to client), counted when the connection ends.
# TYPE scpgate_tunnel_bytes_total counter
scpgate_tunnel_bytes_total{direction="down",group="graph"} 7
scpgate_tunnel_bytes_total{direction="down",group="intune"} 2000
scpgate_tunnel_bytes_total{direction="up",group="intune"} 101
`
	if err := gatherAndCompare(m.Registry(), bytesWant, "scpgate_tunnel_bytes_total"); err != nil {
		t.Fatal(err)
	}

	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	var sawBuckets []float64
	for _, mf := range mfs {
		if mf.GetName() != "scpgate_request_duration_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			h := mt.GetHistogram()
			counts[mt.GetLabel()[0].GetValue()] = h.GetSampleCount()
			if mt.GetLabel()[0].GetValue() == "allow" {
				for _, b := range h.GetBucket() {
					sawBuckets = append(sawBuckets, b.GetUpperBound())
				}
				if got, want := h.GetSampleSum(), 1.5+600+0.002+0; abs(got-want) > 1e-9 {
					t.Errorf("allow duration sum = %v, want %v", got, want)
				}
			}
		}
	}
	if counts["allow"] != 4 || counts["deny"] != 1 {
		t.Errorf("duration sample counts = %v, want allow 4, deny 1", counts)
	}
	if len(sawBuckets) == 0 || sawBuckets[0] != 0.005 || sawBuckets[len(sawBuckets)-1] != 3600 {
		t.Errorf("buckets = %v, want 0.005 … 3600", sawBuckets)
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func TestGauges(t *testing.T) {
	m := New()
	m.TunnelOpened()
	m.TunnelOpened()
	m.TunnelOpened()
	m.TunnelClosed()
	if got := toFloat64(m.tunnelsOpen); got != 2 {
		t.Errorf("tunnels_open = %v, want 2", got)
	}
	for _, tt := range []struct {
		on   bool
		want float64
	}{{true, 1}, {false, 0}, {true, 1}} {
		m.SetDraining(tt.on)
		if got := toFloat64(m.draining); got != tt.want || m.Draining() != tt.on {
			t.Errorf("SetDraining(%v): gauge %v, Draining() %v", tt.on, got, m.Draining())
		}
	}
}

func TestPolicyLoaded(t *testing.T) {
	m := New()
	t1 := time.Unix(1_700_000_000, 500_000_000)
	t2 := t1.Add(time.Hour)
	m.PolicyLoaded("aaaa", t1)
	m.PolicyLoadFailed()
	m.PolicyLoaded("bbbb", t2)
	m.PolicyLoaded("bbbb", t2) // same file reloaded: still one series
	m.PolicyLoadFailed()
	m.PolicyLoadFailed()

	want := `
# HELP scpgate_policy_info The policy in force: always 1, labelled with the policy version (sha256 of the file).
# TYPE scpgate_policy_info gauge
scpgate_policy_info{version="bbbb"} 1
# HELP scpgate_policy_reloads_total Policy loads (the initial one included) by result.
# TYPE scpgate_policy_reloads_total counter
scpgate_policy_reloads_total{result="error"} 3
scpgate_policy_reloads_total{result="ok"} 3
`
	if err := gatherAndCompare(m.Registry(), want, "scpgate_policy_info", "scpgate_policy_reloads_total"); err != nil {
		t.Fatal(err)
	}
	if got, want := toFloat64(m.lastReload), float64(t2.UnixNano())/1e9; got != want {
		t.Errorf("last reload timestamp = %v, want %v", got, want)
	}
}

func TestAuthAndRejected(t *testing.T) {
	m := New()
	for _, r := range []string{AuthOK, AuthOK, AuthFailed, AuthRequired, AuthLockedOut, "weird"} {
		m.AuthResult(r)
	}
	for _, r := range []string{RejectRateLimited, RejectRateLimited, RejectTooManyConnections, "bogus"} {
		m.Rejected(r)
	}
	want := `
# HELP scpgate_auth_total Proxy authentication outcomes.
# TYPE scpgate_auth_total counter
scpgate_auth_total{result="failed"} 1
scpgate_auth_total{result="locked_out"} 1
scpgate_auth_total{result="ok"} 2
scpgate_auth_total{result="other"} 1
scpgate_auth_total{result="required"} 1
# HELP scpgate_rejected_connections_total Connections refused by limits before any HTTP parsing.
# TYPE scpgate_rejected_connections_total counter
scpgate_rejected_connections_total{reason="other"} 1
scpgate_rejected_connections_total{reason="rate_limited"} 2
scpgate_rejected_connections_total{reason="too_many_connections"} 1
`
	if err := gatherAndCompare(m.Registry(), want, "scpgate_auth_total", "scpgate_rejected_connections_total"); err != nil {
		t.Fatal(err)
	}
}

func TestOutOfResources(t *testing.T) {
	m := New()
	for _, w := range []string{"accept", "accept", "dial", "pipe", "disk"} {
		m.OutOfResources(w)
	}
	want := `
# HELP scpgate_out_of_resources_total Operations that failed for lack of file descriptors: accept (the client got 503 out_of_resources), dial (503 out_of_resources) or pipe (the tunnel went on through a buffer).
# TYPE scpgate_out_of_resources_total counter
scpgate_out_of_resources_total{where="accept"} 2
scpgate_out_of_resources_total{where="dial"} 1
scpgate_out_of_resources_total{where="other"} 1
scpgate_out_of_resources_total{where="pipe"} 1
`
	if err := gatherAndCompare(m.Registry(), want, "scpgate_out_of_resources_total"); err != nil {
		t.Fatal(err)
	}
}

// TestPreinitialised: closed label sets exist at zero before any event, and nothing else does.
func TestPreinitialised(t *testing.T) {
	m := New()
	for _, tt := range []struct {
		name string
		want int
	}{
		{"scpgate_policy_reloads_total", 2},
		{"scpgate_auth_total", 4},
		{"scpgate_rejected_connections_total", 2},
		{"scpgate_tunnels_open", 1},
		{"scpgate_draining", 1},
		{"scpgate_out_of_resources_total", 3},
		{"scpgate_policy_last_reload_success_timestamp_seconds", 1},
		{"scpgate_requests_total", 0},
		{"scpgate_policy_info", 0},
	} {
		n, err := gatherAndCount(m.Registry(), tt.name)
		if err != nil {
			t.Fatal(err)
		}
		if n != tt.want {
			t.Errorf("%s: %d series, want %d", tt.name, n, tt.want)
		}
	}
}

// TestExpositionParses: the whole registry, Go and process collectors included, is valid text
// exposition format.
func TestExpositionParses(t *testing.T) {
	m := New()
	m.Observe(allowClose("intune", 1, 2, 3))
	m.Observe(denyDecision("no_rule", ""))
	m.PolicyLoaded("v1", time.Now())
	out, err := gatherText(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, out)
	}
	for _, name := range []string{
		"scpgate_requests_total", "scpgate_tunnel_bytes_total", "scpgate_request_duration_seconds",
		"scpgate_tunnels_open", "scpgate_policy_reloads_total", "scpgate_policy_last_reload_success_timestamp_seconds",
		"scpgate_policy_info", "scpgate_auth_total", "scpgate_rejected_connections_total", "scpgate_draining",
		"go_goroutines",
	} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("exposition lacks %s", name)
		}
	}
}

// scpgateSeries counts the gateway's own series (Go and process collectors vary on their own).
func scpgateSeries(t *testing.T, g prometheus.Gatherer) int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "scpgate_") {
			n += len(mf.GetMetric())
		}
	}
	return n
}

// TestCardinalityBounded: hosts, ports, users and clients never become labels.
func TestCardinalityBounded(t *testing.T) {
	m := New()
	m.Observe(allowClose("intune", 1, 1, 1))
	m.Observe(denyDecision("no_rule", ""))
	before := scpgateSeries(t, m.Registry())
	for i := range 10_000 {
		r := allowClose("intune", 1, 1, 1)
		if i%2 == 1 {
			r = denyDecision("no_rule", "")
		}
		r.Host = fmt.Sprintf("h%d.example.com", i)
		r.Client = fmt.Sprintf("10.0.%d.%d:%d", i/256%256, i%256, 1024+i)
		r.User = fmt.Sprintf("user%d", i)
		r.Port = uint16(1 + i)
		r.ConnID = fmt.Sprint(i)
		m.Observe(r)
	}
	if after := scpgateSeries(t, m.Registry()); after != before {
		t.Errorf("series went from %d to %d after 10,000 distinct hosts", before, after)
	}
}

// TestGroupLabelCap: even a stream of distinct (valid) group names cannot grow the series
// without bound.
func TestGroupLabelCap(t *testing.T) {
	m := New()
	for i := range MaxGroupLabels + 500 {
		m.Observe(allowClose(fmt.Sprintf("g%d", i), 0, 0, 1))
	}
	n, err := gatherAndCount(m.Registry(), "scpgate_requests_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != MaxGroupLabels+1 { // the admitted names plus "none"
		t.Errorf("requests_total has %d series, want %d", n, MaxGroupLabels+1)
	}
}

func TestConcurrent(t *testing.T) {
	m := New()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 500 {
				m.Observe(allowClose("intune", 1, 1, 1))
				m.TunnelOpened()
				m.TunnelClosed()
				m.PolicyLoaded(fmt.Sprint(i, j%3), time.Now())
				m.SetDraining(j%2 == 0)
				_ = m.Draining()
				m.AuthResult(AuthOK)
			}
		}()
	}
	wg.Wait()
	if got := toFloat64(m.requests.WithLabelValues("allow", "none", "intune")); got != 4000 {
		t.Errorf("requests = %v, want 4000", got)
	}
	if n, _ := gatherAndCount(m.Registry(), "scpgate_policy_info"); n != 1 {
		t.Errorf("policy_info has %d series, want 1", n)
	}
}
