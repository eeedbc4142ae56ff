//go:build !linux

package server

import (
	"context"
	"net"
)

// listenProxy binds a proxy listener with Go's per-connection keep-alive (the gateway runs on
// Linux, where listen_linux.go sets it once on the listening socket; this keeps the process
// package building for tools cross-compiled for the SCP's Windows).
func listenProxy(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(context.Background(), "tcp", addr)
}
