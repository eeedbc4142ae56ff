package validate

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// userAgent identifies the validator's requests in the gateway's and the origin's logs.
const userAgent = "scpgate-validate/1"

// wrongPassword is what the wrong-credentials check sends. The gateway must refuse it; one
// attempt per run stays far below any lockout threshold.
const wrongPassword = "scpgate-validate-wrong-password"

// prober runs single probes; it holds only read-only configuration.
type prober struct {
	cfg *Config
	now func() time.Time
}

// bufConn reads through the bufio.Reader that read the proxy's answer, so bytes the proxy sent
// right behind its answer are not lost.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// step times fn as one named step of res.
func (p *prober) step(res *Result, name string, fn func() error) error {
	start := time.Now()
	err := fn()
	s := Step{Name: name, MS: float64(time.Since(start).Microseconds()) / 1000, OK: err == nil}
	if err != nil {
		s.Error = err.Error()
	}
	res.Steps = append(res.Steps, s)
	return err
}

// maxAttempts bounds the tries of one probe the proxy rate-limited (429 rate_limited).
const maxAttempts = 4

// maxRetryWait caps the Retry-After the validator honours between tries.
const maxRetryWait = 5 * time.Second

// run probes one check, trying again when the proxy rate-limits it (a validator must not
// report the gateway's own flood protection as an unreachable endpoint). It never returns an
// error: failures are part of the result.
func (p *prober) run(ctx context.Context, c Check) Result {
	for attempt := 1; ; attempt++ {
		res := p.once(ctx, c)
		res.Attempts = attempt
		a := res.Proxy
		if a == nil || a.Status != http.StatusTooManyRequests || a.Reason == "locked_out" || attempt == maxAttempts {
			return res
		}
		wait := min(max(a.retryAfter, 100*time.Millisecond), maxRetryWait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return res
		case <-t.C:
		}
	}
}

// once probes one check once.
func (p *prober) once(ctx context.Context, c Check) Result {
	res := Result{Check: c, Steps: []Step{}}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.CheckTimeout)
	defer cancel()
	conn, err := p.dialProxy(ctx, &res)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer conn.Close()
	// Cancellation reaches blocking reads and writes through the deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if c.Probe == ProbeHTTP {
		p.plainHTTP(conn, &res)
		return res
	}
	tunnel, ok := p.connect(conn, &res)
	if !ok {
		return res
	}
	sni := c.Host
	if c.SNI != "" {
		sni = c.SNI
	}
	tc, err := p.handshake(ctx, tunnel, sni, &res)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	if c.Probe == ProbeFronting || (res.TLS != nil && !res.TLS.Verified) {
		// Nothing to ask a server we do not trust (or that should not have answered).
		return res
	}
	p.request(tc, &res)
	return res
}

// dialProxy opens the connection to the proxy: TCP, and TLS for an https:// proxy.
func (p *prober) dialProxy(ctx context.Context, res *Result) (net.Conn, error) {
	u := p.cfg.proxyURL
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	var conn net.Conn
	if err := p.step(res, "proxy_tcp", func() error {
		var err error
		conn, err = p.cfg.Dial(ctx, "tcp", addr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("proxy %s not reachable: %w", addr, err)
	}
	if u.Scheme != "https" {
		return conn, nil
	}
	tc := tls.Client(conn, &tls.Config{ServerName: u.Hostname(), RootCAs: p.cfg.ProxyRootCAs, MinVersion: tls.VersionTLS12})
	if err := p.step(res, "proxy_tls", func() error { return tc.HandshakeContext(ctx) }); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("TLS to proxy %s: %w", addr, err)
	}
	return tc, nil
}

// authHeader is the Proxy-Authorization line for the check's credential mode, or "".
func (p *prober) authHeader(c Check) string {
	if p.cfg.User == "" || c.Creds == CredsNone {
		return ""
	}
	pass := p.cfg.Password
	if c.Creds == CredsWrong {
		pass = wrongPassword
	}
	return "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(p.cfg.User+":"+pass)) + "\r\n"
}

// answer records the proxy's response head.
func answer(resp *http.Response) *ProxyAnswer {
	a := &ProxyAnswer{
		Status:     resp.StatusCode,
		Reason:     resp.Header.Get("X-Scpgate-Reason"),
		ConnID:     resp.Header.Get("X-Scpgate-Conn"),
		Challenges: resp.Header.Values("Proxy-Authenticate"),
	}
	a.AuthChallenge = resp.StatusCode == http.StatusProxyAuthRequired && len(a.Challenges) > 0
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
		a.retryAfter = time.Duration(secs) * time.Second
	}
	return a
}

// connect sends CONNECT and reads the answer; on 200 it returns the tunnel.
func (p *prober) connect(conn net.Conn, res *Result) (net.Conn, bool) {
	c := res.Check
	br := bufio.NewReader(conn)
	var resp *http.Response
	err := p.step(res, "connect", func() error {
		req := "CONNECT " + c.Target() + " HTTP/1.1\r\nHost: " + c.Target() + "\r\nUser-Agent: " + userAgent + "\r\n" + p.authHeader(c) + "\r\n"
		if _, err := io.WriteString(conn, req); err != nil {
			return err
		}
		var err error
		resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			return fmt.Errorf("proxy answered %s", resp.Status)
		}
		return nil
	})
	if resp == nil {
		res.Error = "CONNECT: " + err.Error()
		return nil, false
	}
	res.Proxy = answer(resp)
	if err != nil {
		return nil, false
	}
	return &bufConn{Conn: conn, r: br}, true
}

// handshake runs TLS through the tunnel and records the whole chain. Verification is done
// here, not by crypto/tls, so a chain that fails is still recorded (that is the evidence of
// inspection).
func (p *prober) handshake(ctx context.Context, conn net.Conn, sni string, res *Result) (*tls.Conn, error) {
	tc := tls.Client(conn, &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // verified below against RootCAs, with the chain kept either way
		NextProtos:         []string{"http/1.1"},
		MinVersion:         tls.VersionTLS12,
	})
	if err := p.step(res, "tls", func() error { return tc.HandshakeContext(ctx) }); err != nil {
		return nil, fmt.Errorf("TLS handshake with %s through the tunnel: %w", sni, err)
	}
	st := tc.ConnectionState()
	info := &TLSInfo{
		Version:    tls.VersionName(st.Version),
		Cipher:     tls.CipherSuiteName(st.CipherSuite),
		ALPN:       st.NegotiatedProtocol,
		ServerName: sni,
		Chain:      []Cert{},
	}
	now := p.now()
	unknownAuthority := false
	for _, cert := range st.PeerCertificates {
		info.Chain = append(info.Chain, certInfo(cert, now))
	}
	if len(st.PeerCertificates) > 0 {
		leaf := st.PeerCertificates[0]
		info.NameMatch = leaf.VerifyHostname(sni) == nil
		inter := x509.NewCertPool()
		for _, c := range st.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: sni, Roots: p.cfg.RootCAs, Intermediates: inter, CurrentTime: now})
		info.Verified = err == nil
		if err != nil {
			info.VerifyError = err.Error()
			var ua x509.UnknownAuthorityError
			unknownAuthority = errors.As(err, &ua)
		}
	}
	info.ExpectedIssuers = p.cfg.issuersFor(res.Check)
	info.IssuerMatch = issuerMatch(st.PeerCertificates, info.ExpectedIssuers)
	// Inspection: the chain is not the one the endpoint's CA issues. With expected issuers
	// configured that is a mismatch; without, a chain that does not verify against the
	// trusted bundle because its authority is unknown.
	if len(info.ExpectedIssuers) > 0 {
		info.Inspected = !info.IssuerMatch
	} else {
		info.Inspected = unknownAuthority
	}
	res.TLS = info
	return tc, nil
}

func certInfo(c *x509.Certificate, now time.Time) Cert {
	sum := sha256.Sum256(c.Raw)
	return Cert{
		Subject:  c.Subject.String(),
		Issuer:   c.Issuer.String(),
		NotAfter: c.NotAfter.UTC(),
		DaysLeft: int(c.NotAfter.Sub(now).Hours() / 24),
		SHA256:   hex.EncodeToString(sum[:]),
		DNSNames: c.DNSNames,
	}
}

// issuerMatch reports whether any certificate of the chain was issued by (or is) one of the
// expected issuers, compared by common name or by the whole distinguished name.
func issuerMatch(chain []*x509.Certificate, expected []string) bool {
	for _, c := range chain {
		for _, e := range expected {
			if strings.EqualFold(c.Issuer.CommonName, e) || strings.EqualFold(c.Issuer.String(), e) ||
				(c != chain[0] && (strings.EqualFold(c.Subject.CommonName, e) || strings.EqualFold(c.Subject.String(), e))) {
				return true
			}
		}
	}
	return false
}

// request sends one HTTP request through the TLS tunnel and records the status.
func (p *prober) request(tc *tls.Conn, res *Result) {
	c := res.Check
	_ = p.step(res, "http", func() error {
		req := "GET / HTTP/1.1\r\nHost: " + c.Host + "\r\nUser-Agent: " + userAgent + "\r\nConnection: close\r\n\r\n"
		if _, err := io.WriteString(tc, req); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(tc), &http.Request{Method: http.MethodGet})
		if err != nil {
			return err
		}
		res.HTTPStatus = resp.StatusCode
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		return nil
	})
}

// plainHTTP sends an absolute-form GET through the proxy.
func (p *prober) plainHTTP(conn net.Conn, res *Result) {
	c := res.Check
	authority := c.Host
	if c.Port != 80 {
		authority = net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
	}
	err := p.step(res, "http", func() error {
		req := "GET http://" + authority + c.Path + " HTTP/1.1\r\nHost: " + authority + "\r\nUser-Agent: " + userAgent + "\r\n" +
			p.authHeader(c) + "Connection: close\r\n\r\n"
		if _, err := io.WriteString(conn, req); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
		if err != nil {
			return err
		}
		res.Proxy = answer(resp)
		res.HTTPStatus = resp.StatusCode
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return resp.Body.Close()
	})
	if err != nil && res.Proxy == nil {
		res.Error = "plain HTTP request: " + err.Error()
	}
}
