//go:build unix

package fdguard

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// queuedPollMillis bounds one wait of poll(2) for a queued client, so that Close (which waits
// for the wait to end) is not held up longer than this.
const queuedPollMillis = 100

// waitQueued blocks until a client is queued on the listener or the listener is closed. There
// is no descriptor to spare for an epoll or a wake-up pipe, and Go's poller does not wait on a
// listener for anyone but Accept; so this is poll(2) on the listening socket itself, a tenth of
// a second at a time. A listener that cannot be polled (no syscall.Conn) returns at once, and
// the accept on the reserve waits for the client instead.
func (l *listener) waitQueued() error {
	sc, ok := l.Listener.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	if l.queuedWait != nil {
		l.queuedWait()
	}
	for {
		var queued, failed bool
		if err := rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, queuedPollMillis)
			queued = n > 0
			failed = err != nil && !errors.Is(err, unix.EINTR)
		}); err != nil {
			return err // closed
		}
		if queued || failed {
			return nil
		}
		l.mu.Lock()
		closed := l.closed
		l.mu.Unlock()
		if closed {
			return net.ErrClosed
		}
	}
}
