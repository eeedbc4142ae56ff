// Package fdguard keeps the gateway answering when the process runs out of file descriptors.
//
// Out of descriptors, accept(2) fails with EMFILE and leaves the connection in the backlog:
// the client waits in silence while the accept loop spins. A Listener keeps one descriptor in
// reserve; on EMFILE it frees it, accepts the waiting connection, answers it (503
// out_of_resources, written by the caller's respond function), closes it and takes the reserve
// again. A Guard turns every such failure (accept, dial, pipe) into one WARN per episode and a
// count, and notices when descriptors are free again.
package fdguard

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// IsExhausted reports whether err says the process or the system has no file descriptor left.
func IsExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// Guard tracks out-of-descriptor episodes. Its methods are safe for concurrent use.
type Guard struct {
	log   *slog.Logger
	count func(where string)
	on    atomic.Bool
}

// New returns a Guard that logs to logger and calls count (if set) with "accept", "dial" or
// "pipe" for every failure.
func New(logger *slog.Logger, count func(where string)) *Guard {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Guard{log: logger, count: count}
}

// Hit records that an operation (where) failed for lack of descriptors. The first hit of an
// episode logs a WARN; later ones only count.
func (g *Guard) Hit(where string, err error) {
	if g.count != nil {
		g.count(where)
	}
	if g.on.CompareAndSwap(false, true) {
		g.log.Warn("out of file descriptors: refusing new connections with 503 out_of_resources until descriptors are free; raise LimitNOFILE or lower limits.max_connections",
			"where", where, "err", err)
	}
}

// Clear ends an episode: an operation that needed a descriptor got one.
func (g *Guard) Clear() {
	if g.on.Load() && g.on.CompareAndSwap(true, false) {
		g.log.Info("file descriptors available again: serving normally")
	}
}

// Exhausted reports whether an episode is going on.
func (g *Guard) Exhausted() bool { return g.on.Load() }

// Listener wraps ln (a listener that returns accept errors as they are, e.g. *net.TCPListener)
// so that running out of descriptors answers the waiting client through respond, which must
// write its answer and close the connection without blocking for long.
func (g *Guard) Listener(ln net.Listener, respond func(net.Conn)) (net.Listener, error) {
	l := &listener{Listener: ln, guard: g, respond: respond}
	if err := l.takeReserve(); err != nil {
		return nil, err
	}
	return l, nil
}

type listener struct {
	net.Listener
	guard   *Guard
	respond func(net.Conn)

	mu      sync.Mutex // serialises the reserve dance between concurrent Accepts
	reserve *os.File   // a descriptor of /dev/null, nil when not held
	closed  bool
}

func (l *listener) takeReserve() error {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	l.reserve = f
	return nil
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			l.guard.Clear()
			return c, nil
		}
		if !IsExhausted(err) {
			return nil, err
		}
		l.guard.Hit("accept", err)
		c, err = l.acceptOnReserve()
		if c != nil || err != nil {
			return c, err
		}
	}
}

// acceptOnReserve frees the reserve descriptor and accepts with it. EMFILE from accept4 does
// not mean a client is waiting (the kernel takes the descriptor before it looks at the
// queue), so this may wait for the next client. If the reserve can be taken again afterwards,
// descriptors are free and the client is served (returned); if not, it is answered and closed
// (nil, nil), and its descriptor becomes the reserve again. The lock covers only the reserve,
// never the Accept, so a Close is not held up.
func (l *listener) acceptOnReserve() (net.Conn, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, net.ErrClosed
	}
	if l.reserve == nil {
		if err := l.takeReserve(); err != nil {
			// Nothing to spend: the caller's accept loop backs off (EMFILE is temporary).
			l.mu.Unlock()
			return nil, err
		}
	}
	_ = l.reserve.Close()
	l.reserve = nil
	l.mu.Unlock()

	c, err := l.Listener.Accept()

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		if c != nil {
			_ = c.Close()
		}
		return nil, net.ErrClosed
	}
	retaken := l.takeReserve() == nil
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if retaken {
		l.guard.Clear()
		return c, nil
	}
	l.respond(c)
	l.mu.Lock()
	if !l.closed && l.reserve == nil {
		_ = l.takeReserve() // the answered client's descriptor, most likely
	}
	l.mu.Unlock()
	return nil, nil
}

func (l *listener) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		if l.reserve != nil {
			_ = l.reserve.Close()
			l.reserve = nil
		}
	}
	l.mu.Unlock()
	return l.Listener.Close()
}
