package integration

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scpgate/scpgate/gateway/server"
	"github.com/scpgate/scpgate/manifest"
	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/state"
	"github.com/scpgate/scpgate/scpclient/uploader"
	"github.com/scpgate/scpgate/scpclient/usage"
	"github.com/scpgate/scpgate/sim/cloudsim"
	"github.com/scpgate/scpgate/sim/testca"
)

// scpEnv is the simulated cloud, a gateway in front of it with authentication on and both a
// plain and a TLS proxy listener (the shipped policy), and the scpclient binary.
type scpEnv struct {
	*simEnv
	gw     *proc
	tlsGW  string // the TLS proxy listener, 127.0.0.1:port
	pwFile string // alice's password
	bin    string
}

const testHierarchy = "6f2c2f5b-1d2e-4b51-9c3a-7d1e2f3a4b5c"

func newSCPEnv(t *testing.T) *scpEnv {
	t.Helper()
	e := newSimEnv(t)
	cert, err := e.sw.CA.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, err := testca.WriteCertFiles(dir, "proxy", cert)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	setUser(t, htpasswd, "alice", "alice-pw")
	gw := e.gatewayWith(func(c *server.Config) {
		c.TLSListen = []string{"127.0.0.1:0"}
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
		c.Auth.Htpasswd = htpasswd
	}, e.allowCloud())
	if len(gw.addrs.TLS) != 1 {
		t.Fatalf("TLS listeners %v, want one", gw.addrs.TLS)
	}
	pw := filepath.Join(dir, "proxy-password")
	if err := os.WriteFile(pw, []byte("alice-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Under `go test -race` the client is built with the race detector too, so its components'
	// concurrency is checked while the tests drive it (a race makes it exit 66).
	var flags []string
	if raceEnabled {
		flags = append(flags, "-race")
	}
	return &scpEnv{simEnv: e, gw: gw, tlsGW: gw.addrs.TLS[0], pwFile: pw, bin: buildCommand(t, "scpclient", flags...)}
}

// clientConf is what a test varies in the client's configuration.
type clientConf struct {
	proxyURL  string
	user      string // "" : no credentials
	mode      string
	hierarchy string
	dataDir   string
	level     string
	caFile    string // "" : the world's CA
	keyFile   string // "" : the world's manifest key
	// connectivity is the connectivity_check block; "" turns its schedule off, so that the
	// tests that count the cloud's requests see only the downloader's and the uploader's.
	connectivity string
	extra        string // more top-level YAML keys
}

// writeConfig writes an scpclient.yaml into its data folder's parent and returns its path.
func (s *scpEnv) writeConfig(c clientConf) string {
	s.t.Helper()
	if c.mode == "" {
		c.mode = "online"
	}
	if c.hierarchy == "" {
		c.hierarchy = testHierarchy
	}
	if c.dataDir == "" {
		c.dataDir = filepath.Join(s.t.TempDir(), "data")
	}
	if c.level == "" {
		c.level = "enhanced"
	}
	if c.caFile == "" {
		c.caFile = s.sw.CAFile
	}
	if c.keyFile == "" {
		c.keyFile = s.sw.PublicKeyFile
	}
	text := fmt.Sprintf(`site_code: XYZ
site_role: cas
hierarchy_id: %s
installed_version: %s
mode: %s
usage_level: %s
trusted_ca_file: %s
manifest_key_file: %s
retry_backoff: 10ms
data_dir: %s
`, c.hierarchy, cloudsim.DefaultInstalledVersion, c.mode, c.level, c.caFile, c.keyFile, c.dataDir)
	if c.connectivity == "" {
		c.connectivity = "connectivity_check:\n  interval: 0s\n"
	}
	text += c.connectivity + c.extra
	if c.proxyURL != "" {
		text += "proxy:\n  url: " + c.proxyURL + "\n"
		if c.user != "" {
			text += "  user: " + c.user + "\n  password_file: " + s.pwFile + "\n"
		}
	}
	path := filepath.Join(filepath.Dir(c.dataDir), "scpclient.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return path
}

type runResult struct {
	exit           int
	stdout, stderr string
}

// scpclient runs the binary to completion.
func (s *scpEnv) scpclient(args ...string) runResult {
	s.t.Helper()
	return s.runIn(nil, nil, args...)
}

// clientEnv is the environment of every scpclient the tests start: no proxy settings from the
// test's own environment, plus extra.
func clientEnv(extra ...string) []string {
	return append(append(os.Environ(), "HTTPS_PROXY=", "https_proxy=", "SCPCLIENT_PROXY_PASSWORD="), extra...)
}

// applicable is what the client must download: the cloud's updates for the installed version,
// hotfixes included (the default).
func (s *scpEnv) applicable() []manifest.Update {
	m := manifest.Manifest{Updates: s.sw.Cloud.Updates()}
	return m.Applicable(manifest.MustParseVersion(cloudsim.DefaultInstalledVersion), true)
}

// checkPlaced asserts that exactly the applicable payloads are in EasySetupPayload, each with
// its manifest hash, and nothing partial is left.
func (s *scpEnv) checkPlaced(dataDir string) {
	s.t.Helper()
	payloadDir := filepath.Join(dataDir, "EasySetupPayload")
	var found []string
	err := filepath.WalkDir(payloadDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") {
			s.t.Errorf("leftover temporary file %s", p)
		}
		if d.Name() != manifest.FileName {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	apps := s.applicable()
	if len(found) != len(apps) {
		s.t.Fatalf("placed %v, want the %d applicable payloads", found, len(apps))
	}
	for _, u := range apps {
		p := filepath.Join(payloadDir, u.GUID, u.GUID+".cab")
		if got := fileHash(s.t, p); got != u.SHA256 {
			s.t.Fatalf("%s: SHA-256 %s, want %s", p, got, u.SHA256)
		}
	}
}

func fileHash(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func readState(t *testing.T, dataDir string) state.File {
	t.Helper()
	f, err := state.Read(filepath.Join(dataDir, state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// logLines parses every line of a component log with the trace grammar and returns the
// messages.
func logLines(t *testing.T, path, component string) []string {
	t.Helper()
	entries, err := cmtrace.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range entries {
		if e.Component != component {
			t.Fatalf("%s: component %q, want %q", path, e.Component, component)
		}
		msgs = append(msgs, e.Message)
	}
	return msgs
}

// inOrder asserts that each want is a prefix of some message, in this order.
func inOrder(t *testing.T, msgs []string, want ...string) {
	t.Helper()
	i := 0
	for _, m := range msgs {
		if i < len(want) && strings.HasPrefix(m, want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Fatalf("log lacks %q (in order) among:\n%s", want[i], strings.Join(msgs, "\n"))
	}
}

// TestSCPClientFullCycle: through the real gateway with authentication on, over the plain and
// the TLS proxy listener, `scpclient check` downloads exactly the applicable updates, places
// them verified, records the ConfigMgr states and uploads one usage package.
func TestSCPClientFullCycle(t *testing.T) {
	s := newSCPEnv(t)
	for _, tc := range []struct{ name, proxy string }{{"plain", "http://" + s.gw.addr}, {"tls", "https://" + s.tlsGW}} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.sw.Cloud.Uploads())
			dataDir := filepath.Join(t.TempDir(), "data")
			cfg := s.writeConfig(clientConf{proxyURL: tc.proxy, user: "alice", dataDir: dataDir})
			r := s.scpclient("check", "-config", cfg)
			if r.exit != 0 {
				t.Fatalf("check exit %d\nstdout:\n%s\nstderr:\n%s", r.exit, r.stdout, r.stderr)
			}
			s.checkPlaced(dataDir)
			// Not a terminal: no progress bar, the plain log lines instead.
			if !strings.Contains(r.stdout, "SMS_DMP_DOWNLOADER: Hasn't synced recently.") || !strings.Contains(r.stdout, "SMS_DMP_UPLOADER: Uploading usage data package") {
				t.Errorf("check did not echo its log lines:\n%s", r.stdout)
			}
			st := readState(t, dataDir)
			apps := map[string]bool{}
			for _, u := range s.applicable() {
				apps[strings.ToLower(u.GUID)] = true
			}
			for _, u := range s.sw.Cloud.Updates() {
				want := state.ApplicabilityNotApplicable
				if apps[strings.ToLower(u.GUID)] {
					want = state.DownloadSuccess
				}
				got := st.Downloader.Updates[strings.ToLower(u.GUID)]
				if got == nil || got.State != want {
					t.Errorf("update %s (%s): state %+v, want %d", u.GUID, u.Version, got, want)
				}
				if !strings.Contains(r.stdout, fmt.Sprintf("%d %s", want, state.Name(want))) {
					t.Errorf("check output lacks state %d:\n%s", want, r.stdout)
				}
			}
			ups := s.sw.Cloud.Uploads()
			if len(ups) != before+1 {
				t.Fatalf("uploads %d, want %d", len(ups), before+1)
			}
			p, err := usage.Parse(ups[len(ups)-1].Data)
			if err != nil || p.HierarchyIDHash != usage.HierarchyHash(testHierarchy) || p.ID != ups[len(ups)-1].IdempotencyKey {
				t.Fatalf("uploaded package: %v %+v", err, p)
			}
			if left, _ := (uploader.Spool{Dir: uploader.SpoolDir(dataDir)}).List(); len(left) != 0 {
				t.Fatalf("spool not empty after an acknowledged upload: %v", left)
			}
			msgs := logLines(t, filepath.Join(dataDir, "Logs", "dmpdownloader.log"), "SMS_DMP_DOWNLOADER")
			first := s.applicable()[0].GUID
			inOrder(t, msgs, "Hasn't synced recently.", "Generating state message: 0",
				"Easysetup fwlink to download the manifest: https://go.microsoft.com/fwlink/?",
				"Redirected to URL https://sccm.manage.microsoft.com/SCCMConnectedService.svc",
				"The flighting request url is https://sccm.manage.microsoft.com/SCCMConnectedService.svc/Manifest?",
				"Download manifest.cab", "Redirected to URL https://download.microsoft.com/",
				"manifest.cab (http response) size is", "File '", "Manifest.cab was successfully moved to the connector outbox",
				"Generating state message: 4", "Get new Easy Setup Package IDs", "Found a new available update",
				"EasySetupDownloadSinglePackage downloading "+first, "Checking IsPayloadLocal with HashAlgorithm = SHA256",
				"expected hash = ", "Content for "+first+" does not exist locally. Download it from internet",
				"EasySetupDownloadSinglePackage finishes downloading "+first+".")
			up := logLines(t, filepath.Join(dataDir, "Logs", "dmpuploader.log"), "SMS_DMP_UPLOADER")
			inOrder(t, up, "Collecting usage data at level enhanced", "Usage data package", "Uploading usage data package", "Usage data package "+p.ID+" was acknowledged")

			// A second check finds every payload in place and downloads nothing.
			n := len(s.sw.Cloud.Requests())
			if r := s.scpclient("check", "-config", cfg); r.exit != 0 {
				t.Fatalf("second check: %d %s", r.exit, r.stderr)
			}
			for _, rec := range s.sw.Cloud.Requests()[n:] {
				if strings.HasPrefix(rec.Path, "/release/") {
					t.Fatalf("second check downloaded %s again", rec.Path)
				}
			}
			if len(s.sw.Cloud.Uploads()) != before+1 {
				t.Fatal("second check within the upload interval uploaded again")
			}
		})
	}
}

// TestSCPClientResumeAfterReset: the CDN resets the connection in the middle of a payload; the
// next attempt asks for the rest with Range and If-Range, and the file ends verified.
func TestSCPClientResumeAfterReset(t *testing.T) {
	s := newSCPEnv(t)
	if err := s.sw.Cloud.SetFault(cloudsim.HostCDN, "/release/", cloudsim.Fault{Kind: cloudsim.FaultReset, AfterBytes: 100 << 10, Count: 1}); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := s.writeConfig(clientConf{proxyURL: "https://" + s.tlsGW, user: "alice", dataDir: dataDir})
	r := s.scpclient("check", "-config", cfg, "-no-upload")
	if r.exit != 0 {
		t.Fatalf("check exit %d: %s", r.exit, r.stderr)
	}
	s.checkPlaced(dataDir)
	var ranged []cloudsim.RequestRecord
	for _, rec := range s.sw.Cloud.Requests() {
		if strings.HasPrefix(rec.Path, "/release/") && rec.Range != "" {
			ranged = append(ranged, rec)
		}
	}
	if len(ranged) != 1 || ranged[0].Status != 206 || !strings.HasPrefix(ranged[0].Range, "bytes=") {
		t.Fatalf("range requests %+v, want one answered 206", ranged)
	}
	msgs := logLines(t, filepath.Join(dataDir, "Logs", "dmpdownloader.log"), "SMS_DMP_DOWNLOADER")
	inOrder(t, msgs, "WARNING: Failed to download easy setup payload with exception:", "WARNING: Retry in the next polling cycle", "Resume downloading ")
}

// TestSCPClientResumeAfterStall: the CDN stops sending in the middle of a payload without
// closing; after transfer_idle_timeout the client gives up on that transfer, and the next
// attempt asks for the rest with Range and the file ends verified.
func TestSCPClientResumeAfterStall(t *testing.T) {
	s := newSCPEnv(t)
	if err := s.sw.Cloud.SetFault(cloudsim.HostCDN, "/release/", cloudsim.Fault{Kind: cloudsim.FaultSlow, AfterBytes: 100 << 10, Count: 1}); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := s.writeConfig(clientConf{proxyURL: "http://" + s.gw.addrs.Proxy[0], user: "alice", dataDir: dataDir, extra: "transfer_idle_timeout: 1s\n"})
	r := s.scpclient("check", "-config", cfg, "-no-upload")
	if r.exit != 0 {
		t.Fatalf("check exit %d: %s", r.exit, r.stderr)
	}
	if strings.Count(r.stderr, "no data for 1s") != 1 {
		t.Fatalf("stderr does not say the transfer stalled for transfer_idle_timeout:\n%s", r.stderr)
	}
	s.checkPlaced(dataDir)
	var ranged []cloudsim.RequestRecord
	for _, rec := range s.sw.Cloud.Requests() {
		if strings.HasPrefix(rec.Path, "/release/") && rec.Range != "" {
			ranged = append(ranged, rec)
		}
	}
	if len(ranged) != 1 || ranged[0].Status != 206 {
		t.Fatalf("range requests %+v, want one answered 206", ranged)
	}
}

// TestSCPClientCorruptPayload: a payload corrupted on the way is never placed, the failure is
// logged and recorded (327679), and the next check downloads it correctly.
func TestSCPClientCorruptPayload(t *testing.T) {
	s := newSCPEnv(t)
	if err := s.sw.Cloud.SetFault(cloudsim.HostCDN, "/release/", cloudsim.Fault{Kind: cloudsim.FaultCorrupt, AfterBytes: 1000, Count: 1}); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := s.writeConfig(clientConf{proxyURL: "http://" + s.gw.addr, user: "alice", dataDir: dataDir})
	r := s.scpclient("check", "-config", cfg, "-attempts", "1", "-no-upload")
	if r.exit != 1 || !strings.Contains(r.stderr, "hash does not match") {
		t.Fatalf("check exit %d, want 1 with a hash error: %s", r.exit, r.stderr)
	}
	st := readState(t, dataDir)
	failed := 0
	for _, u := range s.applicable() {
		rec := st.Downloader.Updates[strings.ToLower(u.GUID)]
		dest := filepath.Join(dataDir, "EasySetupPayload", u.GUID, u.GUID+".cab")
		if rec.State == state.DownloadFailed {
			failed++
			if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("corrupted payload placed at %s (%v)", dest, err)
			}
			if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".*")); len(matches) != 0 {
				t.Fatalf("corrupted bytes left behind: %v", matches)
			}
		}
	}
	if failed != 1 {
		t.Fatalf("%d updates failed, want 1: %+v", failed, st.Downloader.Updates)
	}
	msgs := logLines(t, filepath.Join(dataDir, "Logs", "dmpdownloader.log"), "SMS_DMP_DOWNLOADER")
	inOrder(t, msgs, "ERROR: Payload ", "WARNING: Failed to download easy setup payload with exception:", "WARNING: Retry in the next polling cycle")
	if r := s.scpclient("check", "-config", cfg, "-no-upload"); r.exit != 0 {
		t.Fatalf("retry: exit %d: %s", r.exit, r.stderr)
	}
	s.checkPlaced(dataDir)
}

// TestSCPClientUploadRetriedExactlyOnce: a 503 from the receiver keeps the package spooled; the
// next cycle delivers it, once.
func TestSCPClientUploadRetriedExactlyOnce(t *testing.T) {
	s := newSCPEnv(t)
	if err := s.sw.Cloud.SetFault(cloudsim.HostConnectedService, cloudsim.ServiceUsageDataPath, cloudsim.Fault{Kind: cloudsim.FaultStatus, Status: 503, Count: 1}); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := s.writeConfig(clientConf{proxyURL: "http://" + s.gw.addr, user: "alice", dataDir: dataDir, level: "full"})
	r := s.scpclient("check", "-config", cfg)
	if r.exit != 1 || !strings.Contains(r.stderr, "503") {
		t.Fatalf("check exit %d, want 1 naming the 503: %s", r.exit, r.stderr)
	}
	spool := uploader.Spool{Dir: uploader.SpoolDir(dataDir)}
	if left, _ := spool.List(); len(left) != 1 || len(s.sw.Cloud.Uploads()) != 0 {
		t.Fatalf("after the 503: spool %v, uploads %d; want 1 spooled, 0 delivered", left, len(s.sw.Cloud.Uploads()))
	}
	up := logLines(t, filepath.Join(dataDir, "Logs", "dmpuploader.log"), "SMS_DMP_UPLOADER")
	inOrder(t, up, "ERROR: Status message 9605 (DMP_UPLOADER_UPLOAD_FAILED)")
	for range 2 {
		if r := s.scpclient("check", "-config", cfg); r.exit != 0 {
			t.Fatalf("later check: %d %s", r.exit, r.stderr)
		}
	}
	ups := s.sw.Cloud.Uploads()
	if left, _ := spool.List(); len(left) != 0 || len(ups) != 1 || ups[0].Acks != 1 {
		t.Fatalf("spool %v, uploads %+v; want it delivered exactly once", left, ups)
	}
	if p, err := usage.Parse(ups[0].Data); err != nil || p.Level != "full" {
		t.Fatalf("delivered package: %v %+v", err, p)
	}
}

// TestSCPClientActionableErrors: missing credentials give a 407 message naming the settings;
// a gateway that does not allow the CDN gives its reason code and a failed update state.
func TestSCPClientActionableErrors(t *testing.T) {
	s := newSCPEnv(t)
	t.Run("407", func(t *testing.T) {
		cfg := s.writeConfig(clientConf{proxyURL: "http://" + s.gw.addr})
		r := s.scpclient("check", "-config", cfg, "-attempts", "1", "-no-upload")
		if r.exit != 1 || !strings.Contains(r.stderr, "asked for credentials") || !strings.Contains(r.stderr, "proxy.user and proxy.password_file") {
			t.Fatalf("exit %d stderr:\n%s", r.exit, r.stderr)
		}
	})
	t.Run("denied endpoint", func(t *testing.T) {
		// A policy without the CDN: the check and the manifest pass, the payloads are refused.
		pol := `version: 1
groups:
  updates:
    enabled: true
    hosts: [go.microsoft.com, sccm.manage.microsoft.com, download.microsoft.com]
`
		gw := s.hw.gateway(pol, s.allowCloud())
		dataDir := filepath.Join(t.TempDir(), "data")
		cfg := s.writeConfig(clientConf{proxyURL: "http://" + gw.addr, dataDir: dataDir})
		r := s.scpclient("check", "-config", cfg, "-attempts", "1", "-no-upload")
		if r.exit != 1 || !strings.Contains(r.stderr, "refused the connection to "+cloudsim.HostCDN+":443") || !strings.Contains(r.stderr, "X-Scpgate-Reason: no_rule") ||
			!strings.Contains(r.stderr, "gateway connection id ") {
			t.Fatalf("exit %d stderr:\n%s", r.exit, r.stderr)
		}
		st := readState(t, dataDir)
		for _, u := range s.applicable() {
			if rec := st.Downloader.Updates[strings.ToLower(u.GUID)]; rec == nil || rec.State != state.DownloadFailed || !strings.Contains(rec.Detail, "X-Scpgate-Reason") {
				t.Fatalf("update %s: %+v, want 327679 with the reason", u.GUID, rec)
			}
		}
	})
	t.Run("manifest signed with another key", func(t *testing.T) {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pemKey, _ := manifest.MarshalPublicKey(pub)
		keyFile := filepath.Join(t.TempDir(), "other-key.pem")
		if err := os.WriteFile(keyFile, pemKey, 0o644); err != nil {
			t.Fatal(err)
		}
		dataDir := filepath.Join(t.TempDir(), "data")
		cfg := s.writeConfig(clientConf{proxyURL: "http://" + s.gw.addr, user: "alice", dataDir: dataDir, keyFile: keyFile})
		r := s.scpclient("check", "-config", cfg, "-attempts", "1", "-no-upload")
		if r.exit != 1 || !strings.Contains(r.stderr, "signature does not verify") || !strings.Contains(r.stderr, manifest.KeyIDOf(pub)) ||
			!strings.Contains(r.stderr, s.sw.Cloud.KeyID()) {
			t.Fatalf("exit %d stderr:\n%s", r.exit, r.stderr)
		}
		if ents, _ := os.ReadDir(filepath.Join(dataDir, "EasySetupPayload")); len(ents) != 0 {
			t.Fatalf("an unverified manifest left files: %v", ents)
		}
	})
	t.Run("untrusted CA", func(t *testing.T) {
		other, err := testca.New("not the Microsoft root")
		if err != nil {
			t.Fatal(err)
		}
		caFile, err := other.WriteFiles(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		dataDir := filepath.Join(t.TempDir(), "data")
		cfg := s.writeConfig(clientConf{proxyURL: "http://" + s.gw.addr, user: "alice", dataDir: dataDir, caFile: caFile})
		r := s.scpclient("check", "-config", cfg, "-attempts", "1", "-no-upload")
		if r.exit != 1 || !strings.Contains(r.stderr, "trust relationship") || !strings.Contains(r.stderr, cloudsim.HostFwlink) {
			t.Fatalf("exit %d stderr:\n%s", r.exit, r.stderr)
		}
	})
}
