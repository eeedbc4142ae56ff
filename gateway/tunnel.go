package gateway

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tunnel moves bytes both ways between a client and its upstream.
//
// With two *net.TCPConn, io.Copy becomes splice(2): the bytes never enter user space. Splice gives
// no per-read hook, so activity is observed by giving each read a short deadline (a tick): when it
// expires, io.Copy returns what it moved, the direction notes the activity and starts again.
// The idle timer then closes the tunnel only when neither direction moved a byte for idle.
type tunnel struct {
	upstream net.Conn
	idle     time.Duration
	lifetime time.Duration
	tick     time.Duration

	lastActive atomic.Int64 // unix nanoseconds

	mu        sync.Mutex
	client    net.Conn
	closed    bool
	idleTimer *time.Timer
	lifeTimer *time.Timer
}

func newTunnel(upstream net.Conn, idle, lifetime time.Duration) *tunnel {
	tick := idle / 4
	tick = max(tick, 10*time.Millisecond)
	tick = min(tick, 30*time.Second)
	return &tunnel{upstream: upstream, idle: idle, lifetime: lifetime, tick: tick}
}

// run splices until both directions ended (or the tunnel was closed) and returns the bytes sent
// upstream (including early, which the client sent before the tunnel existed) and downstream.
func (t *tunnel) run(client net.Conn, early []byte) (up, down int64) {
	t.mu.Lock()
	t.client = client
	closed := t.closed
	t.mu.Unlock()
	if closed {
		_ = client.Close()
		return 0, 0
	}
	defer t.close()
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
	if len(early) > 0 {
		n, err := t.upstream.Write(early)
		up += int64(n)
		if err != nil {
			return up, 0
		}
	}
	t.mu.Lock()
	t.idleTimer = time.AfterFunc(t.idle, t.checkIdle)
	if t.lifetime > 0 {
		t.lifeTimer = time.AfterFunc(t.lifetime, t.close)
	}
	t.mu.Unlock()

	done := make(chan int64, 1)
	go func() { done <- t.pipe(rawClient, t.upstream) }()
	up += t.pipe(t.upstream, rawClient)
	down = <-done
	return up, down
}

// pipe copies src to dst until src ends, then half-closes dst so the peer sees EOF while the
// other direction may still be sending (TLS close_notify, HTTP/1.0 responses).
func (t *tunnel) pipe(dst, src net.Conn) int64 {
	var total int64
	for {
		_ = src.SetReadDeadline(time.Now().Add(t.tick))
		n, err := io.Copy(dst, src)
		total += n
		if n > 0 {
			t.touch()
		}
		switch {
		case err == nil:
			closeWrite(dst)
			return total
		case isTimeout(err) && !t.isClosed():
			continue
		default:
			// A reset or a write error on either side ends the whole tunnel: there is nobody
			// left to deliver the other direction's bytes to.
			t.close()
			return total
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

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

func (t *tunnel) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// close ends the tunnel from any goroutine; it is idempotent.
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
