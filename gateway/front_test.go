package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scpgate/scpgate/policy"
)

// TestFrontHandsOffWhatItDoesNotServe: a head the front does not serve itself reaches net/http
// with every byte replayed, and gets net/http's own answer, not a different one from the front.
func TestFrontHandsOffWhatItDoesNotServe(t *testing.T) {
	tg := startGateway(t, groupPolicy("443", "CONNECT"), []string{"crl.microsoft.com"}, func(o *Options) {
		o.Limits.MaxHeaderBytes = 1024
	})
	long := strings.Repeat("a", 8<<10)
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"HTTP/2.0 request line", "CONNECT crl.microsoft.com:443 HTTP/2.0\r\n\r\n", 505},
		{"two Host headers", "CONNECT crl.microsoft.com:443 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"invalid Host header", "CONNECT crl.microsoft.com:443 HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"invalid header name", "CONNECT crl.microsoft.com:443 HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
		{"Expect header", "CONNECT crl.microsoft.com:443 HTTP/1.1\r\nExpect: magic\r\n\r\n", 417},
		{"head over the limit", "CONNECT crl.microsoft.com:443 HTTP/1.1\r\nX-Long: " + long + "\r\n\r\n", 431},
		{"malformed request line", "CONNECT crl.microsoft.com:443\r\n\r\n", 400},
		// Not CONNECT: net/http serves it (here the handler refuses the unlisted name).
		{"plain HTTP", "GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := raw(t, tg.addr, tc.raw)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tc.status, body)
			}
		})
	}
}

// TestFrontKeepAliveThenConnect: a connection that starts with plain HTTP keeps net/http's
// keep-alive, and a CONNECT that follows on it still opens a tunnel.
func TestFrontKeepAliveThenConnect(t *testing.T) {
	echo, _ := echoServer(t)
	port := portOf(t, echo)
	tg := startGateway(t, groupPolicy(port, "GET, CONNECT"), []string{"crl.microsoft.com"}, nil)
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") })}
	oln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = origin.Serve(oln) }()
	t.Cleanup(func() { _ = origin.Close() })
	tg.gw.SetPolicy(mustPolicy(t, groupPolicy(port+", "+portOf(t, oln.Addr().String()), "GET, CONNECT")))

	c, err := net.Dial("tcp", tg.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	get := "GET http://crl.microsoft.com:" + portOf(t, oln.Addr().String()) + "/ HTTP/1.1\r\nHost: crl.microsoft.com\r\n\r\n"
	if _, err := io.WriteString(c, get); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "hello" || resp.Close {
		t.Fatalf("GET: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	if _, err := io.WriteString(c, "CONNECT crl.microsoft.com:"+port+" HTTP/1.1\r\n\r\nping"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT after GET: %v %v", resp, err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo through the tunnel: %q %v", got, err)
	}
}

// TestFrontRefusalIsReadWhole: a refused CONNECT whose client keeps sending after its head
// still reads the whole answer, then EOF; the close is not a reset.
func TestFrontRefusalIsReadWhole(t *testing.T) {
	tg := startGateway(t, groupPolicy("443", "CONNECT"), []string{"crl.microsoft.com"}, nil)
	c, err := net.Dial("tcp", tg.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// The TLS bytes a client pipelines after its CONNECT, which the refused tunnel never reads.
	if _, err := io.WriteString(c, "CONNECT example.org:443 HTTP/1.1\r\n\r\n"+strings.Repeat("\x16", 16<<10)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the refusal: %v", err)
	}
	if resp.StatusCode != 403 || resp.Header.Get("X-Scpgate-Reason") != "no_rule" || !resp.Close ||
		resp.Header.Get("Date") == "" || !strings.HasPrefix(string(body), "scpgate: ") {
		t.Fatalf("refusal: %d %q close=%v headers %v body %q", resp.StatusCode, resp.Header.Get("X-Scpgate-Reason"), resp.Close, resp.Header, body)
	}
	if rec := tg.audit.next(t); rec.Reason != "no_rule" || rec.Client != c.LocalAddr().String() {
		t.Fatalf("audit %+v", rec)
	}
}

// TestFrontServeStopsSlowHeads: cancelling Serve closes connections still sending their head
// at once, not when their header timeout (a minute here) runs out, and Serve returns. Both
// waits are far shorter than that minute, so a head left to its timeout fails the test.
func TestFrontServeStopsSlowHeads(t *testing.T) {
	timeouts := DefaultTimeouts()
	timeouts.ReadHeader = time.Minute
	gw, err := New(Options{Policy: mustPolicy(t, groupPolicy("443", "CONNECT")), Resolver: &mapResolver{}, Audit: newRecordingAudit(), Timeouts: timeouts})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Half a head: the front is now reading it (the read blocks until the head is whole).
	if _, err := io.WriteString(c, "CONNECT crl.microsoft.com:443 HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	// A second connection proves the first was accepted before the cancel.
	resp, _ := raw(t, ln.Addr().String(), "CONNECT example.org:443 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != 403 {
		t.Fatalf("second connection: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the half-sent connection: read %d bytes, %v; want it closed by the gateway", n, err)
	}
}

func TestValidHostHeaders(t *testing.T) {
	for _, tc := range []struct {
		head string
		want bool
	}{
		{"CONNECT a:443 HTTP/1.1\r\n\r\n", true},
		{"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", true},
		{"CONNECT a:443 HTTP/1.1\r\nhOsT:a:443\r\nUser-Agent: x\r\n\r\n", true},
		{"CONNECT a:443 HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", false},
		{"CONNECT a:443 HTTP/1.1\r\nHost: a b\r\n\r\n", false},
		{"CONNECT a:443 HTTP/1.1\r\nHost: [::1\r\n\r\n", true}, // httpguts accepts it; net/http too
		{"CONNECT a:443 HTTP/1.1\r\nX-Host: a b\r\n\r\n", true},
		// obs-fold: net/textproto joins the continuation, and net/http sees Host "a b".
		{"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", false},
		{"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n", false},
		{"CONNECT a:443 HTTP/1.1\r\nX-A: a\r\n b\r\nHost: a\r\n\r\n", true},
		{"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\nHost: b\r\n", true}, // after the head: body bytes
	} {
		if got := validHostHeaders([]byte(tc.head)); got != tc.want {
			t.Errorf("validHostHeaders(%q) = %v, want %v", tc.head, got, tc.want)
		}
	}
}

// FuzzFrontHead: whatever a client sends, the front's head reader neither panics nor serves
// anything but a well-formed HTTP/1.x CONNECT, and a head it does not serve is kept whole for
// net/http.
func FuzzFrontHead(f *testing.F) {
	for _, s := range []string{
		"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n\x16\x03\x01",
		"CONNECT a.example:443 HTTP/1.0\r\n\r\n",
		"CONNECT [::1]:443 HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n",
		"CONNECT a:443 HTTP/2.0\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"CONNECT ",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		rec := &recorder{src: strings.NewReader(string(in)), limit: 4096}
		br := bufio.NewReaderSize(rec, frontReadSize)
		fr := &front{}
		req, ok := fr.readConnect(br, rec)
		if !ok {
			if !strings.HasPrefix(string(in), string(rec.buf)) {
				t.Fatalf("recorded %q is not what was read from %q", rec.buf, in)
			}
			return
		}
		if req.Method != http.MethodConnect || req.ProtoMajor != 1 || req.Header.Get("Expect") != "" {
			t.Fatalf("served %s %s %s", req.Method, req.RequestURI, req.Proto)
		}
	})
}

// TestFrontRecorderLimit: the recorder stops at its limit with its own error, which is not
// taken for the client's.
func TestFrontRecorderLimit(t *testing.T) {
	rec := &recorder{src: strings.NewReader(strings.Repeat("x", 100)), limit: 10}
	b, err := io.ReadAll(rec)
	if err != errHeadTooLarge || len(b) != 10 || len(rec.buf) != 10 || rec.err != nil {
		t.Fatalf("read %d bytes, err %v, recorded %d, conn err %v", len(b), err, len(rec.buf), rec.err)
	}
}

func mustPolicy(t *testing.T, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// deadlineConn records the read deadlines set on it.
type deadlineConn struct {
	net.Conn
	set []time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.set = append(c.set, t)
	return nil
}

// TestReplayConnKeepsTheHeadDeadline: the first read deadline net/http sets on a handed-off
// connection (its header timeout) cannot run past the front's; the ones after are its own.
func TestReplayConnKeepsTheHeadDeadline(t *testing.T) {
	head := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		first time.Time
		want  time.Time
	}{
		{"later header timeout", head.Add(10 * time.Second), head},
		{"no header timeout", time.Time{}, head},
		{"earlier one kept", head.Add(-time.Second), head.Add(-time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &deadlineConn{}
			c := &replayConn{Conn: inner, headDeadline: head, capNext: true}
			_ = c.SetReadDeadline(tc.first)
			_ = c.SetReadDeadline(time.Time{}) // after the head: net/http's whole-request deadline
			if len(inner.set) != 2 || !inner.set[0].Equal(tc.want) || !inner.set[1].IsZero() {
				t.Fatalf("deadlines set %v, want [%v, zero]", inner.set, tc.want)
			}
		})
	}
}

// netHTTPHandsIn reports whether net/http's server, given in as the first bytes of a
// connection, calls its handler with a CONNECT, and with which request target.
func netHTTPHandsIn(t *testing.T, in []byte, maxHeaderBytes int) (bool, string) {
	t.Helper()
	serverSide, clientSide := net.Pipe()
	var (
		called bool
		target string
	)
	closed := make(chan struct{})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			if !called && r.Method == http.MethodConnect {
				called, target = true, r.RequestURI
			}
		}),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				close(closed)
			}
		},
	}
	ln := newHandoffListener(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	served := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(served) }()
	ln.give(serverSide)
	go func() { _, _ = io.Copy(io.Discard, clientSide) }() // the server's answers
	_, _ = clientSide.Write(in)
	_ = clientSide.Close() // EOF after the input: a partial head ends here
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("net/http did not finish with %q", in)
	}
	_ = srv.Close()
	<-served
	return called, target
}

// FuzzFrontAgreesWithNetHTTP: the front serves a head only if net/http's server would have
// handed the same head to the handler as a CONNECT to the same target, so the front can never
// accept what net/http refuses (and clients never see two parsers disagree).
func FuzzFrontAgreesWithNetHTTP(f *testing.F) {
	for _, s := range []string{
		"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n\x16\x03\x01",
		"CONNECT a.example:443 HTTP/1.0\r\n\r\n",
		"CONNECT [::1]:443 HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost : a\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nX: \x01\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
		"CONNECT a:443 HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
		"CONNECT /path HTTP/1.1\r\n\r\n",
		"CONNECT a:443 HTTP/3.0\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\nHost: a\n\n",
		"CONNECT  a:443 HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	const maxHeaderBytes = 1024
	f.Fuzz(func(t *testing.T, in []byte) {
		rec := &recorder{src: bytes.NewReader(in), limit: maxHeaderBytes + 4096}
		br := bufio.NewReaderSize(rec, frontReadSize)
		req, ok := (&front{}).readConnect(br, rec)
		if !ok {
			return
		}
		called, target := netHTTPHandsIn(t, in, maxHeaderBytes)
		if !called || target != req.RequestURI {
			t.Fatalf("the front serves %q (target %q); net/http: handler called %v, target %q", in, req.RequestURI, called, target)
		}
	})
}
