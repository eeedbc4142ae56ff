package gateway

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scpgate/scpgate/gateway/splice"
)

// tunnel moves bytes both ways between a client and its upstream.
//
// Between two *net.TCPConn the bytes go through splice(2) (package splice): each direction
// waits for readability holding no pipe, borrows a pipe pair from the gateway's pool while
// bytes move, and gives it back when the socket would block, so an idle tunnel holds its two
// sockets and nothing else. Every chunk moved notes the activity; the idle timer closes the
// tunnel only when neither direction moved a byte for idle. A TLS client (the TLS proxy
// listener) cannot splice: its bytes go through a buffer borrowed for the tunnel's life.
type tunnel struct {
	upstream net.Conn
	pipes    *splice.Pool
	bufs     *sync.Pool // *[]byte for the copies that cannot splice
	idle     time.Duration
	lifetime time.Duration

	lastActive atomic.Int64 // unix nanoseconds

	// The relay's state, here rather than in closures: one allocation per tunnel.
	rawClient          net.Conn
	upBytes, downBytes atomic.Int64
	running            atomic.Int32
	ended              func(up, down int64)

	mu        sync.Mutex
	client    net.Conn
	closed    bool
	idleTimer *time.Timer
	lifeTimer *time.Timer
}

func newTunnel(upstream net.Conn, pipes *splice.Pool, bufs *sync.Pool, idle, lifetime time.Duration) *tunnel {
	return &tunnel{upstream: upstream, pipes: pipes, bufs: bufs, idle: idle, lifetime: lifetime}
}

// start relays both directions, each on a goroutine of its own, and returns at once. When
// both have ended the tunnel is closed and ended is called with the bytes sent upstream
// (including early, which the client sent before the tunnel existed) and downstream. The
// goroutine that calls start may end: only the two copies, parked on shallow stacks while
// the tunnel is idle, live as long as the tunnel.
func (t *tunnel) start(client net.Conn, early []byte, ended func(up, down int64)) {
	t.mu.Lock()
	t.client = client
	closed := t.closed
	t.mu.Unlock()
	if closed {
		_ = client.Close()
		ended(0, 0)
		return
	}
	// Copy on the raw socket when the client arrived through a wrapper (the connection limiter),
	// so both directions can splice; t.client, the wrapper, is what gets closed. A TLS client is
	// never unwrapped: its bytes must go through TLS.
	rawClient := client
	if w, ok := client.(interface{ NetConn() net.Conn }); ok {
		if _, isTLS := client.(*tls.Conn); !isTLS {
			rawClient = w.NetConn()
		}
	}
	t.touch()
	var up int64
	if len(early) > 0 {
		n, err := t.upstream.Write(early)
		up = int64(n)
		if err != nil {
			t.close()
			ended(up, 0)
			return
		}
	}
	t.mu.Lock()
	if !t.closed {
		t.idleTimer = time.AfterFunc(t.idle, t.checkIdle)
		if t.lifetime > 0 {
			t.lifeTimer = time.AfterFunc(t.lifetime, t.close)
		}
	}
	t.mu.Unlock()

	t.rawClient, t.ended = rawClient, ended
	t.upBytes.Store(up)
	t.running.Store(2)
	go t.copyDown()
	go t.copyUp()
}

func (t *tunnel) copyDown() {
	t.downBytes.Store(t.pipe(t.rawClient, t.upstream))
	t.copyEnded()
}

func (t *tunnel) copyUp() {
	t.upBytes.Add(t.pipe(t.upstream, t.rawClient))
	t.copyEnded()
}

// copyEnded closes the tunnel and reports it once both directions have ended.
func (t *tunnel) copyEnded() {
	if t.running.Add(-1) == 0 {
		t.close()
		t.ended(t.upBytes.Load(), t.downBytes.Load())
	}
}

// pipe copies src to dst until src ends, then half-closes dst so the peer sees EOF while the
// other direction may still be sending (TLS close_notify, HTTP/1.0 responses).
func (t *tunnel) pipe(dst, src net.Conn) int64 {
	var n int64
	var err error
	d, dok := dst.(*net.TCPConn)
	s, sok := src.(*net.TCPConn)
	if dok && sok {
		n, err = t.pipes.Copy(d, s, t.progress)
	} else {
		buf := t.bufs.Get().(*[]byte)
		// Only Read and Write: a WriterTo or ReaderFrom would bring its own buffer.
		n, err = io.CopyBuffer(activityWriter{dst, t}, struct{ io.Reader }{src}, *buf)
		t.bufs.Put(buf)
	}
	if err == nil {
		closeWrite(dst)
		return n
	}
	// A reset or a write error on either side ends the whole tunnel: there is nobody left to
	// deliver the other direction's bytes to.
	t.close()
	return n
}

// activityWriter notes every write as tunnel activity.
type activityWriter struct {
	w io.Writer
	t *tunnel
}

func (a activityWriter) Write(p []byte) (int, error) {
	n, err := a.w.Write(p)
	if n > 0 {
		a.t.touch()
	}
	return n, err
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

func (t *tunnel) progress(int64) { t.touch() }

func (t *tunnel) touch() { t.lastActive.Store(time.Now().UnixNano()) }

func (t *tunnel) checkIdle() {
	since := time.Since(time.Unix(0, t.lastActive.Load()))
	if since >= t.idle {
		t.close()
		return
	}
	t.mu.Lock()
	if !t.closed {
		t.idleTimer.Reset(t.idle - since)
	}
	t.mu.Unlock()
}

// close ends the tunnel from any goroutine; it is idempotent. Closing the sockets wakes both
// copies, whether they wait for bytes or are moving them.
func (t *tunnel) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.closed = true
	if t.idleTimer != nil {
		t.idleTimer.Stop()
	}
	if t.lifeTimer != nil {
		t.lifeTimer.Stop()
	}
	_ = t.upstream.Close()
	if t.client != nil {
		_ = t.client.Close()
	}
}
