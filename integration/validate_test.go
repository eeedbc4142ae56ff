package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scpgate/scpgate/policy"
	"github.com/scpgate/scpgate/sim/cloudsim"
	"github.com/scpgate/scpgate/sim/testca"
	"github.com/scpgate/scpgate/validate"
	"github.com/scpgate/scpgate/validate/evidence"
	"github.com/scpgate/scpgate/validate/render"
	"github.com/scpgate/scpgate/validate/render/schemacheck"
)

// The validator against the real gateway and the simulated cloud: the shipped endpoints.yaml,
// authentication on, the TLS proxy listener, the audit file and the admin listener, as the SCP
// and an auditor would use them.

// validateSamples are cloud names for the wildcards of the shipped policy's enabled groups.
var validateSamples = map[string][]string{
	"*.manage.microsoft.com":                {cloudsim.HostConnectedService},
	"*.akamaiedge.net":                      {"a1.akamaiedge.net"},
	"*.akamaitechnologies.com":              {"a1.akamaitechnologies.com"},
	"*-umwatsonc.events.data.microsoft.com": {"sample-umwatsonc.events.data.microsoft.com"},
}

// privateName is a name the shipped policy lists (it matches *.manage.microsoft.com) that the
// tests point at a loopback address outside allow_ranges: the gateway must refuse it as a
// private address.
const privateName = "scpgate-private.manage.microsoft.com"

// validateEnv is a simulated world, a gateway with authentication and the validator's
// configuration for it.
type validateEnv struct {
	*simEnv
	gw     *authProc
	sink   *sink
	policy string
}

// newValidateEnv starts the world and the gateway; setup, if set, runs before the gateway starts
// and returns extra allow_ranges entries.
func newValidateEnv(t *testing.T, policyText string, setup func(e *simEnv) []string) *validateEnv {
	t.Helper()
	e := newSimEnv(t)
	allow := []string{e.allowCloud()}
	if setup != nil {
		allow = append(allow, setup(e)...)
	}
	if policyText == "" {
		b, err := os.ReadFile(shippedPolicy)
		if err != nil {
			t.Fatal(err)
		}
		policyText = string(b)
	}
	s := e.hw.sink()
	e.sw.DNS.SetA(privateName, s.addr.Addr())
	gw := e.hw.authGateway(policyText, nil, allow...)
	return &validateEnv{simEnv: e, gw: gw, sink: s, policy: policyText}
}

// config is the validator's configuration: the shipped policy (whatever the gateway runs), the
// TLS proxy listener with alice's credentials, the cloud's CA as the expected issuer.
func (v *validateEnv) config(t *testing.T) validate.Config {
	t.Helper()
	pol, err := policy.Load(shippedPolicy)
	if err != nil {
		t.Fatal(err)
	}
	// The "private" and "metadata" literals are loopback addresses outside allow_ranges; the
	// sink counts any connection that reaches them.
	return validate.Config{
		Proxy:        "https://" + v.gw.tlsAddr,
		ProxyRootCAs: v.sw.CA.Pool(),
		User:         "alice", Password: "alice-pw",
		RootCAs: v.sw.CA.Pool(),
		Policy:  pol,
		Derive: validate.DeriveOptions{
			Samples:      validateSamples,
			PrivateAddr:  v.sink.addr.Addr().String(),
			MetadataAddr: nextAddr(v.sink.addr.Addr()).String(),
			PrivateName:  privateName,
		},
		Issuers:      map[string][]string{"*": {v.sw.CA.Certificate().Subject.CommonName}},
		Audit:        validate.AuditFiles{v.gw.auditPath},
		AdminURL:     "http://" + v.gw.addrs.Admin,
		Resolve:      validate.DNSResolver(v.sw.DNS.Addr()),
		Concurrency:  8,
		Rate:         -1, // TestValidateAllPass sets the default pace
		CheckTimeout: 10 * time.Second,
		Timeout:      90 * time.Second,
		AuditWait:    5 * time.Second,
	}
}

func nextAddr(a netip.Addr) netip.Addr {
	b := a.As4()
	b[3] = b[3]%250 + 2
	return netip.AddrFrom4(b)
}

func runValidate(t *testing.T, cfg validate.Config) *validate.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := validate.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func resultsBy(rep *validate.Report, pred func(validate.Result) bool) []validate.Result {
	var out []validate.Result
	for _, r := range rep.Results {
		if pred(r) {
			out = append(out, r)
		}
	}
	return out
}

func table(t *testing.T, rep *validate.Report) string {
	var b bytes.Buffer
	if err := render.Table(&b, rep); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestValidateAllPass: against a correct gateway every check passes, each probe is tied to the
// gateway's record by connection id, and every output format is well-formed.
func TestValidateAllPass(t *testing.T) {
	v := newValidateEnv(t, "", nil)
	cfg := v.config(t)
	cfg.Rate = 0 // the default: under the gateway's default request rate
	rep := runValidate(t, cfg)
	if rep.Outcome.Message != validate.MsgAllPassed || rep.Outcome.ExitCode != 0 {
		t.Fatalf("outcome %+v\n%s", rep.Outcome, table(t, rep))
	}
	if v.sink.accepts.Load() != 0 {
		t.Errorf("the gateway connected to the private address %d times", v.sink.accepts.Load())
	}
	if rep.GatewayPolicy == nil || !rep.GatewayPolicy.Matches {
		t.Errorf("gateway policy %+v, want the checked one", rep.GatewayPolicy)
	}
	kinds := map[string]int{}
	for _, r := range rep.Results {
		kinds[r.Kind]++
		if r.Proxy == nil || r.Proxy.ConnID == "" {
			t.Errorf("%s: no connection id from the gateway", r.ID)
			continue
		}
		if r.Gateway == nil || !r.Gateway.Found || r.Gateway.ConnID != r.Proxy.ConnID {
			t.Errorf("%s: not matched with the gateway's audit record: %+v", r.ID, r.Gateway)
			continue
		}
		if r.Attempts != 1 {
			t.Errorf("%s: %d attempts: the default pace should stay under the gateway's rate limit", r.ID, r.Attempts)
		}
		switch r.Expect {
		case validate.ExpectPass:
			if r.Gateway.Decision != "allow" || r.Gateway.Address == "" || r.TLS == nil || !r.TLS.IssuerMatch || r.HTTPStatus == 0 {
				t.Errorf("%s: gateway %+v TLS %+v HTTP %d", r.ID, r.Gateway, r.TLS, r.HTTPStatus)
			}
		case validate.ExpectBlock:
			if r.Gateway.Decision != "deny" || r.Gateway.Reason != string(r.ExpectReason) {
				t.Errorf("%s: gateway %s %s, want deny %s", r.ID, r.Gateway.Decision, r.Gateway.Reason, r.ExpectReason)
			}
		}
	}
	for _, k := range []string{"endpoint", "wildcard_sample", "wildcard_apex", "extra_label", "sibling", "other_port", "ip_literal",
		"plain_http", "sni_mismatch", "unlisted", "private_address", "metadata_address", "private_name", "no_credentials", "wrong_credentials"} {
		if kinds[k] == 0 {
			t.Errorf("no %s check ran", k)
		}
	}
	// The authentication checks: a challenge, not a policy 407.
	for _, r := range resultsBy(rep, func(r validate.Result) bool { return r.Kind == "no_credentials" || r.Kind == "wrong_credentials" }) {
		if r.Proxy.Status != http.StatusProxyAuthRequired || !r.Proxy.AuthChallenge {
			t.Errorf("%s: %+v, want 407 with Proxy-Authenticate", r.ID, r.Proxy)
		}
	}
	checkOutputs(t, rep, v.policy)
}

// TestValidateAdminAudit: without the audit file, the admin listener's /v1/audit ties every
// probe to the gateway's decision just as well.
func TestValidateAdminAudit(t *testing.T) {
	v := newValidateEnv(t, "", nil)
	cfg := v.config(t)
	cfg.Audit = validate.AdminAudit("http://" + v.gw.addrs.Admin)
	rep := runValidate(t, cfg)
	if rep.Outcome.Message != validate.MsgAllPassed || !strings.HasSuffix(rep.AuditSource, "/v1/audit") {
		t.Fatalf("outcome %+v from %s\n%s", rep.Outcome, rep.AuditSource, table(t, rep))
	}
	for _, r := range rep.Results {
		if r.Gateway == nil || !r.Gateway.Found || r.Gateway.Line == "" {
			t.Errorf("%s: no gateway record from the admin listener", r.ID)
		}
	}
}

// checkOutputs writes every format and the evidence bundle and checks them as their readers do.
func checkOutputs(t *testing.T, rep *validate.Report, policyText string) {
	t.Helper()
	dir := t.TempDir()
	paths, err := render.WriteFiles(dir, render.Formats(), rep)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := os.ReadFile(paths["json"])
	if err := schemacheck.ValidateJSON(js); err != nil {
		t.Errorf("validate.json does not validate against report.schema.json: %v", err)
	}
	jx, _ := os.ReadFile(paths["junit"])
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal(jx, &suites); err != nil || suites.Tests != len(rep.Results) || suites.Failures != rep.Summary.Fail {
		t.Errorf("JUnit: %v, tests %d failures %d; want %d, %d", err, suites.Tests, suites.Failures, len(rep.Results), rep.Summary.Fail)
	}
	f, _ := os.Open(paths["csv"])
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != len(rep.Results)+1 {
		t.Errorf("CSV: %v, %d rows for %d results", err, len(rows), len(rep.Results))
	}
	ev := filepath.Join(dir, "evidence")
	b := evidence.Bundle{Report: rep, Policy: []byte(policyText)}
	if rep.GatewayPolicy != nil {
		b.GatewayPolicy = rep.GatewayPolicy.Raw
	}
	if _, err := evidence.Write(ev, b); err != nil {
		t.Fatal(err)
	}
	if n, err := evidence.Verify(ev); err != nil || n < 5 {
		t.Fatalf("fresh evidence: %d files, %v", n, err)
	}
	audit, _ := os.ReadFile(filepath.Join(ev, evidence.AuditFile))
	if got := bytes.Count(audit, []byte("\n")); got != len(rep.Results) {
		t.Errorf("evidence holds %d audit lines for %d probes", got, len(rep.Results))
	}
	// One changed byte anywhere and the bundle no longer verifies.
	res := filepath.Join(ev, evidence.ResultsFile)
	data, _ := os.ReadFile(res)
	i := bytes.Index(data, []byte(`"deny"`))
	if i < 0 {
		i = len(data) / 2
	}
	data[i+1] = 'D'
	if err := os.WriteFile(res, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := evidence.Verify(ev); err == nil || !strings.Contains(err.Error(), "results.json: sha256") {
		t.Errorf("evidence with one byte changed: %v", err)
	}
}

// TestValidateEndpointDown: an endpoint whose name does not resolve any more fails, and so
// does the run (11412, exit 2).
func TestValidateEndpointDown(t *testing.T) {
	v := newValidateEnv(t, "", nil)
	v.sw.DNS.SetNXDOMAIN(cloudsim.HostFwlink)
	rep := runValidate(t, v.config(t))
	if rep.Outcome.Message != validate.MsgError || rep.Outcome.ExitCode != 2 {
		t.Fatalf("outcome %+v", rep.Outcome)
	}
	down := resultsBy(rep, func(r validate.Result) bool { return r.Kind == "endpoint" && r.Host == cloudsim.HostFwlink })
	if len(down) != 1 || down[0].Status != validate.StatusFail || down[0].Proxy.Reason != "dns_failure" ||
		!strings.Contains(down[0].Detail, "refused by the gateway: 502 dns_failure") || down[0].ConfigMgr.Reachable {
		t.Fatalf("go.microsoft.com: %+v", down)
	}
	if !strings.Contains(strings.Join(rep.Outcome.Failed, " "), "pass/endpoint/go.microsoft.com:443") {
		t.Errorf("outcome does not name the failed endpoint: %v", rep.Outcome.Failed)
	}
}

// shippedWith is the shipped policy with one edit; the test fails if old is not in it.
func shippedWith(t *testing.T, old, new string) string {
	t.Helper()
	b, err := os.ReadFile(shippedPolicy)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), old, new, 1)
	if text == string(b) {
		t.Fatalf("the shipped policy no longer holds %q: update the test", old)
	}
	return text
}

// TestValidateEndpointDenied: a gateway whose policy lacks an endpoint the checked policy lists
// refuses it (403 no_rule): 11412, and ConfigMgr would call the 403 reachable.
func TestValidateEndpointDenied(t *testing.T) {
	text := shippedWith(t, "      - aka.ms                              # Microsoft URL forwarding: always needed\n", "")
	v := newValidateEnv(t, text, nil)
	rep := runValidate(t, v.config(t))
	if rep.Outcome.Message != validate.MsgError {
		t.Fatalf("outcome %+v", rep.Outcome)
	}
	if rep.GatewayPolicy == nil || rep.GatewayPolicy.Matches {
		t.Errorf("the gateway runs another policy; the report says %+v", rep.GatewayPolicy)
	}
	r := resultsBy(rep, func(r validate.Result) bool { return r.ID == "pass/endpoint/aka.ms:443" })
	if len(r) != 1 || r[0].Status != validate.StatusFail || r[0].Gateway == nil || r[0].Gateway.Reason != "no_rule" ||
		!r[0].ConfigMgr.Reachable || !r[0].ConfigMgr.Disagrees {
		t.Fatalf("aka.ms: %+v", r)
	}
}

// TestValidateTooOpen: a gateway that also allows the apex manage.microsoft.com lets a
// must-block probe through: 11412 naming that check.
func TestValidateTooOpen(t *testing.T) {
	text := shippedWith(t, "      - go.microsoft.com\n      - aka.ms", "      - go.microsoft.com\n      - manage.microsoft.com\n      - aka.ms")
	v := newValidateEnv(t, text, nil)
	rep := runValidate(t, v.config(t))
	const id = "block/wildcard_apex/manage.microsoft.com:443"
	if rep.Outcome.Message != validate.MsgError || !strings.Contains(strings.Join(rep.Outcome.Failed, " "), id) {
		t.Fatalf("outcome %+v, want 11412 naming %s", rep.Outcome, id)
	}
	r := resultsBy(rep, func(r validate.Result) bool { return r.ID == id })
	if len(r) != 1 || r[0].Status != validate.StatusFail || !strings.Contains(r[0].Detail, "must-block check passed") ||
		r[0].Gateway == nil || r[0].Gateway.Decision != "allow" {
		t.Fatalf("%s: %+v", id, r)
	}
}

// refusingProxy answers every request 403 with no scpgate header and writes no audit record:
// a firewall or another proxy in the path.
func refusingProxy(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				fmt.Fprint(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

// TestValidateBlockedNotByGateway: probes refused by something that is not the gateway are
// reported as such, even though the refusal looks like the gateway's 403.
func TestValidateBlockedNotByGateway(t *testing.T) {
	v := newValidateEnv(t, "", nil)
	cfg := v.config(t)
	cfg.Proxy, cfg.ProxyRootCAs, cfg.AdminURL = "http://"+refusingProxy(t), nil, ""
	cfg.AuditWait = time.Second
	rep := runValidate(t, cfg)
	if rep.Outcome.Message != validate.MsgError {
		t.Errorf("the endpoints are unreachable: outcome %+v", rep.Outcome)
	}
	for _, r := range rep.Results {
		if r.BlockedBy != "other" {
			t.Errorf("%s: blocked_by %q, want other", r.ID, r.BlockedBy)
		}
		if r.Expect == validate.ExpectBlock && !strings.Contains(r.Detail, "blocked, but not by the gateway") {
			t.Errorf("%s: %s", r.ID, r.Detail)
		}
	}
}

// TestValidateTLSInspection: an endpoint answering with a certificate from another CA (what an
// inspecting middlebox does) is "TLS inspection detected".
func TestValidateTLSInspection(t *testing.T) {
	mitm, err := testca.New("Contoso Inspection CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := mitm.Issue(cloudsim.HostFwlink)
	if err != nil {
		t.Fatal(err)
	}
	v := newValidateEnv(t, "", func(e *simEnv) []string {
		ln := listenLoopback443(t)
		srv := &http.Server{
			Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "inspected") }),
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
		}
		go func() { _ = srv.ServeTLS(ln, "", "") }()
		t.Cleanup(func() { _ = srv.Close() })
		e.sw.DNS.SetA(cloudsim.HostFwlink, addrOf(ln).Addr())
		// The interceptor stands where the cloud would be: the gateway may reach it.
		return []string{netip.PrefixFrom(addrOf(ln).Addr(), 32).String()}
	})
	rep := runValidate(t, v.config(t))
	r := resultsBy(rep, func(r validate.Result) bool { return r.ID == "pass/endpoint/go.microsoft.com:443" })
	if len(r) != 1 || r[0].Status != validate.StatusFail || !strings.Contains(r[0].Detail, "TLS inspection detected") ||
		r[0].TLS == nil || !r[0].TLS.Inspected || !strings.Contains(r[0].TLS.Chain[0].Issuer, "Contoso Inspection CA") {
		t.Fatalf("go.microsoft.com: %+v", r)
	}
	if rep.Outcome.Message != validate.MsgError {
		t.Errorf("outcome %+v", rep.Outcome)
	}
}

// TestValidateCommand runs the binary with a configuration file, as an administrator would on
// the SCP: exit 0 for 11410, every output file written, and `validate verify` exit 0 on the
// bundle and 1 once a byte of it changed.
func TestValidateCommand(t *testing.T) {
	v := newValidateEnv(t, "", nil)
	bin := buildScpgate(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("scp.cred", "alice:alice-pw\n")
	pol, err := filepath.Abs(shippedPolicy)
	if err != nil {
		t.Fatal(err)
	}
	cfg := v.config(t)
	var samples strings.Builder
	for p, names := range validateSamples {
		fmt.Fprintf(&samples, "  %q: [%s]\n", p, strings.Join(names, ", "))
	}
	conf := write("validate.yaml", fmt.Sprintf(`proxy: https://%s
proxy_ca: %s
credentials_file: scp.cred
ca_bundle: %s
policy: %s
samples:
%sissuers:
  "*": [%q]
private_address: %s
metadata_address: %s
private_name: %s
dns_server: %s
audit: [%s]
admin_url: http://%s
formats: [table, json, html, junit, csv]
output_dir: out
evidence: evidence
timeout: 90s
`, v.gw.tlsAddr, v.sw.CAFile, v.sw.CAFile, pol, samples.String(), cfg.Issuers["*"][0], cfg.Derive.PrivateAddr, cfg.Derive.MetadataAddr,
		privateName, v.sw.DNS.Addr(), v.gw.auditPath, v.gw.addrs.Admin))
	run := func(args ...string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "SCPGATE_PROXY_USER=", "SCPGATE_PROXY_PASSWORD=")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			return ee.ExitCode(), string(out)
		case err != nil:
			t.Fatal(err)
		}
		return 0, string(out)
	}
	code, out := run("validate", "-config", conf, "-q", "-no-progress")
	if code != 0 || !strings.Contains(out, "11410 informational") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, f := range render.Formats() {
		if st, err := os.Stat(filepath.Join(dir, "out", render.FileName(f))); err != nil || st.Size() == 0 {
			t.Errorf("%s report: %v", f, err)
		}
	}
	ev := filepath.Join(dir, "evidence")
	if code, out := run("validate", "verify", ev); code != 0 || !strings.Contains(out, "files verified") {
		t.Fatalf("verify: exit %d: %s", code, out)
	}
	pv := filepath.Join(ev, evidence.PolicyFile)
	data, _ := os.ReadFile(pv)
	data[0] ^= 0x20
	if err := os.WriteFile(pv, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := run("validate", "verify", ev); code != 1 || !strings.Contains(out, "policy.yaml: sha256") {
		t.Fatalf("verify after a change: exit %d: %s", code, out)
	}
}
