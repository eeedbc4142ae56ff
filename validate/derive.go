package validate

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/scpgate/scpgate/policy"
)

// Names used to build near misses. They sit under the rule's own names so that only the
// policy, never DNS, decides them: the gateway refuses them before it resolves anything.
const (
	probeLabel   = "scpgate-probe"   // one label more in front / a synthetic wildcard instance
	siblingLabel = "scpgate-sibling" // replaces a rule's first literal label
	frontingName = "scpgate-fronting.invalid"
	unlistedName = "scpgate-unlisted.invalid"
)

// DeriveOptions say what to derive from a policy.
type DeriveOptions struct {
	// Groups limits the checks to these groups (each must exist and be enabled); empty means
	// every enabled group.
	Groups []string
	// Samples are real names to probe for wildcard patterns, keyed by the pattern as written in
	// the policy ("*.manage.microsoft.com": ["sccm.manage.microsoft.com"]). A wildcard without
	// a sample is listed in the drift section as not tested.
	Samples map[string][]string
	// AuthEnabled: the gateway requires proxy authentication; User is the configured user.
	AuthEnabled bool
	User        string
	// PrivateAddr and MetadataAddr are the IP literals of the fixed "private address" and
	// "metadata address" checks (defaults 10.0.0.1 and 169.254.169.254). The validator never
	// dials them: it asks the gateway to, and the gateway must refuse.
	PrivateAddr, MetadataAddr string
	// PrivateName is a name the policy allows that resolves to a private address (optional;
	// without it the check is listed as skipped).
	PrivateName string
	// OtherPort is the port of the "another port" near miss (default 8443, or the next port no
	// group of the rule allows).
	OtherPort uint16
	// Shipped is the shipped endpoint list, for the drift section's "not enabled" list; nil
	// uses the policy's own disabled groups.
	Shipped *policy.Policy
}

// Plan is the derived list of checks plus what could not be checked.
type Plan struct {
	Checks []Check `json:"checks"`
	Drift  Drift   `json:"drift"`
}

// Drift says what the run covers and what it cannot.
type Drift struct {
	Rules      []RuleCoverage  `json:"rules"`       // every rule of the checked groups
	NotEnabled []DisabledEntry `json:"not_enabled"` // shipped endpoints no enabled group lists
	Skipped    []SkippedCheck  `json:"skipped"`     // near misses not generated, and why
}

// RuleCoverage is how one rule of a checked group was covered.
type RuleCoverage struct {
	Group   string `json:"group"`
	Pattern string `json:"pattern"`
	// Coverage: "tested" (exact name), "sampled" (a wildcard probed through sample names),
	// "not_sampled" (a wildcard without samples), "plain_http" (a plain-HTTP rule),
	// "covered_by" (another group's rule decides this host first).
	Coverage string   `json:"coverage"`
	Hosts    []string `json:"hosts"`
}

// DisabledEntry is one endpoint pattern of the shipped list that no enabled group lists.
type DisabledEntry struct {
	Group   string `json:"group"`
	Pattern string `json:"pattern"`
}

// SkippedCheck is a near miss that was not generated.
type SkippedCheck struct {
	Kind    string `json:"kind"`
	Group   string `json:"group,omitempty"`
	Pattern string `json:"pattern,omitempty"`
	Host    string `json:"host,omitempty"`
	Why     string `json:"why"`
}

type patternKind int

const (
	patExact patternKind = iota
	patSuffix
	patGlob
)

func kindOf(pattern string) patternKind {
	switch {
	case !strings.ContainsAny(pattern, "*?[]{}"):
		return patExact
	case strings.HasPrefix(pattern, "*.") && !strings.ContainsAny(pattern[2:], "*?[]{}"):
		return patSuffix
	}
	return patGlob
}

// literalSuffix is the part of a pattern right of its last wildcard label.
func literalSuffix(pattern string) string {
	labels := strings.Split(pattern, ".")
	last := -1
	for i, l := range labels {
		if strings.ContainsAny(l, "*?[]{}") {
			last = i
		}
	}
	return strings.Join(labels[last+1:], ".")
}

// instance builds a name a glob or suffix pattern matches: '*' becomes probeLabel, '?' an 'x',
// a class its first member and braces their first alternative. The caller checks the result
// against the policy, so an odd pattern only costs a skipped check.
func instance(pattern string) string {
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			b.WriteString(probeLabel)
		case '?':
			b.WriteByte('x')
		case '[':
			j := i + 1
			if j < len(pattern) && pattern[j] == '!' {
				// A negated class: pick a letter it is unlikely to exclude.
				b.WriteByte('q')
			} else if j < len(pattern) {
				b.WriteByte(pattern[j])
			}
			for i < len(pattern) && pattern[i] != ']' {
				i++
			}
		case '{':
			j := i + 1
			for j < len(pattern) && pattern[j] != ',' && pattern[j] != '}' {
				b.WriteByte(pattern[j])
				j++
			}
			for i < len(pattern) && pattern[i] != '}' {
				i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// sibling replaces the first label of name with siblingLabel: the same parent, another name.
func sibling(name string) string {
	_, parent, ok := strings.Cut(name, ".")
	if !ok {
		return ""
	}
	return siblingLabel + "." + parent
}

// deriver carries the state of one Derive call.
type deriver struct {
	pol   *policy.Policy
	o     DeriveOptions
	plan  Plan
	seen  map[string]bool // check identity -> already planned
	first *Check          // first endpoint check with a real name (for credential checks)
}

// Derive turns a policy into checks: one must-pass check per endpoint (exact names and the
// samples of wildcards) of each checked group, the near misses of every rule, and the fixed
// set. The expected reason of each near miss is what the policy itself decides for it; a near
// miss that another rule allows is skipped and listed with the rule that allows it.
func Derive(pol *policy.Policy, o DeriveOptions) (*Plan, error) {
	if pol == nil {
		return nil, fmt.Errorf("validate: no policy")
	}
	if o.PrivateAddr == "" {
		o.PrivateAddr = "10.0.0.1"
	}
	if o.MetadataAddr == "" {
		o.MetadataAddr = "169.254.169.254"
	}
	for _, a := range []string{o.PrivateAddr, o.MetadataAddr} {
		if _, err := netip.ParseAddr(a); err != nil {
			return nil, fmt.Errorf("validate: %q is not an IP address", a)
		}
	}
	groups, err := selectGroups(pol, o.Groups)
	if err != nil {
		return nil, err
	}
	for pattern, names := range o.Samples {
		for _, n := range names {
			if err := checkSample(pol, pattern, n); err != nil {
				return nil, err
			}
		}
	}
	d := &deriver{pol: pol, o: o, seen: map[string]bool{}}
	d.plan.Checks, d.plan.Drift.Rules, d.plan.Drift.Skipped = []Check{}, []RuleCoverage{}, []SkippedCheck{}
	for _, g := range groups {
		for _, pattern := range g.Hosts {
			d.rule(g, pattern)
		}
	}
	d.fixed()
	d.notEnabled(groups)
	for i := range d.plan.Checks {
		c := &d.plan.Checks[i]
		c.ID = checkID(c)
		c.ExpectStatus = expectStatus(c)
	}
	return &d.plan, nil
}

func selectGroups(pol *policy.Policy, names []string) ([]*policy.Group, error) {
	if len(names) == 0 {
		var out []*policy.Group
		for _, g := range pol.Groups {
			if g.Enabled {
				out = append(out, g)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("validate: policy %s enables no group: nothing to check", pol.File)
		}
		return out, nil
	}
	var out []*policy.Group
	for _, n := range names {
		g := pol.Group(n)
		switch {
		case g == nil:
			return nil, fmt.Errorf("validate: group %q is not in policy %s", n, pol.File)
		case !g.Enabled:
			return nil, fmt.Errorf("validate: group %q is disabled in policy %s: enable it or leave it out of groups", n, pol.File)
		}
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out, nil
}

// checkSample refuses a sample name that its pattern does not match: probing it would test
// another rule.
func checkSample(pol *policy.Policy, pattern, name string) error {
	h, err := policy.ParseHost(name)
	if err != nil || h.IsAddr() {
		return fmt.Errorf("validate: sample %q for %s: not a host name", name, pattern)
	}
	found := false
	for _, m := range pol.Matches(h) {
		if m.Kind == "deny" {
			return fmt.Errorf("validate: sample %q for %s matches deny pattern %s: it can never pass; pick another", name, pattern, m.Pattern)
		}
		found = found || m.Pattern == pattern
	}
	if found {
		return nil
	}
	return fmt.Errorf("validate: sample %q does not match pattern %q (or the pattern is not in the policy)", name, pattern)
}

func (d *deriver) decide(host string, port uint16, method, user string) (policy.Decision, bool) {
	return d.decidePath(host, port, method, user, "")
}

// decidePath asks the policy as the gateway will; path is the URL path of a plain-HTTP request.
func (d *deriver) decidePath(host string, port uint16, method, user, path string) (policy.Decision, bool) {
	h, err := policy.ParseHost(host)
	if err != nil {
		return policy.Decision{}, false
	}
	return d.pol.Decide(policy.Request{Host: h, Port: port, Method: method, User: user, AuthEnabled: d.o.AuthEnabled, Path: path}), true
}

func hasConnect(g *policy.Group) bool { return slices.Contains(g.Methods, "CONNECT") }

// rule plans the checks of one rule of one checked group.
func (d *deriver) rule(g *policy.Group, pattern string) {
	cov := RuleCoverage{Group: g.Name, Pattern: pattern, Hosts: []string{}}
	var names []string
	switch kindOf(pattern) {
	case patExact:
		names, cov.Coverage = []string{pattern}, "tested"
	default:
		names = d.o.Samples[pattern]
		cov.Coverage = "sampled"
		if len(names) == 0 {
			cov.Coverage = "not_sampled"
		}
	}
	connect := hasConnect(g)
	if !connect {
		cov.Coverage = "plain_http"
	}
	for _, n := range names {
		for _, port := range g.Ports {
			c := Check{Expect: ExpectPass, Kind: "endpoint", Group: g.Name, Pattern: pattern, Host: n, Port: port, Creds: CredsConfigured}
			if kindOf(pattern) != patExact {
				c.Kind = "wildcard_sample"
			}
			method := "CONNECT"
			if connect {
				c.Probe = ProbeTLS
				c.Why = fmt.Sprintf("%s is listed by group %s (%s)", n, g.Name, pattern)
			} else {
				method = firstMethod(g.Methods)
				c.Probe, c.Path = ProbeHTTP, "/"
				if ps := g.Paths[pattern]; len(ps) > 0 {
					c.Path = ps[0]
				}
				c.Why = fmt.Sprintf("plain HTTP %s to %s is allowed by group %s (%s)", method, n, g.Name, pattern)
			}
			dec, ok := d.decidePath(n, port, method, d.o.User, c.Path)
			if !ok {
				continue
			}
			if !dec.Allow {
				d.skip("endpoint", g.Name, pattern, n, fmt.Sprintf("the policy refuses it (%s): %s", dec.Reason, dec.Detail))
				continue
			}
			if dec.Group != g.Name {
				// Another group decides this host first (go.microsoft.com in two groups): one
				// probe, under the deciding group.
				c.Group, c.Pattern = dec.Group, dec.Pattern
				cov.Coverage = "covered_by"
			}
			cov.Hosts = append(cov.Hosts, n)
			if d.add(c) && connect && d.first == nil {
				last := d.plan.Checks[len(d.plan.Checks)-1]
				d.first = &last
			}
		}
	}
	d.plan.Drift.Rules = append(d.plan.Drift.Rules, cov)
	d.nearMisses(g, pattern, names)
}

func firstMethod(ms []string) string {
	for _, m := range ms {
		if m == "GET" {
			return m
		}
	}
	return ms[0]
}

// nearMisses plans the must-block neighbours of one rule.
func (d *deriver) nearMisses(g *policy.Group, pattern string, samples []string) {
	kind := kindOf(pattern)
	port := g.Ports[0]
	// A name the rule itself matches, for the port and method near misses; it need not
	// resolve because the gateway refuses before resolving.
	inRule := pattern
	if kind != patExact {
		inRule = instance(pattern)
	}
	switch kind {
	case patExact:
		d.block(g, pattern, "extra_label", probeLabel+"."+pattern, port, "one label more in front of the exact name "+pattern)
		d.block(g, pattern, "sibling", sibling(pattern), port, "a sibling of "+pattern+" (same parent domain)")
	case patSuffix:
		apex := pattern[2:]
		d.block(g, pattern, "wildcard_apex", apex, port, "the apex of "+pattern+" (a *. wildcard never matches its apex)")
		d.block(g, pattern, "sibling", sibling(apex), port, "a sibling of "+apex+" (outside "+pattern+")")
	case patGlob:
		suffix := literalSuffix(pattern)
		d.block(g, pattern, "wildcard_apex", suffix, port, "the literal suffix of "+pattern+" alone")
		d.block(g, pattern, "sibling", probeLabel+"."+sibling(suffix), port, "a name under a sibling of "+suffix)
	}
	if other := d.otherPort(g); other != 0 {
		d.blockPort(g, pattern, "other_port", inRule, other, "CONNECT", fmt.Sprintf("%s on port %d, which group %s does not allow", inRule, other, g.Name))
	}
	if ps := g.Paths[pattern]; len(ps) > 0 {
		d.blockPath(g, pattern, inRule, port, ps)
	}
	if hasConnect(g) {
		d.blockHTTP(g, pattern, inRule)
		if g.SNI == policy.SNIMatch {
			d.fronting(g, pattern, samples)
		} else {
			d.skip("sni_mismatch", g.Name, pattern, "", "group "+g.Name+" has sni: off; the gateway does not compare the ClientHello with the CONNECT host")
		}
	}
}

// otherPort picks a port the group does not allow.
func (d *deriver) otherPort(g *policy.Group) uint16 {
	p := d.o.OtherPort
	if p == 0 {
		p = 8443
	}
	for slices.Contains(g.Ports, p) && p < 65535 {
		p++
	}
	if slices.Contains(g.Ports, p) {
		return 0
	}
	return p
}

func (d *deriver) block(g *policy.Group, pattern, kind, host string, port uint16, why string) {
	d.blockPort(g, pattern, kind, host, port, "CONNECT", why)
}

// blockPort plans a must-block CONNECT (or, for plain-HTTP groups, request) if the policy
// refuses it; the policy's reason is the expected one.
func (d *deriver) blockPort(g *policy.Group, pattern, kind, host string, port uint16, method, why string) {
	if host == "" {
		d.skip(kind, g.Name, pattern, "", "no such name can be built from "+pattern)
		return
	}
	probe := ProbeTLS
	if !hasConnect(g) {
		probe, method = ProbeHTTP, firstMethod(g.Methods)
	}
	path := ""
	if probe == ProbeHTTP {
		path = "/"
	}
	dec, ok := d.decidePath(host, port, method, d.o.User, path)
	if !ok {
		d.skip(kind, g.Name, pattern, host, "not a valid host name")
		return
	}
	if dec.Allow && !dec.WouldDeny {
		d.skip(kind, g.Name, pattern, host, fmt.Sprintf("allowed by group %s, pattern %s: not a near miss in this policy", dec.Group, dec.Pattern))
		return
	}
	c := Check{Expect: ExpectBlock, Probe: probe, Kind: kind, Group: g.Name, Pattern: pattern, Host: host, Port: port,
		Creds: CredsConfigured, ExpectReason: dec.Reason, ReportMode: dec.WouldDeny, Why: why}
	if probe == ProbeHTTP {
		c.Path = "/"
	}
	d.add(c)
}

// blockHTTP plans a plain-HTTP request to a CONNECT-only name.
func (d *deriver) blockHTTP(g *policy.Group, pattern, host string) {
	if slices.ContainsFunc(g.Methods, func(m string) bool { return m == "GET" }) {
		return
	}
	dec, ok := d.decidePath(host, 80, "GET", d.o.User, "/")
	if !ok || (dec.Allow && !dec.WouldDeny) {
		d.skip("plain_http", g.Name, pattern, host, "plain HTTP to "+host+" is allowed by another rule")
		return
	}
	d.add(Check{Expect: ExpectBlock, Probe: ProbeHTTP, Kind: "plain_http", Group: g.Name, Pattern: pattern, Host: host, Port: 80, Path: "/",
		Creds: CredsConfigured, ExpectReason: dec.Reason, ReportMode: dec.WouldDeny,
		Why: "a plain-HTTP request to " + host + ", which group " + g.Name + " allows only through CONNECT"})
}

// blockPath plans a plain-HTTP request outside the path prefixes a rule is limited to.
func (d *deriver) blockPath(g *policy.Group, pattern, host string, port uint16, prefixes []string) {
	const path = "/" + probeLabel + "/"
	dec, ok := d.decidePath(host, port, firstMethod(g.Methods), d.o.User, path)
	if !ok || (dec.Allow && !dec.WouldDeny) {
		d.skip("other_path", g.Name, pattern, host, "the path "+path+" is allowed")
		return
	}
	d.add(Check{Expect: ExpectBlock, Probe: ProbeHTTP, Kind: "other_path", Group: g.Name, Pattern: pattern, Host: host, Port: port, Path: path,
		Creds: CredsConfigured, ExpectReason: dec.Reason, ReportMode: dec.WouldDeny,
		Why: fmt.Sprintf("a path outside %s, the only prefixes group %s allows for %s", strings.Join(prefixes, ", "), g.Name, pattern)})
}

// fronting plans a ClientHello naming another host inside an allowed tunnel: it needs a name
// the gateway will actually connect to, so exact names and samples only.
func (d *deriver) fronting(g *policy.Group, pattern string, samples []string) {
	host := pattern
	if kindOf(pattern) != patExact {
		if len(samples) == 0 {
			d.skip("sni_mismatch", g.Name, pattern, "", "no sample name for "+pattern+": the tunnel needs a name that resolves")
			return
		}
		host = samples[0]
	}
	dec, ok := d.decide(host, g.Ports[0], "CONNECT", d.o.User)
	if !ok || !dec.Allow || dec.Group != g.Name {
		return // refused anyway, or another group's rule (and its own fronting check) decides it
	}
	reason := policy.ReasonSNIMismatch
	d.add(Check{Expect: ExpectBlock, Probe: ProbeFronting, Kind: "sni_mismatch", Group: g.Name, Pattern: pattern, Host: host, Port: g.Ports[0],
		SNI: frontingName, Creds: CredsConfigured, ExpectReason: reason, ReportMode: dec.Mode == policy.ModeReport,
		Why: "a tunnel to " + host + " whose ClientHello names " + frontingName + " (domain fronting)"})
}

// fixed plans the checks every policy gets: an unlisted name, a private and a metadata
// address, a name resolving to a private address, and the credential checks.
func (d *deriver) fixed() {
	fix := func(kind, host string, why string, reasonIf func(policy.Decision) policy.Reason) {
		dec, ok := d.decide(host, 443, "CONNECT", d.o.User)
		if !ok {
			d.skip(kind, "", "", host, "not a valid host")
			return
		}
		reason := reasonIf(dec)
		if reason == "" {
			d.skip(kind, "", "", host, fmt.Sprintf("the policy allows %s (group %s, %s)", host, dec.Group, dec.Pattern))
			return
		}
		d.add(Check{Expect: ExpectBlock, Probe: ProbeTLS, Kind: kind, Host: host, Port: 443, Creds: CredsConfigured,
			ExpectReason: reason, ReportMode: dec.WouldDeny, Why: why})
	}
	denied := func(dec policy.Decision) policy.Reason {
		if dec.Allow && !dec.WouldDeny {
			return ""
		}
		return dec.Reason
	}
	fix("unlisted", unlistedName, "a name no group lists", denied)
	fix("private_address", d.o.PrivateAddr, "a private address as an IP literal", denied)
	fix("metadata_address", d.o.MetadataAddr, "the cloud metadata address as an IP literal", denied)
	if d.o.PrivateName == "" {
		d.skip("private_name", "", "", "", "no private_name configured: give a listed name that resolves to a private address")
	} else {
		fix("private_name", d.o.PrivateName, "a listed name that resolves to a private address", func(dec policy.Decision) policy.Reason {
			if !dec.Allow {
				return "" // the policy refuses it already: it would not show the address check
			}
			return policy.ReasonPrivateAddress
		})
	}
	if !d.o.AuthEnabled {
		d.skip("no_credentials", "", "", "", "no credentials configured: authentication checks need them")
		return
	}
	if d.first == nil {
		d.skip("no_credentials", "", "", "", "no endpoint to try credentials on")
		return
	}
	base := *d.first
	dec, _ := d.decide(base.Host, base.Port, "CONNECT", "")
	if !dec.Allow {
		d.add(Check{Expect: ExpectBlock, Probe: ProbeTLS, Kind: "no_credentials", Group: base.Group, Pattern: base.Pattern, Host: base.Host, Port: base.Port,
			Creds: CredsNone, ExpectReason: dec.Reason, Why: "an endpoint without credentials"})
	} else {
		d.skip("no_credentials", base.Group, base.Pattern, base.Host, "group "+base.Group+" allows anonymous use")
	}
	d.add(Check{Expect: ExpectBlock, Probe: ProbeTLS, Kind: "wrong_credentials", Group: base.Group, Pattern: base.Pattern, Host: base.Host, Port: base.Port,
		Creds: CredsWrong, ExpectReason: policy.ReasonAuthFailed, Why: "an endpoint with a wrong password"})
}

// add plans c unless the same probe is planned already; it reports whether c was added.
func (d *deriver) add(c Check) bool {
	key := strings.Join([]string{string(c.Expect), string(c.Probe), c.Host, fmt.Sprint(c.Port), c.SNI, string(c.Creds), c.Path}, "|")
	if d.seen[key] {
		return false
	}
	d.seen[key] = true
	d.plan.Checks = append(d.plan.Checks, c)
	return true
}

func (d *deriver) skip(kind, group, pattern, host, why string) {
	d.plan.Drift.Skipped = append(d.plan.Drift.Skipped, SkippedCheck{Kind: kind, Group: group, Pattern: pattern, Host: host, Why: why})
}

// notEnabled lists the shipped endpoints that no checked group lists.
func (d *deriver) notEnabled(checked []*policy.Group) {
	listed := map[string]bool{}
	for _, g := range checked {
		for _, h := range g.Hosts {
			listed[h] = true
		}
	}
	src := d.o.Shipped
	if src == nil {
		src = d.pol
	}
	seen := map[string]bool{}
	d.plan.Drift.NotEnabled = []DisabledEntry{}
	for _, g := range src.Groups {
		for _, h := range g.Hosts {
			if listed[h] || seen[h] {
				continue
			}
			seen[h] = true
			d.plan.Drift.NotEnabled = append(d.plan.Drift.NotEnabled, DisabledEntry{Group: g.Name, Pattern: h})
		}
	}
	sort.SliceStable(d.plan.Drift.NotEnabled, func(i, j int) bool { return d.plan.Drift.NotEnabled[i].Group < d.plan.Drift.NotEnabled[j].Group })
}

// expectStatus is the status the gateway answers a must-block check with.
func expectStatus(c *Check) int {
	if c.Expect != ExpectBlock || c.Probe == ProbeFronting || c.ExpectReason == "" {
		return 0
	}
	return c.ExpectReason.Status()
}

// checkID names a check: expectation, kind, target and, where they differ, the SNI and
// credentials.
func checkID(c *Check) string {
	id := string(c.Expect) + "/" + c.Kind + "/" + c.Target()
	if c.SNI != "" {
		id += "/sni=" + c.SNI
	}
	if c.Probe == ProbeHTTP {
		id += "/http" + c.Path
	}
	return id
}
