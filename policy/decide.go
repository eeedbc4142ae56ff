package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Request is what the gateway knows about a request when it asks for a decision.
type Request struct {
	Host        Host   // from ParseHost
	Port        uint16 // destination port
	Method      string // "CONNECT", or the method of a plain HTTP proxy request
	User        string // authenticated user; "" = anonymous
	AuthEnabled bool   // the gateway requires proxy authentication
	Path        string // the URL path of a plain HTTP request; "" for CONNECT
}

// Decision is the outcome of [Policy.Decide]. Group, Pattern, Ports, Mode and SNI describe
// the most relevant rule: the winner, or the best failing match (for policy-level denials
// Group and Pattern are empty, except Pattern is the deny pattern for denied_pattern).
type Decision struct {
	Allow     bool     `json:"allow"`
	WouldDeny bool     `json:"would_deny"` // report mode let through what enforce would deny
	Reason    Reason   `json:"reason"`     // set when denied or would-deny
	Group     string   `json:"group"`
	Pattern   string   `json:"pattern"`
	Ports     []uint16 `json:"ports"` // shared with the policy: do not modify
	Mode      Mode     `json:"mode"`
	SNI       SNIMode  `json:"sni"`
	Detail    string   `json:"detail"` // one human sentence
	// Matches is every rule that matched the host, including disabled groups and deny
	// patterns. Only DecideVerbose fills it; Decide leaves it nil (hot path).
	Matches []Match `json:"matches"`
}

// Match is one rule that matched a host.
type Match struct {
	Group   string `json:"group"` // "" for a deny pattern
	Pattern string `json:"pattern"`
	Kind    string `json:"kind"` // "exact", "suffix", "glob", "address" or "deny"
	Enabled bool   `json:"enabled"`
}

// Decide decides a request. It is safe for concurrent use and does not allocate when the
// request is allowed.
//
// IP literals are allowed only through an enabled group's addresses. Names are checked
// against the deny patterns first, then against the rules of every group, most specific
// first; the first enabled rule whose ports, methods and users fit wins. Report mode (the
// failing group's mode, or the policy's mode for no_rule, denied_pattern and ip_literal)
// turns a denial into Allow with WouldDeny. auth_required and invalid_host are never
// softened by report mode: a client that is not asked for credentials never sends them.
//
// r.Host must come from ParseHost; a hand-made Host that is not normalised matches nothing.
func (p *Policy) Decide(r Request) Decision {
	if p == nil || p.idx == nil {
		return Decision{Reason: ReasonNoRule, Mode: ModeEnforce, SNI: SNIMatch, Detail: "no policy is loaded"}
	}
	if r.Host.IsAddr() {
		return p.decideAddr(r)
	}
	if r.Host.Name == "" {
		return Decision{Reason: ReasonInvalidHost, Mode: ModeEnforce, SNI: SNIMatch, Detail: "the destination host is empty"}
	}
	host := r.Host.Name
	if dr := p.deny.first(host); dr != nil {
		return p.policyDeny(ReasonDeniedPattern, dr.pattern, host+" matches deny pattern "+dr.pattern)
	}
	var winner, best, disabled *rule
	var bestWhy Reason
	p.idx.each(host, func(ru *rule) bool {
		g := ru.group
		if !g.Enabled {
			if disabled == nil {
				disabled = ru
			}
			return true
		}
		why := fit(g, &r)
		if why == "" && !ru.allowsPath(r.Path) {
			why = ReasonPathNotAllowed
		}
		if why == "" {
			winner = ru
			return false
		}
		if rank(why) > rank(bestWhy) {
			best, bestWhy = ru, why
		}
		return true
	})
	switch {
	case winner != nil:
		g := winner.group
		return Decision{Allow: true, Group: g.Name, Pattern: winner.pattern, Ports: g.Ports, Mode: g.Mode, SNI: g.SNI, Detail: winner.allow}
	case best != nil:
		return groupDeny(best.group, best.pattern, bestWhy, &r)
	}
	detail := "no enabled group matches " + host
	if disabled != nil {
		detail += "; it matches group " + disabled.group.Name + " which is disabled"
	}
	return p.policyDeny(ReasonNoRule, "", detail)
}

func (p *Policy) decideAddr(r Request) Decision {
	a := r.Host.Addr.Unmap()
	var winner, best, disabled *addrRule
	var bestWhy Reason
	for i := range p.addrs {
		ar := &p.addrs[i]
		if !ar.prefix.Contains(a) {
			continue
		}
		if !ar.group.Enabled {
			if disabled == nil {
				disabled = ar
			}
			continue
		}
		why := fit(ar.group, &r)
		if why == "" {
			winner = ar
			break
		}
		if rank(why) > rank(bestWhy) {
			best, bestWhy = ar, why
		}
	}
	switch {
	case winner != nil:
		g := winner.group
		return Decision{Allow: true, Group: g.Name, Pattern: winner.text, Ports: g.Ports, Mode: g.Mode, SNI: g.SNI, Detail: winner.allow}
	case best != nil:
		return groupDeny(best.group, best.text, bestWhy, &r)
	}
	detail := "IP-literal destination " + a.String() + " is not in any enabled group's addresses"
	if disabled != nil {
		detail += "; it matches group " + disabled.group.Name + " which is disabled"
	}
	return p.policyDeny(ReasonIPLiteral, "", detail)
}

// fit reports why group g cannot carry r, or "" if it can. The checks run in the order
// port, method, authentication, so a later failure means the rule got further.
func fit(g *Group, r *Request) Reason {
	if !slices.Contains(g.Ports, r.Port) {
		return ReasonPortNotAllowed
	}
	if !hasMethod(g.Methods, r.Method) {
		return ReasonMethodNotAllowed
	}
	if r.AuthEnabled && r.User == "" && !g.Anonymous {
		return ReasonAuthRequired
	}
	if r.User != "" && len(g.Users) > 0 && !slices.Contains(g.Users, r.User) {
		return ReasonUserNotAllowed
	}
	return ""
}

func hasMethod(methods []string, m string) bool {
	for _, x := range methods {
		if strings.EqualFold(x, m) {
			return true
		}
	}
	return false
}

// policyDeny is a denial decided by the policy as a whole (no group fits), subject to
// the policy-wide mode.
func (p *Policy) policyDeny(why Reason, pattern, detail string) Decision {
	d := Decision{Reason: why, Pattern: pattern, Mode: p.Mode, SNI: SNIMatch, Detail: detail}
	if p.Mode == ModeReport {
		d.Allow, d.WouldDeny = true, true
		d.Detail += "; let through in report mode"
	}
	return d
}

// groupDeny is a denial by the best failing rule of group g, subject to g's mode.
func groupDeny(g *Group, pattern string, why Reason, r *Request) Decision {
	d := Decision{Reason: why, Group: g.Name, Pattern: pattern, Ports: g.Ports, Mode: g.Mode, SNI: g.SNI}
	switch why {
	case ReasonPortNotAllowed:
		d.Detail = fmt.Sprintf("port %d is not allowed by group %s (ports %s)", r.Port, g.Name, portList(g.Ports))
	case ReasonMethodNotAllowed:
		d.Detail = fmt.Sprintf("method %q is not allowed by group %s (methods %s)", r.Method, g.Name, strings.Join(g.Methods, ", "))
	case ReasonAuthRequired:
		d.Detail = fmt.Sprintf("group %s requires proxy authentication", g.Name)
	case ReasonUserNotAllowed:
		d.Detail = fmt.Sprintf("user %q may not use group %s", r.User, g.Name)
	case ReasonPathNotAllowed:
		d.Detail = fmt.Sprintf("path %q is not allowed for pattern %s by group %s (paths %s)", r.Path, pattern, g.Name, strings.Join(g.Paths[pattern], ", "))
	}
	if g.Mode == ModeReport && why != ReasonAuthRequired {
		d.Allow, d.WouldDeny = true, true
		d.Detail += "; let through in report mode"
	}
	return d
}

func portList(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

// DecideVerbose is Decide plus Decision.Matches: every rule that matched the host, for
// explain output. It allocates; use Decide on the request path.
func (p *Policy) DecideVerbose(r Request) Decision {
	d := p.Decide(r)
	d.Matches = p.Matches(r.Host)
	return d
}

// Matches lists every rule that matches h, whether its group is enabled or not: deny
// patterns first, then group rules most specific first (for an address, every group
// prefix containing it, in file order). It never returns nil.
func (p *Policy) Matches(h Host) []Match {
	out := []Match{}
	if p == nil || p.idx == nil {
		return out
	}
	if h.IsAddr() {
		a := h.Addr.Unmap()
		for _, ar := range p.addrs {
			if ar.prefix.Contains(a) {
				out = append(out, Match{Group: ar.group.Name, Pattern: ar.text, Kind: "address", Enabled: ar.group.Enabled})
			}
		}
		return out
	}
	if h.Name == "" {
		return out
	}
	p.deny.each(h.Name, func(ru *rule) bool {
		out = append(out, Match{Pattern: ru.pattern, Kind: "deny", Enabled: true})
		return true
	})
	p.idx.each(h.Name, func(ru *rule) bool {
		out = append(out, Match{Group: ru.group.Name, Pattern: ru.pattern, Kind: ru.kind.String(), Enabled: ru.group.Enabled})
		return true
	})
	return out
}

// Explain renders the decision for people: outcome, group, pattern, ports, mode, reason,
// detail and (when Matches was filled by DecideVerbose) what else matched the host.
func (d Decision) Explain() string {
	var b strings.Builder
	switch {
	case d.Allow && d.WouldDeny:
		fmt.Fprintf(&b, "decision: allow (report mode; enforce would deny: %s)\n", d.Reason)
	case d.Allow:
		b.WriteString("decision: allow\n")
	default:
		fmt.Fprintf(&b, "decision: deny (%s)\n", d.Reason)
	}
	line := func(k, v string) {
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(&b, "%-9s %s\n", k+":", v)
	}
	line("group", d.Group)
	line("pattern", d.Pattern)
	line("ports", portList(d.Ports))
	line("mode", string(d.Mode))
	line("sni", string(d.SNI))
	line("reason", string(d.Reason))
	line("detail", d.Detail)
	if d.Matches != nil {
		var other []Match
		for _, m := range d.Matches {
			if d.Pattern != "" && m.Group == d.Group && m.Pattern == d.Pattern {
				continue
			}
			other = append(other, m)
		}
		if len(other) == 0 {
			b.WriteString("also matched: nothing else\n")
		} else {
			b.WriteString("also matched:\n")
			for _, m := range other {
				state := "enabled"
				if !m.Enabled {
					state = "disabled"
				}
				if m.Kind == "deny" {
					fmt.Fprintf(&b, "  - deny pattern %s\n", m.Pattern)
					continue
				}
				fmt.Fprintf(&b, "  - group %s, pattern %s (%s, %s)\n", m.Group, m.Pattern, m.Kind, state)
			}
		}
	}
	return b.String()
}
