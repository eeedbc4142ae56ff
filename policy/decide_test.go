package policy

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
)

const decidePolicy = `version: 1
mode: enforce
deny:
  - "*.evil.example.com"
  - bad.example.org
groups:
  exact-first:
    enabled: true
    hosts: [a.example.com]
  suffix-long:
    enabled: true
    hosts: ["*.b.example.com"]
  suffix-short:
    enabled: true
    hosts: ["*.example.com"]
  globs:
    enabled: true
    hosts: ["a*.example.com", "x*.b.example.com"]
  other-port:
    enabled: true
    ports: [8443]
    hosts: [port.example.net]
  http-only:
    enabled: true
    ports: [80]
    methods: [GET, HEAD]
    sni: off
    hosts: [crl.example.net]
  alice-only:
    enabled: true
    users: [alice]
    hosts: [users.example.net]
  anon:
    enabled: true
    anonymous: true
    hosts: [anon.example.net]
  switched-off:
    enabled: false
    hosts: [off.example.net, a.example.com]
  reporting:
    enabled: true
    mode: report
    ports: [443]
    users: [carol]
    hosts: [report.example.net]
  addrs:
    enabled: true
    addresses: ["203.0.113.0/24", "2001:db8::/32"]
  addrs-off:
    enabled: false
    addresses: ["198.51.100.0/24"]
  addr-port:
    enabled: true
    ports: [8443]
    addresses: ["192.0.2.7"]
`

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func req(t testing.TB, host string, port uint16, method string) Request {
	t.Helper()
	h, err := ParseHost(host)
	if err != nil {
		t.Fatalf("ParseHost(%q): %v", host, err)
	}
	return Request{Host: h, Port: port, Method: method}
}

func TestDecide(t *testing.T) {
	p := mustParse(t, decidePolicy)
	type want struct {
		allow, wouldDeny bool
		reason           Reason
		group, pattern   string
		mode             Mode
		sni              SNIMode
		detail           string // substring
	}
	tests := []struct {
		name string
		r    Request
		want want
	}{
		{"exact beats suffix and glob", req(t, "a.example.com", 443, "CONNECT"),
			want{allow: true, group: "exact-first", pattern: "a.example.com", mode: ModeEnforce, sni: SNIMatch}},
		{"longest suffix first", req(t, "y.b.example.com", 443, "CONNECT"),
			want{allow: true, group: "suffix-long", pattern: "*.b.example.com", mode: ModeEnforce, sni: SNIMatch}},
		{"suffix beats glob", req(t, "ab.example.com", 443, "CONNECT"),
			want{allow: true, group: "suffix-short", pattern: "*.example.com", mode: ModeEnforce, sni: SNIMatch}},
		{"suffix at any depth", req(t, "p.q.r.example.com", 443, "CONNECT"),
			want{allow: true, group: "suffix-short", pattern: "*.example.com"}},
		{"apex not matched", req(t, "example.com", 443, "CONNECT"),
			want{reason: ReasonNoRule, mode: ModeEnforce, sni: SNIMatch, detail: "no enabled group matches example.com"}},
		{"deny wins", req(t, "x.evil.example.com", 443, "CONNECT"),
			want{reason: ReasonDeniedPattern, pattern: "*.evil.example.com", mode: ModeEnforce, detail: "matches deny pattern"}},
		{"deny exact", req(t, "BAD.example.org.", 443, "CONNECT"),
			want{reason: ReasonDeniedPattern, pattern: "bad.example.org"}},
		{"no rule", req(t, "nothing.example.org", 443, "CONNECT"),
			want{reason: ReasonNoRule, mode: ModeEnforce}},
		{"disabled group", req(t, "off.example.net", 443, "CONNECT"),
			want{reason: ReasonNoRule, detail: "matches group switched-off which is disabled"}},
		{"port not allowed", req(t, "port.example.net", 443, "CONNECT"),
			want{reason: ReasonPortNotAllowed, group: "other-port", pattern: "port.example.net", mode: ModeEnforce, sni: SNIMatch, detail: "port 443"}},
		{"port allowed", req(t, "port.example.net", 8443, "CONNECT"),
			want{allow: true, group: "other-port"}},
		{"method not allowed", req(t, "crl.example.net", 80, "CONNECT"),
			want{reason: ReasonMethodNotAllowed, group: "http-only", sni: SNIOff, detail: `method "CONNECT"`}},
		{"method case-insensitive", req(t, "crl.example.net", 80, "get"),
			want{allow: true, group: "http-only", sni: SNIOff}},
		{"ip literal", req(t, "127.1", 443, "CONNECT"),
			want{reason: ReasonIPLiteral, mode: ModeEnforce, detail: "127.0.0.1"}},
		{"ip literal mapped", req(t, "::ffff:7f00:1", 443, "CONNECT"),
			want{reason: ReasonIPLiteral}},
		{"address allowed", req(t, "203.0.113.9", 443, "CONNECT"),
			want{allow: true, group: "addrs", pattern: "203.0.113.0/24"}},
		{"address allowed hex", req(t, "0xcb007109", 443, "CONNECT"),
			want{allow: true, group: "addrs", pattern: "203.0.113.0/24"}},
		{"address v6", req(t, "2001:db8::5", 443, "CONNECT"),
			want{allow: true, group: "addrs", pattern: "2001:db8::/32"}},
		{"address in disabled group", req(t, "198.51.100.1", 443, "CONNECT"),
			want{reason: ReasonIPLiteral, detail: "addrs-off which is disabled"}},
		{"address wrong port", req(t, "192.0.2.7", 443, "CONNECT"),
			want{reason: ReasonPortNotAllowed, group: "addr-port", pattern: "192.0.2.7/32"}},
		{"address right port", req(t, "192.0.2.7", 8443, "CONNECT"),
			want{allow: true, group: "addr-port"}},
		{"invalid host", Request{Port: 443, Method: "CONNECT"},
			want{reason: ReasonInvalidHost}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.r)
			w := tt.want
			if d.Allow != w.allow || d.WouldDeny != w.wouldDeny || d.Reason != w.reason {
				t.Fatalf("got allow=%v would_deny=%v reason=%q (%s), want allow=%v would_deny=%v reason=%q",
					d.Allow, d.WouldDeny, d.Reason, d.Detail, w.allow, w.wouldDeny, w.reason)
			}
			if w.group != "" && d.Group != w.group {
				t.Errorf("group = %q, want %q", d.Group, w.group)
			}
			if w.pattern != "" && d.Pattern != w.pattern {
				t.Errorf("pattern = %q, want %q", d.Pattern, w.pattern)
			}
			if w.mode != "" && d.Mode != w.mode {
				t.Errorf("mode = %q, want %q", d.Mode, w.mode)
			}
			if w.sni != "" && d.SNI != w.sni {
				t.Errorf("sni = %q, want %q", d.SNI, w.sni)
			}
			if !strings.Contains(d.Detail, w.detail) {
				t.Errorf("detail %q does not contain %q", d.Detail, w.detail)
			}
			if d.Detail == "" {
				t.Errorf("empty detail")
			}
			if d.Matches != nil {
				t.Errorf("Decide filled Matches")
			}
		})
	}
}

func TestDecideAuth(t *testing.T) {
	p := mustParse(t, decidePolicy)
	tests := []struct {
		name        string
		host        string
		user        string
		authEnabled bool
		allow       bool
		reason      Reason
	}{
		{"auth off, anonymous ok", "users.example.net", "", false, true, ""},
		{"auth on, no user", "users.example.net", "", true, false, ReasonAuthRequired},
		{"auth on, listed user", "users.example.net", "alice", true, true, ""},
		{"auth on, other user", "users.example.net", "bob", true, false, ReasonUserNotAllowed},
		{"no users list, any user", "a.example.com", "bob", true, true, ""},
		{"no users list, no user", "a.example.com", "", true, false, ReasonAuthRequired},
		{"anonymous group, no user", "anon.example.net", "", true, true, ""},
		{"anonymous group, user", "anon.example.net", "bob", true, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := req(t, tt.host, 443, "CONNECT")
			r.User, r.AuthEnabled = tt.user, tt.authEnabled
			d := p.Decide(r)
			if d.Allow != tt.allow || d.Reason != tt.reason {
				t.Fatalf("allow=%v reason=%q (%s), want allow=%v reason=%q", d.Allow, d.Reason, d.Detail, tt.allow, tt.reason)
			}
		})
	}
}

// The most telling failure wins: user_not_allowed > auth_required > method_not_allowed >
// port_not_allowed, whatever the order of the matching rules.
func TestDecideReasonPriority(t *testing.T) {
	src := `version: 1
groups:
  p-port:
    enabled: true
    ports: [8443]
    hosts: [h.example.com]
  p-method:
    enabled: true
    methods: [GET]
    hosts: ["*.example.com"]
  p-auth:
    enabled: true
    hosts: ["h*.example.com"]
  p-user:
    enabled: true
    users: [alice]
    hosts: ["*.h.example.com"]
`
	p := mustParse(t, src)
	for _, tt := range []struct {
		host        string
		user        string
		authEnabled bool
		want        Reason
		group       string
	}{
		{"h.example.com", "", false, ReasonNoRule, ""}, // p-auth fits with auth off: allowed, see below
		{"h.example.com", "", true, ReasonAuthRequired, "p-auth"},
		{"h.example.com", "bob", true, "", "p-auth"},
		{"x.h.example.com", "bob", true, ReasonUserNotAllowed, "p-user"},
		{"x.h.example.com", "", true, ReasonAuthRequired, "p-user"},
		{"z.example.com", "", false, ReasonMethodNotAllowed, "p-method"},
	} {
		r := req(t, tt.host, 443, "CONNECT")
		r.User, r.AuthEnabled = tt.user, tt.authEnabled
		d := p.Decide(r)
		if tt.want == ReasonNoRule { // the first row: allowed by p-auth
			if !d.Allow || d.Group != "p-auth" {
				t.Errorf("%s: %+v, want allow by p-auth", tt.host, d)
			}
			continue
		}
		if d.Reason != tt.want || d.Group != tt.group {
			t.Errorf("%s user=%q auth=%v: reason=%q group=%q, want %q %q", tt.host, tt.user, tt.authEnabled, d.Reason, d.Group, tt.want, tt.group)
		}
	}
	// Port only: the single match fails on the port.
	d := p.Decide(req(t, "h.example.com", 9999, "CONNECT"))
	if d.Reason != ReasonPortNotAllowed || d.Group != "p-port" {
		t.Errorf("port: %+v", d)
	}
}

func TestDecideReportMode(t *testing.T) {
	// Policy-wide report mode softens no_rule, denied_pattern and ip_literal.
	p := mustParse(t, `version: 1
mode: report
deny: ["*.evil.example.com"]
groups:
  strict:
    enabled: true
    mode: enforce
    hosts: [strict.example.com]
  loose:
    enabled: true
    hosts: [loose.example.com]
`)
	for _, tt := range []struct {
		host   string
		port   uint16
		allow  bool
		would  bool
		reason Reason
		mode   Mode
	}{
		{"nothing.example.org", 443, true, true, ReasonNoRule, ModeReport},
		{"x.evil.example.com", 443, true, true, ReasonDeniedPattern, ModeReport},
		{"10.0.0.1", 443, true, true, ReasonIPLiteral, ModeReport},
		{"strict.example.com", 8443, false, false, ReasonPortNotAllowed, ModeEnforce},
		{"strict.example.com", 443, true, false, "", ModeEnforce},
		{"loose.example.com", 8443, true, true, ReasonPortNotAllowed, ModeReport}, // inherits report
		{"loose.example.com", 443, true, false, "", ModeReport},                   // normal allow
	} {
		d := p.Decide(req(t, tt.host, tt.port, "CONNECT"))
		if d.Allow != tt.allow || d.WouldDeny != tt.would || d.Reason != tt.reason || d.Mode != tt.mode {
			t.Errorf("%s:%d: %+v", tt.host, tt.port, d)
		}
	}

	// A report-mode group in an enforcing policy.
	p = mustParse(t, decidePolicy)
	r := req(t, "report.example.net", 8443, "CONNECT")
	d := p.Decide(r)
	if !d.Allow || !d.WouldDeny || d.Reason != ReasonPortNotAllowed || d.Group != "reporting" || d.Mode != ModeReport {
		t.Errorf("report group wrong port: %+v", d)
	}
	r = req(t, "report.example.net", 443, "CONNECT")
	r.User, r.AuthEnabled = "mallory", true
	if d := p.Decide(r); !d.Allow || !d.WouldDeny || d.Reason != ReasonUserNotAllowed {
		t.Errorf("report group wrong user: %+v", d)
	}
	// auth_required is never softened: the client must be asked for credentials.
	r.User = ""
	if d := p.Decide(r); d.Allow || d.Reason != ReasonAuthRequired {
		t.Errorf("report group no credentials: %+v", d)
	}
	r.User = "carol"
	if d := p.Decide(r); !d.Allow || d.WouldDeny || d.Reason != "" {
		t.Errorf("report group allowed: %+v", d)
	}
}

func TestDecideVerboseAndExplain(t *testing.T) {
	p := mustParse(t, decidePolicy)
	d := p.DecideVerbose(req(t, "a.example.com", 443, "CONNECT"))
	want := []Match{
		{Group: "exact-first", Pattern: "a.example.com", Kind: "exact", Enabled: true},
		{Group: "switched-off", Pattern: "a.example.com", Kind: "exact", Enabled: false},
		{Group: "suffix-short", Pattern: "*.example.com", Kind: "suffix", Enabled: true},
		{Group: "globs", Pattern: "a*.example.com", Kind: "glob", Enabled: true},
	}
	if !reflect.DeepEqual(d.Matches, want) {
		t.Fatalf("Matches = %+v\nwant %+v", d.Matches, want)
	}
	text := d.Explain()
	for _, s := range []string{"decision: allow", "group:    exact-first", "pattern:  a.example.com", "ports:    443",
		"mode:     enforce", "sni:      match", "switched-off, pattern a.example.com (exact, disabled)",
		"suffix-short, pattern *.example.com (suffix, enabled)"} {
		if !strings.Contains(text, s) {
			t.Errorf("Explain lacks %q:\n%s", s, text)
		}
	}
	if strings.Contains(text, "- group exact-first,") {
		t.Errorf("Explain lists the winner under also matched:\n%s", text)
	}

	d = p.DecideVerbose(req(t, "x.evil.example.com", 443, "CONNECT"))
	if len(d.Matches) == 0 || d.Matches[0] != (Match{Pattern: "*.evil.example.com", Kind: "deny", Enabled: true}) {
		t.Fatalf("deny Matches = %+v", d.Matches)
	}
	text = d.Explain()
	if !strings.Contains(text, "decision: deny (denied_pattern)") || !strings.Contains(text, "suffix-short") {
		t.Errorf("Explain:\n%s", text)
	}

	d = p.DecideVerbose(req(t, "198.51.100.1", 443, "CONNECT"))
	if want := []Match{{Group: "addrs-off", Pattern: "198.51.100.0/24", Kind: "address"}}; !reflect.DeepEqual(d.Matches, want) {
		t.Errorf("address Matches = %+v", d.Matches)
	}

	// Report-mode explanation names what enforce would do.
	rp := mustParse(t, "version: 1\nmode: report\n")
	text = rp.Decide(req(t, "x.example.com", 443, "CONNECT")).Explain()
	if !strings.Contains(text, "decision: allow (report mode; enforce would deny: no_rule)") {
		t.Errorf("report Explain:\n%s", text)
	}
}

func TestDecisionJSON(t *testing.T) {
	p := mustParse(t, decidePolicy)
	d := p.DecideVerbose(req(t, "port.example.net", 443, "CONNECT"))
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"allow", "would_deny", "reason", "group", "pattern", "ports", "mode", "sni", "detail", "matches"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if len(m) != 10 {
		t.Errorf("JSON has %d keys: %s", len(m), b)
	}
	if !strings.Contains(string(b), `"ports":[8443]`) || !strings.Contains(string(b), `"reason":"port_not_allowed"`) {
		t.Errorf("JSON: %s", b)
	}
	if !strings.Contains(string(b), `"matches":[{"group":"other-port","pattern":"port.example.net","kind":"exact","enabled":true}]`) {
		t.Errorf("JSON matches: %s", b)
	}
}

func TestDecideNilPolicy(t *testing.T) {
	var p *Policy
	if d := p.Decide(req(t, "go.microsoft.com", 443, "CONNECT")); d.Allow {
		t.Fatalf("nil policy allowed: %+v", d)
	}
	if p.Group("x") != nil {
		t.Fatal("nil policy has a group")
	}
}

func TestDecideConcurrent(t *testing.T) {
	p := mustParse(t, decidePolicy)
	reqs := []Request{
		req(t, "a.example.com", 443, "CONNECT"),
		req(t, "x.b.example.com", 443, "CONNECT"),
		req(t, "ab.example.com", 443, "CONNECT"),
		req(t, "axe.example.com", 443, "CONNECT"),
		req(t, "nothing.example.org", 443, "CONNECT"),
		req(t, "203.0.113.1", 443, "CONNECT"),
	}
	want := make([]Decision, len(reqs))
	for i, r := range reqs {
		want[i] = p.Decide(r)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for n := 0; n < 500; n++ {
				i := (g + n) % len(reqs)
				if got := p.Decide(reqs[i]); !reflect.DeepEqual(got, want[i]) {
					t.Errorf("concurrent Decide differs: %+v vs %+v", got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}

// The allow path does not allocate.
func TestDecideAllocs(t *testing.T) {
	p := mustParse(t, decidePolicy)
	cases := []Request{
		req(t, "a.example.com", 443, "CONNECT"),                                              // exact
		req(t, "x.y.b.example.com", 443, "CONNECT"),                                          // suffix
		{Host: Host{Addr: netip.MustParseAddr("203.0.113.1")}, Port: 443, Method: "CONNECT"}, // address
	}
	if !raceEnabled {
		// Glob matching uses a sync.Pool inside gobwas/glob, which drops items at random
		// under -race; check it only in normal builds.
		cases = append(cases, req(t, "xq.b.example.com", 443, "CONNECT")) // suffix wins over x*.b...
	}
	for _, r := range cases {
		if d := p.Decide(r); !d.Allow {
			t.Fatalf("%v not allowed: %+v", r.Host, d)
		}
		if n := testing.AllocsPerRun(200, func() { p.Decide(r) }); n != 0 {
			t.Errorf("Decide(%v) allocates %.1f times per call", r.Host, n)
		}
	}
	if !raceEnabled {
		g := mustParse(t, "version: 1\ngroups:\n  g:\n    enabled: true\n    hosts: [\"a*.example.org\"]\n")
		r := req(t, "axe.example.org", 443, "CONNECT")
		if d := g.Decide(r); !d.Allow || d.Pattern != "a*.example.org" {
			t.Fatalf("glob not allowed: %+v", d)
		}
		if n := testing.AllocsPerRun(200, func() { g.Decide(r) }); n != 0 {
			t.Errorf("Decide(glob) allocates %.1f times per call", n)
		}
	}
}

func TestReasons(t *testing.T) {
	seen := map[Reason]bool{}
	for _, r := range Reasons() {
		if seen[r] || r == "" || strings.ToLower(string(r)) != r.String() {
			t.Errorf("bad or duplicate reason %q", r)
		}
		seen[r] = true
	}
	if len(seen) != len(reasonTable) || len(seen) < 19 {
		t.Errorf("%d distinct reasons, %d rows in the table", len(seen), len(reasonTable))
	}
	for _, r := range Reasons() {
		if st := r.Status(); st < 400 || st > 599 {
			t.Errorf("%s: status %d is not an error status", r, st)
		}
		if r.Message("h:1") == "" || r.Description() == "" {
			t.Errorf("%s: message or description missing", r)
		}
	}
	if got := ReasonNoRule.Message("www.example.com:443"); got != "www.example.com:443 is not on the allow-list" {
		t.Errorf("message %q", got)
	}
	if ModeReport.String() != "report" || SNIOff.String() != "off" {
		t.Error("String methods")
	}
}
