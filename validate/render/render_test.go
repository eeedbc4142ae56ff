package render_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scpgate/scpgate/validate"
	"github.com/scpgate/scpgate/validate/render"
	"github.com/scpgate/scpgate/validate/render/schemacheck"
)

// junit mirrors the JUnit XML elements the test reads.
type junit struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Suites   []struct {
		Name  string `xml:"name,attr"`
		Cases []struct {
			Name    string    `xml:"name,attr"`
			Failure *struct{} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// sampleReport has one result of each shape: a pass with TLS and an audit record, a gateway
// denial, a must-block check that passed, a block by something else, and a proxy failure.
func sampleReport() *validate.Report {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	results := []validate.Result{
		{Check: validate.Check{ID: "pass/endpoint/go.microsoft.com:443", Expect: validate.ExpectPass, Probe: validate.ProbeTLS, Kind: "endpoint", Group: "updates", Pattern: "go.microsoft.com", Host: "go.microsoft.com", Port: 443, Creds: validate.CredsConfigured, Why: "listed"},
			Status: validate.StatusPass, Detail: "reachable", Attempts: 2, Steps: []validate.Step{{Name: "proxy_tcp", MS: 0.2, OK: true}, {Name: "connect", MS: 1.5, OK: true}, {Name: "tls", MS: 3, OK: true}, {Name: "http", MS: 2, OK: true}},
			Proxy: &validate.ProxyAnswer{Status: 200, ConnID: "c-1"},
			TLS: &validate.TLSInfo{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", ALPN: "http/1.1", ServerName: "go.microsoft.com", NameMatch: true, Verified: true, IssuerMatch: true,
				ExpectedIssuers: []string{"root"}, Chain: []validate.Cert{{Subject: "CN=go.microsoft.com", Issuer: "CN=root", NotAfter: now.Add(90 * 24 * time.Hour), DaysLeft: 90, SHA256: strings.Repeat("ab", 32), DNSNames: []string{"go.microsoft.com"}}}},
			HTTPStatus: 200, Gateway: &validate.GatewayRecord{Found: true, ConnID: "c-1", Decision: "allow", Group: "updates", Pattern: "go.microsoft.com", Address: "127.0.0.5:443", Status: 200},
			ConfigMgr: validate.ConfigMgrView{Reachable: true, Reading: "200: reachable"}},
		{Check: validate.Check{ID: "block/unlisted/x.invalid:443", Expect: validate.ExpectBlock, Probe: validate.ProbeTLS, Kind: "unlisted", Host: "x.invalid", Port: 443, Creds: validate.CredsConfigured, ExpectReason: "no_rule", Why: "unlisted <b>name</b>"},
			Status: validate.StatusPass, Detail: "blocked by the gateway: 403 no_rule", Blocked: true, BlockedBy: "gateway", Steps: []validate.Step{{Name: "proxy_tcp", MS: 0.1, OK: true}, {Name: "connect", MS: 1, OK: false, Error: "proxy answered 403 Forbidden"}},
			Proxy: &validate.ProxyAnswer{Status: 403, Reason: "no_rule", ConnID: "c-2"}, Gateway: &validate.GatewayRecord{Found: true, ConnID: "c-2", Decision: "deny", Reason: "no_rule", Status: 403},
			ConfigMgr: validate.ConfigMgrView{Reachable: true, Reading: "403: reachable (ConfigMgr counts a 403 as reachable)", Disagrees: true}},
		{Check: validate.Check{ID: "block/other_port/go.microsoft.com:8443", Expect: validate.ExpectBlock, Probe: validate.ProbeTLS, Kind: "other_port", Group: "updates", Pattern: "go.microsoft.com", Host: "go.microsoft.com", Port: 8443, Creds: validate.CredsConfigured, ExpectReason: "port_not_allowed", Why: "another port"},
			Status: validate.StatusFail, Detail: "must-block check passed", Steps: []validate.Step{}, Proxy: &validate.ProxyAnswer{Status: 200, ConnID: "c-3"},
			ConfigMgr: validate.ConfigMgrView{Reachable: false, Reading: "TLS failure: failure"}},
		{Check: validate.Check{ID: "block/sibling/s.microsoft.com:443", Expect: validate.ExpectBlock, Probe: validate.ProbeTLS, Kind: "sibling", Group: "updates", Pattern: "go.microsoft.com", Host: "s.microsoft.com", Port: 443, Creds: validate.CredsConfigured, ExpectReason: "no_rule", Why: "sibling, with \"quotes\", and commas"},
			Status: validate.StatusWarn, Detail: "blocked, but not by the gateway", Blocked: true, BlockedBy: "other", Steps: []validate.Step{}, Proxy: &validate.ProxyAnswer{Status: 403, Challenges: []string{"Basic realm=x"}},
			ConfigMgr: validate.ConfigMgrView{Reachable: true, Reading: "403: reachable"}},
		{Check: validate.Check{ID: "block/metadata_address/169.254.169.254:443", Expect: validate.ExpectBlock, Probe: validate.ProbeTLS, Kind: "metadata_address", Host: "169.254.169.254", Port: 443, Creds: validate.CredsConfigured, ExpectReason: "ip_literal", Why: "metadata"},
			Status: validate.StatusFail, Detail: "proves nothing", Blocked: true, BlockedBy: "other", Steps: []validate.Step{{Name: "proxy_tcp", MS: 1, Error: "refused"}}, Error: "proxy not reachable",
			ConfigMgr: validate.ConfigMgrView{Reading: "connection failure: failure"}},
	}
	return &validate.Report{
		SchemaVersion: validate.SchemaVersion, Tool: "scpgate-validate/1", Started: now, Finished: now.Add(time.Second), DurationMS: 1000,
		Proxy: "http://127.0.0.1:3128", User: "scp", Policy: validate.PolicyRef{File: "endpoints.yaml", Version: strings.Repeat("0", 64)},
		Groups: []string{"updates"}, AuditSource: "[audit.log]", GatewayPolicy: &validate.GatewayPolicy{File: "endpoints.yaml", Version: strings.Repeat("0", 64), Matches: true},
		Outcome: validate.Outcome{Message: 11412, Severity: "error", Text: "2 of 5 checks failed", ExitCode: 2, Failed: []string{"block/other_port/go.microsoft.com:8443", "block/metadata_address/169.254.169.254:443"}},
		Summary: validate.Summary{Total: 5, Pass: 2, Warn: 1, Fail: 2},
		Results: results,
		Drift: validate.Drift{
			Rules:      []validate.RuleCoverage{{Group: "updates", Pattern: "go.microsoft.com", Coverage: "tested", Hosts: []string{"go.microsoft.com"}}, {Group: "updates", Pattern: "*.akamaiedge.net", Coverage: "not_sampled", Hosts: []string{}}},
			NotEnabled: []validate.DisabledEntry{{Group: "azure-services", Pattern: "management.azure.com"}},
			Skipped:    []validate.SkippedCheck{{Kind: "private_name", Why: "none configured"}},
		},
	}
}

// CompileSchema compiles the shipped schema; exported to the integration tests through
// schemacheck.ValidateJSON.
func TestJSONMatchesSchema(t *testing.T) {
	var b bytes.Buffer
	if err := render.JSON(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	if err := schemacheck.ValidateJSON(b.Bytes()); err != nil {
		t.Fatalf("the JSON report does not validate against report.schema.json: %v\n%s", err, b.String())
	}
	// The schema is strict: a field the schema does not know is refused, so the schema
	// cannot silently fall behind the report.
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	doc["surprise"] = true
	bad, _ := json.Marshal(doc)
	if err := schemacheck.ValidateJSON(bad); err == nil {
		t.Error("a report with an unknown field validated")
	}
	// The file in the repository is the embedded one.
	disk, err := os.ReadFile("report.schema.json")
	if err != nil || !bytes.Equal(disk, render.Schema) {
		t.Errorf("report.schema.json differs from the embedded schema (%v)", err)
	}
}

func TestJUnitParses(t *testing.T) {
	var b bytes.Buffer
	if err := render.JUnit(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	var s junit
	if err := xml.Unmarshal(b.Bytes(), &s); err != nil {
		t.Fatalf("JUnit XML does not parse: %v", err)
	}
	if s.Tests != 5 || s.Failures != 2 || len(s.Suites) != 2 {
		t.Errorf("tests=%d failures=%d suites=%d, want 5, 2, 2", s.Tests, s.Failures, len(s.Suites))
	}
	var failed []string
	for _, su := range s.Suites {
		for _, c := range su.Cases {
			if c.Failure != nil {
				failed = append(failed, c.Name)
			}
		}
	}
	if strings.Join(failed, " ") != "block/other_port/go.microsoft.com:8443 block/metadata_address/169.254.169.254:443" {
		t.Errorf("failed cases %v", failed)
	}
}

func TestCSVParses(t *testing.T) {
	var b bytes.Buffer
	if err := render.CSV(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v", err)
	}
	if len(rows) != 6 {
		t.Fatalf("%d rows, want header + 5", len(rows))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	if rows[1][col["gateway_address"]] != "127.0.0.5:443" || rows[2][col["proxy_reason"]] != "no_rule" || rows[4][col["blocked_by"]] != "other" {
		t.Errorf("rows %v", rows)
	}
}

func TestHTMLSelfContained(t *testing.T) {
	var b bytes.Buffer
	if err := render.HTML(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, banned := range []string{"<script", "<link", "src=", "url(", "@import", "http://", "https://"} {
		// The proxy URL appears as text; only references to other resources are banned.
		if banned == "http://" || banned == "https://" {
			page2 := strings.ReplaceAll(page, "http://127.0.0.1:3128", "")
			if strings.Contains(page2, banned) {
				t.Errorf("the page references %s", banned)
			}
			continue
		}
		if strings.Contains(page, banned) {
			t.Errorf("the page contains %q: it must not load anything", banned)
		}
	}
	if n := strings.Count(page, `<tr class="check `); n != 5 {
		t.Errorf("%d check rows, want 5", n)
	}
	if !strings.Contains(page, "11412 error") || strings.Index(page, `id="summary"`) > strings.Index(page, `<tr class="check`) {
		t.Error("the summary is not at the top")
	}
	if strings.Contains(page, "<b>name</b>") {
		t.Error("check text is not escaped")
	}
	if !strings.Contains(page, "@media print") {
		t.Error("no print styles")
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	if err := render.Table(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"11412 error", "== updates", "== (fixed set)", "FAIL", "blocked, but not by the gateway", "not_sampled", "management.azure.com", "reachable*"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	paths, err := render.WriteFiles(dir, render.Formats(), sampleReport())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range render.Formats() {
		if st, err := os.Stat(paths[f]); err != nil || st.Size() == 0 || filepath.Dir(paths[f]) != dir {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := render.WriteFiles(dir, []string{"pdf"}, sampleReport()); err == nil || !strings.Contains(err.Error(), `unknown output format "pdf"`) {
		t.Errorf("pdf: %v", err)
	}
}
