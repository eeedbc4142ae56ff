package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scpgate/scpgate/gateway/proxyauth"
	"github.com/scpgate/scpgate/gateway/server"
	"github.com/scpgate/scpgate/sim/dnssim"
)

// connectOK is the status line of the gateway's answer to an allowed CONNECT (gateway/connect.go);
// X-Scpgate-Conn and the blank line follow.
const connectOK = "HTTP/1.1 200 Connection established\r\n"

// benchGateway is a full server.Server with authentication on, in front of a loopback TCP
// origin that accepts and closes. The harness's world needs a *testing.T, so benchmarks build
// their own.
type benchGateway struct {
	proxy      string // plain proxy listener
	anonReq    []byte // CONNECT without credentials (the group is anonymous)
	authReq    []byte // the same CONNECT with alice's Basic credentials
	originDone chan struct{}
}

func startBenchGateway(b *testing.B) *benchGateway {
	b.Helper()
	dir := b.TempDir()
	logger := slog.New(slog.DiscardHandler)

	origin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := &benchGateway{originDone: make(chan struct{})}
	go func() {
		defer close(g.originDone)
		for {
			c, err := origin.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	b.Cleanup(func() { _ = origin.Close(); <-g.originDone })
	target := origin.Addr().String()
	port := origin.Addr().(*net.TCPAddr).Port

	// An IP-literal target in an addresses group: no DNS lookup, and sni "off", so no TLS
	// handshake either; what is left is the gateway's own CONNECT setup. anonymous: true lets the
	// same group serve both kinds of request, so they differ only in Proxy-Authorization.
	policyFile := filepath.Join(dir, "endpoints.yaml")
	policyText := fmt.Sprintf(`version: 1
groups:
  bench:
    enabled: true
    anonymous: true
    sni: "off"
    ports: [%d]
    addresses: ["127.0.0.1/32"]
`, port)
	if err := os.WriteFile(policyFile, []byte(policyText), 0o644); err != nil {
		b.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	hash, err := proxyauth.HashPassword("alice-pw", bcrypt.MinCost)
	if err != nil {
		b.Fatal(err)
	}
	if err := proxyauth.AppendOrReplaceUser(htpasswd, "alice", hash); err != nil {
		b.Fatal(err)
	}

	// A loopback DNS server, so that even a stray lookup could not leave the machine.
	dns := dnssim.New(logger)
	dctx, dcancel := context.WithCancel(context.Background())
	if err := dns.Start(dctx, "127.0.0.1:0"); err != nil {
		dcancel()
		b.Fatal(err)
	}
	b.Cleanup(func() { dcancel(); _ = dns.Close() })

	cfg := server.Defaults()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Admin = ""
	cfg.Policy = policyFile
	cfg.DNS.Servers = []string{dns.Addr()}
	cfg.AllowRanges = []string{"127.0.0.1/32"}
	cfg.Audit.Path = filepath.Join(dir, "audit.log")
	cfg.Auth.Htpasswd = htpasswd
	cfg.Timeouts.Drain = 5 * time.Second
	// One client address opens tens of thousands of connections: the per-address rate and
	// connection limits would measure themselves, not CONNECT setup.
	cfg.Limits.RequestsPerSecond = 0
	cfg.Limits.MaxConnectionsPerClient = 0
	watch := false
	cfg.Watch = &watch

	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, logger)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("gateway Run: %v", err)
		}
	})
	g.proxy = srv.Addrs().Proxy[0]
	head := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	g.anonReq = []byte(head + "\r\n")
	cred := base64.StdEncoding.EncodeToString([]byte("alice:alice-pw"))
	g.authReq = []byte(head + "Proxy-Authorization: Basic " + cred + "\r\n\r\n")
	return g
}

// connect is one CONNECT setup: dial the gateway, send the request, read the 200, close.
func (g *benchGateway) connect(req []byte) error {
	c, err := net.DialTimeout("tcp", g.proxy, 5*time.Second)
	if err != nil {
		return err
	}
	// Close with RST: tens of thousands of client-side TIME_WAIT sockets to one gateway port
	// could exhaust the ephemeral range and stall the run.
	defer func() { _ = c.(*net.TCPConn).SetLinger(0); _ = c.Close() }()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write(req); err != nil {
		return err
	}
	// The head is the status line, X-Scpgate-Conn and the blank line; nothing follows it.
	var buf [256]byte
	n := 0
	for !bytes.HasSuffix(buf[:n], []byte("\r\n\r\n")) {
		if n == len(buf) {
			return fmt.Errorf("CONNECT answer head over %d bytes: %q", len(buf), buf[:n])
		}
		m, err := c.Read(buf[n:])
		if err != nil {
			return fmt.Errorf("reading the CONNECT answer: %w (got %q)", err, buf[:n])
		}
		n += m
	}
	if !bytes.HasPrefix(buf[:n], []byte(connectOK)) || !bytes.Contains(buf[:n], []byte("\r\nX-Scpgate-Conn: ")) {
		return fmt.Errorf("CONNECT answered %q, want %q and X-Scpgate-Conn", buf[:n], connectOK)
	}
	return nil
}

// BenchmarkConnectSetup measures CONNECT setup through one gateway with authentication on:
// anonymous (no Proxy-Authorization) and authenticated (credentials already verified, so each
// request is a cache hit and no bcrypt runs).
func BenchmarkConnectSetup(b *testing.B) {
	g := startBenchGateway(b)
	b.Run("anonymous", func(b *testing.B) {
		for b.Loop() {
			if err := g.connect(g.anonReq); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("authenticated", func(b *testing.B) {
		// The first request verifies with bcrypt and fills the cache; it is not measured.
		if err := g.connect(g.authReq); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := g.connect(g.authReq); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkConnectAuthOverhead times anonymous and authenticated CONNECT setups interleaved, so
// both see the same machine noise, and fails if authenticated setup costs more than 15% over
// anonymous. It keeps its own clock: testing.Benchmark inside a benchmark deadlocks (Go 1.26).
// One b.Loop iteration is one whole experiment; the framework's ns/op is its duration.
func BenchmarkConnectAuthOverhead(b *testing.B) {
	const (
		perRound = 2000
		rounds   = 3
		maxRatio = 1.15
	)
	g := startBenchGateway(b)
	if err := g.connect(g.authReq); err != nil { // warm the credential cache
		b.Fatal(err)
	}
	bestAnon, bestAuth := time.Duration(1<<62), time.Duration(1<<62)
	timed := func(req []byte) time.Duration {
		start := time.Now()
		if err := g.connect(req); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for b.Loop() {
		for range rounds {
			runtime.GC() // start every round from the same heap state
			var anon, auth time.Duration
			for i := range perRound {
				// Alternate which kind goes first, so neither always follows the other's teardown.
				if i%2 == 0 {
					anon += timed(g.anonReq)
					auth += timed(g.authReq)
				} else {
					auth += timed(g.authReq)
					anon += timed(g.anonReq)
				}
			}
			bestAnon = min(bestAnon, anon/perRound)
			bestAuth = min(bestAuth, auth/perRound)
		}
	}
	ratio := float64(bestAuth) / float64(bestAnon)
	b.ReportMetric(float64(bestAnon.Nanoseconds()), "anon-ns/connect")
	b.ReportMetric(float64(bestAuth.Nanoseconds()), "auth-ns/connect")
	b.ReportMetric(ratio, "auth_vs_anon")
	b.Logf("CONNECT setup, best of %d rounds of %d each: anonymous %d ns/op, authenticated %d ns/op, ratio %.3f",
		rounds, perRound, bestAnon.Nanoseconds(), bestAuth.Nanoseconds(), ratio)
	if ratio > maxRatio {
		b.Fatalf("authenticated CONNECT setup is %.3f× anonymous, over the %.2f budget", ratio, maxRatio)
	}
}
