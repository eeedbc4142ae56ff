package tlslisten

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/scpgate/scpgate/gateway/filewatch"
	"github.com/scpgate/scpgate/internal/syncbuf"
	"github.com/scpgate/scpgate/sim/testca"
)

// waitFor bounds every wait on an event in these tests.
const waitFor = 15 * time.Second

func testLogger(t *testing.T) (*slog.Logger, *syncbuf.Buffer) {
	t.Helper()
	buf := &syncbuf.Buffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func newCA(t *testing.T, cn string) *testca.CA {
	t.Helper()
	ca, err := testca.New(cn)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *testca.CA, names ...string) tls.Certificate {
	t.Helper()
	c, err := ca.Issue(names...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// serve accepts on ln and completes each TLS handshake, so clients see the certificate. It
// returns a stop function that closes ln and waits for every goroutine it started.
func serve(t *testing.T, ln net.Listener) (stop func()) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(waitFor))
				if tc, ok := c.(*tls.Conn); ok {
					if tc.Handshake() == nil {
						// Wait for the client to hang up, so it can read our side of TLS 1.3.
						_, _ = io.Copy(io.Discard, tc)
					}
				}
			}()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = ln.Close()
			wg.Wait()
		})
	}
}

// dial does one handshake against addr and returns the connection state.
func dial(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: waitFor}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

func serialOf(st tls.ConnectionState) string {
	if len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].SerialNumber.String()
}

type staticEnv struct {
	dir               string
	certFile, keyFile string
	ca                *testca.CA
	m                 *Manager
	addr              string
	reloads           chan error
	logs              *syncbuf.Buffer
	stop              func()
}

func newStaticEnv(t *testing.T, names ...string) *staticEnv {
	t.Helper()
	e := &staticEnv{dir: t.TempDir(), ca: newCA(t, "scpgate proxy test root"), reloads: make(chan error, 64)}
	var err error
	e.certFile, e.keyFile, err = testca.WriteCertFiles(e.dir, "proxy", issue(t, e.ca, names...))
	if err != nil {
		t.Fatal(err)
	}
	var log *slog.Logger
	log, e.logs = testLogger(t)
	e.m, err = New(context.Background(), Config{
		CertFile: e.certFile,
		KeyFile:  e.keyFile,
		Logger:   log,
		OnReload: func(err error) { e.reloads <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := e.m.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	stopServe := serve(t, ln)
	// The files are watched as the gateway process watches them: one filewatch.Watcher whose
	// changes go to FilesChanged.
	fw, err := filewatch.New(e.m.Files(), 100*time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() { fw.Run(ctx, e.m.FilesChanged); close(watchDone) }()
	e.stop = func() { cancel(); <-watchDone; stopServe() }
	return e
}

func (e *staticEnv) close(t *testing.T) {
	t.Helper()
	e.stop()
	if err := e.m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// waitReload waits for the watcher to report an attempt whose outcome satisfies want.
func (e *staticEnv) waitReload(t *testing.T, want func(error) bool) error {
	t.Helper()
	timeout := time.NewTimer(waitFor)
	defer timeout.Stop()
	for {
		select {
		case err := <-e.reloads:
			if want(err) {
				return err
			}
			t.Logf("reload attempt (not the one awaited): %v", err)
		case <-timeout.C:
			t.Fatalf("no matching reload within %s; log:\n%s", waitFor, e.logs.String())
			return nil
		}
	}
}

func TestStaticServeAndVersions(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	e := newStaticEnv(t, "proxy.scpgate.test", "127.0.0.1")
	defer e.close(t)
	want := e.m.static.hash
	if want == "" {
		t.Fatal("no certificate cached")
	}

	t.Run("sni", func(t *testing.T) {
		st, err := dial(e.addr, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "proxy.scpgate.test", NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if st.Version < tls.VersionTLS12 {
			t.Fatalf("version %x < TLS 1.2", st.Version)
		}
		if st.NegotiatedProtocol != "http/1.1" {
			t.Fatalf("ALPN %q, want http/1.1 (proxy listener must not negotiate h2)", st.NegotiatedProtocol)
		}
	})
	t.Run("tls12", func(t *testing.T) {
		st, err := dial(e.addr, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "proxy.scpgate.test", MaxVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		if st.Version != tls.VersionTLS12 {
			t.Fatalf("version %x, want TLS 1.2", st.Version)
		}
	})
	t.Run("ip literal, no SNI", func(t *testing.T) {
		// crypto/tls never sends an IP as SNI, so this is the "no SNI" path.
		if _, err := dial(e.addr, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("tls11 refused", func(t *testing.T) {
		_, err := dial(e.addr, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "proxy.scpgate.test",
			MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err == nil {
			t.Fatal("TLS 1.1 handshake succeeded")
		}
	})
	t.Run("unknown SNI gets the certificate", func(t *testing.T) {
		// The fallback serves the one certificate, so the client reports a name mismatch
		// rather than a handshake alert.
		_, err := dial(e.addr, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "other.scpgate.test"})
		var hostErr x509.HostnameError
		if !errors.As(err, &hostErr) {
			t.Fatalf("err = %v, want x509.HostnameError", err)
		}
	})
	t.Run("untrusted root", func(t *testing.T) {
		other := newCA(t, "someone else")
		_, err := dial(e.addr, &tls.Config{RootCAs: other.Pool(), ServerName: "proxy.scpgate.test"})
		var uaErr x509.UnknownAuthorityError
		if !errors.As(err, &uaErr) {
			t.Fatalf("err = %v, want x509.UnknownAuthorityError", err)
		}
	})
}

func TestStaticReloadOnRename(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	e := newStaticEnv(t, "proxy.scpgate.test")
	defer e.close(t)
	cfg := func() *tls.Config { return &tls.Config{RootCAs: e.ca.Pool(), ServerName: "proxy.scpgate.test"} }

	st, err := dial(e.addr, cfg())
	if err != nil {
		t.Fatal(err)
	}
	first := serialOf(st)

	// 1. A new pair, written by rename (key first, then certificate).
	second := issue(t, e.ca, "proxy.scpgate.test", "proxy2.scpgate.test")
	if _, _, err := testca.WriteCertFiles(e.dir, "proxy", second); err != nil {
		t.Fatal(err)
	}
	e.waitReload(t, func(err error) bool { return err == nil })
	st, err = dial(e.addr, cfg())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := serialOf(st), second.Leaf.SerialNumber.String(); got != want {
		t.Fatalf("after reload serial %s, want %s (first was %s)", got, want, first)
	}
	if n := len(e.m.cache.AllMatchingCertificates("proxy.scpgate.test")); n != 1 {
		t.Fatalf("%d cached certificates for the name, want 1 (old one not removed)", n)
	}

	// 2. A broken certificate file: the old certificate stays, the error is logged.
	writeAtomic(t, e.certFile, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"))
	if err := e.waitReload(t, func(err error) bool { return err != nil }); err == nil {
		t.Fatal("unreachable")
	}
	if !strings.Contains(e.logs.String(), "tls certificate reload failed") {
		t.Fatalf("reload failure not logged; log:\n%s", e.logs.String())
	}
	st, err = dial(e.addr, cfg())
	if err != nil {
		t.Fatalf("handshake after broken replacement: %v", err)
	}
	if got, want := serialOf(st), second.Leaf.SerialNumber.String(); got != want {
		t.Fatalf("after broken replacement serial %s, want the previous %s", got, want)
	}

	// 3. A certificate whose key is not the one on disk: refused too.
	third := issue(t, e.ca, "proxy.scpgate.test")
	mismatched := t.TempDir()
	certOnly, _, err := testca.WriteCertFiles(mismatched, "x", third)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(certOnly)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, e.certFile, pemBytes)
	e.waitReload(t, func(err error) bool { return err != nil && strings.Contains(err.Error(), "private key does not match") })
	if err := e.m.Reload(); err == nil {
		t.Fatal("Reload with a mismatched pair succeeded")
	}
	<-e.reloads // Reload reports to OnReload as well

	// 4. SIGHUP-style Reload after a fix that the watcher has not yet seen settles.
	if _, _, err := testca.WriteCertFiles(e.dir, "proxy", third); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	st, err = dial(e.addr, cfg())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := serialOf(st), third.Leaf.SerialNumber.String(); got != want {
		t.Fatalf("after Reload serial %s, want %s", got, want)
	}
}

func TestStaticNewErrors(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ca := newCA(t, "root")
	dir := t.TempDir()
	certFile, keyFile, err := testca.WriteCertFiles(dir, "a", issue(t, ca, "a.scpgate.test"))
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := testca.WriteCertFiles(dir, "b", issue(t, ca, "b.scpgate.test"))
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	writeAtomic(t, garbage, []byte("hello"))

	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"mismatched key", certFile, otherKey, "private key does not match"},
		{"not PEM", garbage, keyFile, "failed to find any PEM data"},
		{"missing key", certFile, filepath.Join(dir, "nope.key"), "key_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(context.Background(), Config{CertFile: tc.cert, KeyFile: tc.key})
			if err == nil {
				m.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f.pem")
	writeAtomic(t, file, []byte("x"))
	notPEM := filepath.Join(dir, "roots.txt")
	writeAtomic(t, notPEM, []byte("no certificates here"))
	good := func() *ACMEConfig {
		return &ACMEConfig{
			DirectoryURL: "https://127.0.0.1:14000/dir",
			Email:        "ops@scpgate.test",
			Domains:      []string{"gateway.scpgate.test", "127.0.0.1"},
			StorageDir:   filepath.Join(dir, "storage"),
		}
	}
	with := func(f func(a *ACMEConfig)) *ACMEConfig { a := good(); f(a); return a }

	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"static ok", Config{CertFile: file, KeyFile: file}, ""},
		{"acme ok", Config{ACME: good()}, ""},
		{"nothing", Config{}, "no certificate source"},
		{"both", Config{CertFile: file, KeyFile: file, ACME: good()}, "exactly one"},
		{"cert only", Config{CertFile: file}, "key_file is empty"},
		{"key only", Config{KeyFile: file}, "cert_file is empty"},
		{"missing file", Config{CertFile: filepath.Join(dir, "nope"), KeyFile: file}, "no such file"},
		{"directory", Config{CertFile: dir, KeyFile: file}, "is a directory"},
		{"no directory url", Config{ACME: with(func(a *ACMEConfig) { a.DirectoryURL = "" })}, "directory_url is empty"},
		{"http directory", Config{ACME: with(func(a *ACMEConfig) { a.DirectoryURL = "http://127.0.0.1/dir" })}, "https://"},
		{"no email", Config{ACME: with(func(a *ACMEConfig) { a.Email = "" })}, "email is empty"},
		{"bad email", Config{ACME: with(func(a *ACMEConfig) { a.Email = "Ops <ops@x>" })}, "plain address"},
		{"no domains", Config{ACME: with(func(a *ACMEConfig) { a.Domains = nil })}, "domains is empty"},
		{"wildcard", Config{ACME: with(func(a *ACMEConfig) { a.Domains = []string{"*.scpgate.test"} })}, "DNS-01"},
		{"port", Config{ACME: with(func(a *ACMEConfig) { a.Domains = []string{"gw.scpgate.test:443"} })}, "without scheme or port"},
		{"duplicate", Config{ACME: with(func(a *ACMEConfig) { a.Domains = []string{"a.test", "A.test"} })}, "listed twice"},
		{"no storage", Config{ACME: with(func(a *ACMEConfig) { a.StorageDir = "" })}, "storage_dir is empty"},
		{"storage is file", Config{ACME: with(func(a *ACMEConfig) { a.StorageDir = file })}, "not a directory"},
		{"roots not PEM", Config{ACME: with(func(a *ACMEConfig) { a.TrustedRootsFile = notPEM })}, "no PEM certificate"},
		{"roots missing", Config{ACME: with(func(a *ACMEConfig) { a.TrustedRootsFile = filepath.Join(dir, "nope") })}, "trusted_roots_file"},
		{"no challenge", Config{ACME: with(func(a *ACMEConfig) { a.DisableHTTPChallenge, a.DisableTLSALPNChallenge = true, true })}, "both challenge types"},
		{"bad port", Config{ACME: with(func(a *ACMEConfig) { a.AltHTTPPort = 70000 })}, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("valid, want error mentioning %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestStaticAsHTTPSProxy drives the listener the way proxy clients do: Go's Transport with an
// https:// proxy URL carrying credentials, and curl --proxy https://... --proxy-cacert. The
// "proxy" here only answers; nothing is forwarded anywhere.
func TestStaticAsHTTPSProxy(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	ca := newCA(t, "scpgate proxy test root")
	certFile, keyFile, err := testca.WriteCertFiles(dir, "proxy", issue(t, ca, "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := ca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(context.Background(), Config{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ln, err := m.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: waitFor,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil || r.ProtoMajor != 1 {
				http.Error(w, "want HTTP/1.x over TLS", http.StatusBadRequest)
				return
			}
			_, _ = io.WriteString(w, r.Header.Get("Proxy-Authorization")+" "+r.URL.String())
		}),
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close(); <-done }()

	proxyURL := &url.URL{Scheme: "https", User: url.UserPassword("alice", "s3cret"), Host: ln.Addr().String()}
	want := "Basic YWxpY2U6czNjcmV0 http://upstream.scpgate.test/x"

	t.Run("go", func(t *testing.T) {
		tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: waitFor}
		resp, err := c.Get("http://upstream.scpgate.test/x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != want {
			t.Fatalf("%d %q, want 200 %q", resp.StatusCode, body, want)
		}
	})
	t.Run("curl", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("curl not installed")
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		cmd := exec.CommandContext(ctx, curl, "-sS", "--max-time", "10",
			"--proxy", proxyURL.String(), "--proxy-cacert", caFile, "http://upstream.scpgate.test/x")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no *_proxy from the environment
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v: %s", err, out)
		}
		if string(out) != want {
			t.Fatalf("curl got %q, want %q", out, want)
		}
	})
}

// recordHandler passes every log record to a channel, so a test can wait for one.
type recordHandler struct{ ch chan slog.Record }

func (h recordHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error { h.ch <- r; return nil }
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h recordHandler) WithGroup(string) slog.Handler                 { return h }

// With static certificate files certmagic maintains nothing worth an info line: its "started
// background certificate maintenance" is logged at debug level only.
func TestStaticNoMaintenanceNoise(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	ca := newCA(t, "scpgate noise test root")
	certFile, keyFile, err := testca.WriteCertFiles(dir, "proxy", issue(t, ca, "gw.test"))
	if err != nil {
		t.Fatal(err)
	}
	records := make(chan slog.Record, 256)
	m, err := New(context.Background(), Config{CertFile: certFile, KeyFile: keyFile, Logger: slog.New(recordHandler{records})})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	timeout := time.NewTimer(waitFor)
	defer timeout.Stop()
	for {
		select {
		case r := <-records:
			if !strings.Contains(r.Message, "certificate maintenance") {
				continue
			}
			if r.Level != slog.LevelDebug {
				t.Fatalf("%q logged at %v, want debug", r.Message, r.Level)
			}
			return
		case <-timeout.C:
			t.Fatalf("certmagic's maintenance line never came (not even at debug) within %s", waitFor)
		}
	}
}
