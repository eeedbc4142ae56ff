package gateway

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/gateway/netguard"
	"github.com/scpgate/scpgate/gateway/proxyauth"
	"github.com/scpgate/scpgate/policy"
)

// mapResolver answers from a fixed table and counts lookups.
type mapResolver struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	lookups map[string]int
	err     error
}

func (m *mapResolver) LookupNetIP(_ context.Context, host string) ([]netip.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lookups == nil {
		m.lookups = map[string]int{}
	}
	m.lookups[host]++
	if m.err != nil {
		return nil, m.err
	}
	a, ok := m.answers[host]
	if !ok {
		return nil, errors.New("nxdomain")
	}
	return a, nil
}

// recordingAudit keeps every record and signals each arrival.
type recordingAudit struct {
	mu   sync.Mutex
	recs []audit.Record
	ch   chan audit.Record
}

func newRecordingAudit() *recordingAudit { return &recordingAudit{ch: make(chan audit.Record, 64)} }

func (r *recordingAudit) Write(rec audit.Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	r.ch <- rec
}

func (r *recordingAudit) next(t *testing.T) audit.Record {
	t.Helper()
	select {
	case rec := <-r.ch:
		return rec
	case <-time.After(10 * time.Second):
		t.Fatal("no audit record within 10s")
		return audit.Record{}
	}
}

type testGateway struct {
	gw    *Gateway
	addr  string
	audit *recordingAudit
	res   *mapResolver
}

// startGateway serves a Gateway on 127.0.0.1:0 with a policy whose single group allows the given
// port and methods for the listed hosts, which resolve to 127.0.0.1.
func startGateway(t *testing.T, policyText string, hosts []string, mutate func(*Options)) *testGateway {
	t.Helper()
	pol, err := policy.Parse("test.yaml", []byte(policyText))
	if err != nil {
		t.Fatal(err)
	}
	res := &mapResolver{answers: map[string][]netip.Addr{}}
	for _, h := range hosts {
		res.answers[h] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	rec := newRecordingAudit()
	opts := Options{
		Policy:   pol,
		Resolver: res,
		Guard:    netguard.New([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}),
		Audit:    rec,
	}
	if mutate != nil {
		mutate(&opts)
	}
	gw, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = gw.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done; _ = gw.Close() })
	return &testGateway{gw: gw, addr: ln.Addr().String(), audit: rec, res: res}
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func groupPolicy(port, methods string) string {
	return fmt.Sprintf(`version: 1
groups:
  certificate-revocation:
    description: test
    doc: https://example.invalid/
    enabled: true
    ports: [%s]
    methods: [%s]
    sni: "off"
    hosts: [crl.microsoft.com, ocsp.digicert.com]
`, port, methods)
}

// TestPlainHTTPForwarding: an allowed GET is forwarded through goproxy, Proxy-Authorization is
// stripped, and the audit line carries the vetted address and byte counts.
func TestPlainHTTPForwarding(t *testing.T) {
	var seenAuth []string
	var mu sync.Mutex
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenAuth = append(seenAuth, r.Header.Get("Proxy-Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Encoding", "gzip") // must pass through untouched
		fmt.Fprint(w, "crl-bytes")
	}))
	defer origin.Close()
	port := portOf(t, origin.Listener.Addr().String())
	tg := startGateway(t, groupPolicy(port, "GET, HEAD"), []string{"crl.microsoft.com"}, nil)

	req, _ := http.NewRequest(http.MethodGet, "http://crl.microsoft.com:"+port+"/pki/crl.crl", nil)
	req.Header.Set("Proxy-Authorization", "Basic dTpw")
	resp, err := proxiedClient(tg.addr).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || string(body) != "crl-bytes" || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("status %d body %q headers %v", resp.StatusCode, body, resp.Header)
	}
	mu.Lock()
	if len(seenAuth) != 1 || seenAuth[0] != "" {
		t.Fatalf("origin saw Proxy-Authorization %q", seenAuth)
	}
	mu.Unlock()
	rec := tg.audit.next(t)
	if rec.Decision != "allow" || rec.Event != "close" || rec.Address != origin.Listener.Addr().String() ||
		rec.BytesDown != int64(len("crl-bytes")) || rec.Status != 200 || rec.Method != "GET" {
		t.Fatalf("audit %+v", rec)
	}
}

func proxiedClient(proxyAddr string) *http.Client {
	return &http.Client{
		// DisableCompression: the client must not add Accept-Encoding and decode on its own, so
		// the test sees exactly the bytes the gateway passed through.
		Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr}), DisableKeepAlives: true, DisableCompression: true},
		Timeout:   10 * time.Second,
	}
}

// TestStatusCodes: every early refusal has the documented status and reason, and no internal
// error text reaches the client.
func TestStatusCodes(t *testing.T) {
	// A port that nothing listens on: bind, note the port, close.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	deadPort := portOf(t, l.Addr().String())
	l.Close()
	tg := startGateway(t, groupPolicy(deadPort, "GET, HEAD, CONNECT"), []string{"crl.microsoft.com"}, func(o *Options) {
		o.Timeouts = DefaultTimeouts()
		o.Timeouts.Dial = 2 * time.Second
	})
	tg.res.answers["ocsp.digicert.com"] = []netip.Addr{netip.MustParseAddr("10.1.2.3")}
	tests := []struct {
		name   string
		raw    string
		status int
		reason string
	}{
		{"POST on a GET/HEAD group", "POST http://crl.microsoft.com:" + deadPort + "/ HTTP/1.1\r\nHost: crl.microsoft.com\r\nContent-Length: 0\r\n\r\n", 405, "method_not_allowed"},
		{"wrong port", "GET http://crl.microsoft.com:1/ HTTP/1.1\r\nHost: crl.microsoft.com\r\n\r\n", 403, "port_not_allowed"},
		{"unlisted", "GET http://example.org:" + deadPort + "/ HTTP/1.1\r\nHost: example.org\r\n\r\n", 403, "no_rule"},
		{"connection refused", "CONNECT crl.microsoft.com:" + deadPort + " HTTP/1.1\r\n\r\n", 502, "upstream_refused"},
		{"refused on plain HTTP", "GET http://crl.microsoft.com:" + deadPort + "/ HTTP/1.1\r\nHost: crl.microsoft.com\r\n\r\n", 502, "upstream_refused"},
		{"private answer", "CONNECT ocsp.digicert.com:" + deadPort + " HTTP/1.1\r\n\r\n", 403, "private_address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := raw(t, tg.addr, tt.raw)
			if resp.StatusCode != tt.status || resp.Header.Get("X-Scpgate-Reason") != tt.reason {
				t.Fatalf("got %d %q, want %d %q (body %q)", resp.StatusCode, resp.Header.Get("X-Scpgate-Reason"), tt.status, tt.reason, body)
			}
			for _, leak := range []string{"dial", "127.0.0.1", "10.1.2.3", "connect:", "refused:"} {
				if strings.Contains(body, leak) {
					t.Fatalf("body leaks internal detail %q: %q", leak, body)
				}
			}
		})
	}
}

func raw(t *testing.T, addr, request string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, request)
	method := strings.SplitN(request, " ", 2)[0]
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestDNSFailureStatus: a name that does not resolve is 502 dns_failure.
func TestDNSFailureStatus(t *testing.T) {
	tg := startGateway(t, groupPolicy("443", "CONNECT"), nil, nil)
	resp, _ := raw(t, tg.addr, "CONNECT crl.microsoft.com:443 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != 502 || resp.Header.Get("X-Scpgate-Reason") != "dns_failure" {
		t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("X-Scpgate-Reason"))
	}
}

// echoServer accepts one connection, echoes what it reads until EOF, then half-closes.
func echoServer(t *testing.T) (string, <-chan int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
		got <- n
	}()
	return ln.Addr().String(), got
}

func connect(t *testing.T, gwAddr, target string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", gwAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %s", target, resp.Status)
	}
	return c, br
}

// TestTunnelHalfClose: after the client half-closes, the upstream still delivers everything it
// has, and the byte counts in the audit line are exact.
func TestTunnelHalfClose(t *testing.T) {
	echo, got := echoServer(t)
	port := portOf(t, echo)
	tg := startGateway(t, groupPolicy(port, "CONNECT"), []string{"crl.microsoft.com"}, nil)
	c, br := connect(t, tg.addr, "crl.microsoft.com:"+port)
	payload := strings.Repeat("0123456789", 100_000) // 1 MB, enough to cross many splice calls
	go func() {
		io.WriteString(c, payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	back, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != payload {
		t.Fatalf("echoed %d bytes, want %d", len(back), len(payload))
	}
	if n := <-got; n != int64(len(payload)) {
		t.Fatalf("upstream read %d bytes", n)
	}
	rec := tg.audit.next(t)
	if rec.BytesUp != int64(len(payload)) || rec.BytesDown != int64(len(payload)) {
		t.Fatalf("audit bytes up %d down %d, want %d each", rec.BytesUp, rec.BytesDown, len(payload))
	}
}

// TestTunnelIdleTimeout: a tunnel with no traffic either way is closed after the idle timeout,
// while a tunnel that keeps talking outlives it.
func TestTunnelIdleTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	upstreamClosed := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c) // returns when the gateway closes the tunnel
		c.Close()
		close(upstreamClosed)
	}()
	port := portOf(t, ln.Addr().String())
	const idle = 300 * time.Millisecond
	tg := startGateway(t, groupPolicy(port, "CONNECT"), []string{"crl.microsoft.com"}, func(o *Options) {
		o.Timeouts = DefaultTimeouts()
		o.Timeouts.Idle = idle
	})
	start := time.Now()
	c, br := connect(t, tg.addr, "crl.microsoft.com:"+port)
	// Traffic for longer than the idle timeout keeps the tunnel open.
	for range 6 {
		if _, err := io.WriteString(c, "keepalive"); err != nil {
			t.Fatalf("tunnel closed while active after %v: %v", time.Since(start), err)
		}
		select {
		case <-upstreamClosed:
			t.Fatalf("tunnel closed while active after %v", time.Since(start))
		case <-time.After(idle / 3):
		}
	}
	// Then silence: the gateway closes it, and the client sees EOF.
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("read a byte from an idle tunnel")
	}
	<-upstreamClosed
	rec := tg.audit.next(t)
	if rec.Event != "close" || rec.BytesUp != int64(6*len("keepalive")) {
		t.Fatalf("audit %+v", rec)
	}
}

// TestShutdownClosesTunnels: Close ends open tunnels and waits for them; new CONNECTs get 503.
func TestShutdownClosesTunnels(t *testing.T) {
	echo, _ := echoServer(t)
	port := portOf(t, echo)
	tg := startGateway(t, groupPolicy(port, "CONNECT"), []string{"crl.microsoft.com"}, nil)
	c, br := connect(t, tg.addr, "crl.microsoft.com:"+port)
	io.WriteString(c, "x")
	if b, err := br.ReadByte(); err != nil || b != 'x' {
		t.Fatalf("echo: %v", err)
	}
	if n := tg.gw.OpenTunnels(); n != 1 {
		t.Fatalf("open tunnels %d", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := tg.gw.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with an open tunnel = %v, want deadline exceeded", err)
	}
	if n := tg.gw.OpenTunnels(); n != 0 {
		t.Fatalf("open tunnels after shutdown %d", n)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("tunnel still open after shutdown")
	}
	resp, _ := raw(t, tg.addr, "CONNECT crl.microsoft.com:"+port+" HTTP/1.1\r\n\r\n")
	if resp.StatusCode != 503 || resp.Header.Get("X-Scpgate-Reason") != "draining" {
		t.Fatalf("CONNECT while draining: %d %q", resp.StatusCode, resp.Header.Get("X-Scpgate-Reason"))
	}
}

// TestFailedLoginsAreSlowed: with authentication on, the second and later wrong passwords from
// one address wait longer and longer for their 407, then the address is locked out (429).
func TestFailedLoginsAreSlowed(t *testing.T) {
	hash, err := proxyauth.HashPassword("right", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	store, err := proxyauth.ParseHtpasswd("users", []byte("scp:"+hash+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	auth := proxyauth.NewLockout(proxyauth.NewBasic(proxyauth.BasicConfig{Store: store}), proxyauth.LockoutConfig{MaxFailures: 4, FailureWindow: time.Minute, Lockout: time.Minute})
	defer auth.Close()
	tg := startGateway(t, groupPolicy("443", "CONNECT"), []string{"crl.microsoft.com"}, func(o *Options) { o.Auth = auth })
	var mu sync.Mutex
	var waits []time.Duration
	tg.gw.wait = func(_ context.Context, d time.Duration) {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
	}
	bad := "CONNECT crl.microsoft.com:443 HTTP/1.1\r\nProxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("scp:wrong")) + "\r\n\r\n"
	for i, want := range []int{407, 407, 407, 407, 429} {
		resp, _ := raw(t, tg.addr, bad)
		if resp.StatusCode != want {
			t.Fatalf("attempt %d: status %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, 750 * time.Millisecond}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Fatalf("failed logins waited %v, want %v", waits, want)
	}
}

func TestFailureDelay(t *testing.T) {
	for n, want := range map[int]time.Duration{0: 0, 1: 0, 2: 250 * time.Millisecond, 5: time.Second, 9: 2 * time.Second, 100: 2 * time.Second} {
		if got := failureDelay(n); got != want {
			t.Errorf("failureDelay(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestCanonicalPath(t *testing.T) {
	tests := map[string]string{
		"http://h/pkiops/crl/a.crl":  "/pkiops/crl/a.crl",
		"http://h/pkiops/":           "/pkiops/",
		"http://h":                   "/",
		"http://h/a%20b":             "/a%20b",
		"http://h/pkiops/../etc":     "",
		"http://h/pkiops/./x":        "",
		"http://h//pkiops/x":         "",
		"http://h/pkiops/%2e%2e/etc": "",
		"http://h/pkiops/%2E%2E/etc": "",
		"http://h/pkiops%2fx":        "",
		"http://h/pkiops/%5c..%5cx":  "",
	}
	for raw, want := range tests {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := canonicalPath(u); got != want {
			t.Errorf("canonicalPath(%s) = %q, want %q", raw, got, want)
		}
	}
}

// TestPlainHTTPPathLimits: a host limited to /pkiops/ is forwarded only for that prefix, and a
// traversal out of it is refused before anything reaches the origin.
func TestPlainHTTPPathLimits(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		fmt.Fprint(w, "ok")
	}))
	defer origin.Close()
	port := portOf(t, origin.Listener.Addr().String())
	pol := strings.Replace(groupPolicy(port, "GET, HEAD"), "    hosts: [crl.microsoft.com, ocsp.digicert.com]\n",
		"    hosts: [crl.microsoft.com, www.microsoft.com]\n    paths: {www.microsoft.com: [/pkiops/]}\n", 1)
	tg := startGateway(t, pol, []string{"www.microsoft.com"}, nil)
	tests := []struct {
		path   string
		status int
	}{
		{"/pkiops/crl/MicSecSerCA2011_2011-10-18.crl", 200},
		{"/en-us/", 403},
		{"/pkiops/../en-us/", 403},
		{"/pkiops/%2e%2e/en-us/", 403},
	}
	for _, tt := range tests {
		resp, body := raw(t, tg.addr, "GET http://www.microsoft.com:"+port+tt.path+" HTTP/1.1\r\nHost: www.microsoft.com\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != tt.status {
			t.Fatalf("%s: status %d (%s), want %d", tt.path, resp.StatusCode, body, tt.status)
		}
		if tt.status == 403 && resp.Header.Get("X-Scpgate-Reason") != "path_not_allowed" {
			t.Fatalf("%s: reason %q", tt.path, resp.Header.Get("X-Scpgate-Reason"))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != "/pkiops/crl/MicSecSerCA2011_2011-10-18.crl" {
		t.Fatalf("origin saw %q; want only the /pkiops/ request", seen)
	}
}

// TestPlainHTTPUpstreamProtocolSwitch: an origin that answers a forwarded request with 101 must
// not turn plain HTTP forwarding into an unaudited raw tunnel (goproxy would try to hijack and
// panic): the client gets 502 and the exchange is audited.
func TestPlainHTTPUpstreamProtocolSwitch(t *testing.T) {
	tests := []struct {
		name     string
		request  string // extra request headers
		response string
	}{
		{"websocket", "Connection: Upgrade\r\nUpgrade: websocket\r\n",
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
		{"unrequested switch", "",
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, tt.response)
				_, _ = io.Copy(io.Discard, c) // hold the switched connection until the gateway closes it
			}()
			port := portOf(t, ln.Addr().String())
			tg := startGateway(t, groupPolicy(port, "GET, HEAD"), []string{"crl.microsoft.com"}, nil)
			resp, body := raw(t, tg.addr, "GET http://crl.microsoft.com:"+port+"/ HTTP/1.1\r\nHost: crl.microsoft.com:"+port+"\r\n"+tt.request+"\r\n")
			if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, "panic") {
				t.Fatalf("status %d body %q, want 502", resp.StatusCode, body)
			}
			// An upstream failure is a refusal like on the CONNECT path: one decision record.
			rec := tg.audit.next(t)
			if rec.Event != audit.EventDecision || rec.Status != http.StatusBadGateway || rec.Reason != string(policy.ReasonUpstreamRefused) {
				t.Fatalf("audit %+v", rec)
			}
		})
	}
}

// TestPartialTimeoutsGetDefaults: a Timeouts with only some fields set gets the default for each
// of the others; a zero dial timeout would otherwise give every dial an expired deadline.
func TestPartialTimeoutsGetDefaults(t *testing.T) {
	echo, _ := echoServer(t)
	port := portOf(t, echo)
	tg := startGateway(t, groupPolicy(port, "CONNECT"), []string{"crl.microsoft.com"}, func(o *Options) {
		o.Timeouts = Timeouts{Idle: 5 * time.Minute}
	})
	if got, want := tg.gw.opts.Timeouts, (Timeouts{Idle: 5 * time.Minute}).withDefaults(); got != want || got.Dial != DefaultTimeouts().Dial {
		t.Fatalf("timeouts %+v, want %+v", got, want)
	}
	c, br := connect(t, tg.addr, "crl.microsoft.com:"+port)
	io.WriteString(c, "x")
	if b, err := br.ReadByte(); err != nil || b != 'x' {
		t.Fatalf("echo through a gateway with partial timeouts: %v", err)
	}
}
