package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scpgate/scpgate/gateway/proxyauth"
	"github.com/scpgate/scpgate/gateway/server"
	"github.com/scpgate/scpgate/gateway/tlslisten"
	"github.com/scpgate/scpgate/sim/pebblesim"
	"github.com/scpgate/scpgate/sim/testca"
)

// authPolicy: one group for every authenticated user, one for alice only, one open to anonymous
// clients even while authentication is on. httpPort > 0 adds a plain-HTTP group on that port.
func authPolicy(httpPort int) string {
	p := `version: 1
groups:
  updates:
    enabled: true
    hosts: [go.microsoft.com]
  alice-only:
    enabled: true
    users: [alice]
    hosts: [alice.microsoft.com]
  public:
    enabled: true
    anonymous: true
    hosts: [anon.microsoft.com]
`
	if httpPort > 0 {
		p += fmt.Sprintf(`  crl:
    enabled: true
    ports: [%d]
    methods: [GET]
    sni: "off"
    hosts: [crl.microsoft.com]
`, httpPort)
	}
	return p
}

// setUser writes user's bcrypt hash into the htpasswd file at path (MinCost: the tests check
// behaviour, not bcrypt's cost).
func setUser(t testing.TB, path, user, password string) {
	t.Helper()
	hash, err := proxyauth.HashPassword(password, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := proxyauth.AppendOrReplaceUser(path, user, hash); err != nil {
		t.Fatal(err)
	}
}

// authProc is a gateway with authentication on and a TLS proxy listener.
type authProc struct {
	*proc
	tlsAddr  string // 127.0.0.1:port of the TLS proxy listener
	htpasswd string
}

// authGateway starts a gateway with a TLS proxy listener whose certificate comes from static
// files issued by the world's CA (for 127.0.0.1 and a name), and an htpasswd file holding alice
// and bob. adjust runs after that setup, so a test can change limits or the certificate source.
func (w *world) authGateway(policyText string, adjust func(*server.Config), allowRanges ...string) *authProc {
	w.t.Helper()
	cert, err := w.ca.Issue("127.0.0.1", "proxy.scpgate.test")
	if err != nil {
		w.t.Fatal(err)
	}
	certFile, keyFile, err := testca.WriteCertFiles(w.dir, "proxy", cert)
	if err != nil {
		w.t.Fatal(err)
	}
	htpasswd := filepath.Join(w.dir, "htpasswd")
	setUser(w.t, htpasswd, "alice", "alice-pw")
	setUser(w.t, htpasswd, "bob", "bob-pw")
	p := w.gatewayWith(policyText, func(c *server.Config) {
		c.TLSListen = []string{"127.0.0.1:0"}
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
		c.Auth.Htpasswd = htpasswd
		if adjust != nil {
			adjust(c)
		}
	}, allowRanges...)
	if len(p.addrs.TLS) != 1 {
		w.t.Fatalf("TLS listeners %v, want one", p.addrs.TLS)
	}
	return &authProc{proc: p, tlsAddr: p.addrs.TLS[0], htpasswd: htpasswd}
}

// proxyAnswer is the gateway's answer to a CONNECT as net/http saw it.
type proxyAnswer struct {
	status                        int
	reason, challenge, retryAfter string
}

type proxyRecorder struct {
	mu   sync.Mutex
	last proxyAnswer
}

func (r *proxyRecorder) get() proxyAnswer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// tlsProxyClient is Go's net/http using the gateway's TLS listener as an https:// proxy, with
// user:pass in the proxy URL (nil user: no credentials). Transport.TLSClientConfig serves both
// handshakes, the proxy's and the origin's inside the tunnel, so its pool holds the one CA that
// signed both certificates.
func (w *world) tlsProxyClient(proxyAddr string, user *url.Userinfo) (*http.Client, *proxyRecorder) {
	return w.tlsProxyClientPool(proxyAddr, user, w.ca.Pool())
}

func (w *world) tlsProxyClientPool(proxyAddr string, user *url.Userinfo, pool *x509.CertPool) (*http.Client, *proxyRecorder) {
	rec := &proxyRecorder{}
	tr := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "https", Host: proxyAddr, User: user}),
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		OnProxyConnectResponse: func(_ context.Context, _ *url.URL, _ *http.Request, res *http.Response) error {
			rec.mu.Lock()
			rec.last = proxyAnswer{
				status:     res.StatusCode,
				reason:     res.Header.Get("X-Scpgate-Reason"),
				challenge:  res.Header.Get("Proxy-Authenticate"),
				retryAfter: res.Header.Get("Retry-After"),
			}
			rec.mu.Unlock()
			return nil
		},
		// Every request is a fresh proxy connection, so each one is authenticated on its own.
		DisableKeepAlives: true,
	}
	w.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}, rec
}

// get fetches url and returns the status and body; a refused CONNECT is status 0 (see the
// recorder for the proxy's answer).
func get(t *testing.T, c *http.Client, rawURL string) (int, string) {
	t.Helper()
	resp, err := c.Get(rawURL)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", rawURL, err)
	}
	return resp.StatusCode, string(b)
}

// headerValues returns every value of header name in curl's -D dump (all header blocks).
func headerValues(dump, name string) []string {
	var out []string
	for line := range strings.SplitSeq(dump, "\n") {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// assertNoProxyAuthorization: the gateway's credentials are never the origin's business.
func assertNoProxyAuthorization(t *testing.T, reqs []*http.Request) {
	t.Helper()
	for _, r := range reqs {
		if v, ok := r.Header["Proxy-Authorization"]; ok {
			t.Errorf("origin saw Proxy-Authorization %q on %s %s", v, r.Method, r.URL)
		}
	}
}

const wantChallenge = `Basic realm="scpgate"`

// TestProxyAuthOverTLSListener: with authentication on and clients using an https:// proxy URL,
// right credentials pass, missing or wrong ones get 407 with the Basic challenge, an anonymous
// group needs none, a group limited to alice refuses bob, and the origin never sees the
// credentials. Both curl and Go's net/http act as the client.
func TestProxyAuthOverTLSListener(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com", "alice.microsoft.com", "anon.microsoft.com")
	gw := w.authGateway(authPolicy(0), nil, netip.PrefixFrom(o.addr.Addr(), 32).String())
	curlVia := func(userpass string, target string) curlResult {
		args := []string{"--proxy", "https://" + gw.tlsAddr, "--proxy-cacert", w.caFile, "--cacert", w.caFile}
		if userpass != "" {
			args = append(args, "--proxy-user", userpass)
		}
		return w.curl(append(args, target)...)
	}

	t.Run("curl/right credentials", func(t *testing.T) {
		res := curlVia("alice:alice-pw", "https://go.microsoft.com/fwlink")
		if res.exit != 0 || res.connectCode != "200" || res.code != "200" || res.body != "hello from go.microsoft.com" {
			t.Fatalf("curl exit %d connect %s code %s body %q: %s", res.exit, res.connectCode, res.code, res.body, res.stderr)
		}
	})
	t.Run("curl/no credentials", func(t *testing.T) {
		res := curlVia("", "https://go.microsoft.com/")
		if res.connectCode != "407" {
			t.Fatalf("connect %s, want 407: %s", res.connectCode, res.stderr)
		}
		if ch := headerValues(res.headers, "Proxy-Authenticate"); len(ch) != 1 || ch[0] != wantChallenge {
			t.Fatalf("Proxy-Authenticate %q, want [%s]:\n%s", ch, wantChallenge, res.headers)
		}
		if r := headerValues(res.headers, "X-Scpgate-Reason"); len(r) != 1 || r[0] != "auth_required" {
			t.Fatalf("reason %q, want auth_required", r)
		}
	})
	t.Run("curl/wrong password", func(t *testing.T) {
		res := curlVia("alice:not-the-password", "https://go.microsoft.com/")
		if res.connectCode != "407" {
			t.Fatalf("connect %s, want 407: %s", res.connectCode, res.stderr)
		}
		if ch := headerValues(res.headers, "Proxy-Authenticate"); len(ch) != 1 || ch[0] != wantChallenge {
			t.Fatalf("Proxy-Authenticate %q, want [%s]", ch, wantChallenge)
		}
		if r := headerValues(res.headers, "X-Scpgate-Reason"); len(r) != 1 || r[0] != "auth_failed" {
			t.Fatalf("reason %q, want auth_failed", r)
		}
	})
	t.Run("curl/anonymous group", func(t *testing.T) {
		res := curlVia("", "https://anon.microsoft.com/")
		if res.connectCode != "200" || res.code != "200" || res.body != "hello from anon.microsoft.com" {
			t.Fatalf("connect %s code %s body %q: %s", res.connectCode, res.code, res.body, res.stderr)
		}
	})
	t.Run("curl/user not in group", func(t *testing.T) {
		res := curlVia("bob:bob-pw", "https://alice.microsoft.com/")
		if res.connectCode != "403" {
			t.Fatalf("connect %s, want 403: %s", res.connectCode, res.stderr)
		}
		if r := headerValues(res.headers, "X-Scpgate-Reason"); len(r) != 1 || r[0] != "user_not_allowed" {
			t.Fatalf("reason %q, want user_not_allowed", r)
		}
		if ok := curlVia("alice:alice-pw", "https://alice.microsoft.com/"); ok.code != "200" {
			t.Fatalf("alice refused from her own group: connect %s code %s: %s", ok.connectCode, ok.code, ok.stderr)
		}
	})

	t.Run("net/http/right credentials", func(t *testing.T) {
		c, rec := w.tlsProxyClient(gw.tlsAddr, url.UserPassword("alice", "alice-pw"))
		resp, err := c.Get("https://go.microsoft.com/manifest")
		if err != nil {
			t.Fatalf("%v (proxy answered %+v)", err, rec.get())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "hello from go.microsoft.com" {
			t.Fatalf("status %d body %q", resp.StatusCode, b)
		}
		if a := rec.get(); a.status != 200 {
			t.Fatalf("CONNECT answered %+v", a)
		}
	})
	for _, tt := range []struct {
		name   string
		user   *url.Userinfo
		target string
		want   proxyAnswer
	}{
		{"no credentials", nil, "https://go.microsoft.com/", proxyAnswer{status: 407, reason: "auth_required", challenge: wantChallenge}},
		{"wrong password", url.UserPassword("bob", "alice-pw"), "https://go.microsoft.com/", proxyAnswer{status: 407, reason: "auth_failed", challenge: wantChallenge}},
		{"unknown user", url.UserPassword("mallory", "x"), "https://go.microsoft.com/", proxyAnswer{status: 407, reason: "auth_failed", challenge: wantChallenge}},
		{"user not in group", url.UserPassword("bob", "bob-pw"), "https://alice.microsoft.com/", proxyAnswer{status: 403, reason: "user_not_allowed"}},
	} {
		t.Run("net/http/"+tt.name, func(t *testing.T) {
			c, rec := w.tlsProxyClient(gw.tlsAddr, tt.user)
			if st, _ := get(t, c, tt.target); st != 0 {
				t.Fatalf("request went through with %d", st)
			}
			if a := rec.get(); a != tt.want {
				t.Fatalf("CONNECT answered %+v, want %+v", a, tt.want)
			}
		})
	}
	t.Run("net/http/anonymous group", func(t *testing.T) {
		c, rec := w.tlsProxyClient(gw.tlsAddr, nil)
		if st, body := get(t, c, "https://anon.microsoft.com/"); st != 200 || body != "hello from anon.microsoft.com" {
			t.Fatalf("status %d body %q (proxy answered %+v)", st, body, rec.get())
		}
	})

	// curl and Go each fetched go.microsoft.com with alice's credentials, plus anonymous and
	// alice-only fetches: all went through a CONNECT that carried Proxy-Authorization (or none),
	// and the origin, which sees only the tunneled request, saw none of it.
	if n := len(o.seen()); n != 5 {
		t.Fatalf("origin saw %d requests, want 5", n)
	}
	assertNoProxyAuthorization(t, o.seen())
	recs := waitAudit(t, gw.proc, func(r auditRecord) bool {
		return r.Event == "close" && r.Host == "go.microsoft.com" && r.Status == 200
	})
	for _, r := range recs {
		if r.User != "alice" || r.Decision != "allow" {
			t.Fatalf("audit record of an authenticated tunnel: %+v", r)
		}
	}
	denied := waitAudit(t, gw.proc, func(r auditRecord) bool { return r.Reason == "user_not_allowed" })
	if r := denied[0]; r.User != "bob" || r.Status != 403 || r.Group != "alice-only" {
		t.Fatalf("user_not_allowed audit record: %+v", r)
	}
}

// TestProxyAuthPlainHTTPForwardStripsCredentials: on the plain-HTTP forwarding path (goproxy)
// the gateway receives the request with Proxy-Authorization and must remove it before the
// request reaches the origin.
func TestProxyAuthPlainHTTPForwardStripsCredentials(t *testing.T) {
	w := newWorld(t)
	var mu sync.Mutex
	var seen []*http.Request
	plain := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Clone(context.Background()))
		mu.Unlock()
		fmt.Fprint(rw, "crl bytes")
	}))
	t.Cleanup(plain.Close)
	ap := netip.MustParseAddrPort(strings.TrimPrefix(plain.URL, "http://"))
	w.dns.SetA("crl.microsoft.com", ap.Addr())
	gw := w.authGateway(authPolicy(int(ap.Port())), nil, netip.PrefixFrom(ap.Addr(), 32).String())
	target := fmt.Sprintf("http://crl.microsoft.com:%d/pki/mscorp/crl/example.crl", ap.Port())
	seenNow := func() []*http.Request {
		mu.Lock()
		defer mu.Unlock()
		return append([]*http.Request(nil), seen...)
	}

	t.Run("no credentials", func(t *testing.T) {
		res := w.curl("--proxy", "https://"+gw.tlsAddr, "--proxy-cacert", w.caFile, target)
		if res.code != "407" {
			t.Fatalf("code %s, want 407: %s", res.code, res.stderr)
		}
		if ch := headerValues(res.headers, "Proxy-Authenticate"); len(ch) != 1 || ch[0] != wantChallenge {
			t.Fatalf("Proxy-Authenticate %q", ch)
		}
		if n := len(seenNow()); n != 0 {
			t.Fatalf("origin saw %d requests for an unauthenticated client", n)
		}
	})
	t.Run("curl", func(t *testing.T) {
		res := w.curl("--proxy", "https://"+gw.tlsAddr, "--proxy-cacert", w.caFile, "--proxy-user", "alice:alice-pw", target)
		if res.exit != 0 || res.code != "200" || res.body != "crl bytes" {
			t.Fatalf("curl exit %d code %s body %q: %s", res.exit, res.code, res.body, res.stderr)
		}
	})
	t.Run("net/http", func(t *testing.T) {
		c, _ := w.tlsProxyClient(gw.tlsAddr, url.UserPassword("bob", "bob-pw"))
		if st, body := get(t, c, target); st != 200 || body != "crl bytes" {
			t.Fatalf("status %d body %q", st, body)
		}
	})
	reqs := seenNow()
	if len(reqs) != 2 {
		t.Fatalf("origin saw %d requests, want 2", len(reqs))
	}
	assertNoProxyAuthorization(t, reqs)
	recs := waitAudit(t, gw.proc, func(r auditRecord) bool { return r.Event == "close" && r.Host == "crl.microsoft.com" })
	for _, r := range recs {
		if r.Group != "crl" || r.Status != 200 || (r.User != "alice" && r.User != "bob") {
			t.Fatalf("audit record: %+v", r)
		}
	}
}

// TestProxyAuthLockout: MaxFailures wrong passwords lock the client address out; during the
// lockout even the right password gets 429 with Retry-After, and after it the right password
// works again.
func TestProxyAuthLockout(t *testing.T) {
	// Longer than the slowdown of the failures before it (250 ms + 500 ms), so the lockout is
	// still in force when the checks below run.
	const lockout = 2 * time.Second
	w := newWorld(t)
	o := w.origin("go.microsoft.com")
	gw := w.authGateway(authPolicy(0), func(c *server.Config) {
		c.Auth.Lockout.MaxFailures = 3
		c.Auth.Lockout.FailureWindow = time.Minute
		c.Auth.Lockout.Lockout = lockout
	}, netip.PrefixFrom(o.addr.Addr(), 32).String())
	const target = "https://go.microsoft.com/"
	wrong, wrongRec := w.tlsProxyClient(gw.tlsAddr, url.UserPassword("alice", "guess"))
	right, rightRec := w.tlsProxyClient(gw.tlsAddr, url.UserPassword("alice", "alice-pw"))

	var lastSent, lastAnswered time.Time
	for i := 1; i <= 3; i++ {
		lastSent = time.Now()
		if st, _ := get(t, wrong, target); st != 0 {
			t.Fatalf("wrong password %d went through with %d", i, st)
		}
		lastAnswered = time.Now()
		// The failure that reaches MaxFailures is still a wrong password: 407, not 429.
		if a := wrongRec.get(); a.status != 407 || a.reason != "auth_failed" {
			t.Fatalf("wrong password %d: %+v, want 407 auth_failed", i, a)
		}
	}
	// The lockout began when the gateway counted the third failure: between lastSent and
	// lastAnswered.
	for _, c := range []struct {
		name string
		c    *http.Client
		rec  *proxyRecorder
	}{{"right password", right, rightRec}, {"wrong password", wrong, wrongRec}} {
		if st, _ := get(t, c.c, target); st != 0 {
			t.Fatalf("%s during the lockout went through with %d", c.name, st)
		}
		// Retry-After is the rest of the lockout in whole seconds, rounded up: 1 or 2 here.
		if a := c.rec.get(); a.status != 429 || a.reason != "locked_out" || (a.retryAfter != "1" && a.retryAfter != "2") {
			if time.Since(lastSent) >= lockout {
				t.Fatalf("%s: %+v, but the check took longer than the %s lockout, so it may have expired", c.name, a, lockout)
			}
			t.Fatalf("%s during the lockout: %+v, want 429 locked_out Retry-After 1 or 2", c.name, a)
		}
	}
	// Failures and lockouts are audited with the target and the user name that was tried.
	for _, reason := range []string{"auth_failed", "locked_out"} {
		recs := waitAudit(t, gw.proc, func(r auditRecord) bool { return r.Reason == reason })
		if r := recs[0]; r.Host != "go.microsoft.com" || r.Port != 443 || r.User != "alice" || r.ConnID == "" {
			t.Fatalf("%s audit record: %+v, want host go.microsoft.com:443 and user alice", reason, r)
		}
	}
	if recs := waitAudit(t, gw.proc, func(r auditRecord) bool { return r.Reason == "locked_out" }); recs[0].Status != 429 {
		t.Fatalf("locked_out audited with status %d", recs[0].Status)
	}

	// The one timer wait in these tests: the lockout expires by the clock, there is no event.
	timer := time.NewTimer(time.Until(lastAnswered.Add(lockout)))
	<-timer.C
	if st, body := get(t, right, target); st != 200 || body != "hello from go.microsoft.com" {
		t.Fatalf("right password after the lockout: status %d body %q (proxy answered %+v)", st, body, rightRec.get())
	}
}

// TestProxyAuthReloadDropsCache: a cached credential stops working as soon as a reload installs
// a changed password, and the new password works.
func TestProxyAuthReloadDropsCache(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com")
	gw := w.authGateway(authPolicy(0), func(c *server.Config) {
		// Only the explicit Reload below may swap the users in; the file watcher would race it.
		off := false
		c.Watch = &off
	}, netip.PrefixFrom(o.addr.Addr(), 32).String())
	const target = "https://go.microsoft.com/"
	oldC, oldRec := w.tlsProxyClient(gw.tlsAddr, url.UserPassword("alice", "alice-pw"))
	newC, newRec := w.tlsProxyClient(gw.tlsAddr, url.UserPassword("alice", "alice-new-pw"))

	// Twice: the first verifies with bcrypt and fills the cache, the second is a cache hit.
	for i := range 2 {
		if st, _ := get(t, oldC, target); st != 200 {
			t.Fatalf("old password before the reload, request %d: %+v", i, oldRec.get())
		}
	}
	if st, _ := get(t, newC, target); st != 0 {
		t.Fatalf("new password worked before the reload (%d)", st)
	}
	setUser(t, gw.htpasswd, "alice", "alice-new-pw")
	if err := gw.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if st, _ := get(t, oldC, target); st != 0 {
		t.Fatalf("old (cached) password still works after the reload (%d)", st)
	}
	if a := oldRec.get(); a.status != 407 || a.reason != "auth_failed" {
		t.Fatalf("old password after the reload: %+v, want 407 auth_failed", a)
	}
	if st, body := get(t, newC, target); st != 200 || body != "hello from go.microsoft.com" {
		t.Fatalf("new password after the reload: status %d body %q (%+v)", st, body, newRec.get())
	}
}

// TestProxyAuthACMEListener: the TLS listener's certificate comes from Pebble over ACME (for the
// IP identifier 127.0.0.1), and a client that trusts only Pebble's issuing root reaches the
// origin through it with credentials.
func TestProxyAuthACMEListener(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com")
	pebblesim.SetEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	peb, err := pebblesim.Start(ctx, pebblesim.WithLogger(w.log))
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the gateway's cleanup, so it runs after the gateway stopped.
	t.Cleanup(func() { _ = peb.Close() })
	endpointCA := filepath.Join(w.dir, "acme-endpoint-ca.pem")
	if err := os.WriteFile(endpointCA, peb.TLSRootsPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	issuerPEM, err := peb.IssuerRootPEM()
	if err != nil {
		t.Fatal(err)
	}
	issuerFile := filepath.Join(w.dir, "pebble-issuer-root.pem")
	if err := os.WriteFile(issuerFile, issuerPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	challengePort := freeLoopbackPort(t)

	gw := w.authGateway(authPolicy(0), func(c *server.Config) {
		c.TLS.CertFile, c.TLS.KeyFile = "", ""
		c.TLS.ACME = &tlslisten.ACMEConfig{
			DirectoryURL:     peb.DirectoryURL(),
			TrustedRootsFile: endpointCA,
			Email:            "ops@scpgate.test",
			Domains:          []string{"127.0.0.1"},
			StorageDir:       t.TempDir(),
			ListenHost:       "127.0.0.1",
			AltHTTPPort:      challengePort,
		}
	}, netip.PrefixFrom(o.addr.Addr(), 32).String())

	// The listener presents Pebble's certificate, not one from the world's CA.
	issuerPool := x509.NewCertPool()
	if !issuerPool.AppendCertsFromPEM(issuerPEM) {
		t.Fatal("Pebble's issuer root is not PEM")
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: issuerPool, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", gw.tlsAddr)
	if err != nil {
		t.Fatalf("TLS to the proxy listener trusting only Pebble's root: %v", err)
	}
	leaf := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
	_ = conn.Close()
	if !strings.HasPrefix(leaf.Issuer.CommonName, "Pebble Intermediate CA") {
		t.Fatalf("listener certificate issued by %q, want Pebble's intermediate", leaf.Issuer.CommonName)
	}

	res := w.curl("--proxy", "https://"+gw.tlsAddr, "--proxy-cacert", issuerFile, "--proxy-user", "alice:alice-pw",
		"--cacert", w.caFile, "https://go.microsoft.com/acme")
	if res.exit != 0 || res.connectCode != "200" || res.code != "200" || res.body != "hello from go.microsoft.com" {
		t.Fatalf("curl exit %d connect %s code %s body %q: %s", res.exit, res.connectCode, res.code, res.body, res.stderr)
	}
	// The same client trusting the world's CA instead must refuse the proxy: proof that the
	// success above verified Pebble's certificate.
	if bad := w.curl("--proxy", "https://"+gw.tlsAddr, "--proxy-cacert", w.caFile, "--proxy-user", "alice:alice-pw",
		"--cacert", w.caFile, "https://go.microsoft.com/acme"); bad.exit == 0 {
		t.Fatalf("curl accepted the ACME listener with the wrong CA: %+v", bad)
	}
	assertNoProxyAuthorization(t, o.seen())
}

// freeLoopbackPort returns a 127.0.0.1 port that was free a moment ago, for certmagic's HTTP-01
// challenge listener (it takes a port number, not a listener).
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
