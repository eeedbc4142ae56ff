package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scpgate/scpgate/sim/cloudsim"
)

// The SCP client's endpoint connectivity check (SMS_SERVICE_CONNECTOR) through the real gateway
// with authentication on, over its TLS proxy listener, against the simulated cloud: the client
// checks the enabled groups of its built-in endpoints.yaml and writes
// EndpointConnectivityCheckWorker.log.

// connectivityClient is a validateEnv (gateway with auth and a TLS listener) plus a configured
// scpclient binary.
type connectivityClient struct {
	*validateEnv
	scp          *scpEnv // runs the binary; its gateway fields are unused
	cfg, dataDir string
}

func newConnectivityClient(t *testing.T, gatewayPolicy string) *connectivityClient {
	t.Helper()
	v := newValidateEnv(t, gatewayPolicy, nil)
	var flags []string
	if raceEnabled {
		flags = append(flags, "-race")
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "proxy-password")
	if err := os.WriteFile(pw, []byte("alice-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var samples strings.Builder
	for pattern, names := range validateSamples {
		fmt.Fprintf(&samples, "    %q: [%s]\n", pattern, strings.Join(names, ", "))
	}
	c := &connectivityClient{validateEnv: v, scp: &scpEnv{simEnv: v.simEnv, bin: buildCommand(t, "scpclient", flags...)},
		cfg: filepath.Join(dir, "scpclient.yaml"), dataDir: filepath.Join(dir, "data")}
	text := fmt.Sprintf(`site_code: XYZ
site_role: cas
hierarchy_id: %s
installed_version: %s
trusted_ca_file: %s
manifest_key_file: %s
data_dir: %s
proxy:
  url: https://%s
  user: alice
  password_file: %s
connectivity_check:
  interval: 24h
  samples:
%s`, testHierarchy, cloudsim.DefaultInstalledVersion, v.sw.CAFile, v.sw.PublicKeyFile, c.dataDir, v.gw.tlsAddr, pw, samples.String())
	if err := os.WriteFile(c.cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// run runs the scpclient binary to completion with the client's configuration.
func (c *connectivityClient) run(args ...string) runResult {
	c.t.Helper()
	return c.scp.scpclient(append(args, "-config", c.cfg)...)
}

func (c *connectivityClient) logLines() []string {
	c.t.Helper()
	return logLines(c.t, filepath.Join(c.dataDir, "Logs", "EndpointConnectivityCheckWorker.log"), "SMS_SERVICE_CONNECTOR")
}

// TestSCPClientConnectivityAllPass: `scpclient run` checks at start-up: every endpoint passes,
// 11410 in the log and in `scpclient status`, the next run a day later; `check-connectivity`
// then exits 0 with the same outcome.
func TestSCPClientConnectivityAllPass(t *testing.T) {
	c := newConnectivityClient(t, "")
	p := c.scp.startRun("-config", c.cfg)
	p.waitLine(1, "SMS_SERVICE_CONNECTOR: Status message 11410 (informational)")
	st := c.run("status")
	if st.exit != 0 || !strings.Contains(st.stdout, "11410: all") || !strings.Contains(st.stdout, "SMS_SERVICE_CONNECTOR  running") {
		t.Fatalf("status: %d\n%s%s", st.exit, st.stdout, st.stderr)
	}
	next := readState(t, c.dataDir).Connectivity
	if next.NextRun.Sub(next.LastRun).Hours() < 23 {
		t.Fatalf("next run %v after last %v, want a day later", next.NextRun, next.LastRun)
	}
	// Restarting the component runs the check again.
	if r := c.run("restart-component", "SMS_SERVICE_CONNECTOR"); r.exit != 0 {
		t.Fatalf("restart-component: %d %s", r.exit, r.stderr)
	}
	p.waitLine(2, "SMS_SERVICE_CONNECTOR: Status message 11410 (informational)")
	p.stop()

	msgs := c.logLines()
	inOrder(t, msgs, "Endpoint connectivity check: at start-up and every 24h0m0s.", "Endpoint connectivity check started: proxy https://",
		"go.microsoft.com:443 (group ", "Status message 11410 (informational): all ")
	var endpoints int
	for _, m := range msgs {
		if strings.Contains(m, ":443 (group ") {
			endpoints++
			if strings.HasPrefix(m, "ERROR") || !strings.Contains(m, ": PASS conn=") || !strings.Contains(m, "ConfigMgr would read: ") {
				t.Errorf("endpoint line %q", m)
			}
		}
	}
	if endpoints < 4 {
		t.Fatalf("%d endpoint lines, want one per endpoint:\n%s", endpoints, strings.Join(msgs, "\n"))
	}

	r := c.run("check-connectivity")
	if r.exit != 0 || !strings.Contains(r.stdout, "11410 informational") || !strings.Contains(r.stdout, "go.microsoft.com:443") {
		t.Fatalf("check-connectivity: %d\n%s%s", r.exit, r.stdout, r.stderr)
	}
}

// TestSCPClientConnectivityDenied: the gateway's policy lacks aka.ms, which the client's
// built-in list needs: `check-connectivity` exits 2, the log names aka.ms:443 with the
// gateway's reason and the connection id of the gateway's own record, and ends with 11412.
func TestSCPClientConnectivityDenied(t *testing.T) {
	text := shippedWith(t, "      - aka.ms                              # Microsoft URL forwarding: always needed\n", "")
	c := newConnectivityClient(t, text)
	r := c.run("check-connectivity")
	if r.exit != 2 || !strings.Contains(r.stdout, "11412 error") {
		t.Fatalf("check-connectivity: %d\n%s%s", r.exit, r.stdout, r.stderr)
	}
	rec := waitAudit(t, c.gw.proc, func(a auditRecord) bool { return a.Host == "aka.ms" && a.Decision == "deny" })[0]
	if rec.Reason != "no_rule" || rec.ConnID == "" {
		t.Fatalf("gateway record %+v", rec)
	}
	msgs := c.logLines()
	var line string
	for _, m := range msgs {
		if strings.Contains(m, "aka.ms:443") && !strings.HasPrefix(m, "ERROR: Status message") {
			line = m
		}
	}
	want := []string{"ERROR: aka.ms:443 (group ", "FAIL; gateway answered 403 reason=no_rule conn=" + rec.ConnID, "ConfigMgr would read: 403"}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Fatalf("aka.ms line %q lacks %q; log:\n%s", line, w, strings.Join(msgs, "\n"))
		}
	}
	last := msgs[len(msgs)-1]
	if !strings.HasPrefix(last, "ERROR: Status message 11412 (error)") || !strings.Contains(last, "pass/endpoint/aka.ms:443") {
		t.Fatalf("outcome line %q", last)
	}
}
