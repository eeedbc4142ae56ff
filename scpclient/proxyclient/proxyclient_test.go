package proxyclient

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// refusingProxy answers every CONNECT with status and headers, as scpgate does when it refuses.
func refusingProxy(t *testing.T, status int, hdr map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil || req.Method != http.MethodConnect {
					return
				}
				res := &http.Response{StatusCode: status, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Close: true}
				for k, v := range hdr {
					res.Header.Set(k, v)
				}
				_ = res.Write(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestRefusalsAreActionable(t *testing.T) {
	tests := []struct {
		name   string
		status int
		hdr    map[string]string
		user   string
		want   []string
	}{
		{"407 without user", 407, map[string]string{"Proxy-Authenticate": `Basic realm="scpgate"`, HeaderReason: "auth_required", HeaderConn: "17"},
			"", []string{"asked for credentials", `Basic realm="scpgate"`, "proxy.user and proxy.password_file", "connection id 17"}},
		{"407 wrong password", 407, map[string]string{"Proxy-Authenticate": `Basic realm="scpgate"`},
			"alice", []string{`refused the credentials of user "alice"`, "proxy.user and proxy.password_file"}},
		{"403 policy", 403, map[string]string{HeaderReason: "not_allowed", HeaderConn: "42"},
			"", []string{"scpgate at", "download.microsoft.com:443", "X-Scpgate-Reason: not_allowed", "connection id 42", "ask the network team"}},
		{"429 lockout", 429, map[string]string{HeaderReason: "locked_out", "Retry-After": "30"},
			"", []string{"locked_out", "retry after 30"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := refusingProxy(t, tt.status, tt.hdr)
			c, err := New(Options{ProxyURL: "http://" + addr, User: tt.user, Password: "x", CredentialHint: "proxy.user and proxy.password_file"})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://download.microsoft.com/x", nil)
			_, err = c.Do(req)
			var re *RefusedError
			if !errors.As(err, &re) || re.Status != tt.status {
				t.Fatalf("error %v (%T), want a RefusedError with status %d", err, err, tt.status)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestUntrustedCertificateNamesHost(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	c, err := New(Options{}) // system roots: httptest's CA is not among them
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	_, err = c.Do(req)
	var ce *CertError
	if !errors.As(err, &ce) || ce.Proxy || !strings.Contains(err.Error(), srv.Listener.Addr().String()) || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("error %v, want a CertError naming %s", err, srv.Listener.Addr())
	}
}

func TestNoProxyFromEnvironment(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	dialed := make(chan string, 1)
	c, err := New(Options{Dial: func(_ context.Context, _, addr string) (net.Conn, error) {
		dialed <- addr
		return nil, errors.New("no dialing in this test")
	}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://download.microsoft.com/", nil)
	_, _ = c.Do(req)
	if got := <-dialed; got != "download.microsoft.com:443" {
		t.Fatalf("dialed %s, want the origin (HTTPS_PROXY must be ignored)", got)
	}
}

// An https:// proxy whose certificate is not trusted: the error names the proxy, not the
// endpoint, and the setting that must hold its CA.
func TestUntrustedProxyCertificateNamesProxy(t *testing.T) {
	proxy := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(proxy.Close)
	c, err := New(Options{ProxyURL: "https://" + proxy.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://go.microsoft.com/", nil)
	_, err = c.Do(req)
	var ce *CertError
	if !errors.As(err, &ce) || !ce.Proxy || !strings.Contains(err.Error(), "the proxy "+proxy.Listener.Addr().String()) ||
		!strings.Contains(err.Error(), "proxy.ca_file") {
		t.Fatalf("error %v, want a CertError naming the proxy", err)
	}
}
