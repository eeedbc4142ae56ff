package integration

// Operational end-to-end checks (issue 4): reload under load, invalid reloads, limits, the SNI
// check and report mode, /metrics, and that no goroutine outlives a Server.
//
// The tunnel idle timeout is not tested here: Config.Validate refuses timeouts.idle below
// gateway.MinIdleTimeout (3m), and a Server is only built from a validated Config. The unit test
// gateway.TestTunnelIdleTimeout covers it on a Gateway with a 300ms idle timeout.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/scpgate/scpgate/gateway/server"
	"github.com/scpgate/scpgate/policy"
)

// opsPolicy allows one name; opsPolicyAdded is the same file with a second name.
const opsPolicy = `version: 1
groups:
  ops:
    description: test group
    doc: https://learn.microsoft.com/
    enabled: true
    hosts:
      - go.microsoft.com
`

const opsPolicyAdded = opsPolicy + "      - added.microsoft.com\n"

// opsPolicyBad has a pattern the loader refuses (a wildcard over a TLD); badLine is its line.
const (
	opsPolicyBad = opsPolicy + "      - \"*.com\"\n"
	badLine      = 9
)

// waitTimeout bounds every wait on an event in this file.
const waitTimeout = 15 * time.Second

// maxWakeups bounds the iterations of every wait loop (each one is woken by an event).
const maxWakeups = 1_000_000

// notifier is a broadcast "something changed": waiters take the current channel, check their
// condition, and block on the channel, which notify closes and replaces.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func newNotifier() *notifier { return &notifier{ch: make(chan struct{})} }

func (n *notifier) changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *notifier) notify() {
	n.mu.Lock()
	close(n.ch)
	n.ch = make(chan struct{})
	n.mu.Unlock()
}

// waitFor blocks until cond holds, re-checking it whenever n fires; it fails the test after
// waitTimeout.
func waitFor(t *testing.T, what string, n *notifier, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for range maxWakeups {
		ch := n.changed() // before cond: a change between the two is not lost
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
	}
	t.Fatalf("gave up waiting for %s after %d wake-ups", what, maxWakeups)
}

// reloadLog records the outcome of every reload attempt (server.WithReloadObserver).
type reloadLog struct {
	n    *notifier
	mu   sync.Mutex
	errs []error
}

func newReloadLog() *reloadLog { return &reloadLog{n: newNotifier()} }

func (l *reloadLog) observe(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
	l.n.notify()
}

// wait returns the first recorded outcome that satisfies pred, waiting for one.
func (l *reloadLog) wait(t *testing.T, what string, pred func(error) bool) error {
	t.Helper()
	var found error
	waitFor(t, what, l.n, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, err := range l.errs {
			if pred(err) {
				found = err
				return true
			}
		}
		return false
	})
	return found
}

// opsConfig is the configuration gatewayWith builds, with the policy written to
// <world dir>/endpoints.yaml.
func (w *world) opsConfig(policyText string, allowRanges ...string) server.Config {
	cfg := server.Defaults()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Policy = w.writePolicy(policyText)
	cfg.DNS.Servers = []string{w.dns.Addr()}
	cfg.AllowRanges = allowRanges
	cfg.Audit.Path = filepath.Join(w.dir, "audit.log")
	cfg.Timeouts.Drain = 5 * time.Second
	cfg.Admin = "127.0.0.1:0"
	return cfg
}

// startServer is gatewayWith's start-up with extra ServerOptions. stop cancels the server and
// returns Run's result; it may be called any number of times (cleanup calls it too).
func (w *world) startServer(cfg server.Config, opts ...server.Option) (p *proc, stop func() error) {
	w.t.Helper()
	trail := newAuditTrail()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, w.log, append([]server.Option{server.WithAuditObserver(trail.observe)}, opts...)...)
	if err != nil {
		cancel()
		w.t.Fatal(err)
	}
	p = &proc{srv: srv, auditPath: cfg.Audit.Path, trail: trail, done: make(chan error, 1), addrs: srv.Addrs()}
	if len(p.addrs.Proxy) > 0 {
		p.addr = p.addrs.Proxy[0]
	}
	go func() { p.done <- srv.Run(ctx) }()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-p.done:
			return err
		case <-time.After(waitTimeout + cfg.Timeouts.Drain):
			return errors.New("Run did not return")
		}
	})
	w.t.Cleanup(func() {
		if err := stop(); err != nil {
			w.t.Errorf("gateway Run: %v", err)
		}
	})
	return p, stop
}

// waitServing returns once p's Run is serving: its admin listener answers /readyz 200. Run
// starts watching the policy file before it serves, so an edit after this is seen.
func waitServing(t *testing.T, p *proc) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + p.addrs.Admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz: %s", resp.Status)
	}
}

// replaceFile writes text next to path and renames it over path, as editors and config
// management do.
func replaceFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func versionOf(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])
}

// statusError is a CONNECT the proxy did not answer 200.
type statusError struct {
	status int
	reason string
	header http.Header
}

func (e *statusError) Error() string {
	return fmt.Sprintf("CONNECT answered %d (%s)", e.status, e.reason)
}

// connectTunnel sends CONNECT target to the proxy and returns the connection once the proxy
// answered 200 (a *statusError otherwise). Safe to call from any goroutine.
func connectTunnel(proxyAddr, target string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		_ = c.Close()
		return nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		_ = c.Close()
		return nil, &statusError{status: resp.StatusCode, reason: resp.Header.Get("X-Scpgate-Reason"), header: resp.Header}
	}
	if n := br.Buffered(); n != 0 {
		_ = c.Close()
		return nil, fmt.Errorf("%d unexpected bytes after the 200", n)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// tunnelConn is TLS to an origin through a CONNECT tunnel, for HTTP/1.1 keep-alive requests.
type tunnelConn struct {
	raw net.Conn
	tls *tls.Conn
	br  *bufio.Reader
}

// openTLS tunnels to target and completes a TLS handshake with serverName, verified against
// the test CA.
func (w *world) openTLS(proxyAddr, target, serverName string) (*tunnelConn, error) {
	raw, err := connectTunnel(proxyAddr, target)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, &tls.Config{ServerName: serverName, RootCAs: w.ca.Pool(), MinVersion: tls.VersionTLS12})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, err
	}
	return &tunnelConn{raw: raw, tls: tc, br: bufio.NewReader(tc)}, nil
}

// get makes one GET on the tunnel and returns the status and body.
func (c *tunnelConn) get(host, path string) (int, string, error) {
	_ = c.raw.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.raw.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c.tls, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (c *tunnelConn) Close() error { return c.tls.Close() }

// mustGet is get that fails the test unless the origin answered 200 "hello from host".
func (c *tunnelConn) mustGet(t *testing.T, host string) {
	t.Helper()
	st, body, err := c.get(host, "/")
	if err != nil || st != 200 || body != "hello from "+host {
		t.Fatalf("GET through the tunnel: status %d body %q err %v", st, body, err)
	}
}

// getOnce makes one request with its own tunnel (net/http, keep-alives off) and checks the answer.
func getOnce(c *http.Client, host string) error {
	resp, err := c.Get("https://" + host + "/load")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || string(b) != "hello from "+host {
		return fmt.Errorf("%s: status %d body %q", host, resp.StatusCode, b)
	}
	return nil
}

// metricsView is a parsed /metrics scrape.
type metricsView struct {
	// sum adds up every series of the family name whose labels include match (pairs of name,
	// value), and says how many series it added.
	sum func(name string, match ...string) (float64, int)
}

// scrape reads /metrics from the admin listener and parses it with the Prometheus text parser.
func scrape(t *testing.T, adminAddr string) metricsView {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return metricsView{sum: func(name string, match ...string) (float64, int) {
		var total float64
		n := 0
		mf, ok := fams[name]
		if !ok {
			return 0, 0
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(match); i += 2 {
				if labels[match[i]] != match[i+1] {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				total += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				total += m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				total += m.GetUntyped().GetValue()
			}
			n++
		}
		return total, n
	}}
}

// value is sum for a family that must have at least one matching series.
func (v metricsView) value(t *testing.T, name string, match ...string) float64 {
	t.Helper()
	total, n := v.sum(name, match...)
	if n == 0 {
		t.Fatalf("/metrics has no series %s%v", name, match)
	}
	return total
}

// TestReloadUnderLoad: clients keep making TLS requests through new tunnels while the policy
// file is replaced (write and rename, as an editor does) with one that adds a name. The reload
// is seen as an event; no client sees an error; the new name works for new tunnels; a tunnel
// opened before the reload keeps working after it.
func TestReloadUnderLoad(t *testing.T) {
	const (
		clients      = 8
		maxPerClient = 400 // bounds each client's loop with the deadline below
		warmup       = 3 * clients
		afterReload  = 10 // requests each client makes once the reload is seen
	)
	w := newWorld(t)
	o := w.origin("go.microsoft.com", "added.microsoft.com")
	cfg := w.opsConfig(opsPolicy, netip.PrefixFrom(o.addr.Addr(), 32).String())
	cfg.Limits.RequestsPerSecond = 0 // every client here is 127.0.0.1
	reloads := newReloadLog()
	gw, _ := w.startServer(cfg, server.WithReloadObserver(reloads.observe))

	if _, err := connectTunnel(gw.addr, "added.microsoft.com:443"); !isStatus(err, 403, "no_rule") {
		t.Fatalf("the name to be added, before the reload: %v, want 403 no_rule", err)
	}
	old, err := w.openTLS(gw.addr, "go.microsoft.com:443", "go.microsoft.com")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	old.mustGet(t, "go.microsoft.com")

	var (
		reloaded atomic.Bool
		quit     atomic.Bool // a failed wait: the clients stop at once
		done     atomic.Int64
		progress = newNotifier()
		wg       sync.WaitGroup
		errMu    sync.Mutex
		errs     []error
		post     [clients]int // requests each client made after it saw the reload
		added    [clients]int // of which to the added name
	)
	deadline := time.Now().Add(60 * time.Second)
	httpClients := make([]*http.Client, clients)
	for i := range httpClients {
		httpClients[i], _ = w.httpClient(gw.addr)
	}
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < maxPerClient && time.Now().Before(deadline) && post[i] < afterReload && !quit.Load(); n++ {
				host := "go.microsoft.com"
				after := reloaded.Load()
				if after && n%2 == 0 {
					host = "added.microsoft.com"
				}
				if err := getOnce(httpClients[i], host); err != nil {
					errMu.Lock()
					errs = append(errs, fmt.Errorf("client %d request %d: %w", i, n, err))
					errMu.Unlock()
				}
				if after {
					post[i]++
					if host == "added.microsoft.com" {
						added[i]++
					}
				}
				done.Add(1)
				progress.notify()
			}
		}()
	}
	func() {
		// On a failed wait, let the clients finish (they are bounded) before the test ends.
		defer func() {
			if t.Failed() {
				quit.Store(true)
				wg.Wait()
			}
		}()
		waitFor(t, "the clients to warm up", progress, func() bool { return done.Load() >= warmup })
		waitServing(t, gw) // already implied by the requests served; stated for the reader
		path := filepath.Join(w.dir, "endpoints.yaml")
		replaceFile(t, path, opsPolicyAdded)
		want := versionOf(opsPolicyAdded)
		reloads.wait(t, "the reload of the new policy", func(err error) bool {
			return err == nil && gw.srv.Gateway().Policy().Version == want
		})
		reloaded.Store(true)
		before := done.Load()
		waitFor(t, "requests after the reload", progress, func() bool { return done.Load() >= before+clients })
	}()
	wg.Wait()

	if len(errs) > 0 {
		t.Fatalf("%d failed request(s) of %d; first: %v", len(errs), done.Load(), errs[0])
	}
	for i := range clients {
		if post[i] < afterReload || added[i] == 0 {
			t.Fatalf("client %d made %d request(s) after the reload (%d to the added name), want %d", i, post[i], added[i], afterReload)
		}
	}
	t.Logf("%d requests through new tunnels, none failed", done.Load())
	reloads.mu.Lock()
	for _, err := range reloads.errs {
		if err != nil {
			t.Errorf("a reload failed: %v", err)
		}
	}
	reloads.mu.Unlock()
	// The tunnel from before the reload was not touched by it.
	old.mustGet(t, "go.microsoft.com")
	// A new tunnel to the added name, outside the load.
	c, err := w.openTLS(gw.addr, "added.microsoft.com:443", "added.microsoft.com")
	if err != nil {
		t.Fatalf("the added name after the reload: %v", err)
	}
	c.mustGet(t, "added.microsoft.com")
	_ = c.Close()

	m := scrape(t, gw.addrs.Admin)
	if ok, bad := m.value(t, "scpgate_policy_reloads_total", "result", "ok"), m.value(t, "scpgate_policy_reloads_total", "result", "error"); ok != 2 || bad != 0 {
		t.Fatalf("scpgate_policy_reloads_total ok=%v error=%v, want 2 (start and reload) and 0", ok, bad)
	}
}

func isStatus(err error, status int, reason string) bool {
	var se *statusError
	return errors.As(err, &se) && se.status == status && se.reason == reason
}

// TestInvalidReloadKeepsOldPolicy: a policy edit that does not load leaves the old policy in
// force; the reload error names file:line:col, and the error counter says 1.
func TestInvalidReloadKeepsOldPolicy(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com")
	reloads := newReloadLog()
	gw, _ := w.startServer(w.opsConfig(opsPolicy, netip.PrefixFrom(o.addr.Addr(), 32).String()), server.WithReloadObserver(reloads.observe))
	oldVersion := gw.srv.Gateway().Policy().Version
	waitServing(t, gw)

	path := filepath.Join(w.dir, "endpoints.yaml")
	replaceFile(t, path, opsPolicyBad)
	err := reloads.wait(t, "the failed reload", func(err error) bool { return err != nil })

	var pe *policy.PosError
	if !errors.As(err, &pe) || pe.File != path || pe.Line != badLine || pe.Col < 1 {
		t.Fatalf("reload error %q (%#v): want a position in %s line %d", err, pe, path, badLine)
	}
	if !regexp.MustCompile(regexp.QuoteMeta(path) + `:` + strconv.Itoa(badLine) + `:\d+: `).MatchString(err.Error()) {
		t.Fatalf("reload error %q does not name file:line:col", err)
	}
	if v := gw.srv.Gateway().Policy().Version; v != oldVersion {
		t.Fatalf("policy version %s after a failed reload, want the old %s", v, oldVersion)
	}
	c, err := w.openTLS(gw.addr, "go.microsoft.com:443", "go.microsoft.com")
	if err != nil {
		t.Fatalf("the old policy's name after a failed reload: %v", err)
	}
	c.mustGet(t, "go.microsoft.com")
	_ = c.Close()
	waitAuditN(t, gw, 1, func(r auditRecord) bool { return r.Event == "close" })

	m := scrape(t, gw.addrs.Admin)
	if bad := m.value(t, "scpgate_policy_reloads_total", "result", "error"); bad != 1 {
		t.Fatalf(`scpgate_policy_reloads_total{result="error"} = %v, want 1`, bad)
	}
	if ok := m.value(t, "scpgate_policy_reloads_total", "result", "ok"); ok != 1 {
		t.Fatalf(`scpgate_policy_reloads_total{result="ok"} = %v, want 1 (the start)`, ok)
	}
}

// TestConnectionLimitPerClient: with max_connections_per_client 2, a third concurrent
// connection from 127.0.0.1 is answered 429 too_many_connections; closing one frees its slot.
func TestConnectionLimitPerClient(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com")
	gw := w.gatewayWith(opsPolicy, func(c *server.Config) { c.Limits.MaxConnectionsPerClient = 2 },
		netip.PrefixFrom(o.addr.Addr(), 32).String())

	var open []*tunnelConn
	defer func() {
		for _, c := range open {
			_ = c.Close()
		}
	}()
	for range 2 {
		c, err := w.openTLS(gw.addr, "go.microsoft.com:443", "go.microsoft.com")
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		c.mustGet(t, "go.microsoft.com")
	}
	resp, err := rawRequest(t, gw.addr, "CONNECT go.microsoft.com:443 HTTP/1.1\r\nHost: go.microsoft.com:443\r\n\r\n")
	if err != nil {
		t.Fatalf("third connection: %v", err)
	}
	if resp.StatusCode != 429 || resp.Header.Get("X-Scpgate-Reason") != "too_many_connections" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third connection: %d %q Retry-After %q, want 429 too_many_connections", resp.StatusCode, resp.Header.Get("X-Scpgate-Reason"), resp.Header.Get("Retry-After"))
	}
	rej := waitAudit(t, gw, func(r auditRecord) bool { return r.Reason == "too_many_connections" })
	if len(rej) != 1 || rej[0].Status != 429 || rej[0].Decision != "deny" {
		t.Fatalf("rejection audit: %+v", rej)
	}

	// Closing one tunnel frees its slot once the gateway has closed its side (audited).
	_ = open[0].Close()
	open = open[1:]
	waitAuditN(t, gw, 1, func(r auditRecord) bool { return r.Event == "close" })
	c, err := w.openTLS(gw.addr, "go.microsoft.com:443", "go.microsoft.com")
	if err != nil {
		t.Fatalf("a connection after one closed: %v", err)
	}
	open = append(open, c)
	c.mustGet(t, "go.microsoft.com")

	if n := scrape(t, gw.addrs.Admin).value(t, "scpgate_rejected_connections_total", "reason", "too_many_connections"); n != 1 {
		t.Fatalf("scpgate_rejected_connections_total{reason=too_many_connections} = %v, want 1", n)
	}
}

// TestRequestRateLimitPerClient: beyond its burst, a client gets 429 rate_limited with
// Retry-After. The rate is one request per 100 s, so no token comes back during the test.
func TestRequestRateLimitPerClient(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com")
	gw := w.gatewayWith(opsPolicy, func(c *server.Config) {
		c.Limits.RequestsPerSecond = 0.01
		c.Limits.Burst = 2
	}, netip.PrefixFrom(o.addr.Addr(), 32).String())
	hc, _ := w.httpClient(gw.addr)
	for i := range 2 {
		if err := getOnce(hc, "go.microsoft.com"); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	resp, err := rawRequest(t, gw.addr, "CONNECT go.microsoft.com:443 HTTP/1.1\r\nHost: go.microsoft.com:443\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	retry, convErr := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != 429 || resp.Header.Get("X-Scpgate-Reason") != "rate_limited" || convErr != nil || retry < 1 || retry > 100 {
		t.Fatalf("third request: %d %q Retry-After %q, want 429 rate_limited with 1..100 s", resp.StatusCode, resp.Header.Get("X-Scpgate-Reason"), resp.Header.Get("Retry-After"))
	}
	recs := waitAudit(t, gw, func(r auditRecord) bool { return r.Reason == "rate_limited" })
	if recs[0].Status != 429 || recs[0].Decision != "deny" {
		t.Fatalf("rate limit audit: %+v", recs[0])
	}
}

// originStats counts what reached a countingOrigin at the TCP level.
type originStats struct {
	n         *notifier
	accepted  atomic.Int64
	closed    atomic.Int64
	bytesRead atomic.Int64
}

type countingListener struct {
	net.Listener
	s *originStats
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.accepted.Add(1)
	l.s.n.notify()
	return &countingConn{Conn: c, s: l.s}, nil
}

type countingConn struct {
	net.Conn
	s    *originStats
	once sync.Once
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.s.bytesRead.Add(int64(n))
	return n, err
}

func (c *countingConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.s.closed.Add(1)
		c.s.n.notify()
	})
	return err
}

// countingOrigin is w.origin behind a listener that counts accepted connections, their closes,
// and every byte the origin read.
func (w *world) countingOrigin(names ...string) (*origin, *originStats) {
	w.t.Helper()
	st := &originStats{n: newNotifier()}
	o := w.serveOrigin(names, func(ln net.Listener) net.Listener { return countingListener{Listener: ln, s: st} })
	return o, st
}

// TestSNIMismatchCutsTunnel: after CONNECT to an allowed name, a ClientHello for another name,
// or plain text, gets the tunnel closed with sni_mismatch, and the origin reads not one byte of
// it (the gateway dialed it, and closed that connection unused). A matching name passes.
func TestSNIMismatchCutsTunnel(t *testing.T) {
	w := newWorld(t)
	o, st := w.countingOrigin("download.microsoft.com", "go.microsoft.com")
	gw := w.gateway(basePolicy, netip.PrefixFrom(o.addr.Addr(), 32).String())

	// settled waits until the origin has seen `want` connections, all of them closed.
	settled := func(t *testing.T, want int64) {
		t.Helper()
		waitFor(t, "the origin to see its connections closed", st.n, func() bool {
			return st.accepted.Load() == want && st.closed.Load() == want
		})
	}
	sniMismatch := func(sni string) func(auditRecord) bool {
		return func(r auditRecord) bool { return r.Reason == "sni_mismatch" && r.SNI == sni }
	}
	checkCut := func(t *testing.T, r auditRecord, sni string) {
		t.Helper()
		if r.Decision != "deny" || r.Event != "close" || r.Host != "download.microsoft.com" || r.SNI != sni ||
			r.Address != o.addr.String() || r.BytesDown != 0 || r.BytesUp != 0 {
			// bytes_up counts what reached the origin: nothing, for a cut tunnel.
			t.Fatalf("audit record for the cut tunnel: %+v", r)
		}
	}

	t.Run("other server name", func(t *testing.T) {
		_, err := w.openTLS(gw.addr, "download.microsoft.com:443", "go.microsoft.com")
		if err == nil || isTimeout(err) {
			t.Fatalf("TLS for go.microsoft.com in a tunnel to download.microsoft.com: %v, want the tunnel closed", err)
		}
		recs := waitAudit(t, gw, sniMismatch("go.microsoft.com"))
		checkCut(t, recs[0], "go.microsoft.com")
		settled(t, 1)
		if n := st.bytesRead.Load(); n != 0 {
			t.Fatalf("the origin read %d byte(s) of a cut tunnel", n)
		}
	})
	t.Run("plain text", func(t *testing.T) {
		c, err := connectTunnel(gw.addr, "download.microsoft.com:443")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: download.microsoft.com\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		back, err := io.ReadAll(c)
		if len(back) != 0 || isTimeout(err) {
			t.Fatalf("read %q (%v) from a tunnel that should be closed", back, err)
		}
		recs := waitAudit(t, gw, sniMismatch(""))
		checkCut(t, recs[0], "")
		settled(t, 2)
		if n := st.bytesRead.Load(); n != 0 {
			t.Fatalf("the origin read %d byte(s) of a cut tunnel", n)
		}
	})
	t.Run("matching name", func(t *testing.T) {
		c, err := w.openTLS(gw.addr, "download.microsoft.com:443", "download.microsoft.com")
		if err != nil {
			t.Fatal(err)
		}
		// A completed handshake means every byte arrived intact both ways (Finished MACs).
		c.mustGet(t, "download.microsoft.com")
		_ = c.Close()
		recs := waitAudit(t, gw, func(r auditRecord) bool { return r.Event == "close" && r.Reason == "" })
		if r := recs[0]; r.Decision != "allow" || r.SNI != "download.microsoft.com" || r.BytesUp == 0 || r.BytesDown == 0 {
			t.Fatalf("audit record: %+v", r)
		}
		if st.bytesRead.Load() == 0 || len(o.seen()) != 1 {
			t.Fatalf("the origin read %d bytes and %d request(s)", st.bytesRead.Load(), len(o.seen()))
		}
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestReportMode: a report-mode policy lets a denied request through and audits what enforce
// would have done: an unlisted name (policy-wide mode) and an SNI mismatch (group mode).
func TestReportMode(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com", "download.microsoft.com", "unlisted.example.net")
	allow := netip.PrefixFrom(o.addr.Addr(), 32).String()

	t.Run("policy mode: unlisted name", func(t *testing.T) {
		gw := w.gateway("mode: report\n"+opsPolicy, allow)
		c, err := w.openTLS(gw.addr, "unlisted.example.net:443", "unlisted.example.net")
		if err != nil {
			t.Fatalf("unlisted name in report mode: %v", err)
		}
		c.mustGet(t, "unlisted.example.net")
		_ = c.Close()
		recs := waitAudit(t, gw, func(r auditRecord) bool { return r.Event == "close" && r.Host == "unlisted.example.net" })
		if r := recs[0]; r.Decision != "would_deny" || r.Reason != "no_rule" || r.Mode != "report" || r.Status != 200 || r.BytesDown == 0 {
			t.Fatalf("audit record: %+v", r)
		}
	})
	t.Run("group mode: SNI mismatch", func(t *testing.T) {
		gw := w.gateway(`version: 1
groups:
  reporting:
    description: test group
    doc: https://learn.microsoft.com/
    enabled: true
    mode: report
    hosts:
      - download.microsoft.com
`, allow)
		c, err := w.openTLS(gw.addr, "download.microsoft.com:443", "go.microsoft.com")
		if err != nil {
			t.Fatalf("SNI mismatch in a report-mode group: %v", err)
		}
		c.mustGet(t, "go.microsoft.com")
		_ = c.Close()
		recs := waitAudit(t, gw, func(r auditRecord) bool { return r.Event == "close" })
		if r := recs[0]; r.Decision != "would_deny" || r.Reason != "sni_mismatch" || r.SNI != "go.microsoft.com" ||
			r.Group != "reporting" || r.Mode != "report" || r.BytesDown == 0 {
			t.Fatalf("audit record: %+v", r)
		}
	})
}

// TestMetricsCountRequests: /metrics on the admin listener parses as Prometheus text and counts
// exactly what the test did.
func TestMetricsCountRequests(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com", "example.org")
	gw := w.gateway(basePolicy, netip.PrefixFrom(o.addr.Addr(), 32).String())
	hc, rec := w.httpClient(gw.addr)
	for i := range 3 {
		if err := getOnce(hc, "go.microsoft.com"); err != nil {
			t.Fatalf("allowed request %d: %v", i, err)
		}
	}
	for i := range 2 {
		if err := getOnce(hc, "example.org"); err == nil {
			t.Fatalf("denied request %d passed", i)
		}
		if st, reason := rec.get(); st != 403 || reason != "no_rule" {
			t.Fatalf("denied request %d: %d %q", i, st, reason)
		}
	}
	waitAuditN(t, gw, 3, func(r auditRecord) bool { return r.Event == "close" && r.Decision == "allow" })
	waitAuditN(t, gw, 2, func(r auditRecord) bool { return r.Decision == "deny" })

	m := scrape(t, gw.addrs.Admin)
	if n := m.value(t, "scpgate_requests_total", "decision", "allow"); n != 3 {
		t.Fatalf(`scpgate_requests_total{decision="allow"} sums to %v, want 3`, n)
	}
	if n := m.value(t, "scpgate_requests_total", "decision", "allow", "group", "updates-and-servicing"); n != 3 {
		t.Fatalf(`scpgate_requests_total{decision="allow",group="updates-and-servicing"} = %v, want 3`, n)
	}
	if n := m.value(t, "scpgate_requests_total", "decision", "deny", "reason", "no_rule"); n != 2 {
		t.Fatalf(`scpgate_requests_total{decision="deny",reason="no_rule"} sums to %v, want 2`, n)
	}
	if n := m.value(t, "scpgate_requests_total"); n != 5 {
		t.Fatalf("scpgate_requests_total sums to %v, want 5", n)
	}
	if n := m.value(t, "scpgate_tunnels_open"); n != 0 {
		t.Fatalf("scpgate_tunnels_open = %v after every tunnel closed", n)
	}
	if up, down := m.value(t, "scpgate_tunnel_bytes_total", "direction", "up"), m.value(t, "scpgate_tunnel_bytes_total", "direction", "down"); up == 0 || down == 0 {
		t.Fatalf("scpgate_tunnel_bytes_total up %v down %v", up, down)
	}
	if n := m.value(t, "scpgate_draining"); n != 0 {
		t.Fatalf("scpgate_draining = %v", n)
	}
}

// TestNoGoroutineOutlivesServer: a full Server (NewServer + Run) serves tunnels, a denial and a
// scrape, and is cancelled with a tunnel still open; once Run returned, no goroutine it started
// is left.
func TestNoGoroutineOutlivesServer(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com")
	cfg := w.opsConfig(opsPolicy, netip.PrefixFrom(o.addr.Addr(), 32).String())
	cfg.Timeouts.Drain = 500 * time.Millisecond
	ignore := goleak.IgnoreCurrent() // the world's own goroutines (DNS, origin) stay

	gw, stop := w.startServer(cfg)
	for range 3 {
		c, err := w.openTLS(gw.addr, "go.microsoft.com:443", "go.microsoft.com")
		if err != nil {
			t.Fatal(err)
		}
		c.mustGet(t, "go.microsoft.com")
		_ = c.Close()
	}
	if _, err := connectTunnel(gw.addr, "example.org:443"); !isStatus(err, 403, "no_rule") {
		t.Fatalf("denied CONNECT: %v", err)
	}
	scrape(t, gw.addrs.Admin)
	waitAuditN(t, gw, 3, func(r auditRecord) bool { return r.Event == "close" })
	// One tunnel is still open at cancel: the drain deadline closes it.
	held, err := w.openTLS(gw.addr, "go.microsoft.com:443", "go.microsoft.com")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.mustGet(t, "go.microsoft.com")

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st, _, err := held.get("go.microsoft.com", "/"); err == nil {
		t.Fatalf("the held tunnel answered %d after Run returned", st)
	}
	_ = held.Close()
	goleak.VerifyNone(t, ignore)
}
