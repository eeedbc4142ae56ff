// Package linger closes a connection that has just been answered without turning the close into
// a TCP reset. Closing a socket with unread bytes (a refused client's CONNECT request, or TLS
// bytes it pipelined behind it) makes the kernel send a reset, and a reset can discard the answer
// before the client reads it. So: FIN after the answer, read what the client still sends until it
// closes or a deadline passes, then close.
package linger

import (
	"io"
	"net"
	"time"
)

// MaxDrain bounds the bytes read from a client before its connection is closed.
const MaxDrain = 64 << 10

// Start half-closes c (when it can) and sets the deadline of the drain that Finish does. It does
// not block. Callers that let another goroutine cut the drain short (an earlier read deadline)
// call Start before they publish c, so that the earlier deadline wins.
func Start(c net.Conn, d time.Duration) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
}

// Finish reads and discards what the client sends until it closes, the deadline set by Start
// passes, or MaxDrain bytes, and closes c.
func Finish(c net.Conn) {
	_, _ = io.Copy(io.Discard, io.LimitReader(c, MaxDrain))
	_ = c.Close()
}

// Close is Start and Finish on the calling goroutine.
func Close(c net.Conn, d time.Duration) {
	Start(c, d)
	Finish(c)
}
