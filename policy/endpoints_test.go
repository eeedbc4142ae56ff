package policy

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// The shipped endpoints.yaml loads, has every group of the spec with the right switch,
// and allows and denies what it should.
func TestShippedEndpoints(t *testing.T) {
	p, err := Load("../endpoints.yaml")
	if err != nil {
		t.Fatalf("Load(../endpoints.yaml):\n%v", err)
	}
	if p.Mode != ModeEnforce {
		t.Errorf("mode = %s", p.Mode)
	}
	groups := []struct {
		name    string
		enabled bool
	}{
		{"updates-and-servicing", true},
		{"usage-data", true},
		{"windows-servicing", false},
		{"azure-services", false},
		{"azure-ad-discovery", false},
		{"cloud-management-gateway", false},
		{"tenant-attach", false},
		{"endpoint-analytics", false},
		{"external-notifications", false},
		{"certificate-revocation", false},
		{"intune-hybrid", false},
	}
	if len(p.Groups) != len(groups) {
		t.Errorf("%d groups, want %d", len(p.Groups), len(groups))
	}
	for _, want := range groups {
		g := p.Group(want.name)
		if g == nil {
			t.Errorf("group %s missing", want.name)
			continue
		}
		if g.Enabled != want.enabled {
			t.Errorf("group %s enabled = %v, want %v", want.name, g.Enabled, want.enabled)
		}
		if g.Description == "" || g.Doc == "" || len(g.Hosts) == 0 {
			t.Errorf("group %s lacks description, doc or hosts", want.name)
		}
	}

	us := p.Group("updates-and-servicing")
	for _, h := range []string{
		"*.akamaiedge.net", "*.akamaitechnologies.com", "*.manage.microsoft.com", "go.microsoft.com", "aka.ms",
		"download.microsoft.com", "download.windowsupdate.com", "download.visualstudio.microsoft.com",
		"definitionupdates.microsoft.com", "configmgrbits.azureedge.net", "configmgrbits.cdn.manage.microsoft.com",
		"cmbitsstore.blob.core.windows.net", "ceuswatcab01.blob.core.windows.net", "ceuswatcab02.blob.core.windows.net",
		"eaus2watcab01.blob.core.windows.net", "eaus2watcab02.blob.core.windows.net",
		"weus2watcab01.blob.core.windows.net", "weus2watcab02.blob.core.windows.net",
		"umwatsonc.events.data.microsoft.com", "*-umwatsonc.events.data.microsoft.com",
		"blob.core.windows.net", "sccmconnected-a01.cloudapp.net",
	} {
		if !slices.Contains(us.Hosts, h) {
			t.Errorf("updates-and-servicing lacks %s", h)
		}
	}
	if u := p.Group("usage-data"); !slices.Contains(u.Hosts, "*.manage.microsoft.com") || !slices.Contains(u.Hosts, "go.microsoft.com") {
		t.Errorf("usage-data hosts = %v", u.Hosts)
	}
	cr := p.Group("certificate-revocation")
	if !slices.Equal(cr.Ports, []uint16{80}) || !slices.Equal(cr.Methods, []string{"GET", "HEAD"}) || cr.SNI != SNIOff {
		t.Errorf("certificate-revocation: ports=%v methods=%v sni=%s", cr.Ports, cr.Methods, cr.SNI)
	}
	for _, g := range p.Groups {
		if g.Name != "certificate-revocation" && (!slices.Equal(g.Ports, []uint16{443}) || g.SNI != SNIMatch) {
			t.Errorf("group %s: ports=%v sni=%s", g.Name, g.Ports, g.SNI)
		}
	}
	// Only intune-hybrid lists the apex.
	for _, g := range p.Groups {
		if slices.Contains(g.Hosts, "manage.microsoft.com") != (g.Name == "intune-hybrid") {
			t.Errorf("group %s and the apex manage.microsoft.com", g.Name)
		}
	}

	for _, tt := range []struct {
		host   string
		port   uint16
		method string
		allow  bool
		reason Reason
		group  string
	}{
		{"configmgrbits.cdn.manage.microsoft.com", 443, "CONNECT", true, "", "updates-and-servicing"},
		{"go.microsoft.com", 443, "CONNECT", true, "", "updates-and-servicing"},
		{"sccm.manage.microsoft.com", 443, "CONNECT", true, "", "updates-and-servicing"},
		{"download.microsoft.com", 443, "CONNECT", true, "", "updates-and-servicing"},
		{"x-umwatsonc.events.data.microsoft.com", 443, "CONNECT", true, "", "updates-and-servicing"},
		{"manage.microsoft.com", 443, "CONNECT", false, ReasonNoRule, ""},
		{"go.microsoft.com", 80, "GET", false, ReasonPortNotAllowed, "updates-and-servicing"},
		{"crl3.digicert.com", 80, "GET", false, ReasonNoRule, ""}, // certificate-revocation is off
		{"evil.blob.core.windows.net", 443, "CONNECT", false, ReasonNoRule, ""},
		{"login.microsoftonline.com", 443, "CONNECT", false, ReasonNoRule, ""},
		{"13.107.4.50", 443, "CONNECT", false, ReasonIPLiteral, ""},
	} {
		d := p.Decide(req(t, tt.host, tt.port, tt.method))
		if d.Allow != tt.allow || d.Reason != tt.reason || d.Group != tt.group {
			t.Errorf("%s:%d %s: allow=%v reason=%q group=%q (%s)", tt.host, tt.port, tt.method, d.Allow, d.Reason, d.Group, d.Detail)
		}
	}
	d := p.Decide(req(t, "manage.microsoft.com", 443, "CONNECT"))
	if want := "matches group intune-hybrid which is disabled"; !strings.Contains(d.Detail, want) {
		t.Errorf("apex detail %q lacks %q", d.Detail, want)
	}
}

// TestShippedRevocationPaths: with certificate-revocation switched on, www.microsoft.com is
// reachable over plain HTTP only under /pkiops/.
func TestShippedRevocationPaths(t *testing.T) {
	data, err := os.ReadFile("../endpoints.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// certificate-revocation is the only group with ports: [80]; switch it on.
	text := strings.Replace(string(data), "    enabled: false\n    ports: [80]", "    enabled: true\n    ports: [80]", 1)
	p, err := Parse("endpoints.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := ParseHost("www.microsoft.com")
	if d := p.Decide(Request{Host: h, Port: 80, Method: "GET", Path: "/pkiops/crl/x.crl"}); !d.Allow || d.Group != "certificate-revocation" {
		t.Fatalf("/pkiops/: %+v", d)
	}
	if d := p.Decide(Request{Host: h, Port: 80, Method: "GET", Path: "/en-us/"}); d.Allow || d.Reason != ReasonPathNotAllowed {
		t.Fatalf("/en-us/: %+v", d)
	}
}
