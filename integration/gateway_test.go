package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const basePolicy = `version: 1
groups:
  updates-and-servicing:
    description: test group
    doc: https://learn.microsoft.com/
    enabled: true
    hosts:
      - go.microsoft.com
      - "*.manage.microsoft.com"
      - download.microsoft.com
      - metadata.microsoft.com
      - private.microsoft.com
      - sneaky.microsoft.com
      - flip.microsoft.com
`

// TestAllowedNameTunnelsEndToEnd: an allowed name goes through, and the TLS handshake with the
// origin completes across the tunnel (curl and Go's net/http, both as real proxy clients).
func TestAllowedNameTunnelsEndToEnd(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com", "sccm.manage.microsoft.com")
	gw := w.gateway(basePolicy, netip.PrefixFrom(o.addr.Addr(), 32).String())

	t.Run("curl", func(t *testing.T) {
		res := w.curl("-x", "http://"+gw.addr, "--cacert", w.caFile, "https://go.microsoft.com/fwlink/?LinkId=2008245")
		if res.exit != 0 || res.code != "200" || res.connectCode != "200" {
			t.Fatalf("curl exit %d code %s connect %s: %s", res.exit, res.code, res.connectCode, res.stderr)
		}
		if res.body != "hello from go.microsoft.com" {
			t.Fatalf("body %q", res.body)
		}
	})
	t.Run("net/http", func(t *testing.T) {
		c, rec := w.httpClient(gw.addr)
		resp, err := c.Get("https://sccm.manage.microsoft.com/SCCMConnectedService.svc/Manifest")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "hello from sccm.manage.microsoft.com" {
			t.Fatalf("status %d body %q", resp.StatusCode, b)
		}
		if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Fatalf("no TLS 1.2+ end to end: %+v", resp.TLS)
		}
		if st, _ := rec.get(); st != 200 {
			t.Fatalf("CONNECT status %d", st)
		}
	})
	if n := len(o.seen()); n != 2 {
		t.Fatalf("origin saw %d requests, want 2", n)
	}
	recs := waitAudit(t, gw, func(r auditRecord) bool { return r.Event == "close" && r.Host == "sccm.manage.microsoft.com" })
	r := recs[len(recs)-1]
	if r.Decision != "allow" || r.Group != "updates-and-servicing" || r.Pattern != "*.manage.microsoft.com" ||
		r.Address != o.addr.String() || r.BytesUp == 0 || r.BytesDown == 0 || r.Status != 200 {
		t.Fatalf("audit record: %+v", r)
	}
}

// TestPolicyDenials: every policy denial is a 403 with the reason in X-Scpgate-Reason, as seen by
// curl and by net/http, and the origin behind an allowed name is never contacted for it.
func TestPolicyDenials(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com", "example.org")
	gw := w.gateway(basePolicy, netip.PrefixFrom(o.addr.Addr(), 32).String())
	tests := []struct {
		name, url, reason string
	}{
		{"unlisted name", "https://example.org/", "no_rule"},
		{"apex of a wildcard", "https://manage.microsoft.com/", "no_rule"},
		{"listed name on port 22", "https://go.microsoft.com:22/", "port_not_allowed"},
		{"IP literal", "https://127.0.0.1/", "ip_literal"},
		{"IP literal, decimal spelling", "https://2130706433/", "ip_literal"},
	}
	for _, tt := range tests {
		t.Run("curl/"+tt.name, func(t *testing.T) {
			res := w.curl("-x", "http://"+gw.addr, "--cacert", w.caFile, "-p", tt.url)
			if res.connectCode != "403" {
				t.Fatalf("CONNECT code %q, want 403 (%s)", res.connectCode, res.stderr)
			}
			if !strings.Contains(strings.ToLower(res.headers), "x-scpgate-reason: "+tt.reason) {
				t.Fatalf("headers lack reason %s:\n%s", tt.reason, res.headers)
			}
		})
		t.Run("net/http/"+tt.name, func(t *testing.T) {
			c, rec := w.httpClient(gw.addr)
			resp, err := c.Get(tt.url)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("request succeeded with %d", resp.StatusCode)
			}
			if st, reason := rec.get(); st != 403 || reason != tt.reason {
				t.Fatalf("CONNECT answered %d %q, want 403 %q", st, reason, tt.reason)
			}
		})
	}
	if n := len(o.seen()); n != 0 {
		t.Fatalf("origin saw %d requests for denied targets", n)
	}
	recs := waitAudit(t, gw, func(r auditRecord) bool { return r.Reason == "ip_literal" })
	for _, r := range recs {
		if r.Decision != "deny" || r.Status != 403 || r.Event != "decision" || r.Address != "" {
			t.Fatalf("denial audit record: %+v", r)
		}
	}
}

// TestPrivateAnswersNeverDialed: a listed name whose DNS answer is private or the cloud metadata
// address is refused before any dial: the injected dialer fails the test if it is called.
func TestPrivateAnswersNeverDialed(t *testing.T) {
	w := newWorld(t)
	w.dns.SetA("private.microsoft.com", netip.MustParseAddr("10.0.0.1"))
	w.dns.SetA("metadata.microsoft.com", netip.MustParseAddr("169.254.169.254"))
	// A mix of a public and a private answer is refused whole: that is what rebinding looks like.
	w.dns.SetA("sneaky.microsoft.com", netip.MustParseAddr("20.42.65.92"), netip.MustParseAddr("192.168.1.10"))
	addr := w.inProcess(basePolicy, failDial(t))
	for _, host := range []string{"private.microsoft.com", "metadata.microsoft.com", "sneaky.microsoft.com"} {
		t.Run(host, func(t *testing.T) {
			resp, err := rawRequest(t, addr, "CONNECT "+host+":443 HTTP/1.1\r\nHost: "+host+":443\r\n\r\n")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 403 || resp.Header.Get("X-Scpgate-Reason") != "private_address" {
				t.Fatalf("got %d %q, want 403 private_address", resp.StatusCode, resp.Header.Get("X-Scpgate-Reason"))
			}
		})
	}
}

// TestLoopbackOutsideAllowRangesNeverConnected: end to end with the real dialer, a name that
// resolves to a loopback address outside allow_ranges is refused, and the listener at that
// address records that nothing connected.
func TestLoopbackOutsideAllowRangesNeverConnected(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com")
	s := w.sink()
	w.dns.SetA("private.microsoft.com", s.addr.Addr())
	gw := w.gateway(basePolicy, netip.PrefixFrom(o.addr.Addr(), 32).String())
	res := w.curl("-x", "http://"+gw.addr, "--cacert", w.caFile, "https://private.microsoft.com/")
	if res.connectCode != "403" || !strings.Contains(strings.ToLower(res.headers), "x-scpgate-reason: private_address") {
		t.Fatalf("connect %s headers:\n%s", res.connectCode, res.headers)
	}
	// The allowed origin still works through the same gateway, so the sink's silence means
	// something: a connection would have arrived by now.
	if ok := w.curl("-x", "http://"+gw.addr, "--cacert", w.caFile, "https://go.microsoft.com/"); ok.code != "200" {
		t.Fatalf("allowed request failed: %+v", ok)
	}
	if n := s.accepts.Load(); n != 0 {
		t.Fatalf("the sink outside allow_ranges accepted %d connection(s)", n)
	}
}

// TestDNSFlipGetsNoSecondLookup: the gateway resolves once, vets, and dials the vetted address;
// a DNS server that would answer differently the second time is never asked again.
func TestDNSFlipGetsNoSecondLookup(t *testing.T) {
	w := newWorld(t)
	o := w.origin("flip.microsoft.com")
	s := w.sink()
	w.dns.SetFlip("flip.microsoft.com", o.addr.Addr(), s.addr.Addr())
	gw := w.gateway(basePolicy, netip.PrefixFrom(o.addr.Addr(), 32).String(), netip.PrefixFrom(s.addr.Addr(), 32).String())
	for i := range 3 {
		res := w.curl("-x", "http://"+gw.addr, "--cacert", w.caFile, "https://flip.microsoft.com/")
		if res.code != "200" || res.body != "hello from flip.microsoft.com" {
			t.Fatalf("request %d: %+v", i, res)
		}
	}
	if n := w.dns.QueriesByType("flip.microsoft.com", dns.TypeA); n != 1 {
		t.Fatalf("the gateway asked for the A record %d times, want exactly 1", n)
	}
	if n := s.accepts.Load(); n != 0 {
		t.Fatalf("the rebinding target got %d connection(s)", n)
	}
}

// TestEarlyBytesAfterConnectHead: a client that sends its TLS ClientHello in the same write as
// its CONNECT head (without waiting for the 200) loses none of it: the handshake completes.
func TestEarlyBytesAfterConnectHead(t *testing.T) {
	w := newWorld(t)
	o := w.origin("download.microsoft.com")
	gw := w.gateway(basePolicy, netip.PrefixFrom(o.addr.Addr(), 32).String())

	raw, err := net.DialTimeout("tcp", gw.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(15 * time.Second))
	const head = "CONNECT download.microsoft.com:443 HTTP/1.1\r\nHost: download.microsoft.com:443\r\n\r\n"
	pc := &pipelinedConn{Conn: raw, head: head}
	tc := tls.Client(pc, &tls.Config{ServerName: "download.microsoft.com", RootCAs: w.ca.Pool(), MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(context.Background()); err != nil {
		t.Fatalf("TLS through a pipelined CONNECT: %v", err)
	}
	if pc.firstWrite <= len(head) || pc.firstWrite-len(head) < 5 {
		t.Fatalf("the first write carried %d bytes; want the %d-byte CONNECT head plus a ClientHello", pc.firstWrite, len(head))
	}
	if pc.status != 200 {
		t.Fatalf("CONNECT status %d", pc.status)
	}
	fmt.Fprintf(tc, "GET /early HTTP/1.1\r\nHost: download.microsoft.com\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "hello from download.microsoft.com" {
		t.Fatalf("body %q", b)
	}
}

// pipelinedConn prepends the CONNECT head to the first write and strips the proxy's answer from
// the first read, the way a client that does not wait for 200 behaves.
type pipelinedConn struct {
	net.Conn
	head       string
	firstWrite int // bytes in the first write: the CONNECT head and the ClientHello together
	br         *bufio.Reader
	status     int
}

func (c *pipelinedConn) Write(p []byte) (int, error) {
	if c.head != "" {
		buf := append([]byte(c.head), p...)
		c.head = ""
		n, err := c.Conn.Write(buf)
		c.firstWrite = n
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *pipelinedConn) Read(p []byte) (int, error) {
	if c.br == nil {
		c.br = bufio.NewReader(c.Conn)
		resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return 0, err
		}
		c.status = resp.StatusCode
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("CONNECT answered %s", resp.Status)
		}
	}
	return c.br.Read(p)
}

// TestMalformedRequests: garbage gets 400 and a closed connection, never a panic or a hang, and
// the gateway keeps serving afterwards.
func TestMalformedRequests(t *testing.T) {
	w := newWorld(t)
	o := w.origin("go.microsoft.com")
	gw := w.gateway(basePolicy, netip.PrefixFrom(o.addr.Addr(), 32).String())
	tests := []struct{ name, raw string }{
		{"no port", "CONNECT go.microsoft.com HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"port zero", "CONNECT go.microsoft.com:0 HTTP/1.1\r\n\r\n"},
		{"port too big", "CONNECT go.microsoft.com:65536 HTTP/1.1\r\n\r\n"},
		{"signed port", "CONNECT go.microsoft.com:+443 HTTP/1.1\r\n\r\n"},
		{"empty host", "CONNECT :443 HTTP/1.1\r\n\r\n"},
		{"path form", "CONNECT /go.microsoft.com:443 HTTP/1.1\r\n\r\n"},
		{"bracketed name", "CONNECT [go.microsoft.com]:443 HTTP/1.1\r\n\r\n"},
		{"zone", "CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\n\r\n"},
		{"underscore", "CONNECT go_x.microsoft.com:443 HTTP/1.1\r\n\r\n"},
		{"empty label", "CONNECT go..microsoft.com:443 HTTP/1.1\r\n\r\n"},
		{"bad IPv4", "CONNECT 999.1.1.1:443 HTTP/1.1\r\n\r\n"},
		{"garbage line", "HELLO\r\n\r\n"},
		{"no version", "CONNECT go.microsoft.com:443\r\n\r\n"},
		{"origin-form GET", "GET / HTTP/1.1\r\nHost: go.microsoft.com\r\n\r\n"},
		{"https absolute-form", "GET https://go.microsoft.com/ HTTP/1.1\r\nHost: go.microsoft.com\r\n\r\n"},
		{"header too large", "CONNECT go.microsoft.com:443 HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := rawRequest(t, gw.addr, tt.raw)
			if err != nil {
				t.Fatalf("no HTTP answer: %v", err)
			}
			if resp.StatusCode != 400 && resp.StatusCode != 431 {
				t.Fatalf("status %d, want 400 (or 431 for a huge header)", resp.StatusCode)
			}
		})
	}
	res := w.curl("-x", "http://"+gw.addr, "--cacert", w.caFile, "https://go.microsoft.com/")
	if res.code != "200" {
		t.Fatalf("gateway stopped serving after malformed input: %+v", res)
	}
}
