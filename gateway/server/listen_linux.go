//go:build linux

package server

import (
	"context"
	"net"
	"syscall"
)

// Keep-alive of client connections, Go's defaults: probes after 15 s idle, every 15 s, 9 times.
const (
	keepAliveIdleSecs     = 15
	keepAliveIntervalSecs = 15
	keepAliveCount        = 9
)

// listenProxy binds a proxy listener whose accepted connections inherit TCP keep-alive from
// the listening socket (Linux copies the socket's options to every connection it accepts):
// set once here instead of with four setsockopt calls per accepted connection.
func listenProxy(addr string) (net.Listener, error) {
	lc := net.ListenConfig{
		KeepAlive: -1, // Go does not set keep-alive per connection: it is inherited
		Control: func(_, _ string, c syscall.RawConn) error {
			var opErr error
			err := c.Control(func(fd uintptr) {
				for _, o := range []struct{ level, name, value int }{
					{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, keepAliveIdleSecs},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, keepAliveIntervalSecs},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveCount},
				} {
					if err := syscall.SetsockoptInt(int(fd), o.level, o.name, o.value); err != nil && opErr == nil {
						opErr = err
					}
				}
			})
			if err != nil {
				return err
			}
			return opErr
		},
	}
	return lc.Listen(context.Background(), "tcp", addr)
}
