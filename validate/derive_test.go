package validate

import (
	"fmt"
	"strings"
	"testing"

	"github.com/scpgate/scpgate"
	"github.com/scpgate/scpgate/policy"
)

func shippedOptions() DeriveOptions {
	return DeriveOptions{
		AuthEnabled: true, User: "scp",
		Samples:     map[string][]string{"*.manage.microsoft.com": {"sccm.manage.microsoft.com"}},
		PrivateName: "internal.manage.microsoft.com",
	}
}

// shippedChecks is every check derived from the shipped endpoints.yaml (with one sample for
// *.manage.microsoft.com, authentication on and a private name), reviewed by hand: the
// near misses of each rule of the enabled groups and the fixed set, each with the reason the
// policy gives. The IP-literal checks are derived at run time from resolved addresses.
var shippedChecks = [][4]string{
	{"block", "wildcard_apex", "akamaiedge.net:443", "no_rule"},
	{"block", "sibling", "scpgate-sibling.net:443", "no_rule"},
	{"block", "other_port", "scpgate-probe.akamaiedge.net:8443", "port_not_allowed"},
	{"block", "plain_http", "scpgate-probe.akamaiedge.net:80", "port_not_allowed"},
	{"block", "wildcard_apex", "akamaitechnologies.com:443", "no_rule"},
	{"block", "sibling", "scpgate-sibling.com:443", "no_rule"},
	{"block", "other_port", "scpgate-probe.akamaitechnologies.com:8443", "port_not_allowed"},
	{"block", "plain_http", "scpgate-probe.akamaitechnologies.com:80", "port_not_allowed"},
	{"pass", "wildcard_sample", "sccm.manage.microsoft.com:443", ""},
	{"block", "wildcard_apex", "manage.microsoft.com:443", "no_rule"},
	{"block", "sibling", "scpgate-sibling.microsoft.com:443", "no_rule"},
	{"block", "other_port", "scpgate-probe.manage.microsoft.com:8443", "port_not_allowed"},
	{"block", "plain_http", "scpgate-probe.manage.microsoft.com:80", "port_not_allowed"},
	{"block", "sni_mismatch", "sccm.manage.microsoft.com:443", "sni_mismatch"},
	{"pass", "endpoint", "go.microsoft.com:443", ""},
	{"block", "extra_label", "scpgate-probe.go.microsoft.com:443", "no_rule"},
	{"block", "other_port", "go.microsoft.com:8443", "port_not_allowed"},
	{"block", "plain_http", "go.microsoft.com:80", "port_not_allowed"},
	{"block", "sni_mismatch", "go.microsoft.com:443", "sni_mismatch"},
	{"pass", "endpoint", "aka.ms:443", ""},
	{"block", "extra_label", "scpgate-probe.aka.ms:443", "no_rule"},
	{"block", "sibling", "scpgate-sibling.ms:443", "no_rule"},
	{"block", "other_port", "aka.ms:8443", "port_not_allowed"},
	{"block", "plain_http", "aka.ms:80", "port_not_allowed"},
	{"block", "sni_mismatch", "aka.ms:443", "sni_mismatch"},
	{"pass", "endpoint", "download.microsoft.com:443", ""},
	{"block", "extra_label", "scpgate-probe.download.microsoft.com:443", "no_rule"},
	{"block", "other_port", "download.microsoft.com:8443", "port_not_allowed"},
	{"block", "plain_http", "download.microsoft.com:80", "port_not_allowed"},
	{"block", "sni_mismatch", "download.microsoft.com:443", "sni_mismatch"},
	{"pass", "endpoint", "download.windowsupdate.com:443", ""},
	{"block", "extra_label", "scpgate-probe.download.windowsupdate.com:443", "no_rule"},
	{"block", "sibling", "scpgate-sibling.windowsupdate.com:443", "no_rule"},
	{"block", "other_port", "download.windowsupdate.com:8443", "port_not_allowed"},
	{"block", "plain_http", "download.windowsupdate.com:80", "port_not_allowed"},
	{"block", "sni_mismatch", "download.windowsupdate.com:443", "sni_mismatch"},
	{"pass", "endpoint", "download.visualstudio.microsoft.com:443", ""},
	{"block", "extra_label", "scpgate-probe.download.visualstudio.microsoft.com:443", "no_rule"},
	{"block", "sibling", "scpgate-sibling.visualstudio.microsoft.com:443", "no_rule"},
	{"block", "other_port", "download.visualstudio.microsoft.com:8443", "port_not_allowed"},
	{"block", "plain_http", "download.visualstudio.microsoft.com:80", "port_not_allowed"},
	{"block", "sni_mismatch", "download.visualstudio.microsoft.com:443", "sni_mismatch"},
	{"pass", "endpoint", "definitionupdates.microsoft.com:443", ""},
	{"block", "extra_label", "scpgate-probe.definitionupdates.microsoft.com:443", "no_rule"},
	{"block", "other_port", "definitionupdates.microsoft.com:8443", "port_not_allowed"},
	{"block", "plain_http", "definitionupdates.microsoft.com:80", "port_not_allowed"},
	{"block", "sni_mismatch", "definitionupdates.microsoft.com:443", "sni_mismatch"},
	{"pass", "endpoint", "configmgrbits.azureedge.net:443", ""},
	{"block", "extra_label", "scpgate-probe.configmgrbits.azureedge.net:443", "no_rule"},
	{"block", "sibling", "scpgate-sibling.azureedge.net:443", "no_rule"},
	{"block", "other_port", "configmgrbits.azureedge.net:8443", "port_not_allowed"},
	{"block", "plain_http", "configmgrbits.azureedge.net:80", "port_not_allowed"},
	{"block", "sni_mismatch", "configmgrbits.azureedge.net:443", "sni_mismatch"},
	{"pass", "endpoint", "configmgrbits.cdn.manage.microsoft.com:443", ""},
	{"block", "other_port", "configmgrbits.cdn.manage.microsoft.com:8443", "port_not_allowed"},
	{"block", "plain_http", "configmgrbits.cdn.manage.microsoft.com:80", "port_not_allowed"},
	{"block", "sni_mismatch", "configmgrbits.cdn.manage.microsoft.com:443", "sni_mismatch"},
	{"pass", "endpoint", "cmbitsstore.blob.core.windows.net:443", ""},
	{"block", "extra_label", "scpgate-probe.cmbitsstore.blob.core.windows.net:443", "no_rule"},
	{"block", "sibling", "scpgate-sibling.blob.core.windows.net:443", "no_rule"},
	{"block", "other_port", "cmbitsstore.blob.core.windows.net:8443", "port_not_allowed"},
	{"block", "plain_http", "cmbitsstore.blob.core.windows.net:80", "port_not_allowed"},
	{"block", "sni_mismatch", "cmbitsstore.blob.core.windows.net:443", "sni_mismatch"},
	{"pass", "endpoint", "ceuswatcab01.blob.core.windows.net:443", ""},
	{"block", "extra_label", "scpgate-probe.ceuswatcab01.blob.core.windows.net:443", "no_rule"},
	{"block", "other_port", "ceuswatcab01.blob.core.windows.net:8443", "port_not_allowed"},
	{"block", "plain_http", "ceuswatcab01.blob.core.windows.net:80", "port_not_allowed"},
	{"block", "sni_mismatch", "ceuswatcab01.blob.core.windows.net:443", "sni_mismatch"},
	{"pass", "endpoint", "ceuswatcab02.blob.core.windows.net:443", ""},
	{"block", "extra_label", "scpgate-probe.ceuswatcab02.blob.core.windows.net:443", "no_rule"},
	{"block", "other_port", "ceuswatcab02.blob.core.windows.net:8443", "port_not_allowed"},
	{"block", "plain_http", "ceuswatcab02.blob.core.windows.net:80", "port_not_allowed"},
	{"block", "sni_mismatch", "ceuswatcab02.blob.core.windows.net:443", "sni_mismatch"},
	{"pass", "endpoint", "eaus2watcab01.blob.core.windows.net:443", ""},
	{"block", "extra_label", "scpgate-probe.eaus2watcab01.blob.core.windows.net:443", "no_rule"},
	{"block", "other_port", "eaus2watcab01.blob.core.windows.net:8443", "port_not_allowed"},
	{"block", "plain_http", "eaus2watcab01.blob.core.windows.net:80", "port_not_allowed"},
	{"block", "sni_mismatch", "eaus2watcab01.blob.core.windows.net:443", "sni_mismatch"},
	{"pass", "endpoint", "eaus2watcab02.blob.core.windows.net:443", ""},
	{"block", "extra_label", "scpgate-probe.eaus2watcab02.blob.core.windows.net:443", "no_rule"},
	{"block", "other_port", "eaus2watcab02.blob.core.windows.net:8443", "port_not_allowed"},
	{"block", "plain_http", "eaus2watcab02.blob.core.windows.net:80", "port_not_allowed"},
	{"block", "sni_mismatch", "eaus2watcab02.blob.core.windows.net:443", "sni_mismatch"},
	{"pass", "endpoint", "weus2watcab01.blob.core.windows.net:443", ""},
	{"block", "extra_label", "scpgate-probe.weus2watcab01.blob.core.windows.net:443", "no_rule"},
	{"block", "other_port", "weus2watcab01.blob.core.windows.net:8443", "port_not_allowed"},
	{"block", "plain_http", "weus2watcab01.blob.core.windows.net:80", "port_not_allowed"},
	{"block", "sni_mismatch", "weus2watcab01.blob.core.windows.net:443", "sni_mismatch"},
	{"pass", "endpoint", "weus2watcab02.blob.core.windows.net:443", ""},
	{"block", "extra_label", "scpgate-probe.weus2watcab02.blob.core.windows.net:443", "no_rule"},
	{"block", "other_port", "weus2watcab02.blob.core.windows.net:8443", "port_not_allowed"},
	{"block", "plain_http", "weus2watcab02.blob.core.windows.net:80", "port_not_allowed"},
	{"block", "sni_mismatch", "weus2watcab02.blob.core.windows.net:443", "sni_mismatch"},
	{"pass", "endpoint", "umwatsonc.events.data.microsoft.com:443", ""},
	{"block", "extra_label", "scpgate-probe.umwatsonc.events.data.microsoft.com:443", "no_rule"},
	{"block", "sibling", "scpgate-sibling.events.data.microsoft.com:443", "no_rule"},
	{"block", "other_port", "umwatsonc.events.data.microsoft.com:8443", "port_not_allowed"},
	{"block", "plain_http", "umwatsonc.events.data.microsoft.com:80", "port_not_allowed"},
	{"block", "sni_mismatch", "umwatsonc.events.data.microsoft.com:443", "sni_mismatch"},
	{"block", "wildcard_apex", "events.data.microsoft.com:443", "no_rule"},
	{"block", "sibling", "scpgate-probe.scpgate-sibling.data.microsoft.com:443", "no_rule"},
	{"block", "other_port", "scpgate-probe-umwatsonc.events.data.microsoft.com:8443", "port_not_allowed"},
	{"block", "plain_http", "scpgate-probe-umwatsonc.events.data.microsoft.com:80", "port_not_allowed"},
	{"pass", "endpoint", "blob.core.windows.net:443", ""},
	{"block", "extra_label", "scpgate-probe.blob.core.windows.net:443", "no_rule"},
	{"block", "sibling", "scpgate-sibling.core.windows.net:443", "no_rule"},
	{"block", "other_port", "blob.core.windows.net:8443", "port_not_allowed"},
	{"block", "plain_http", "blob.core.windows.net:80", "port_not_allowed"},
	{"block", "sni_mismatch", "blob.core.windows.net:443", "sni_mismatch"},
	{"pass", "endpoint", "sccmconnected-a01.cloudapp.net:443", ""},
	{"block", "extra_label", "scpgate-probe.sccmconnected-a01.cloudapp.net:443", "no_rule"},
	{"block", "sibling", "scpgate-sibling.cloudapp.net:443", "no_rule"},
	{"block", "other_port", "sccmconnected-a01.cloudapp.net:8443", "port_not_allowed"},
	{"block", "plain_http", "sccmconnected-a01.cloudapp.net:80", "port_not_allowed"},
	{"block", "sni_mismatch", "sccmconnected-a01.cloudapp.net:443", "sni_mismatch"},
	{"block", "unlisted", "scpgate-unlisted.invalid:443", "no_rule"},
	{"block", "private_address", "10.0.0.1:443", "ip_literal"},
	{"block", "metadata_address", "169.254.169.254:443", "ip_literal"},
	{"block", "private_name", "internal.manage.microsoft.com:443", "private_address"},
	{"block", "no_credentials", "sccm.manage.microsoft.com:443", "auth_required"},
	{"block", "wrong_credentials", "sccm.manage.microsoft.com:443", "auth_failed"},
}

func TestDeriveShippedPolicy(t *testing.T) {
	pol, err := policy.Parse("endpoints.yaml", scpgate.DefaultPolicy)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Derive(pol, shippedOptions())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range plan.Checks {
		got = append(got, fmt.Sprintf("%s %s %s %s", c.Expect, c.Kind, c.Target(), c.ExpectReason))
	}
	var want []string
	for _, w := range shippedChecks {
		want = append(want, strings.Join(w[:], " "))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("derived checks differ from the table:\n got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Every wildcard without a sample is reported, not silently dropped.
	var notSampled []string
	for _, r := range plan.Drift.Rules {
		if r.Coverage == "not_sampled" {
			notSampled = append(notSampled, r.Pattern)
		}
	}
	if strings.Join(notSampled, " ") != "*.akamaiedge.net *.akamaitechnologies.com *-umwatsonc.events.data.microsoft.com" {
		t.Errorf("not sampled: %v", notSampled)
	}
	// Disabled groups' endpoints are listed as not enabled.
	var disabled []string
	for _, d := range plan.Drift.NotEnabled {
		disabled = append(disabled, d.Pattern)
	}
	for _, want := range []string{"dl.delivery.mp.microsoft.com", "management.azure.com", "crl3.digicert.com", "manage.microsoft.com"} {
		if !strings.Contains(" "+strings.Join(disabled, " ")+" ", " "+want+" ") {
			t.Errorf("%s is in a disabled group but not listed as not enabled: %v", want, disabled)
		}
	}
}
