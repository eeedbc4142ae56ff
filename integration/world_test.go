package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/scpgate/scpgate/gateway/server"
	"github.com/scpgate/scpgate/manifest"
	"github.com/scpgate/scpgate/sim/cloudsim"
	"github.com/scpgate/scpgate/sim/simworld"
)

// shippedPolicy is the endpoints.yaml the product ships; these tests run the simulated world
// against it unchanged.
const shippedPolicy = "../endpoints.yaml"

// simEnv is a simworld (cloud on 127.x.y.z:443, DNS with CNAME chains and trap names) plus a
// harness world that shares its CA and DNS, so the harness's curl, sink, httpClient and
// inProcess work against the simulated cloud.
type simEnv struct {
	t     *testing.T
	sw    *simworld.World
	hw    *world
	cloud netip.AddrPort
	log   *slog.Logger
}

func newSimEnv(t *testing.T) *simEnv {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	sw, err := simworld.Start(ctx, simworld.Options{Dir: filepath.Join(dir, "world"), Logger: logger})
	if err != nil {
		cancel()
		t.Fatalf("simworld: %v (binding port 443 needs root or `unshare -rn`)", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := sw.Close(); err != nil {
			t.Errorf("simworld Close: %v", err)
		}
	})
	hw := &world{t: t, dir: dir, ca: sw.CA, caFile: sw.CAFile, dns: sw.DNS, log: logger}
	return &simEnv{t: t, sw: sw, hw: hw, cloud: sw.Cloud.Addr(), log: logger}
}

// allowCloud is the allow_ranges entry for the cloud's address alone.
func (e *simEnv) allowCloud() string { return netip.PrefixFrom(e.cloud.Addr(), 32).String() }

// gateway runs a full server.Server, as `scpgate serve` does, with the shipped policy and the
// world's DNS server, on 127.0.0.1:0.
func (e *simEnv) gateway(allowRanges ...string) *proc {
	e.t.Helper()
	return e.gatewayWith(nil, allowRanges...)
}

// gatewayWith is gateway with a hook that adjusts the configuration (auth, TLS listener, ...)
// before the server starts.
func (e *simEnv) gatewayWith(adjust func(*server.Config), allowRanges ...string) *proc {
	e.t.Helper()
	pol, err := filepath.Abs(shippedPolicy)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := server.Defaults()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Policy = pol
	cfg.DNS.Servers = []string{e.sw.DNS.Addr()}
	cfg.AllowRanges = allowRanges
	cfg.Audit.Path = filepath.Join(e.t.TempDir(), "audit.log")
	cfg.Timeouts.Drain = 5 * time.Second
	// The policy is the repository's own file: no watching it, so an edit in the working tree
	// during a test run cannot reload the gateway under a test.
	watch := false
	cfg.Watch = &watch
	if adjust != nil {
		adjust(&cfg)
	}
	trail := newAuditTrail()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, e.log, server.WithAuditObserver(trail.observe))
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	p := &proc{srv: srv, auditPath: cfg.Audit.Path, trail: trail, done: make(chan error, 1), addrs: srv.Addrs()}
	if len(p.addrs.Proxy) != 1 {
		cancel()
		e.t.Fatalf("proxy listeners %v, want one", p.addrs.Proxy)
	}
	p.addr = p.addrs.Proxy[0]
	go func() { p.done <- srv.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-p.done; err != nil {
			e.t.Errorf("gateway Run: %v", err)
		}
	})
	return p
}

// publicKey reads the manifest key from the file the world wrote, as a separate SCP process
// would.
func (e *simEnv) publicKey() []byte {
	e.t.Helper()
	b, err := os.ReadFile(e.sw.PublicKeyFile)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *simEnv) verify(body []byte) manifest.Manifest {
	e.t.Helper()
	pub, err := manifest.LoadPublicKey(e.publicKey())
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := manifest.Verify(body, pub)
	if err != nil {
		e.t.Fatalf("manifest from the cloud does not verify with %s: %v", e.sw.PublicKeyFile, err)
	}
	return m
}

// closeRecord waits for the audit line of a finished tunnel to host.
func closeRecord(t *testing.T, gw *proc, host string) auditRecord {
	t.Helper()
	recs := waitAudit(t, gw, func(r auditRecord) bool { return r.Event == "close" && r.Host == host })
	return recs[len(recs)-1]
}

// TestSimWorldCNAMEChainCurl: download.microsoft.com is a two-CNAME chain in the world's DNS;
// curl through the gateway gets the signed manifest, and the gateway dialed the address at the
// end of the chain.
func TestSimWorldCNAMEChainCurl(t *testing.T) {
	e := newSimEnv(t)
	gw := e.gateway(e.allowCloud())
	res := e.hw.curl("-x", "http://"+gw.addr, "--cacert", e.sw.CAFile, e.sw.Cloud.ManifestURL())
	if res.exit != 0 || res.code != "200" || res.connectCode != "200" {
		t.Fatalf("curl exit %d code %s connect %s: %s", res.exit, res.code, res.connectCode, res.stderr)
	}
	if m := e.verify([]byte(res.body)); len(m.Updates) == 0 {
		t.Fatal("manifest has no updates")
	}
	r := closeRecord(t, gw, cloudsim.HostDownload)
	if r.Decision != "allow" || r.Address != e.cloud.String() || r.Status != 200 || r.Group != "updates-and-servicing" ||
		r.Pattern != cloudsim.HostDownload || r.BytesDown == 0 {
		t.Fatalf("audit record: %+v (cloud %s)", r, e.cloud)
	}
	if n := e.sw.DNS.QueriesByType(cloudsim.HostDownload, dns.TypeA); n != 1 {
		t.Fatalf("A queries for %s: %d, want 1", cloudsim.HostDownload, n)
	}
}

// TestSimWorldUpdateCheckChain: the service connection point's update check with Go's net/http
// through the gateway: fwlink → connected service → manifest on download.microsoft.com (through
// its CNAME chain), verified with the world's public key, then one payload from the CDN name
// (another CNAME chain) whose SHA-256 matches the manifest.
func TestSimWorldUpdateCheckChain(t *testing.T) {
	e := newSimEnv(t)
	gw := e.gateway(e.allowCloud())
	c, _ := e.hw.httpClient(gw.addr)
	var hops []string
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		hops = append(hops, req.URL.Host)
		if len(via) > 5 {
			return http.ErrUseLastResponse
		}
		return nil
	}

	resp, err := c.Get(simworld.FwlinkURL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("update check: %d %v", resp.StatusCode, err)
	}
	if want := []string{cloudsim.HostConnectedService, cloudsim.HostDownload}; strings.Join(hops, " ") != strings.Join(want, " ") {
		t.Fatalf("redirects went to %v, want %v", hops, want)
	}
	if got := resp.Request.URL.String(); got != e.sw.Cloud.ManifestURL() {
		t.Fatalf("final URL %s, want %s", got, e.sw.Cloud.ManifestURL())
	}
	m := e.verify(body)
	apps := m.Applicable(manifest.MustParseVersion(cloudsim.DefaultInstalledVersion), false)
	if len(apps) == 0 {
		t.Fatal("no applicable update in the manifest")
	}
	u := apps[0]
	if !strings.HasPrefix(u.PayloadURL, "https://"+cloudsim.HostCDN+"/") {
		t.Fatalf("payload URL %s is not on %s", u.PayloadURL, cloudsim.HostCDN)
	}

	resp, err = c.Get(u.PayloadURL)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("payload: %d %v", resp.StatusCode, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != u.SHA256 || n != u.Size {
		t.Fatalf("payload %d bytes sha256 %s, want %d bytes %s", n, got, u.Size, u.SHA256)
	}

	// Every hop went through the gateway to the vetted cloud address.
	for _, host := range []string{cloudsim.HostFwlink, cloudsim.HostConnectedService, cloudsim.HostDownload, cloudsim.HostCDN} {
		if r := closeRecord(t, gw, host); r.Decision != "allow" || r.Address != e.cloud.String() || r.Status != 200 {
			t.Errorf("audit record for %s: %+v", host, r)
		}
	}
}

// TestSimWorldDNSFlip: a listed name whose second answer would point elsewhere (a loopback
// listener outside allow_ranges that counts connections) is resolved once; every request
// reaches the cloud and the other listener is never contacted.
func TestSimWorldDNSFlip(t *testing.T) {
	e := newSimEnv(t)
	const name = "aka.ms"
	s := e.hw.sink()
	e.sw.DNS.SetFlip(name, e.cloud.Addr(), s.addr.Addr())
	gw := e.gateway(e.allowCloud())
	for i := range 3 {
		res := e.hw.curl("-x", "http://"+gw.addr, "--cacert", e.sw.CAFile, "https://"+name+"/")
		if res.code != "200" || res.body != "scpgate cloudsim: "+name {
			t.Fatalf("request %d: %+v", i, res)
		}
	}
	recs := waitAudit(t, gw, func(r auditRecord) bool { return r.Event == "close" && r.Host == name })
	for _, r := range recs {
		if r.Address != e.cloud.String() {
			t.Fatalf("a tunnel went to %s, not the cloud %s", r.Address, e.cloud)
		}
	}
	if n := e.sw.DNS.QueriesByType(name, dns.TypeA); n != 1 {
		t.Fatalf("the gateway asked for the A record of %s %d times, want exactly 1", name, n)
	}
	if n := s.accepts.Load(); n != 0 {
		t.Fatalf("the rebinding target outside allow_ranges accepted %d connection(s)", n)
	}
}

// TestSimWorldPrivateAnswers: the trap names resolve to a private and to the metadata address.
// A test never sends a packet to a non-loopback address (docs/ARCHITECTURE.md, "Tests"): such a
// destination is checked with a dialer that fails the test if it is called, so this runs the gateway in-process with the shipped policy, the world's DNS and failDial; no
// packet can leave for 10.20.30.40 or 169.254.169.254 even if the gateway regressed.
func TestSimWorldPrivateAnswers(t *testing.T) {
	e := newSimEnv(t)
	pol, err := os.ReadFile(shippedPolicy)
	if err != nil {
		t.Fatal(err)
	}
	addr := e.hw.inProcess(string(pol), failDial(t), netip.PrefixFrom(e.cloud.Addr(), 32))
	for _, name := range []string{simworld.TrapPrivate, simworld.TrapMetadata} {
		t.Run(name, func(t *testing.T) {
			res := e.hw.curl("-x", "http://"+addr, "--cacert", e.sw.CAFile, "https://"+name+"/")
			if res.connectCode != "403" || !strings.Contains(strings.ToLower(res.headers), "x-scpgate-reason: private_address") {
				t.Fatalf("curl: connect %s headers:\n%s", res.connectCode, res.headers)
			}
			c, rec := e.hw.httpClient(addr)
			if resp, err := c.Get("https://" + name + "/"); err == nil {
				resp.Body.Close()
				t.Fatalf("net/http got %d", resp.StatusCode)
			}
			if st, reason := rec.get(); st != 403 || reason != "private_address" {
				t.Fatalf("net/http: CONNECT answered %d %q, want 403 private_address", st, reason)
			}
			if e.sw.DNS.Queries(name) == 0 {
				t.Fatalf("%s was never looked up: the denial did not come from its DNS answer", name)
			}
		})
	}
}

// TestSimWorldNXDOMAIN: a listed name that does not exist is 502 with X-Scpgate-Reason
// dns_failure (the upstream could not be reached; the policy allowed it).
func TestSimWorldNXDOMAIN(t *testing.T) {
	e := newSimEnv(t)
	gw := e.gateway(e.allowCloud())
	name := simworld.TrapNXDOMAIN
	res := e.hw.curl("-x", "http://"+gw.addr, "--cacert", e.sw.CAFile, "https://"+name+"/")
	if res.connectCode != "502" || !strings.Contains(strings.ToLower(res.headers), "x-scpgate-reason: dns_failure") {
		t.Fatalf("curl: connect %s headers:\n%s", res.connectCode, res.headers)
	}
	c, rec := e.hw.httpClient(gw.addr)
	if resp, err := c.Get("https://" + name + "/"); err == nil {
		resp.Body.Close()
		t.Fatalf("net/http got %d", resp.StatusCode)
	}
	if st, reason := rec.get(); st != 502 || reason != "dns_failure" {
		t.Fatalf("net/http: CONNECT answered %d %q, want 502 dns_failure", st, reason)
	}
	recs := waitAudit(t, gw, func(r auditRecord) bool { return r.Host == name })
	for _, r := range recs {
		if r.Reason != "dns_failure" || r.Status != 502 || r.Address != "" {
			t.Fatalf("audit record: %+v", r)
		}
	}
	if e.sw.DNS.QueriesByType(name, dns.TypeA) == 0 {
		t.Fatalf("%s was never looked up", name)
	}
}
