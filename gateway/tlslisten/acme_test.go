package tlslisten

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/scpgate/scpgate/sim/pebblesim"
)

// freePort returns a loopback TCP port that was free a moment ago, for certmagic's challenge
// listeners (which take a port number, not a listener).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startPebble(t *testing.T) (*pebblesim.Pebble, string) {
	t.Helper()
	pebblesim.SetEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	p, err := pebblesim.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	rootsFile := filepath.Join(t.TempDir(), "acme-endpoint-ca.pem")
	writeAtomic(t, rootsFile, p.TLSRootsPEM())
	return p, rootsFile
}

func acmeConfig(t *testing.T, p *pebblesim.Pebble, rootsFile, storage string, domains ...string) Config {
	t.Helper()
	log, _ := testLogger(t)
	return Config{
		Logger: log,
		ACME: &ACMEConfig{
			DirectoryURL:     p.DirectoryURL(),
			TrustedRootsFile: rootsFile,
			Email:            "ops@scpgate.test",
			Domains:          domains,
			StorageDir:       storage,
			ListenHost:       "127.0.0.1",
			AltHTTPPort:      freePort(t),
			AltTLSALPNPort:   freePort(t),
		},
	}
}

func TestACMEWithPebble(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		// Forced by the libraries (see the package report): Pebble's VA task loop, certmagic's
		// per-CA rate limiter, and certmagic's lock-file refresher (exits within 5 s).
		goleak.IgnoreTopFunction(pebblesim.LeakedGoroutine),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	)
	// If certmagic used the environment's proxy, every ACME request would go here and fail.
	// (Go never proxies loopback destinations, so this guards only non-loopback CAs; the
	// issuer's proxy function is set explicitly regardless.)
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")

	p, rootsFile := startPebble(t)
	rootPEM, err := p.IssuerRootPEM()
	if err != nil {
		t.Fatal(err)
	}
	issuerRoots := x509.NewCertPool()
	if !issuerRoots.AppendCertsFromPEM(rootPEM) {
		t.Fatal("issuer root is not PEM")
	}
	storage := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	m, err := New(ctx, acmeConfig(t, p, rootsFile, storage, "gateway.scpgate.test", "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Pebble issued 2 certificates in %s", time.Since(start).Round(time.Millisecond))
	defer m.Close()

	ln, err := m.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, ln)
	defer stop()

	var serial string
	t.Run("sni, client trusts only Pebble's root", func(t *testing.T) {
		st, err := dial(ln.Addr().String(), &tls.Config{RootCAs: issuerRoots, ServerName: "gateway.scpgate.test"})
		if err != nil {
			t.Fatal(err)
		}
		if st.Version < tls.VersionTLS12 || st.NegotiatedProtocol != "" && st.NegotiatedProtocol != "http/1.1" {
			t.Fatalf("version %x ALPN %q", st.Version, st.NegotiatedProtocol)
		}
		leaf := st.PeerCertificates[0]
		if !strings.HasPrefix(leaf.Issuer.CommonName, "Pebble Intermediate CA") {
			t.Fatalf("issuer %q, want Pebble's intermediate", leaf.Issuer.CommonName)
		}
		serial = leaf.SerialNumber.String()
	})
	t.Run("ip literal, no SNI", func(t *testing.T) {
		if _, err := dial(ln.Addr().String(), &tls.Config{RootCAs: issuerRoots, ServerName: "127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the ACME endpoint's CA is not the issuer", func(t *testing.T) {
		endpointRoots := x509.NewCertPool()
		endpointRoots.AppendCertsFromPEM(p.TLSRootsPEM())
		if _, err := dial(ln.Addr().String(), &tls.Config{RootCAs: endpointRoots, ServerName: "gateway.scpgate.test"}); err == nil {
			t.Fatal("handshake verified against the ACME endpoint's CA")
		}
	})
	t.Run("second instance shares the storage and the certificate", func(t *testing.T) {
		// Pebble is gone for this one: the certificate must come from storage alone.
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		m2, err := New(ctx, acmeConfig(t, p, rootsFile, storage, "gateway.scpgate.test", "127.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		defer m2.Close()
		ln2, err := m2.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer serve(t, ln2)()
		st, err := dial(ln2.Addr().String(), &tls.Config{RootCAs: issuerRoots, ServerName: "gateway.scpgate.test"})
		if err != nil {
			t.Fatal(err)
		}
		if got := st.PeerCertificates[0].SerialNumber.String(); got != serial {
			t.Fatalf("second instance serial %s, first %s: not shared", got, serial)
		}
		if err := m2.Reload(); err != nil {
			t.Fatalf("Reload in ACME mode: %v", err)
		}
	})
}

func TestACMEUnreachableCA(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	)
	// A closed loopback port: nothing listens, so the directory fetch is refused at once.
	port := freePort(t)
	log, _ := testLogger(t)
	cfg := Config{Logger: log, ACME: &ACMEConfig{
		DirectoryURL: "https://127.0.0.1:" + strconv.Itoa(port) + "/dir",
		Email:        "ops@scpgate.test",
		Domains:      []string{"gateway.scpgate.test"},
		StorageDir:   t.TempDir(),
		ListenHost:   "127.0.0.1",
		AltHTTPPort:  freePort(t),
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	m, err := New(ctx, cfg)
	if err == nil {
		m.Close()
		t.Fatal("New succeeded without a CA")
	}
	if !strings.Contains(err.Error(), "gateway.scpgate.test") {
		t.Fatalf("error does not name the domain: %v", err)
	}
	t.Logf("failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
}
