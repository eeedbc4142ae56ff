// Package metrics holds the gateway's Prometheus metrics on a registry of its own.
//
// Cardinality. Every label takes its values from a small, closed set: decisions, reason codes
// (policy.Reasons), auth results, rejection reasons, directions, and group names. Group names come
// from the policy file, so they are bounded by it; as a second line of defence against a bug
// feeding arbitrary strings, a value that is not a valid group name, or that would exceed
// MaxGroupLabels distinct values, is recorded as "none". Host names, ports, users and client
// addresses are never labels: they belong in the audit log, where their cardinality costs nothing.
//
// The package never touches prometheus.DefaultRegisterer, so several gateways (tests, or
// instances in one process) each expose exactly their own numbers.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/policy"
)

// MaxGroupLabels bounds the distinct values of the group label over the life of a Metrics.
// Policies hold tens of groups; reloads that rename groups add a few more.
const MaxGroupLabels = 256

// Label values used when a record's field is empty or outside the known set.
const (
	labelNone  = "none"
	labelOther = "other"
)

// Auth results accepted by AuthResult.
const (
	AuthOK        = "ok"
	AuthFailed    = "failed"
	AuthRequired  = "required"
	AuthLockedOut = "locked_out"
)

// Rejection reasons accepted by Rejected.
const (
	RejectTooManyConnections = string(policy.ReasonTooManyConnections)
	RejectRateLimited        = string(policy.ReasonRateLimited)
)

// durationBuckets spans a refused request (milliseconds) to a long-lived SCP tunnel (an hour);
// the default Prometheus buckets stop at 10 s, which would put every tunnel in +Inf.
var durationBuckets = []float64{
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 300, 600, 1800, 3600,
}

// Metrics is the gateway's set of metrics. All methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	requests    *prometheus.CounterVec   // decision, reason, group
	tunnelBytes *prometheus.CounterVec   // direction, group
	duration    *prometheus.HistogramVec // decision
	tunnelsOpen prometheus.Gauge
	reloads     *prometheus.CounterVec // result
	lastReload  prometheus.Gauge
	policyInfo  *prometheus.GaugeVec // version
	auth        *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	draining    prometheus.Gauge
	outOfFDs    *prometheus.CounterVec // where

	reasons map[string]bool // policy.Reasons(), built once per instance

	mu            sync.Mutex
	groups        map[string]bool // group label values admitted so far
	version       string          // the policy_info series that exists now
	drainingState bool
}

// New returns a Metrics with every collector, the Go and process collectors included,
// registered on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scpgate_requests_total",
			Help: "Proxy requests and tunnels by outcome, counted once when decided (denials) or when closed (allowed).",
		}, []string{"decision", "reason", "group"}),
		tunnelBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scpgate_tunnel_bytes_total",
			Help: "Bytes relayed, up (client to destination) and down (destination to client), counted when the connection ends.",
		}, []string{"direction", "group"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "scpgate_request_duration_seconds",
			Help:    "Time from request head to the end of the request or tunnel.",
			Buckets: durationBuckets,
		}, []string{"decision"}),
		tunnelsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scpgate_tunnels_open",
			Help: "Tunnels open now.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scpgate_policy_reloads_total",
			Help: "Policy loads (the initial one included) by result.",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scpgate_policy_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful policy load.",
		}),
		policyInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scpgate_policy_info",
			Help: "The policy in force: always 1, labelled with the policy version (sha256 of the file).",
		}, []string{"version"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scpgate_auth_total",
			Help: "Proxy authentication outcomes.",
		}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scpgate_rejected_connections_total",
			Help: "Connections refused by limits before any HTTP parsing.",
		}, []string{"reason"}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scpgate_draining",
			Help: "1 while the gateway is shutting down and refusing new work.",
		}),
		outOfFDs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scpgate_out_of_resources_total",
			Help: "Operations that failed for lack of file descriptors: accept (the client got 503 out_of_resources), dial (503 out_of_resources) or pipe (the tunnel went on through a buffer).",
		}, []string{"where"}),
		reasons: make(map[string]bool),
		groups:  make(map[string]bool),
	}
	for _, r := range policy.Reasons() {
		m.reasons[string(r)] = true
	}
	m.reg.MustRegister(
		m.requests, m.tunnelBytes, m.duration, m.tunnelsOpen, m.reloads, m.lastReload,
		m.policyInfo, m.auth, m.rejected, m.draining, m.outOfFDs,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// Series of closed label sets exist from the start, so that rate() and alerts on
	// "increase(...) > 0" work from the first scrape instead of from the first event.
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
	}
	for _, r := range []string{AuthOK, AuthFailed, AuthRequired, AuthLockedOut} {
		m.auth.WithLabelValues(r)
	}
	for _, r := range []string{RejectTooManyConnections, RejectRateLimited} {
		m.rejected.WithLabelValues(r)
	}
	for _, w := range []string{"accept", "dial", "pipe"} {
		m.outOfFDs.WithLabelValues(w)
	}
	return m
}

// Registry returns the registry holding every metric, for the /metrics handler.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Observe accounts for one audit record. The gateway writes exactly one record per request:
// a "decision" record for a denial, a "close" record for everything that got past the decision,
// so every record is counted once, whatever its Event.
func (m *Metrics) Observe(r audit.Record) {
	decision := decisionLabel(r.Decision)
	group := m.groupLabel(r.Group)
	m.requests.WithLabelValues(decision, m.reasonLabel(r.Reason), group).Inc()
	// Only add bytes that moved, so denials do not create zero byte series for every group.
	if r.BytesUp > 0 {
		m.tunnelBytes.WithLabelValues("up", group).Add(float64(r.BytesUp))
	}
	if r.BytesDown > 0 {
		m.tunnelBytes.WithLabelValues("down", group).Add(float64(r.BytesDown))
	}
	m.duration.WithLabelValues(decision).Observe(max(r.DurationMS, 0) / 1000)
}

// TunnelOpened counts a tunnel as open; pair it with TunnelClosed.
func (m *Metrics) TunnelOpened() { m.tunnelsOpen.Inc() }

// TunnelClosed counts a tunnel as closed.
func (m *Metrics) TunnelClosed() { m.tunnelsOpen.Dec() }

// PolicyLoaded records a successful load (initial or reload) of the policy with the given
// version. Only the version in force has a scpgate_policy_info series, so that a query for it
// returns one series, never a history.
func (m *Metrics) PolicyLoaded(version string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reloads.WithLabelValues("ok").Inc()
	m.lastReload.Set(float64(at.UnixNano()) / 1e9)
	if version != m.version {
		m.policyInfo.DeleteLabelValues(m.version)
		m.version = version
	}
	m.policyInfo.WithLabelValues(version).Set(1)
}

// PolicyLoadFailed records a load that failed validation; the policy in force is unchanged.
func (m *Metrics) PolicyLoadFailed() { m.reloads.WithLabelValues("error").Inc() }

// AuthResult counts one authentication outcome: AuthOK, AuthFailed, AuthRequired or
// AuthLockedOut; anything else is counted as "other".
func (m *Metrics) AuthResult(result string) {
	switch result {
	case AuthOK, AuthFailed, AuthRequired, AuthLockedOut:
	default:
		result = labelOther
	}
	m.auth.WithLabelValues(result).Inc()
}

// Rejected counts a connection refused by a limit before HTTP parsing: RejectTooManyConnections
// or RejectRateLimited; anything else is counted as "other".
func (m *Metrics) Rejected(reason string) {
	switch reason {
	case RejectTooManyConnections, RejectRateLimited:
	default:
		reason = labelOther
	}
	m.rejected.WithLabelValues(reason).Inc()
}

// OutOfResources counts an operation that failed for lack of file descriptors: "accept",
// "dial" or "pipe"; anything else is counted as "other".
func (m *Metrics) OutOfResources(where string) {
	switch where {
	case "accept", "dial", "pipe":
	default:
		where = labelOther
	}
	m.outOfFDs.WithLabelValues(where).Inc()
}

// SetDraining sets the draining gauge. The admin handler also reads it back (Draining) to tell
// "draining" from "not ready" in /readyz.
func (m *Metrics) SetDraining(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drainingState = on
	if on {
		m.draining.Set(1)
	} else {
		m.draining.Set(0)
	}
}

// Draining reports the last value given to SetDraining.
func (m *Metrics) Draining() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.drainingState
}

func decisionLabel(d string) string {
	switch d {
	case audit.DecisionAllow, audit.DecisionDeny, audit.DecisionWouldDeny:
		return d
	case "":
		return labelNone
	}
	return labelOther
}

func (m *Metrics) reasonLabel(r string) string {
	switch {
	case r == "":
		return labelNone
	case m.reasons[r]:
		return r
	}
	return labelOther
}

// groupLabel admits a group name as a label value if it is a valid group name and the cap on
// distinct values is not reached; see the package comment.
func (m *Metrics) groupLabel(g string) string {
	if !validGroupName(g) {
		return labelNone
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.groups[g] {
		return g
	}
	if len(m.groups) >= MaxGroupLabels {
		return labelNone
	}
	m.groups[g] = true
	return g
}

// validGroupName mirrors the policy loader's rule for group names (1-64 letters, digits, '-',
// '_', '.', starting with a letter or digit), so only names a policy file could hold become labels.
func validGroupName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
			(i > 0 && (c == '-' || c == '_' || c == '.'))
		if !ok {
			return false
		}
	}
	return true
}
