package validate

import (
	"strings"
	"testing"

	"github.com/scpgate/scpgate/policy"
)

func TestInstanceAndSibling(t *testing.T) {
	tests := []struct{ pattern, instance, sibling string }{
		{"*.manage.microsoft.com", "scpgate-probe.manage.microsoft.com", "scpgate-sibling.manage.microsoft.com"},
		{"*-umwatsonc.events.data.microsoft.com", "scpgate-probe-umwatsonc.events.data.microsoft.com", "scpgate-sibling.events.data.microsoft.com"},
		{"a?c.example.com", "axc.example.com", "scpgate-sibling.example.com"},
		{"[ab]x.example.com", "ax.example.com", "scpgate-sibling.example.com"},
		{"[!ab]x.example.com", "qx.example.com", "scpgate-sibling.example.com"},
		{"{foo,bar}.example.com", "foo.example.com", "scpgate-sibling.example.com"},
		{"go.microsoft.com", "go.microsoft.com", "scpgate-sibling.microsoft.com"},
	}
	for _, tt := range tests {
		if got := instance(tt.pattern); got != tt.instance {
			t.Errorf("instance(%q) = %q, want %q", tt.pattern, got, tt.instance)
		}
		if got := sibling(instance(tt.pattern)); got != tt.sibling {
			t.Errorf("sibling(%q) = %q, want %q", instance(tt.pattern), got, tt.sibling)
		}
	}
	if sibling("localhost") != "" {
		t.Error("a one-label name has no sibling")
	}
	for p, want := range map[string]patternKind{"a.b.c": patExact, "*.b.c": patSuffix, "*-x.b.c": patGlob, "a*.b.c": patGlob, "*.*.b.c": patGlob} {
		if kindOf(p) != want {
			t.Errorf("kindOf(%q) = %v, want %v", p, kindOf(p), want)
		}
	}
	if got := literalSuffix("*-x.events.data.microsoft.com"); got != "events.data.microsoft.com" {
		t.Errorf("literalSuffix = %q", got)
	}
}

const rulesPolicy = `version: 1
deny: ["blocked.example.com"]
groups:
  web:
    enabled: true
    hosts: ["*.example.com", www.example.org]
  reporting:
    enabled: true
    mode: report
    hosts: [report.example.net]
  crl:
    enabled: true
    ports: [80]
    methods: [GET, HEAD]
    sni: off
    hosts: [crl.example.net]
    paths:
      crl.example.net: [/pki/]
  anon:
    enabled: true
    anonymous: true
    hosts: [open.example.io]
  off:
    enabled: false
    hosts: [off.example.io]
`

func TestDeriveRules(t *testing.T) {
	pol, err := policy.Parse("rules.yaml", []byte(rulesPolicy))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Derive(pol, DeriveOptions{AuthEnabled: true, User: "u", Samples: map[string][]string{"*.example.com": {"a.example.com", "blocked.example.com"}}})
	if err == nil {
		t.Fatal("blocked.example.com matches the deny list but was accepted as a sample of *.example.com")
	}
	plan, err = Derive(pol, DeriveOptions{AuthEnabled: true, User: "u", Samples: map[string][]string{"*.example.com": {"a.example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	find := func(kind, target string) *Check {
		for i := range plan.Checks {
			if plan.Checks[i].Kind == kind && plan.Checks[i].Target() == target {
				return &plan.Checks[i]
			}
		}
		return nil
	}
	cases := []struct {
		kind, target string
		expect       Expect
		reason       policy.Reason
		report       bool
		probe        Probe
	}{
		{"wildcard_sample", "a.example.com:443", ExpectPass, "", false, ProbeTLS},
		{"wildcard_apex", "example.com:443", ExpectBlock, policy.ReasonNoRule, false, ProbeTLS},
		{"sni_mismatch", "a.example.com:443", ExpectBlock, policy.ReasonSNIMismatch, false, ProbeFronting},
		{"extra_label", "scpgate-probe.www.example.org:443", ExpectBlock, policy.ReasonNoRule, false, ProbeTLS},
		// A report-mode group: the gateway lets the near miss through and logs would_deny.
		{"other_port", "report.example.net:8443", ExpectBlock, policy.ReasonPortNotAllowed, true, ProbeTLS},
		// A plain-HTTP group: the endpoint is probed with GET on its path, near misses too.
		{"endpoint", "crl.example.net:80", ExpectPass, "", false, ProbeHTTP},
		{"other_port", "crl.example.net:8443", ExpectBlock, policy.ReasonPortNotAllowed, false, ProbeHTTP},
		{"other_path", "crl.example.net:80", ExpectBlock, policy.ReasonPathNotAllowed, false, ProbeHTTP},
		{"no_credentials", "a.example.com:443", ExpectBlock, policy.ReasonAuthRequired, false, ProbeTLS},
		{"wrong_credentials", "a.example.com:443", ExpectBlock, policy.ReasonAuthFailed, false, ProbeTLS},
		{"private_address", "10.0.0.1:443", ExpectBlock, policy.ReasonIPLiteral, false, ProbeTLS},
		{"metadata_address", "169.254.169.254:443", ExpectBlock, policy.ReasonIPLiteral, false, ProbeTLS},
	}
	for _, tt := range cases {
		c := find(tt.kind, tt.target)
		if c == nil {
			t.Errorf("no %s check for %s", tt.kind, tt.target)
			continue
		}
		if c.Expect != tt.expect || c.ExpectReason != tt.reason || c.ReportMode != tt.report || c.Probe != tt.probe {
			t.Errorf("%s %s: got %+v", tt.kind, tt.target, *c)
		}
	}
	if c := find("endpoint", "crl.example.net:80"); c != nil && c.Path != "/pki/" {
		t.Errorf("plain-HTTP endpoint path %q, want /pki/", c.Path)
	}
	// The extra label of an exact name under a wildcard is allowed by the wildcard: skipped
	// with the rule that allows it, never planned as must-block.
	if find("extra_label", "scpgate-probe.a.example.com:443") != nil {
		t.Error("planned a must-block check the policy allows")
	}
	skipped := map[string]string{}
	for _, s := range plan.Drift.Skipped {
		skipped[s.Kind+" "+s.Pattern] = s.Why
	}
	// The plain-HTTP group has no tunnel, so no fronting check and no skip entry for it.
	if find("sni_mismatch", "crl.example.net:80") != nil {
		t.Error("fronting check planned for a plain-HTTP group")
	}
	if !strings.Contains(skipped["private_name "], "no private_name configured") {
		t.Errorf("private_name skip missing: %v", skipped)
	}
	// The disabled group is listed, the enabled ones are not.
	if len(plan.Drift.NotEnabled) != 1 || plan.Drift.NotEnabled[0].Pattern != "off.example.io" {
		t.Errorf("not enabled: %+v", plan.Drift.NotEnabled)
	}
	for _, c := range plan.Checks {
		if c.ID == "" {
			t.Errorf("check without id: %+v", c)
		}
	}
}

func TestDeriveErrors(t *testing.T) {
	pol, err := policy.Parse("rules.yaml", []byte(rulesPolicy))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    DeriveOptions
		want string
	}{
		{"unknown group", DeriveOptions{Groups: []string{"nope"}}, `group "nope" is not in policy`},
		{"disabled group", DeriveOptions{Groups: []string{"off"}}, `group "off" is disabled`},
		{"sample of another pattern", DeriveOptions{Samples: map[string][]string{"*.example.com": {"www.example.org"}}}, "does not match pattern"},
		{"bad private address", DeriveOptions{PrivateAddr: "ten"}, "not an IP address"},
	}
	for _, tt := range tests {
		if _, err := Derive(pol, tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
}
