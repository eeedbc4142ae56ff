package validate

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scpgate/scpgate/policy"
	"github.com/scpgate/scpgate/sim/testca"
)

// These tests drive Run against a small CONNECT proxy written here, which decides with the
// same policy and can be told to misbehave (answer without headers, never answer). The real
// gateway is exercised in integration/validate_test.go.

const unitPolicy = `version: 1
groups:
  svc:
    enabled: true
    sni: off
    hosts: [a.example.test, "*.b.example.test"]
  off:
    enabled: false
    hosts: [c.example.test]
`

// fakeProxy answers CONNECT like the gateway: 403 + X-Scpgate-Reason for a denial, 200 and a
// tunnel to origin for an allowed target. mode changes that.
type fakeProxy struct {
	t      *testing.T
	pol    *policy.Policy
	origin string
	mode   string // "", "bare403" (403 without headers), "hang" (never answers)
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	seq    int
	conns  []net.Conn
	// open and maxOpen count requests read and not yet answered: a client is waiting on each,
	// so they never exceed the probes in flight.
	open, maxOpen int
}

func startFakeProxy(t *testing.T, pol *policy.Policy, origin, mode string) *fakeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakeProxy{t: t, pol: pol, origin: origin, mode: mode, ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *fakeProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *fakeProxy) serve(c net.Conn) {
	defer c.Close()

	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.open++
	p.maxOpen = max(p.maxOpen, p.open)
	p.mu.Unlock()
	answered := sync.OnceFunc(func() { p.mu.Lock(); p.open--; p.mu.Unlock() })
	defer answered()
	if p.mode == "hang" {
		_, _ = io.Copy(io.Discard, br) // until the client gives up
		return
	}
	p.mu.Lock()
	p.seq++
	id := fmt.Sprintf("fake-%d", p.seq)
	p.mu.Unlock()
	refuse := func(status int, reason string) {
		answered()
		if p.mode == "bare403" {
			fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nX-Scpgate-Reason: %s\r\nX-Scpgate-Conn: %s\r\nContent-Length: 0\r\n\r\n", status, http.StatusText(status), reason, id)
	}
	if p.mode == "bare403" {
		refuse(http.StatusForbidden, "")
		return
	}
	if req.Method != http.MethodConnect {
		h, _ := policy.ParseHost(req.URL.Hostname())
		d := p.pol.Decide(policy.Request{Host: h, Port: 80, Method: req.Method})
		refuse(http.StatusForbidden, string(d.Reason))
		return
	}
	h, port, err := policy.ParseHostPort(req.Host)
	if err != nil {
		refuse(http.StatusBadRequest, "invalid_host")
		return
	}
	d := p.pol.Decide(policy.Request{Host: h, Port: port, Method: http.MethodConnect})
	if !d.Allow {
		refuse(http.StatusForbidden, string(d.Reason))
		return
	}
	up, err := net.Dial("tcp", p.origin)
	if err != nil {
		refuse(http.StatusBadGateway, "upstream_refused")
		return
	}
	defer up.Close()
	answered()
	fmt.Fprintf(c, "HTTP/1.1 200 Connection established\r\nX-Scpgate-Conn: %s\r\n\r\n", id)
	go func() { _, _ = io.Copy(up, br); _ = up.(*net.TCPConn).CloseWrite() }()
	_, _ = io.Copy(c, up)
}

// startOrigin serves TLS with a certificate from ca for every name.
func startOrigin(t *testing.T, ca *testca.CA) string {
	t.Helper()
	cert, err := ca.Issue("a.example.test", "*.b.example.test")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func unitConfig(t *testing.T, proxy string, ca *testca.CA) Config {
	t.Helper()
	pol, err := policy.Parse("unit.yaml", []byte(unitPolicy))
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Proxy:        proxy,
		Policy:       pol,
		RootCAs:      ca.Pool(),
		Derive:       DeriveOptions{Samples: map[string][]string{"*.b.example.test": {"x.b.example.test"}}, PrivateAddr: "127.0.0.2", MetadataAddr: "127.0.0.3"},
		CheckTimeout: 5 * time.Second,
		Timeout:      30 * time.Second,
		Rate:         -1,
		Resolve: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.9")}, nil
		},
	}
}

func byKind(rep *Report) map[string][]Result {
	out := map[string][]Result{}
	for _, r := range rep.Results {
		out[r.Kind] = append(out[r.Kind], r)
	}
	return out
}

func TestRunAllPass(t *testing.T) {
	ca, err := testca.New("unit root")
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := policy.Parse("unit.yaml", []byte(unitPolicy))
	origin := startOrigin(t, ca)
	px := startFakeProxy(t, pol, origin, "")
	cfg := unitConfig(t, px.url(), ca)
	cfg.Issuers = map[string][]string{"*": {"unit root"}}
	var calls, lastDone, lastTotal int
	var mu sync.Mutex
	cfg.Progress = func(done, total int) { mu.Lock(); calls++; lastDone, lastTotal = done, total; mu.Unlock() }
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Status != StatusPass {
			t.Errorf("%s: %s: %s", r.ID, r.Status, r.Detail)
		}
	}
	if rep.Outcome.Message != MsgAllPassed || rep.Outcome.ExitCode != 0 {
		t.Errorf("outcome %+v, want 11410 exit 0", rep.Outcome)
	}
	k := byKind(rep)
	if len(k["endpoint"]) != 1 || len(k["wildcard_sample"]) != 1 || len(k["ip_literal"]) != 1 {
		t.Fatalf("want one endpoint, one sample and one IP-literal check, got %v", rep.Results)
	}
	ep := k["endpoint"][0]
	if ep.TLS == nil || !ep.TLS.Verified || !ep.TLS.NameMatch || !ep.TLS.IssuerMatch || ep.TLS.Inspected || ep.HTTPStatus != 200 {
		t.Errorf("endpoint result %+v / TLS %+v", ep, ep.TLS)
	}
	if len(ep.TLS.Chain) != 1 || !strings.Contains(ep.TLS.Chain[0].Issuer, "unit root") || ep.TLS.Chain[0].DaysLeft < 1 {
		t.Errorf("chain %+v", ep.TLS.Chain)
	}
	if ep.Proxy.ConnID == "" {
		t.Error("no connection id recorded")
	}
	var names []string
	for _, s := range ep.Steps {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "proxy_tcp,connect,tls,http" {
		t.Errorf("steps %s", got)
	}
	ip := k["ip_literal"][0]
	if ip.Host != "127.0.0.9" || ip.ExpectReason != policy.ReasonIPLiteral {
		t.Errorf("ip literal check %+v", ip.Check)
	}
	// ConfigMgr reads a policy 403 as reachable: the disagreement is flagged.
	un := k["unlisted"][0]
	if !un.ConfigMgr.Reachable || !un.ConfigMgr.Disagrees || !strings.Contains(un.ConfigMgr.Reading, "403") {
		t.Errorf("unlisted ConfigMgr view %+v", un.ConfigMgr)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls == 0 || lastDone != len(rep.Results) || lastTotal != len(rep.Results) {
		t.Errorf("progress: %d calls, last %d/%d, want %d/%d", calls, lastDone, lastTotal, len(rep.Results), len(rep.Results))
	}
}

func TestRunBlockedNotByGateway(t *testing.T) {
	ca, _ := testca.New("unit root")
	pol, _ := policy.Parse("unit.yaml", []byte(unitPolicy))
	px := startFakeProxy(t, pol, startOrigin(t, ca), "bare403")
	rep, err := Run(context.Background(), unitConfig(t, px.url(), ca))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome.Message != MsgError || rep.Outcome.ExitCode != 2 {
		t.Errorf("outcome %+v: the endpoints are refused, want 11412", rep.Outcome)
	}
	for _, r := range rep.Results {
		if r.BlockedBy != "other" {
			t.Errorf("%s blocked_by %q, want other", r.ID, r.BlockedBy)
		}
		if r.Expect == ExpectBlock && (r.Status != StatusWarn || !strings.Contains(r.Detail, "blocked, but not by the gateway")) {
			t.Errorf("%s: %s %s", r.ID, r.Status, r.Detail)
		}
	}
}

func TestRunInspection(t *testing.T) {
	ca, _ := testca.New("unit root")
	other, _ := testca.New("Corporate Inspection CA")
	pol, _ := policy.Parse("unit.yaml", []byte(unitPolicy))
	px := startFakeProxy(t, pol, startOrigin(t, other), "")
	cfg := unitConfig(t, px.url(), ca)
	cfg.Issuers = map[string][]string{"*": {"unit root"}}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ep := byKind(rep)["endpoint"][0]
	if ep.Status != StatusFail || !strings.Contains(ep.Detail, "TLS inspection detected") || ep.TLS == nil || !ep.TLS.Inspected {
		t.Fatalf("endpoint %s: %s", ep.Status, ep.Detail)
	}
	if ep.ConfigMgr.Reachable {
		t.Error("ConfigMgr counts a TLS failure as a failure")
	}
	if rep.Outcome.Message != MsgError {
		t.Errorf("outcome %d", rep.Outcome.Message)
	}
}

func TestRunOverallTimeout(t *testing.T) {
	ca, _ := testca.New("unit root")
	pol, _ := policy.Parse("unit.yaml", []byte(unitPolicy))
	px := startFakeProxy(t, pol, startOrigin(t, ca), "hang")
	cfg := unitConfig(t, px.url(), ca)
	// The proxy never answers and each check may wait an hour: only the 300ms overall timeout
	// can end the run (a regression hangs until go test's -timeout), and every check is failed.
	cfg.Timeout, cfg.CheckTimeout, cfg.Concurrency = 300*time.Millisecond, time.Hour, 2
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Incomplete || rep.Outcome.Message != MsgError || rep.Summary.Fail != rep.Summary.Total {
		t.Errorf("incomplete=%v outcome=%d summary=%+v", rep.Incomplete, rep.Outcome.Message, rep.Summary)
	}
}

// TestRunConcurrencyBound: never more probes in flight than Concurrency, however many checks.
func TestRunConcurrencyBound(t *testing.T) {
	ca, _ := testca.New("unit root")
	pol, _ := policy.Parse("unit.yaml", []byte(unitPolicy))
	px := startFakeProxy(t, pol, startOrigin(t, ca), "")
	cfg := unitConfig(t, px.url(), ca)
	cfg.Concurrency = 2
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.maxOpen > 2 || px.maxOpen == 0 || px.seq < len(rep.Results) {
		t.Errorf("%d requests at most awaiting an answer (want 1..2), %d answers for %d checks", px.maxOpen, px.seq, len(rep.Results))
	}
}

// TestRunRate: probes start no faster than Rate per second.
func TestRunRate(t *testing.T) {
	ca, _ := testca.New("unit root")
	pol, _ := policy.Parse("unit.yaml", []byte(unitPolicy))
	px := startFakeProxy(t, pol, startOrigin(t, ca), "")
	cfg := unitConfig(t, px.url(), ca)
	cfg.Rate = 40
	start := time.Now()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// n probes in the first phase start at 0, 1/40 s, ..., (n-1)/40 s.
	first := len(rep.Results) - 1 // the IP-literal probe starts a phase of its own
	if least := time.Duration(first-1) * time.Second / 40; time.Since(start) < least {
		t.Errorf("%d probes in %v at 40 per second; want at least %v", first, time.Since(start), least)
	}
}

// TestRunMustPassOnly: only the endpoints are probed (no near misses, no IP literals, no
// lookups of its own), every connection goes through Config.Dial, and the outcome is 11410.
func TestRunMustPassOnly(t *testing.T) {
	ca, err := testca.New("unit root")
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := policy.Parse("unit.yaml", []byte(unitPolicy))
	px := startFakeProxy(t, pol, startOrigin(t, ca), "")
	cfg := unitConfig(t, px.url(), ca)
	cfg.MustPassOnly = true
	cfg.Resolve = func(context.Context, string) ([]netip.Addr, error) {
		t.Error("a must-pass-only run looked a name up")
		return nil, errors.New("no lookups")
	}
	var mu sync.Mutex
	var dialed []string
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Expect != ExpectPass || r.Status != StatusPass {
			t.Errorf("%s: expect %s, %s: %s", r.ID, r.Expect, r.Status, r.Detail)
		}
	}
	if rep.Outcome.Message != MsgAllPassed || len(rep.Results) != 2 {
		t.Fatalf("outcome %+v with %d results, want 11410 with the endpoint and the sample", rep.Outcome, len(rep.Results))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dialed) != len(rep.Results) {
		t.Fatalf("Config.Dial saw %v, want one dial per check", dialed)
	}
	for _, a := range dialed {
		if a != px.ln.Addr().String() {
			t.Errorf("dialed %s, want only the proxy %s", a, px.ln.Addr())
		}
	}
}
