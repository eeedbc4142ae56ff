// Package proxyclient is the SCP client's HTTP client: net/http through the egress gateway (an
// http:// or https:// proxy URL, Basic credentials), trusting only the configured CA bundle, and
// never reading proxy settings from the environment. Its job beyond net/http is to turn the ways
// a request through the gateway fails into errors an administrator can act on: a 407 names the
// settings to fill, a refusal by scpgate names the endpoint, the X-Scpgate-Reason code and the
// connection id, and a certificate failure names the host and what is wrong with its chain.
package proxyclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Headers scpgate sets on its answers.
const (
	HeaderReason = "X-Scpgate-Reason"
	HeaderConn   = "X-Scpgate-Conn"
)

// DialFunc dials a TCP connection (to the proxy, or to the origin without a proxy).
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Options configure New.
type Options struct {
	// ProxyURL is "http://host:port" or "https://host:port"; "" connects directly.
	ProxyURL string
	// User and Password are sent as Basic proxy credentials when User is set.
	User, Password string
	// RootCAs verifies the cloud's certificates and an https:// proxy's own; nil means the
	// system roots.
	RootCAs *x509.CertPool
	// CredentialHint says where the user sets proxy credentials, for the 407 message (for
	// example "proxy.user and proxy.password_file in /etc/scpclient.yaml").
	CredentialHint string
	// Dial replaces the TCP dialer (tests prove that offline mode never dials).
	Dial DialFunc
	// ResponseHeaderTimeout bounds the wait for a response head; 0 means one minute.
	ResponseHeaderTimeout time.Duration
}

// Client sends requests through the proxy.
type Client struct {
	hc    *http.Client
	tr    *http.Transport
	proxy *url.URL
	opts  Options
}

type traceKey struct{}

// trace is what one Do call learned about its CONNECT.
type trace struct {
	mu       sync.Mutex
	answered bool // the proxy answered the CONNECT (so a later TLS failure is the origin's)
}

// New builds a client. It does not connect.
func New(o Options) (*Client, error) {
	c := &Client{opts: o}
	dial := o.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		dial = d.DialContext
	}
	if o.ResponseHeaderTimeout == 0 {
		o.ResponseHeaderTimeout = time.Minute
	}
	tr := &http.Transport{
		DialContext:           dial,
		TLSClientConfig:       &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		// Payloads are stored byte for byte; never let the transport decompress them.
		DisableCompression: true,
		Proxy:              nil, // never from the environment
	}
	if o.ProxyURL != "" {
		u, err := url.Parse(o.ProxyURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("proxy URL %q: want http://HOST:PORT or https://HOST:PORT", o.ProxyURL)
		}
		u = &url.URL{Scheme: u.Scheme, Host: u.Host}
		if o.User != "" {
			u.User = url.UserPassword(o.User, o.Password)
		}
		c.proxy = u
		tr.Proxy = http.ProxyURL(u)
		tr.OnProxyConnectResponse = c.onConnect
	}
	c.tr = tr
	c.hc = &http.Client{
		Transport: tr,
		// Redirects are followed by the caller, hop by hop, so each hop can be logged.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// onConnect turns a refused CONNECT into a *RefusedError (net/http would only say "Proxy
// Authentication Required" and drop the headers that explain it).
func (c *Client) onConnect(ctx context.Context, _ *url.URL, req *http.Request, res *http.Response) error {
	if tr, ok := ctx.Value(traceKey{}).(*trace); ok {
		tr.mu.Lock()
		tr.answered = true
		tr.mu.Unlock()
	}
	if res.StatusCode == http.StatusOK {
		return nil
	}
	return &RefusedError{
		Proxy:      c.proxy.Host,
		Target:     req.Host,
		Status:     res.StatusCode,
		StatusText: http.StatusText(res.StatusCode),
		Reason:     res.Header.Get(HeaderReason),
		ConnID:     res.Header.Get(HeaderConn),
		Challenge:  res.Header.Get("Proxy-Authenticate"),
		RetryAfter: res.Header.Get("Retry-After"),
		User:       c.opts.User,
		Hint:       c.opts.CredentialHint,
	}
}

// Do sends req (no redirects followed) and explains a failure (see Explain).
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	tr := &trace{}
	req = req.WithContext(context.WithValue(req.Context(), traceKey{}, tr))
	res, err := c.hc.Do(req)
	if err != nil {
		tr.mu.Lock()
		answered := tr.answered
		tr.mu.Unlock()
		return nil, c.explain(req.URL.Host, answered, err)
	}
	return res, nil
}

// CloseIdleConnections closes kept-alive connections.
func (c *Client) CloseIdleConnections() { c.tr.CloseIdleConnections() }

// RefusedError is the proxy's refusal of a CONNECT.
type RefusedError struct {
	Proxy, Target  string
	Status         int
	StatusText     string
	Reason, ConnID string
	Challenge      string
	RetryAfter     string
	User           string
	Hint           string
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	switch {
	case e.Status == http.StatusProxyAuthRequired && e.User == "":
		fmt.Fprintf(&b, "the proxy %s asked for credentials to reach %s (407 Proxy Authentication Required", e.Proxy, e.Target)
		if e.Challenge != "" {
			fmt.Fprintf(&b, ", challenge %s", e.Challenge)
		}
		b.WriteString("); set ")
		b.WriteString(orDefault(e.Hint, "the proxy user name and password"))
	case e.Status == http.StatusProxyAuthRequired:
		fmt.Fprintf(&b, "the proxy %s refused the credentials of user %q for %s (407 Proxy Authentication Required); check the password in %s",
			e.Proxy, e.User, e.Target, orDefault(e.Hint, "the proxy password setting"))
	case e.Reason != "":
		fmt.Fprintf(&b, "scpgate at %s refused the connection to %s: %d %s, X-Scpgate-Reason: %s", e.Proxy, e.Target, e.Status, e.StatusText, e.Reason)
	default:
		fmt.Fprintf(&b, "the proxy %s answered %d %s to CONNECT %s", e.Proxy, e.Status, e.StatusText, e.Target)
	}
	if e.ConnID != "" {
		fmt.Fprintf(&b, " (gateway connection id %s)", e.ConnID)
	}
	if e.RetryAfter != "" {
		fmt.Fprintf(&b, "; retry after %s s", e.RetryAfter)
	}
	if e.Status == http.StatusForbidden && e.Reason != "" {
		b.WriteString("; the gateway's policy does not let this endpoint through: ask the network team to allow it (quote the reason and connection id)")
	}
	return b.String()
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// CertError is a TLS certificate failure, of the cloud endpoint or of an https:// proxy.
type CertError struct {
	Host    string
	Proxy   bool
	Problem string
	Err     error
}

func (e *CertError) Error() string {
	what := "the endpoint " + e.Host
	fix := "trusted_ca_file must hold the CA that issued it"
	if e.Proxy {
		what = "the proxy " + e.Host
		fix = "proxy.ca_file (or trusted_ca_file) must hold the CA that issued the proxy's certificate"
	}
	return fmt.Sprintf("could not establish trust relationship for the SSL/TLS secure channel with %s: %s; %s", what, e.Problem, fix)
}

func (e *CertError) Unwrap() error { return e.Err }

// explain maps transport errors to *RefusedError (already built by onConnect) or *CertError.
func (c *Client) explain(target string, connectAnswered bool, err error) error {
	var refused *RefusedError
	if errors.As(err, &refused) {
		return refused
	}
	problem := certProblem(err)
	if problem == "" {
		return err
	}
	ce := &CertError{Host: target, Problem: problem, Err: err}
	if c.proxy != nil && c.proxy.Scheme == "https" && !connectAnswered {
		ce.Host, ce.Proxy = c.proxy.Host, true
	}
	return ce
}

func certProblem(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknown):
		return "its certificate chain ends at an authority that is not trusted (" + unknown.Error() + ")"
	case errors.As(err, &hostname):
		return "its certificate is not valid for that name (" + hostname.Error() + ")"
	case errors.As(err, &invalid):
		return "its certificate is invalid (" + invalid.Error() + ")"
	case errors.As(err, &verify):
		return verify.Error()
	}
	return ""
}
