package simworld

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/scpgate/scpgate/gateway/resolver"
	"github.com/scpgate/scpgate/manifest"
	"github.com/scpgate/scpgate/sim/cloudsim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a world on a random DNS port and a random 127.x.y.z:443 (needs root, as the whole
// integration suite does) and closes it when the test ends.
func start(t *testing.T) *World {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := Start(ctx, Options{
		Dir:    filepath.Join(t.TempDir(), "world"),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		cancel()
		t.Fatalf("Start: %v (binding port 443 needs root or `unshare -rn`)", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

func TestStartClose(t *testing.T) {
	w := start(t)
	in := w.Info()
	cloud := netip.MustParseAddrPort(in.Cloud)
	if !cloud.Addr().IsLoopback() || cloud.Port() != 443 || cloud != w.Cloud.Addr() {
		t.Fatalf("cloud address %s (cloud says %s)", in.Cloud, w.Cloud.Addr())
	}
	d := netip.MustParseAddrPort(in.DNS)
	if !d.Addr().IsLoopback() || d.Port() == 0 {
		t.Fatalf("dns address %s", in.DNS)
	}
	if len(in.Hosts) == 0 || !filepath.IsAbs(in.CAFile) || !filepath.IsAbs(in.PublicKeyFile) {
		t.Fatalf("info: %+v", in)
	}

	// The CA file and the public key file are what a separate process gets: use them.
	pemData, err := os.ReadFile(in.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	keyData, err := os.ReadFile(in.PublicKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := manifest.LoadPublicKey(keyData)
	if err != nil || !pub.Equal(w.Cloud.PublicKey()) || manifest.KeyIDOf(pub) != in.KeyID {
		t.Fatalf("public key file: %v", err)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: poolFromPEM(t, pemData), MinVersion: tls.VersionTLS12},
		// Straight to the cloud's address, whatever the name: this test is about the cloud's
		// certificate, not about DNS.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, in.Cloud)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + cloudsim.HostDownload + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "scpgate cloudsim: "+cloudsim.HostDownload {
		t.Fatalf("GET /: %d %q", resp.StatusCode, body)
	}

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(w.InfoFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("world.json after Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func poolFromPEM(t *testing.T, pemData []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemData) {
		t.Fatal("ca.pem holds no certificate")
	}
	return p
}

func TestCNAMEChainsResolve(t *testing.T) {
	w := start(t)
	cloud := w.Cloud.Addr().Addr()
	res, err := resolver.New(resolver.Config{Servers: []string{w.DNS.Addr()}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Every served name ends at the cloud, through a chain or not.
	for _, h := range w.Info().Hosts {
		addrs, err := res.LookupNetIP(ctx, h)
		if err != nil || len(addrs) != 1 || addrs[0] != cloud {
			t.Errorf("%s: %v %v, want [%s]", h, addrs, err, cloud)
		}
	}

	// The chains are really there, in one answer, in order.
	for name, chain := range CNAMEChains() {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		c := &dns.Client{Timeout: 2 * time.Second}
		r, _, err := c.ExchangeContext(ctx, q, w.DNS.Addr())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		var a []netip.Addr
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *dns.CNAME:
				got = append(got, strings.TrimSuffix(rr.Target, "."))
			case *dns.A:
				ip, _ := netip.AddrFromSlice(rr.A)
				a = append(a, ip.Unmap())
				if rr.Hdr.Name != dns.Fqdn(chain[len(chain)-1]) {
					t.Errorf("%s: A record owned by %s", name, rr.Hdr.Name)
				}
			}
		}
		if !reflect.DeepEqual(got, chain) || len(a) != 1 || a[0] != cloud {
			t.Errorf("%s: chain %v addrs %v, want %v then %s", name, got, a, chain, cloud)
		}
	}

	// Traps: resolved only, never dialed.
	for name, want := range map[string]string{TrapPrivate: TrapPrivateAddr, TrapMetadata: TrapMetadataAddr} {
		addrs, err := res.LookupNetIP(ctx, name)
		if err != nil || len(addrs) != 1 || addrs[0].String() != want {
			t.Errorf("%s: %v %v, want [%s]", name, addrs, err, want)
		}
	}
	if addrs, err := res.LookupNetIP(ctx, TrapNXDOMAIN); !errors.Is(err, resolver.ErrNotFound) {
		t.Errorf("%s: %v %v, want NXDOMAIN", TrapNXDOMAIN, addrs, err)
	}
}

func TestInfoFileRoundTrip(t *testing.T) {
	w := start(t)
	got, err := ReadInfo(w.InfoFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := w.Info(); !reflect.DeepEqual(got, want) {
		t.Fatalf("world.json:\n%+v\nwant\n%+v", got, want)
	}
	if filepath.Base(w.InfoFile) != InfoFileName {
		t.Fatalf("info file %s", w.InfoFile)
	}
	// Only the three files (ReadDir sorts by name): no temporary file left by the atomic writes.
	ents, err := os.ReadDir(filepath.Dir(w.InfoFile))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{CAFileName, PublicKeyFileName, InfoFileName}; !reflect.DeepEqual(names, want) {
		t.Fatalf("files %v, want %v", names, want)
	}
	// Info returns a copy: changing it leaves the world's own alone.
	in := w.Info()
	in.Hosts[0] = "changed"
	in.CNAMEs[cloudsim.HostDownload][0] = "changed"
	if again := w.Info(); again.Hosts[0] == "changed" || again.CNAMEs[cloudsim.HostDownload][0] == "changed" {
		t.Fatal("Info shares memory with the world")
	}
}

func TestContextCancelClosesWorld(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := Start(ctx, Options{Dir: t.TempDir()})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cancel()
	// Close waits for what the cancellation started; goleak (TestMain) checks nothing is left.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	tests := []struct {
		name     string
		o        Options
		loopback bool // the error is ErrNotLoopback
	}{
		{"dns on all interfaces", Options{DNSAddr: "0.0.0.0:0"}, true},
		{"dns on a private address", Options{DNSAddr: "10.20.30.40:53"}, true},
		{"dns by name", Options{DNSAddr: "localhost:53"}, false},
		{"cloud on a private address", Options{CloudAddr: "10.20.30.40"}, true},
		{"cloud on all interfaces", Options{CloudAddr: "0.0.0.0:443"}, true},
		{"cloud on IPv6 unspecified", Options{CloudAddr: "[::]:443"}, true},
		{"cloud on another port", Options{CloudAddr: "127.0.0.1:8443"}, false},
		{"cloud by name", Options{CloudAddr: "localhost"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Dir = t.TempDir()
			w, err := Start(context.Background(), tt.o)
			if err == nil {
				_ = w.Close()
				t.Fatal("Start accepted it")
			}
			if errors.Is(err, ErrNotLoopback) != tt.loopback {
				t.Fatalf("error %v: ErrNotLoopback %v, want %v", err, errors.Is(err, ErrNotLoopback), tt.loopback)
			}
		})
	}
	if _, err := Start(context.Background(), Options{}); err == nil {
		t.Fatal("Start without Dir succeeded")
	}
}
