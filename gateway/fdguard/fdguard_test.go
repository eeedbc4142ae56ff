//go:build linux

package fdguard

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scpgate/scpgate/internal/syncbuf"
)

func TestIsExhausted(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{syscall.EMFILE, true},
		{syscall.ENFILE, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, true},
		{fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.ENFILE)}), true},
		{syscall.ECONNREFUSED, false},
		{errors.New("too many open files"), false},
		{nil, false},
	} {
		if got := IsExhausted(tc.err); got != tc.want {
			t.Errorf("IsExhausted(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestGuardLogsOncePerEpisode(t *testing.T) {
	var logs syncbuf.Buffer
	counts := map[string]int{}
	g := New(slog.New(slog.NewTextHandler(&logs, nil)), func(where string) { counts[where]++ })
	clock := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return clock }
	for range 5 {
		g.Hit("accept", syscall.EMFILE)
		// A success between failures (a descriptor freed for a moment) does not end the episode.
		clock = clock.Add(quietPeriod / 2)
		g.Clear()
	}
	g.Hit("dial", syscall.EMFILE)
	if !g.Exhausted() {
		t.Fatal("not exhausted after hits")
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d WARN lines for one episode, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "level=INFO") {
		t.Fatalf("episode ended between failures:\n%s", logs.String())
	}
	// Quiet for the whole period: the next success ends it.
	clock = clock.Add(quietPeriod)
	g.Clear()
	g.Clear()
	if g.Exhausted() || strings.Count(logs.String(), "level=INFO") != 1 {
		t.Fatalf("after Clear: exhausted=%v, logs:\n%s", g.Exhausted(), logs.String())
	}
	g.Hit("pipe", syscall.ENFILE)
	if n := strings.Count(logs.String(), "level=WARN"); n != 2 {
		t.Fatalf("second episode: %d WARN lines, want 2", n)
	}
	if counts["accept"] != 5 || counts["dial"] != 1 || counts["pipe"] != 1 {
		t.Fatalf("counts = %v", counts)
	}
}

// TestListenerAnswersWhenOutOfDescriptors lowers this test process's descriptor limit, fills
// it, and checks that a client waiting in the backlog, its request sent and never read, gets
// the whole 503 and then EOF (not a reset that would discard it), and that the listener serves
// normally once descriptors are free.
func TestListenerAnswersWhenOutOfDescriptors(t *testing.T) {
	ln, gl, g, hits := answeringListener(t)

	// The client connects first (its socket is allocated now); then the process fills up.
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// Sent before the answer and never read by the listener: closing on it would reset.
	if _, err := io.WriteString(client, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	fill := exhaust(t)
	accepted := acceptUntilWaiting(t, gl)
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != answer {
		t.Fatalf("the waiting client read %q, %v; want the 503, then EOF", got, err)
	}
	_ = client.Close()
	if !g.Exhausted() || hits.Load() == 0 {
		t.Fatalf("exhausted=%v hits=%d", g.Exhausted(), hits.Load())
	}

	// Descriptors free again: the next client is accepted normally and the episode ends.
	servesAgain(t, fill, ln, accepted)
	if g.Exhausted() {
		t.Fatal("still exhausted after a normal accept")
	}
}

// TestReserveKeptUntilAClientIsQueued: out of descriptors with no client queued, Accept must
// hold on to its reserve while it waits. Freed during the wait, the reserve went to whatever in
// the process opened a descriptor next (here a plain open, in the gateway a tunnel's dial), and
// the next client then waited in the backlog, unanswered, until a tunnel closed.
func TestReserveKeptUntilAClientIsQueued(t *testing.T) {
	ln, gl, _, hits := answeringListener(t)

	fill := exhaust(t)
	accepted := acceptUntilWaiting(t, gl)
	// Nothing else may get a descriptor while Accept waits: the reserve is still held.
	if fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err == nil {
		_ = syscall.Close(fd)
		t.Fatal("a descriptor was free while Accept waited for a client: the reserve was spent on nobody")
	} else if !IsExhausted(err) {
		t.Fatal(err)
	}
	if hits.Load() != 0 {
		t.Fatalf("%d hits before any client was refused", hits.Load())
	}

	// A client arrives (its socket takes the one descriptor freed for it) and is answered.
	fill.freeOne()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != answer {
		t.Fatalf("the client read %q, %v; want the 503, then EOF", got, err)
	}
	if hits.Load() != 1 {
		t.Fatalf("%d hits for one refused client, want 1", hits.Load())
	}

	servesAgain(t, fill, ln, accepted)
}

// TestCloseEndsTheWaitForAClient: Close of a listener whose Accept waits, out of descriptors,
// for a client ends that Accept with net.ErrClosed.
func TestCloseEndsTheWaitForAClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := New(nil, nil).Listener(ln, func(net.Conn) {})
	if err != nil {
		t.Fatal(err)
	}
	exhaust(t)
	accepted := acceptUntilWaiting(t, gl)
	if err := gl.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still waits after Close")
	}
}

// TestReserveErrorIsTemporary: net/http's accept loop ends on any error that is not a temporary
// net.Error, so failing to take the reserve back must be one.
func TestReserveErrorIsTemporary(t *testing.T) {
	var err error = reserveError{&os.PathError{Op: "open", Path: os.DevNull, Err: syscall.EMFILE}}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Temporary() { //nolint:staticcheck // net/http still reads Temporary
		t.Fatalf("%v is not a temporary net.Error", err)
	}
	if !IsExhausted(err) {
		t.Fatalf("IsExhausted(%v) = false", err)
	}
}

// descriptors holds this test process's open-file limit lowered and filled.
type descriptors struct{ fds []int }

// exhaust lowers the process's open-file limit to 256 and opens /dev/null until none is left;
// the limit and the descriptors are restored when the test ends (or earlier, by release).
func exhaust(t *testing.T) *descriptors {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	d := &descriptors{}
	t.Cleanup(func() {
		d.release()
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	})
	for {
		fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			if !IsExhausted(err) {
				t.Fatal(err)
			}
			return d
		}
		d.fds = append(d.fds, fd)
		if len(d.fds) > 300 {
			t.Fatal("the lowered limit did not take")
		}
	}
}

// freeOne closes one of the filling descriptors.
func (d *descriptors) freeOne() {
	_ = syscall.Close(d.fds[len(d.fds)-1])
	d.fds = d.fds[:len(d.fds)-1]
}

// release closes all of them.
func (d *descriptors) release() {
	for _, fd := range d.fds {
		_ = syscall.Close(fd)
	}
	d.fds = nil
}

// acceptUntilWaiting calls gl.Accept on another goroutine and returns once it waits for a
// queued client (out of descriptors); the channel gets Accept's error (nil if it returned a
// connection, which it closes).
func acceptUntilWaiting(t *testing.T, gl net.Listener) <-chan error {
	t.Helper()
	waiting := make(chan struct{}, 1)
	gl.(*listener).queuedWait = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := gl.Accept()
		if err == nil {
			_ = c.Close()
		}
		accepted <- err
	}()
	select {
	case <-waiting:
	case err := <-accepted:
		t.Fatalf("Accept returned %v with no client", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not start waiting for a client")
	}
	return accepted
}

// answer is what the listeners under test write to a client they refuse.
const answer = "HTTP/1.1 503 Service Unavailable\r\nX-Scpgate-Reason: out_of_resources\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

// answeringListener returns a loopback listener ln and its guarded form gl, which writes
// answer to the clients it refuses, with a Guard whose episode ends at the first success and
// a count of its hits.
func answeringListener(t *testing.T) (ln, gl net.Listener, g *Guard, hits *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hits = new(atomic.Int64)
	g = New(nil, func(string) { hits.Add(1) }).WithQuietPeriod(0)
	gl, err = g.Listener(ln, func(c net.Conn) {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(c, answer)
	})
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gl.Close() })
	return ln, gl, g, hits
}

// servesAgain frees the filling descriptors, connects to ln, and checks that the Accept
// reporting to accepted returns that connection.
func servesAgain(t *testing.T, fill *descriptors, ln net.Listener, accepted <-chan error) {
	t.Helper()
	fill.release()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatalf("Accept after recovery: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after descriptors were freed")
	}
}
