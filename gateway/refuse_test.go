package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/gateway/proxyauth"
	"github.com/scpgate/scpgate/policy"
)

// TestRefusalCarriesConnectionID: every refusal names its connection id in X-Scpgate-Conn and
// in the body, and it is the audit record's; the body gives the reason's message for the target.
func TestRefusalCarriesConnectionID(t *testing.T) {
	tg := startGateway(t, groupPolicy("443", "CONNECT"), []string{"crl.microsoft.com"}, nil)
	tests := []struct {
		name, raw string
		status    int
		reason    policy.Reason
		body      string // the message before " (reason) [conn …]"
		host      string
		port      uint16
		target    string
	}{
		{"no rule", "CONNECT www.example.com:443 HTTP/1.1\r\n\r\n", 403, policy.ReasonNoRule, "www.example.com:443 is not on the allow-list", "www.example.com", 443, ""},
		{"port", "CONNECT crl.microsoft.com:444 HTTP/1.1\r\n\r\n", 403, policy.ReasonPortNotAllowed, "crl.microsoft.com:444 uses a port that is not allowed for this host", "crl.microsoft.com", 444, ""},
		{"invalid host", "CONNECT bad_host.example:443 HTTP/1.1\r\n\r\n", 400, policy.ReasonInvalidHost, "invalid target: ", "", 0, "bad_host.example:443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := raw(t, tg.addr, tt.raw)
			rec := tg.audit.next(t)
			id := resp.Header.Get("X-Scpgate-Conn")
			if resp.StatusCode != tt.status || resp.Header.Get("X-Scpgate-Reason") != string(tt.reason) || id == "" || id != rec.ConnID {
				t.Fatalf("got %d %v, audit %+v", resp.StatusCode, resp.Header, rec)
			}
			suffix := fmt.Sprintf(" (%s) [conn %s]\n", tt.reason, id)
			if !strings.HasPrefix(body, "scpgate: "+tt.body) || !strings.HasSuffix(body, suffix) {
				t.Fatalf("body %q, want %q … %q", body, "scpgate: "+tt.body, suffix)
			}
			if rec.Host != tt.host || rec.Port != tt.port || rec.Target != tt.target || rec.Event != audit.EventDecision || rec.Decision != audit.DecisionDeny {
				t.Fatalf("audit %+v", rec)
			}
			if !strings.Contains(rec.Client, ":") {
				t.Fatalf("client %q is not ip:port", rec.Client)
			}
		})
	}
}

// TestEstablishedCarriesConnectionID: the 200 of an allowed CONNECT names the connection id the
// close record will carry.
func TestEstablishedCarriesConnectionID(t *testing.T) {
	echo, _ := echoServer(t)
	port := portOf(t, echo)
	tg := startGateway(t, groupPolicy(port, "CONNECT"), []string{"crl.microsoft.com"}, nil)
	c, err := net.Dial("tcp", tg.addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT crl.microsoft.com:%s HTTP/1.1\r\n\r\n", port)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	id := resp.Header.Get("X-Scpgate-Conn")
	c.Close()
	if rec := tg.audit.next(t); id == "" || rec.ConnID != id || rec.Event != audit.EventClose {
		t.Fatalf("200 names %q, close record %+v", id, rec)
	}
}

// TestChallengesComeFromTheAuthenticators: a 407 carries every offered scheme's challenge, in
// order, and nothing the handler made up.
func TestChallengesComeFromTheAuthenticators(t *testing.T) {
	store, err := proxyauth.ParseHtpasswd("users", nil)
	if err != nil {
		t.Fatal(err)
	}
	chain := proxyauth.Chain{fixedChallenge("Negotiate"), proxyauth.NewBasic(proxyauth.BasicConfig{Store: store, Realm: "corp"})}
	tg := startGateway(t, groupPolicy("443", "CONNECT"), []string{"crl.microsoft.com"}, func(o *Options) { o.Auth = chain })
	resp, _ := raw(t, tg.addr, "CONNECT crl.microsoft.com:443 HTTP/1.1\r\n\r\n")
	got := resp.Header.Values("Proxy-Authenticate")
	if resp.StatusCode != 407 || strings.Join(got, " | ") != `Negotiate | Basic realm="corp"` {
		t.Fatalf("%d challenges %q", resp.StatusCode, got)
	}
}

type fixedChallenge string

func (f fixedChallenge) Authenticate(*http.Request, netip.Addr) proxyauth.Outcome {
	return proxyauth.Outcome{Reason: policy.ReasonAuthRequired}
}
func (f fixedChallenge) Challenges() []string { return []string{string(f)} }

// TestRefuseConn: a connection the limits turn away gets the same refusal, audited with the
// client as ip:port.
func TestRefuseConn(t *testing.T) {
	tg := startGateway(t, groupPolicy("443", "CONNECT"), nil, nil)
	server, client := net.Pipe()
	go func() {
		_ = tg.gw.RefuseConn(&pipeAddr{Conn: server}, policy.ReasonTooManyConnections)
		server.Close()
	}()
	resp, err := http.ReadResponse(bufio.NewReader(client), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	rec := tg.audit.next(t)
	if !strings.HasPrefix(string(body), "scpgate: too many connections; retry later (too_many_connections) [conn ") {
		t.Fatalf("body %q", body)
	}
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || resp.Header.Get("X-Scpgate-Reason") != "too_many_connections" ||
		resp.Header.Get("X-Scpgate-Conn") != rec.ConnID || !resp.Close || rec.Client != "192.0.2.7:5555" || rec.Status != 429 {
		t.Fatalf("response %d %v, audit %+v", resp.StatusCode, resp.Header, rec)
	}
}

// pipeAddr gives a net.Pipe end a TCP-looking remote address.
type pipeAddr struct{ net.Conn }

func (pipeAddr) RemoteAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.7:5555"))
}
