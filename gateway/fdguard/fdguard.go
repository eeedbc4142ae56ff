// Package fdguard keeps the gateway answering when the process runs out of file descriptors.
//
// Out of descriptors, accept(2) fails with EMFILE and leaves the connection in the backlog:
// the client waits in silence while the accept loop spins. A Listener keeps one descriptor in
// reserve; on EMFILE it waits until a client is queued, frees the reserve, accepts that client,
// answers it (503 out_of_resources, written by the caller's respond function), closes it
// without a reset and takes the reserve again. A Guard turns every such failure (accept, dial,
// pipe) into one WARN per episode and a count, and notices when descriptors are free again.
package fdguard

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/scpgate/scpgate/gateway/linger"
)

// lingerTimeout bounds how long an answered client may keep the reserve descriptor: the
// listener reads what it sent (its request) until it closes, so that the close does not turn
// into a TCP reset that discards the answer before the client reads it (package linger).
const lingerTimeout = time.Second

// IsExhausted reports whether err says the process or the system has no file descriptor left.
func IsExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// quietPeriod is how long an episode must go without a failure before a success ends it. Out of
// descriptors, every refused or closed connection frees one for a moment and the next accept
// succeeds; without it one episode would log a WARN for every such flap.
const quietPeriod = 2 * time.Second

// Guard tracks out-of-descriptor episodes. Its methods are safe for concurrent use.
type Guard struct {
	log   *slog.Logger
	count func(where string)
	now   func() time.Time // tests replace it
	quiet time.Duration

	on      atomic.Bool // fast path of Clear: false outside an episode
	mu      sync.Mutex  // orders Hit and Clear within an episode
	lastHit time.Time
}

// New returns a Guard that logs to logger and calls count (if set) with "accept", "dial" or
// "pipe" for every failure.
func New(logger *slog.Logger, count func(where string)) *Guard {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Guard{log: logger, count: count, now: time.Now, quiet: quietPeriod}
}

// WithQuietPeriod sets how long an episode must go without a failure before a success ends it
// (default 2 s) and returns g; tests that end an episode at once use 0.
func (g *Guard) WithQuietPeriod(d time.Duration) *Guard {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.quiet = d
	return g
}

// Hit records that an operation (where) failed for lack of descriptors. The first hit of an
// episode logs a WARN; later ones only count.
func (g *Guard) Hit(where string, err error) {
	if g.count != nil {
		g.count(where)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastHit = g.now()
	if g.on.CompareAndSwap(false, true) {
		g.log.Warn("out of file descriptors: refusing new connections with 503 out_of_resources until descriptors are free; raise LimitNOFILE or lower limits.max_connections",
			"where", where, "err", err)
	}
}

// Clear reports that an operation that needed a descriptor got one. It ends the episode once
// quietPeriod has passed since the last failure.
func (g *Guard) Clear() {
	if !g.on.Load() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.now().Sub(g.lastHit) >= g.quiet && g.on.CompareAndSwap(true, false) {
		g.log.Info("file descriptors available again: serving normally")
	}
}

// Exhausted reports whether an episode is going on.
func (g *Guard) Exhausted() bool { return g.on.Load() }

// Listener wraps ln (a listener that returns accept errors as they are, e.g. *net.TCPListener)
// so that running out of descriptors answers the waiting client through respond, which must
// write its answer without blocking for long (set a write deadline) and leave the connection
// open: the listener half-closes it, reads what the client sent until it closes (at most
// lingerTimeout) and closes it. Close of the returned listener cuts that short and waits.
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

	mu        sync.Mutex    // serialises the reserve dance between concurrent Accepts
	reserve   *os.File      // a descriptor of /dev/null, nil when not held
	lingering net.Conn      // the answered client being drained; it holds the reserve's place
	drained   chan struct{} // closed when lingering is closed and the reserve retaken
	closed    bool
	lingers   sync.WaitGroup

	queuedWait func() // tests: called when Accept starts waiting for a queued client
}

// reserveError is the failure to take the reserve back while out of descriptors. It is a
// temporary net.Error, so that an accept loop (net/http's) backs off and retries instead of
// ending.
type reserveError struct{ err error }

func (e reserveError) Error() string {
	return "fdguard: no descriptor to accept with: " + e.err.Error()
}
func (e reserveError) Unwrap() error   { return e.err }
func (e reserveError) Timeout() bool   { return false }
func (e reserveError) Temporary() bool { return true }

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
		// EMFILE does not mean a client is queued: the kernel takes the descriptor before it
		// looks at the queue. The reserve is spent only once one is. Freed earlier, it could go
		// to anything else in the process (a tunnel's dial) while no client is there, and the
		// next client would wait unanswered in the backlog until a tunnel closed.
		if werr := l.waitQueued(); werr != nil {
			return nil, werr
		}
		c, err = l.acceptOnReserve(err)
		if c != nil || err != nil {
			return c, err
		}
	}
}

// acceptOnReserve frees the reserve descriptor and accepts the queued client with it. If the
// reserve can be taken again afterwards, descriptors are free and the client is served
// (returned); if not, it is answered and closed (nil, nil), and its descriptor becomes the
// reserve again. cause is the accept error that sent it here. The lock covers only the
// reserve, never the Accept, so a Close is not held up.
func (l *listener) acceptOnReserve(cause error) (net.Conn, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, net.ErrClosed
	}
	for l.reserve == nil && l.drained != nil {
		// The last answered client still holds the descriptor: wait until it is closed.
		drained := l.drained
		l.mu.Unlock()
		<-drained
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, net.ErrClosed
		}
	}
	if l.reserve == nil {
		if err := l.takeReserve(); err != nil {
			// Something else took the descriptor: the caller's accept loop backs off and
			// retries.
			l.mu.Unlock()
			l.guard.Hit("accept", err)
			return nil, reserveError{err}
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
		if IsExhausted(err) {
			// Taken between the reserve's close and the accept: nobody answered.
			l.guard.Hit("accept", err)
		}
		return nil, err
	}
	if retaken {
		l.guard.Clear()
		return c, nil
	}
	l.guard.Hit("accept", cause)
	l.respond(c)
	l.linger(c)
	return nil, nil
}

// linger closes the answered client c without a reset: FIN after the answer, then read what
// the client sent until it closes or lingerTimeout passes, in the background so that Accept
// goes on. Its descriptor becomes the reserve again.
func (l *listener) linger(c net.Conn) {
	linger.Start(c, lingerTimeout) // before c is published: Close's earlier deadline wins
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	l.lingering = c
	l.drained = make(chan struct{})
	l.lingers.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.lingers.Done()
		linger.Finish(c)
		l.mu.Lock()
		l.lingering = nil
		if !l.closed && l.reserve == nil {
			_ = l.takeReserve() // the answered client's descriptor, most likely
		}
		close(l.drained)
		l.drained = nil
		l.mu.Unlock()
	}()
}

func (l *listener) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		if l.reserve != nil {
			_ = l.reserve.Close()
			l.reserve = nil
		}
		if l.lingering != nil {
			_ = l.lingering.SetReadDeadline(time.Now()) // ends its drain at once
		}
	}
	l.mu.Unlock()
	err := l.Listener.Close()
	l.lingers.Wait()
	return err
}
