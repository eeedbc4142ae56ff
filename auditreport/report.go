package auditreport

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/scpgate/scpgate/policy"
)

// SchemaID identifies the JSON format (docs/schema/audit-report.v1.json). It changes only when a
// field is removed or changes meaning; new optional fields keep it.
const SchemaID = "urn:scpgate:schema:audit-report:v1"

// Report is the result of an aggregation: the JSON document of SchemaID and the model every
// output format renders.
type Report struct {
	Schema      string     `json:"schema"`
	GeneratedAt time.Time  `json:"generated_at"`
	Policy      *PolicyRef `json:"policy"` // null when no policy was compared
	Period      Period     `json:"period"`
	Inputs      []Input    `json:"inputs"`
	Totals      Totals     `json:"totals"`
	// Endpoints are the destinations the policy allowed: successes and the failures reaching them.
	Endpoints []Endpoint `json:"endpoints"`
	// Denied are the destinations the policy refused, most frequent first.
	Denied []Denied `json:"denied"`
	// UnusedRules are the rules of enabled groups that allowed nothing in the period.
	UnusedRules []Rule `json:"unused_rules"`
	// Refusals are requests refused before their destination was judged (authentication,
	// rate limits, malformed requests, draining), by reason.
	Refusals  []Refusal        `json:"refusals"`
	Malformed MalformedSummary `json:"malformed"`
	Omitted   Omitted          `json:"omitted"`
	Limits    Limits           `json:"limits"`
}

// PolicyRef names the policy the traffic was compared with.
type PolicyRef struct {
	File         string `json:"file"`
	Version      string `json:"version"` // hex SHA-256 of the file
	EnabledRules int    `json:"enabled_rules"`
}

// Period is the time window asked for and the one the records covered.
type Period struct {
	Since       *time.Time `json:"since"` // inclusive; null = open
	Until       *time.Time `json:"until"` // exclusive; null = open
	FirstRecord *time.Time `json:"first_record"`
	LastRecord  *time.Time `json:"last_record"`
}

// Input is one file (or stream) read.
type Input struct {
	File          string `json:"file"`
	Compressed    bool   `json:"compressed"`
	Lines         int64  `json:"lines"`
	Blank         int64  `json:"blank"`
	Records       int64  `json:"records"` // lines that decoded, in the period or not
	OutsidePeriod int64  `json:"outside_period"`
	Malformed     int64  `json:"malformed"`
	Error         string `json:"error,omitempty"` // the file could not be read to its end
}

// Totals are over the records in the period.
type Totals struct {
	Records   int64 `json:"records"`
	Passed    int64 `json:"passed"`  // allowed (or let through in report mode)
	Refused   int64 `json:"refused"` // refused or failed
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
	Clients   Count `json:"clients"`
	Malformed int64 `json:"malformed"`
}

// Count is a number of distinct clients (IP addresses): exact, or an estimate once a row saw more
// than Limits.ClientExactLimit of them.
type Count struct {
	N         int64 `json:"count"`
	Estimated bool  `json:"estimated"`
}

// Endpoint is one destination host:port and the rule (group and pattern) that allowed it.
type Endpoint struct {
	Host    string `json:"host"`
	Port    uint16 `json:"port"`
	Group   string `json:"group"`
	Pattern string `json:"pattern"`
	// InPolicy is false when the compared policy has no such rule in an enabled group (the
	// policy changed since, or the report compares with another file).
	InPolicy         bool             `json:"in_policy"`
	Successes        int64            `json:"successes"`
	Failures         int64            `json:"failures"`
	FailureReasons   map[string]int64 `json:"failure_reasons"`
	WouldDeny        int64            `json:"would_deny"` // let through in report mode
	WouldDenyReasons map[string]int64 `json:"would_deny_reasons"`
	BytesUp          int64            `json:"bytes_up"`
	BytesDown        int64            `json:"bytes_down"`
	Clients          Count            `json:"clients"`
	LastSuccess      *time.Time       `json:"last_success"`
	LastSeen         time.Time        `json:"last_seen"`
}

// Denied is one destination host:port the policy refused.
type Denied struct {
	Host      string           `json:"host"`
	Port      uint16           `json:"port"`
	Count     int64            `json:"count"`
	WouldDeny int64            `json:"would_deny"` // of Count, let through in report mode
	Reasons   map[string]int64 `json:"reasons"`
	// Group and Pattern are the enabled rule that matched the name but refused the request (its
	// port, method, user or path did not fit); empty when no enabled rule matched.
	Group   string `json:"group"`
	Pattern string `json:"pattern"`
	// DisabledGroup and DisabledPattern name a disabled group of the compared policy that would
	// allow this host and port: what the admin may need to turn on.
	DisabledGroup   string    `json:"disabled_group"`
	DisabledPattern string    `json:"disabled_pattern"`
	Clients         Count     `json:"clients"`
	FirstSeen       time.Time `json:"first_seen"`
	LastSeen        time.Time `json:"last_seen"`
}

// Rule is one pattern of an enabled group.
type Rule struct {
	Group   string `json:"group"`
	Pattern string `json:"pattern"`
	Kind    string `json:"kind"` // "host" or "address"
}

// Refusal counts the requests refused for one reason before their destination was judged.
type Refusal struct {
	Reason      string    `json:"reason"`
	Description string    `json:"description"` // when the gateway gives the code; "" for an unknown code
	Count       int64     `json:"count"`
	Clients     Count     `json:"clients"`
	LastSeen    time.Time `json:"last_seen"`
}

// Malformed is one line that was not an audit record.
type Malformed struct {
	File  string `json:"file"`
	Line  int64  `json:"line"`
	Error string `json:"error"`
}

// MalformedSummary counts every malformed line and lists the first few.
type MalformedSummary struct {
	Count int64       `json:"count"`
	Shown []Malformed `json:"shown"`
}

// Omitted counts the records of rows beyond the bounds in Limits: they are in the totals but not
// itemised.
type Omitted struct {
	EndpointRecords int64 `json:"endpoint_records"`
	DeniedRecords   int64 `json:"denied_records"`
	RefusalRecords  int64 `json:"refusal_records"`
}

// Limits are the memory bounds the report was made with.
type Limits struct {
	ClientExactLimit int `json:"client_exact_limit"`
	MaxEndpoints     int `json:"max_endpoints"`
	MaxDenied        int `json:"max_denied"`
	MaxRefusals      int `json:"max_refusals"`
}

// Report builds the report of everything read so far. The Aggregator stays usable.
func (a *Aggregator) Report() *Report {
	o := a.opts
	r := &Report{
		Schema:      SchemaID,
		GeneratedAt: time.Now().UTC().Truncate(time.Second),
		Inputs:      slices.Clone(a.inputs),
		Endpoints:   []Endpoint{},
		Denied:      []Denied{},
		UnusedRules: []Rule{},
		Refusals:    []Refusal{},
		Malformed:   MalformedSummary{Shown: slices.Clone(a.malformed)},
		Omitted:     Omitted{a.omittedEndpoints, a.omittedDenied, a.omittedRefusals},
		Limits:      Limits{o.ClientExactLimit, o.MaxEndpoints, o.MaxDenied, o.MaxRefusals},
	}
	if r.Inputs == nil {
		r.Inputs = []Input{}
	}
	if r.Malformed.Shown == nil {
		r.Malformed.Shown = []Malformed{}
	}
	r.Period = Period{Since: timePtr(o.Since), Until: timePtr(o.Until), FirstRecord: timePtr(a.first), LastRecord: timePtr(a.last)}
	r.Totals = a.totals
	r.Totals.Clients = count(&a.clients)
	for _, in := range a.inputs {
		r.Totals.Malformed += in.Malformed
	}
	r.Malformed.Count = r.Totals.Malformed

	p := o.Policy
	if p != nil {
		r.Policy = &PolicyRef{File: p.File, Version: p.Version, EnabledRules: len(a.ruleHits)}
	}
	for k, e := range a.endpoints {
		_, in := a.ruleHits[ruleKey{k.group, k.pattern}]
		r.Endpoints = append(r.Endpoints, Endpoint{
			Host: k.host, Port: k.port, Group: k.group, Pattern: k.pattern, InPolicy: in,
			Successes: e.successes, Failures: e.failures, FailureReasons: nonNil(e.failReasons),
			WouldDeny: e.wouldDeny, WouldDenyReasons: nonNil(e.wouldReasons),
			BytesUp: e.bytesUp, BytesDown: e.bytesDown, Clients: count(&e.clients),
			LastSuccess: timePtr(e.lastSuccess), LastSeen: e.lastSeen,
		})
	}
	order := groupOrder(p)
	slices.SortFunc(r.Endpoints, func(x, y Endpoint) int {
		return cmp.Or(cmp.Compare(order(x.Group), order(y.Group)), cmp.Compare(x.Group, y.Group),
			cmp.Compare(x.Host, y.Host), cmp.Compare(x.Port, y.Port), cmp.Compare(x.Pattern, y.Pattern))
	})

	for k, d := range a.denied {
		row := Denied{
			Host: k.host, Port: k.port, Count: d.count, WouldDeny: d.wouldDeny, Reasons: nonNil(d.reasons),
			Group: d.group, Pattern: d.pattern, Clients: count(&d.clients), FirstSeen: d.firstSeen, LastSeen: d.lastSeen,
		}
		if p != nil {
			row.DisabledGroup, row.DisabledPattern = disabledGroupFor(p, k.host, k.port)
		}
		r.Denied = append(r.Denied, row)
	}
	slices.SortFunc(r.Denied, func(x, y Denied) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Host, y.Host), cmp.Compare(x.Port, y.Port))
	})

	if p != nil {
		for _, g := range p.Groups {
			if !g.Enabled {
				continue
			}
			for _, h := range g.Hosts {
				if a.ruleHits[ruleKey{g.Name, h}] == 0 {
					r.UnusedRules = append(r.UnusedRules, Rule{Group: g.Name, Pattern: h, Kind: "host"})
				}
			}
			for _, pr := range g.Addresses {
				if a.ruleHits[ruleKey{g.Name, pr.String()}] == 0 {
					r.UnusedRules = append(r.UnusedRules, Rule{Group: g.Name, Pattern: pr.String(), Kind: "address"})
				}
			}
		}
	}

	for reason, f := range a.refusals {
		r.Refusals = append(r.Refusals, Refusal{Reason: reason, Description: policy.Reason(reason).Description(), Count: f.count, Clients: count(&f.clients), LastSeen: f.lastSeen})
	}
	slices.SortFunc(r.Refusals, func(x, y Refusal) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Reason, y.Reason))
	})
	return r
}

// disabledGroupFor finds a disabled group of p whose rules match host and whose ports include
// port. A deny pattern that matches the host wins over every group, so then there is none.
func disabledGroupFor(p *policy.Policy, host string, port uint16) (group, pattern string) {
	h, err := policy.ParseHost(host)
	if err != nil {
		return "", ""
	}
	for _, m := range p.Matches(h) {
		if m.Kind == "deny" {
			return "", ""
		}
		if m.Enabled || m.Group == "" {
			continue
		}
		if g := p.Group(m.Group); g != nil && slices.Contains(g.Ports, port) {
			return m.Group, m.Pattern
		}
	}
	return "", ""
}

// groupOrder ranks groups in the policy's file order; groups the policy does not know sort last.
func groupOrder(p *policy.Policy) func(string) int {
	rank := map[string]int{}
	if p != nil {
		for i, g := range p.Groups {
			rank[g.Name] = i
		}
	}
	return func(name string) int {
		if i, ok := rank[name]; ok {
			return i
		}
		return len(rank)
	}
}

func count(s *clientSet) Count {
	n, est := s.count()
	return Count{N: n, Estimated: est}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nonNil(m map[string]int64) map[string]int64 {
	if m == nil {
		return map[string]int64{}
	}
	return maps.Clone(m)
}
