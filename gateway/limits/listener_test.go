package limits

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/scpgate/scpgate/policy"
)

// waitTimeout only guards against a hung test; no test sleeps on it.
const waitTimeout = 10 * time.Second

type rejection struct {
	client netip.Addr
	reason policy.Reason
}

// server runs LimitListener on 127.0.0.1:0. Every admitted connection is reported on admitted,
// then drained until the client closes, then closed and reported on closed.
type server struct {
	ln       net.Listener
	limiter  *ConnLimiter
	admitted chan net.Conn
	closed   chan struct{}
	rejected chan rejection
	done     chan struct{}
}

func startServer(t *testing.T, maxTotal, maxPer int, tweak func(*limitListener)) *server {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{
		limiter:  NewConnLimiter(maxTotal, maxPer),
		admitted: make(chan net.Conn, 16),
		closed:   make(chan struct{}, 16),
		rejected: make(chan rejection, 16),
		done:     make(chan struct{}),
	}
	s.ln = LimitListener(inner, s.limiter, func(c net.Conn, reason policy.Reason) error {
		s.rejected <- rejection{peerAddr(c), reason}
		return testRefuse(c, reason)
	})
	if tweak != nil {
		tweak(s.ln.(*limitListener))
	}
	go func() {
		defer close(s.done)
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.admitted <- c
			go func() {
				_, _ = io.Copy(io.Discard, c)
				_ = c.Close()
				s.closed <- struct{}{}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = s.ln.Close()
		<-s.done
	})
	return s
}

func (s *server) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.ln.Addr().String(), waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	return c
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// The gateway's refusal (tested with the gateway) stands in for this fixed answer here.
const rejectBody = "scpgate: too many connections\n"

const rejectResponse = "HTTP/1.1 429 Too Many Requests\r\n" +
	"Retry-After: 1\r\n" +
	"X-Scpgate-Reason: too_many_connections\r\n" +
	"Connection: close\r\n" +
	"Content-Length: 30\r\n" +
	"\r\n" + rejectBody

func testRefuse(c net.Conn, _ policy.Reason) error {
	_, err := io.WriteString(c, rejectResponse)
	return err
}

// read429 reads the whole answer of a rejected connection and checks it.
func read429(t *testing.T, c net.Conn) {
	t.Helper()
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the rejection: %v (got %q)", err, all)
	}
	if string(all) != rejectResponse {
		t.Fatalf("got %q, want %q", all, rejectResponse)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" ||
		resp.Header.Get("X-Scpgate-Reason") != string(policy.ReasonTooManyConnections) || !resp.Close || string(body) != rejectBody {
		t.Fatalf("bad rejection: %d %v %q", resp.StatusCode, resp.Header, body)
	}
}

var loopback = netip.MustParseAddr("127.0.0.1")

func TestLimitListener(t *testing.T) {
	tests := []struct {
		name             string
		maxTotal, maxPer int
		sendFirst        bool // the rejected client writes a CONNECT before reading (unread input at close)
		noLinger         bool // force the synchronous fallback
	}{
		{name: "total limit", maxTotal: 2},
		{name: "per-client limit", maxPer: 2},
		{name: "client sends before reading", maxTotal: 2, sendFirst: true},
		{name: "fallback without linger", maxTotal: 2, noLinger: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tweak func(*limitListener)
			if tt.noLinger {
				tweak = func(l *limitListener) { l.maxLingering = 0 }
			}
			s := startServer(t, tt.maxTotal, tt.maxPer, tweak)

			c1 := s.dial(t)
			recv(t, s.admitted, "client 1 admitted")
			s.dial(t)
			recv(t, s.admitted, "client 2 admitted")

			c3 := s.dial(t)
			if tt.sendFirst {
				if _, err := io.WriteString(c3, "CONNECT go.microsoft.com:443 HTTP/1.1\r\nHost: go.microsoft.com:443\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
			}
			read429(t, c3)
			if r := recv(t, s.rejected, "rejection"); r.client != loopback || r.reason != policy.ReasonTooManyConnections {
				t.Fatalf("onReject(%v, %q)", r.client, r.reason)
			}
			if n := s.limiter.Open(); n != 2 {
				t.Fatalf("Open = %d after a rejection, want 2", n)
			}

			// One client leaves; its slot is freed when the server closes the wrapper.
			_ = c1.Close()
			recv(t, s.closed, "server closing client 1")
			if n := s.limiter.Open(); n != 1 {
				t.Fatalf("Open = %d after a close, want 1", n)
			}
			c4 := s.dial(t)
			a4 := recv(t, s.admitted, "client 4 admitted")
			// The admitted connection is live: bytes flow through the wrapper.
			if _, err := c4.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := a4.Write([]byte("y")); err != nil {
				t.Fatal(err)
			}
			var b [1]byte
			if _, err := io.ReadFull(c4, b[:]); err != nil || b[0] != 'y' {
				t.Fatalf("read %q, %v", b, err)
			}
			select {
			case r := <-s.rejected:
				t.Fatalf("unexpected rejection %v", r)
			default:
			}
		})
	}
}

func TestLimitedConnWrapper(t *testing.T) {
	s := startServer(t, 2, 0, nil)
	// Take the accepted connection away from the draining goroutine by closing on our terms:
	// dial, get the wrapper, and exercise it directly.
	c := s.dial(t)
	w := recv(t, s.admitted, "admitted")

	nc, ok := w.(interface{ NetConn() net.Conn })
	if !ok {
		t.Fatal("wrapper has no NetConn")
	}
	if _, ok := nc.NetConn().(*net.TCPConn); !ok {
		t.Fatalf("NetConn() is %T, want *net.TCPConn", nc.NetConn())
	}
	if _, ok := w.(*net.TCPConn); ok {
		t.Fatal("the wrapper must not be the raw conn")
	}

	// Half-close through the wrapper: the client sees EOF and can still write.
	if err := w.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client read after CloseWrite: %d, %v", n, err)
	}
	if _, err := c.Write([]byte("still open")); err != nil {
		t.Fatal(err)
	}

	// Close releases the slot once, however often it is called.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	if n := s.limiter.Open(); n != 0 {
		t.Fatalf("Open = %d after Close, want 0", n)
	}
	recv(t, s.closed, "draining goroutine done")
	if n := s.limiter.Open(); n != 0 {
		t.Fatalf("Open = %d after a third Close, want 0", n)
	}
}

// TestLimitedConnReadFrom copies between two wrappers with io.Copy, the path that reaches
// (*net.TCPConn).ReadFrom and splice(2) on Linux, and checks every byte arrives.
func TestLimitedConnReadFrom(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(inner, NewConnLimiter(0, 0), testRefuse)
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(waitTimeout))
		return c
	}
	a := dial()
	aw := recv(t, accepted, "a")
	defer aw.Close()
	b := dial()
	bw := recv(t, accepted, "b")
	defer bw.Close()

	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<14)
	go func() {
		_, _ = a.Write(payload)
		_ = a.(*net.TCPConn).CloseWrite()
	}()
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(bw, aw) // wrapper to wrapper: (*conn).ReadFrom unwraps both
		_ = bw.(interface{ CloseWrite() error }).CloseWrite()
		copied <- err
	}()
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := recv(t, copied, "copy"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes, want %d", len(got), len(payload))
	}
}

// TestCloseEndsLingeringRejections checks that closing the listener cuts short the background
// close of a rejected client that neither reads nor closes, and waits for it.
func TestCloseEndsLingeringRejections(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rejected := make(chan struct{}, 1)
	ln := LimitListener(inner, NewConnLimiter(1, 0), func(c net.Conn, r policy.Reason) error { rejected <- struct{}{}; return testRefuse(c, r) })
	accepted := make(chan net.Conn, 1)
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	c1, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	w := recv(t, accepted, "first client")
	defer w.Close()
	c2, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	recv(t, rejected, "rejection")

	ll := ln.(*limitListener)
	start := time.Now()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= rejectLinger {
		t.Fatalf("Close took %v: it waited for the rejection deadline instead of cutting it short", d)
	}
	ll.mu.Lock()
	n := len(ll.lingering)
	ll.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d rejections still lingering after Close", n)
	}
	recv(t, acceptDone, "Accept returning after Close")
	// The rejected client still got its answer before the cut.
	_ = c2.SetDeadline(time.Now().Add(waitTimeout))
	read429(t, c2)
}

func TestPeerAddr(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want netip.Addr
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1}, netip.MustParseAddr("::ffff:192.0.2.1")},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, netip.MustParseAddr("2001:db8::1")},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, netip.Addr{}},
		{nil, netip.Addr{}},
	}
	for _, tt := range tests {
		got := peerAddr(addrConn{addr: tt.addr})
		if got != tt.want {
			t.Errorf("peerAddr(%v) = %v, want %v", tt.addr, got, tt.want)
		}
		if clientKey(got) != clientKey(tt.want) {
			t.Errorf("key mismatch for %v", tt.addr)
		}
	}
}

type addrConn struct {
	net.Conn
	addr net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.addr }
