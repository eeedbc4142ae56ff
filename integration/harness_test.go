package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scpgate/scpgate/gateway"
	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/gateway/netguard"
	"github.com/scpgate/scpgate/gateway/resolver"
	"github.com/scpgate/scpgate/gateway/server"
	"github.com/scpgate/scpgate/policy"
	"github.com/scpgate/scpgate/sim/dnssim"
	"github.com/scpgate/scpgate/sim/testca"
)

// world is one test's private internet: a CA, an authoritative DNS server, TLS origins on port
// 443 of their own loopback addresses, and gateways in front of them. Nothing in it leaves
// 127.0.0.0/8.
type world struct {
	t      testing.TB
	dir    string
	ca     *testca.CA
	caFile string
	dns    *dnssim.Server
	log    *slog.Logger
}

func newWorld(t testing.TB) *world {
	t.Helper()
	ca, err := testca.New("scpgate test Microsoft root")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, err := ca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d := dnssim.New(logger)
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = d.Close() })
	return &world{t: t, dir: dir, ca: ca, caFile: caFile, dns: d, log: logger}
}

// testWriter sends logs to t.Log so they show only for failing tests.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// listenLoopback443 binds port 443 on a random 127.x.y.z so parallel packages never collide.
// It needs root (or an unprivileged user+network namespace: `unshare -rn`).
func listenLoopback443(t testing.TB) net.Listener {
	t.Helper()
	var lastErr error
	for range 20 {
		ip := netip.AddrFrom4([4]byte{127, byte(1 + rand.IntN(250)), byte(rand.IntN(256)), byte(1 + rand.IntN(250))})
		ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 443).String())
		if err == nil {
			return ln
		}
		lastErr = err
		if errors.Is(err, os.ErrPermission) {
			break
		}
	}
	t.Fatalf("cannot bind port 443 on a loopback address (%v): run the tests as root or inside `unshare -rn`", lastErr)
	return nil
}

func addrOf(ln net.Listener) netip.AddrPort { return ln.Addr().(*net.TCPAddr).AddrPort() }

// origin is a TLS web server on 127.x.y.z:443 answering for names, as a Microsoft endpoint does.
type origin struct {
	addr     netip.AddrPort
	mu       sync.Mutex
	requests []*http.Request
}

func (w *world) origin(names ...string) *origin {
	w.t.Helper()
	return w.serveOrigin(names, nil)
}

// serveOrigin starts the origin for names; wrap, if set, wraps its listener (to count
// connections, for example).
func (w *world) serveOrigin(names []string, wrap func(net.Listener) net.Listener) *origin {
	w.t.Helper()
	cert, err := w.ca.Issue(names...)
	if err != nil {
		w.t.Fatal(err)
	}
	ln := listenLoopback443(w.t)
	o := &origin{addr: addrOf(ln)}
	if wrap != nil {
		ln = wrap(ln)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			o.mu.Lock()
			o.requests = append(o.requests, r.Clone(context.Background()))
			o.mu.Unlock()
			fmt.Fprintf(rw, "hello from %s", r.Host)
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelDebug),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	w.t.Cleanup(func() { _ = srv.Close() })
	for _, n := range names {
		w.dns.SetA(n, o.addr.Addr())
	}
	return o
}

func (o *origin) seen() []*http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*http.Request(nil), o.requests...)
}

// sink is a listener on a loopback address that the gateway must never reach: it only counts.
type sink struct {
	addr    netip.AddrPort
	accepts atomic.Int64
}

func (w *world) sink() *sink {
	w.t.Helper()
	ln := listenLoopback443(w.t)
	s := &sink{addr: addrOf(ln)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			_ = c.Close()
		}
	}()
	w.t.Cleanup(func() { _ = ln.Close() })
	return s
}

// writePolicy writes endpoints.yaml text into the world's directory.
func (w *world) writePolicy(text string) string {
	w.t.Helper()
	path := filepath.Join(w.dir, "endpoints.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// proc is a gateway server running in-process, as `scpgate serve` runs it.
type proc struct {
	srv       *server.Server
	addr      string
	addrs     server.Addresses // every bound listener: Proxy, TLS, Admin
	auditPath string
	trail     *auditTrail
	done      chan error
}

// gateway starts a full server.Server (real dialer, real resolver, audit file) on 127.0.0.1:0.
func (w *world) gateway(policyText string, allowRanges ...string) *proc {
	w.t.Helper()
	return w.gatewayWith(policyText, nil, allowRanges...)
}

// gatewayWith is gateway with a hook to adjust the configuration (auth, TLS, limits, admin...)
// before the server starts. The policy file is <world dir>/endpoints.yaml.
func (w *world) gatewayWith(policyText string, adjust func(*server.Config), allowRanges ...string) *proc {
	w.t.Helper()
	cfg := server.Defaults()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Policy = w.writePolicy(policyText)
	cfg.DNS.Servers = []string{w.dns.Addr()}
	cfg.AllowRanges = allowRanges
	cfg.Audit.Path = filepath.Join(w.dir, "audit.log")
	cfg.Timeouts.Drain = 5 * time.Second
	cfg.Admin = "127.0.0.1:0"
	if adjust != nil {
		adjust(&cfg)
	}
	trail := newAuditTrail()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, w.log, server.WithAuditObserver(trail.observe))
	if err != nil {
		cancel()
		w.t.Fatal(err)
	}
	p := &proc{srv: srv, auditPath: cfg.Audit.Path, trail: trail, done: make(chan error, 1), addrs: srv.Addrs()}
	if len(p.addrs.Proxy) > 0 {
		p.addr = p.addrs.Proxy[0]
	}
	go func() { p.done <- srv.Run(ctx) }()
	w.t.Cleanup(func() {
		cancel()
		if err := <-p.done; err != nil {
			w.t.Errorf("gateway Run: %v", err)
		}
	})
	return p
}

// inProcess builds a bare Gateway with an injected dialer, served on 127.0.0.1:0.
func (w *world) inProcess(policyText string, dial gateway.DialFunc, allow ...netip.Prefix) string {
	w.t.Helper()
	pol, err := policy.Parse("endpoints.yaml", []byte(policyText))
	if err != nil {
		w.t.Fatal(err)
	}
	res, err := resolver.New(resolver.Config{Servers: []string{w.dns.Addr()}})
	if err != nil {
		w.t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Options{Policy: pol, Resolver: res, Guard: netguard.New(allow), Dial: dial, Logger: w.log})
	if err != nil {
		w.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = gw.Serve(ctx, ln); close(done) }()
	w.t.Cleanup(func() { cancel(); <-done; _ = gw.Close() })
	return ln.Addr().String()
}

// failDial is a dialer that fails the test if it is ever called: proof that no packet left.
func failDial(t *testing.T) gateway.DialFunc {
	return func(_ context.Context, network, address string) (net.Conn, error) {
		t.Errorf("the gateway dialed %s %s; it must not dial at all", network, address)
		return nil, errors.New("dial forbidden in this test")
	}
}

// httpClient is Go's net/http going through the gateway at proxyAddr, trusting the test CA. It
// records the CONNECT answer so a test can read the status and X-Scpgate-Reason of a denial.
type connectRecord struct {
	mu     sync.Mutex
	status int
	reason string
}

func (w *world) httpClient(proxyAddr string) (*http.Client, *connectRecord) {
	rec := &connectRecord{}
	tr := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr}),
		TLSClientConfig: &tls.Config{RootCAs: w.ca.Pool(), MinVersion: tls.VersionTLS12},
		OnProxyConnectResponse: func(_ context.Context, _ *url.URL, _ *http.Request, res *http.Response) error {
			rec.mu.Lock()
			rec.status, rec.reason = res.StatusCode, res.Header.Get("X-Scpgate-Reason")
			rec.mu.Unlock()
			return nil
		},
		DisableKeepAlives: true,
	}
	w.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}, rec
}

func (r *connectRecord) get() (int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status, r.reason
}

// curlResult is what curl said about one request through the proxy.
type curlResult struct {
	exit        int
	code        string // final HTTP status of the origin ("000" when none)
	connectCode string // the proxy's answer to CONNECT
	headers     string // every header block curl saw, the CONNECT answer included
	body        string
	stderr      string
}

func (w *world) curl(args ...string) curlResult {
	w.t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		w.t.Fatal("curl is required for the integration tests: apt-get install curl (make test installs it)")
	}
	hdr := filepath.Join(w.t.TempDir(), "headers")
	body := filepath.Join(w.t.TempDir(), "body")
	full := append([]string{"-sS", "--max-time", "15", "--noproxy", "", "-D", hdr, "-o", body, "-w", "%{http_code} %{http_connect}"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", full...)
	cmd.Env = append(os.Environ(), "http_proxy=", "https_proxy=", "HTTPS_PROXY=", "ALL_PROXY=", "all_proxy=", "NO_PROXY=")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := curlResult{stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.exit = ee.ExitCode()
	} else if err != nil {
		w.t.Fatalf("curl: %v", err)
	}
	codes := strings.Fields(out.String())
	if len(codes) == 2 {
		res.code, res.connectCode = codes[0], codes[1]
	}
	h, _ := os.ReadFile(hdr)
	b, _ := os.ReadFile(body)
	res.headers, res.body = string(h), string(b)
	return res
}

// rawRequest writes raw bytes to the proxy and returns its response head (status and headers).
func rawRequest(t *testing.T, proxyAddr string, raw string) (*http.Response, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return nil, err
	}
	return http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
}

// auditRecord is the audit line as the tests read it.
type auditRecord = audit.Record

// auditTrail collects what a gateway audited and lets a test wait for a record, as an event.
type auditTrail struct {
	mu      sync.Mutex
	records []audit.Record
	changed chan struct{}
}

func newAuditTrail() *auditTrail { return &auditTrail{changed: make(chan struct{})} }

func (a *auditTrail) observe(r audit.Record) {
	a.mu.Lock()
	a.records = append(a.records, r)
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

// waitAudit returns every record matching pred once at least one exists; it fails the test if
// none arrives within waitTimeout.
func waitAudit(t *testing.T, p *proc, pred func(auditRecord) bool) []auditRecord {
	t.Helper()
	return waitAuditN(t, p, 1, pred)
}

// waitAuditN waits until at least n records match pred and returns them all.
func waitAuditN(t *testing.T, p *proc, n int, pred func(auditRecord) bool) []auditRecord {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for range maxWakeups {
		p.trail.mu.Lock()
		var out []auditRecord
		for _, r := range p.trail.records {
			if pred(r) {
				out = append(out, r)
			}
		}
		changed := p.trail.changed
		p.trail.mu.Unlock()
		if len(out) >= n {
			return out
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%d matching audit record(s) within %s, want %d", len(out), waitTimeout, n)
		}
	}
	t.Fatalf("gave up waiting for audit records after %d wake-ups", maxWakeups)
	return nil
}
