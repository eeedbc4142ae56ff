package limits

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/scpgate/scpgate/gateway/linger"
	"github.com/scpgate/scpgate/policy"
)

const (
	// rejectWriteTimeout bounds writing the 429 (on the Accept goroutine).
	rejectWriteTimeout = time.Second
	// rejectLinger bounds reading what a rejected client had sent (its CONNECT request) before
	// closing, so the close does not turn into a TCP reset (package linger).
	rejectLinger = 2 * time.Second
	// maxLingering bounds concurrent lingering closes; beyond it a rejected connection gets
	// the 429 and an immediate close, so a flood cannot pile up goroutines.
	maxLingering = 64
)

// LimitListener wraps ln so that each accepted connection must be admitted by l (keyed by the
// peer's IP address, see the package comment). Accept returns admitted connections; a rejected
// one is answered by refuse (the gateway's refusal: 429, X-Scpgate-Reason: too_many_connections,
// audited) with a write deadline set, and closed; Accept goes on to the next connection.
//
// The 429 is plain HTTP. For the TLS proxy listener put LimitListener inside the TLS one
// (tls.NewListener(LimitListener(tcp, ...), cfg)): net/http recognises TLS connections by their
// type (*tls.Conn), which a wrapper around them would hide. A rejected TLS client then sees a
// handshake failure instead of the 429; the rejection is still audited through refuse.
// refuse runs on the Accept goroutine and must not block beyond the write deadline.
//
// A rejected connection gets the 429 and a half-close at once, then is closed gracefully in the
// background (read and discard until the client closes, at most 2 s): closing a socket with
// unread input (the client's CONNECT request) sends a TCP reset, after which a client may report
// "connection reset" instead of the 429 (Windows, where the SCP runs, can drop the received
// data). Close of the returned listener ends those lingering closes and waits for them.
//
// Admitted connections are wrapped so that Close releases their slot exactly once. The wrapper
// has a NetConn() net.Conn method (like *tls.Conn) returning the accepted connection, so the
// gateway can splice on the raw *net.TCPConn. Whoever unwraps it must still Close the wrapper
// (closing the inner connection alone leaks the slot). The wrapper also forwards CloseWrite and
// CloseRead, and its ReadFrom splices when the source is another such wrapper or a *net.TCPConn.
func LimitListener(ln net.Listener, l *ConnLimiter, refuse func(c net.Conn, reason policy.Reason) error) net.Listener {
	return &limitListener{Listener: ln, limiter: l, refuse: refuse, maxLingering: maxLingering, lingering: make(map[net.Conn]struct{})}
}

type limitListener struct {
	net.Listener
	limiter      *ConnLimiter
	refuse       func(net.Conn, policy.Reason) error
	maxLingering int // the constant, as a field so a test can exercise the fallback

	mu        sync.Mutex
	closed    bool
	lingering map[net.Conn]struct{}
	wg        sync.WaitGroup
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := peerAddr(c)
		release, reason, ok := ll.limiter.Acquire(client)
		if ok {
			return &conn{Conn: c, release: release}, nil
		}
		ll.reject(c, reason)
	}
}

// reject answers c through refuse and closes it, lingering in the background when there is room.
//
// The write happens here, on the Accept goroutine: a fresh socket's send buffer is empty, so it
// completes at once (the deadline is only a backstop), and doing it before the hand-off means a
// listener Close cannot cut a rejection short before the client has its answer.
func (ll *limitListener) reject(c net.Conn, reason policy.Reason) {
	_ = c.SetWriteDeadline(time.Now().Add(rejectWriteTimeout))
	if err := ll.refuse(c, reason); err != nil {
		_ = c.Close()
		return
	}
	// Before c is registered, so a concurrent Close's earlier deadline always wins.
	linger.Start(c, rejectLinger)
	ll.mu.Lock()
	if ll.closed || len(ll.lingering) >= ll.maxLingering {
		ll.mu.Unlock()
		_ = c.Close()
		return
	}
	ll.lingering[c] = struct{}{}
	ll.wg.Add(1)
	ll.mu.Unlock()

	go func() {
		defer ll.wg.Done()
		linger.Finish(c)
		ll.mu.Lock()
		delete(ll.lingering, c)
		ll.mu.Unlock()
	}()
}

// Close closes the listener, cuts short the background rejections and waits for them.
func (ll *limitListener) Close() error {
	err := ll.Listener.Close()
	ll.mu.Lock()
	ll.closed = true
	for c := range ll.lingering {
		_ = c.SetReadDeadline(time.Now()) // unblocks their drain at once
	}
	ll.mu.Unlock()
	ll.wg.Wait()
	return err
}

// peerAddr returns the client's IP address, or the zero Addr for a non-IP peer.
func peerAddr(c net.Conn) netip.Addr {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr()
	case nil:
		return netip.Addr{}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		return ap.Addr()
	}
}

// conn is an admitted connection. It embeds the net.Conn interface, not *net.TCPConn: embedding
// the concrete type would promote methods such as ReadFrom that bypass whatever a wrapper
// overrides. The methods a splice and a half-close need are forwarded explicitly below.
type conn struct {
	net.Conn
	release func() // idempotent
}

// Close closes the connection and frees its slot; a second Close only returns the inner error.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// NetConn returns the accepted connection. Closing it does not release the slot: Close c.
func (c *conn) NetConn() net.Conn { return c.Conn }

var errNoHalfClose = errors.New("limits: connection does not support half-close")

// CloseWrite half-closes the connection when the inner one supports it.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errNoHalfClose
}

// CloseRead half-closes the reading side when the inner one supports it.
func (c *conn) CloseRead() error {
	if cr, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return errNoHalfClose
}

// ReadFrom lets io.Copy(c, src) reach the inner connection's ReadFrom, which on Linux splices
// from a *net.TCPConn. A src that is itself a conn is unwrapped: conn overrides nothing on the
// read path, so reading the inner connection directly is equivalent.
func (c *conn) ReadFrom(src io.Reader) (int64, error) {
	if s, ok := src.(*conn); ok {
		src = s.Conn
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, src) // the struct hides ReadFrom: no recursion
}
