package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scpgate/scpgate/gateway/fdguard"
	"github.com/scpgate/scpgate/internal/syncbuf"
	"github.com/scpgate/scpgate/internal/testnet"
)

// bufferEcho is an echo origin for any number of connections (testnet.Echo).
func bufferEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testnet.Echo(t, ln)
	return ln.Addr().String()
}

func openFDs(t *testing.T) int { return testnet.CountFDs(t, os.Getpid()) }

func echoOnce(t *testing.T, c net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

// TestIdleTunnelHoldsTwoDescriptors: once its bytes have moved, an idle tunnel holds its two
// sockets and no pipe. In this process each tunnel is four sockets: the client's, the
// gateway's two and the origin's.
func TestIdleTunnelHoldsTwoDescriptors(t *testing.T) {
	echo := bufferEcho(t)
	port := portOf(t, echo)
	tg := startGateway(t, groupPolicy(port, "CONNECT"), []string{"crl.microsoft.com"}, nil)
	before := openFDs(t)
	const n = 10
	for range n {
		c, br := connect(t, tg.addr, "crl.microsoft.com:"+port)
		echoOnce(t, c, br, strings.Repeat("x", 100_000)) // several splice calls each way
	}
	// Pipes go back to the pool as soon as a copy would block, and the pool closes them when
	// nobody took them again for a while.
	testnet.WaitFor(t, "idle tunnels to hold only their sockets", 15*time.Second, func() bool {
		// At most: sockets of earlier tests in this process may close meanwhile.
		s := tg.gw.pipes.Stats()
		return s.InUse == 0 && s.Idle == 0 && openFDs(t)-before <= 4*n
	})
	if s := tg.gw.pipes.Stats(); s.NoPipes != 0 {
		t.Fatalf("pool stats %+v: some copy went through a buffer instead of splice", s)
	}
}

// TestBulkTunnelSplices: bulk bytes through a tunnel go through the pipe pool (splice) in both
// directions, arrive intact, and afterwards both copies wait without a pipe.
func TestBulkTunnelSplices(t *testing.T) {
	echo := bufferEcho(t)
	port := portOf(t, echo)
	tg := startGateway(t, groupPolicy(port, "CONNECT"), []string{"crl.microsoft.com"}, nil)
	c, br := connect(t, tg.addr, "crl.microsoft.com:"+port)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	go func() {
		_, _ = c.Write(payload)
		_ = c.(*net.TCPConn).CloseWrite() // half-close: the echo still comes back
	}()
	h := sha256.New()
	n, err := io.Copy(h, br)
	if err != nil || n != int64(len(payload)) {
		t.Fatalf("read back %d bytes, %v", n, err)
	}
	want := sha256.Sum256(payload)
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("bytes differ after the round trip")
	}
	rec := tg.audit.next(t)
	if rec.BytesUp != int64(len(payload)) || rec.BytesDown != int64(len(payload)) {
		t.Fatalf("audit bytes up %d down %d, want %d each", rec.BytesUp, rec.BytesDown, len(payload))
	}
	s := tg.gw.pipes.Stats()
	if s.NoPipes != 0 || s.Waits < 2 || s.InUse != 0 {
		t.Fatalf("pool stats %+v: want both directions spliced, waiting without pipes, none in use", s)
	}
}

// countingObserver counts OutOfResources calls by operation.
type countingObserver struct {
	noopObserver
	mu     sync.Mutex
	counts map[string]int
}

func (o *countingObserver) OutOfResources(where string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counts[where]++
}

// TestDialOutOfDescriptors: a dial that fails with EMFILE answers 503 out_of_resources (not
// upstream_refused), is counted every time, and is logged once for the episode; a dial that
// works again ends the episode.
func TestDialOutOfDescriptors(t *testing.T) {
	echo := bufferEcho(t)
	port := portOf(t, echo)
	var logs syncbuf.Buffer
	obs := &countingObserver{counts: map[string]int{}}
	var failing sync.Mutex
	fail := true
	tg := startGateway(t, groupPolicy(port, "CONNECT"), []string{"crl.microsoft.com"}, func(o *Options) {
		o.Observer = obs
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		// The first dial that works ends the episode (no quiet period to wait out).
		o.FDs = fdguard.New(o.Logger, obs.OutOfResources).WithQuietPeriod(0)
		var d net.Dialer
		o.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
			failing.Lock()
			f := fail
			failing.Unlock()
			if f {
				return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
			}
			return d.DialContext(ctx, network, address)
		}
	})
	target := "crl.microsoft.com:" + port
	for range 3 {
		c, err := net.Dial("tcp", tg.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Scpgate-Reason") != "out_of_resources" {
			t.Fatalf("CONNECT while out of descriptors: %s, reason %q; want 503 out_of_resources", resp.Status, resp.Header.Get("X-Scpgate-Reason"))
		}
	}
	obs.mu.Lock()
	dials := obs.counts["dial"]
	obs.mu.Unlock()
	warns := strings.Count(logs.String(), "level=WARN")
	if dials != 3 || warns != 1 {
		t.Fatalf("counted %d dial failures and logged %d WARN lines; want 3 and 1", dials, warns)
	}

	failing.Lock()
	fail = false
	failing.Unlock()
	c, br := connect(t, tg.addr, target)
	echoOnce(t, c, br, "back again")
	if tg.gw.fds.Exhausted() {
		t.Fatal("the episode did not end after a dial worked")
	}
}

// cachingResolver answers names in cached from its cache alone and counts full lookups.
type cachingResolver struct {
	mapResolver
	cached map[string][]netip.Addr
}

func (c *cachingResolver) LookupCached(host string) ([]netip.Addr, bool) {
	a, ok := c.cached[host]
	return a, ok
}

// TestCachedNameSkipsLookup: a name the resolver has cached is dialled without a full lookup
// (no DNS timeout context); an uncached one still goes through LookupNetIP.
func TestCachedNameSkipsLookup(t *testing.T) {
	echo := bufferEcho(t)
	port := portOf(t, echo)
	loop := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	res := &cachingResolver{
		mapResolver: mapResolver{answers: map[string][]netip.Addr{"ocsp.digicert.com": loop}},
		cached:      map[string][]netip.Addr{"crl.microsoft.com": loop},
	}
	tg := startGateway(t, groupPolicy(port, "CONNECT"), nil, func(o *Options) { o.Resolver = res })
	for _, name := range []string{"crl.microsoft.com", "ocsp.digicert.com"} {
		c, br := connect(t, tg.addr, name+":"+port)
		echoOnce(t, c, br, "hello "+name)
		_ = c.Close()
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	if res.lookups["crl.microsoft.com"] != 0 || res.lookups["ocsp.digicert.com"] != 1 {
		t.Fatalf("full lookups %v; want none for the cached name, one for the other", res.lookups)
	}
}
