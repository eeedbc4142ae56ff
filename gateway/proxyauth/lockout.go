package proxyauth

import (
	"container/list"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scpgate/scpgate/policy"
)

// LockoutConfig configures a [Lockout].
type LockoutConfig struct {
	MaxFailures   int              `yaml:"max_failures"`   // failures per client address before lockout; default 5
	FailureWindow time.Duration    `yaml:"failure_window"` // default 1m
	Lockout       time.Duration    `yaml:"lockout"`        // default 5m
	MaxClients    int              `yaml:"-"`              // client addresses tracked; default 16384
	Now           func() time.Time `yaml:"-"`
	// Logger gets one WARN line when an address is locked out and one when its lockout ends.
	Logger *slog.Logger `yaml:"-"`
}

// Lockout wraps an Authenticator: MaxFailures failed logins from one client address within
// FailureWindow lock the address out for Lockout. It is safe for concurrent use.
type Lockout struct {
	inner       Authenticator
	maxFailures int
	window      time.Duration
	lockout     time.Duration
	maxClients  int
	now         func() time.Time
	log         *slog.Logger

	mu          sync.Mutex // guards the client table
	clients     map[netip.Addr]*list.Element
	clientOrder *list.List // of *clientState, least recently failing first
	closed      bool

	failures, lockouts, lockedOut atomic.Uint64
}

type clientState struct {
	addr        netip.Addr
	failures    int
	windowStart time.Time
	lockedUntil time.Time
	// failUser is the user of every failure in the window, unless mixed: only that user's
	// success clears the count (a typo), never another account's.
	failUser string
	mixed    bool
	// endTimer logs the end of a lockout; nil when none is pending.
	endTimer *time.Timer
}

// LockoutStats are cumulative counters plus the size of the client table.
type LockoutStats struct {
	Failures       uint64
	Lockouts       uint64
	LockedOut      uint64 // attempts refused because the address was locked out
	TrackedClients int
}

// NewLockout wraps inner with cfg's defaults filled in.
func NewLockout(inner Authenticator, cfg LockoutConfig) *Lockout {
	l := &Lockout{
		inner:       inner,
		maxFailures: cfg.MaxFailures,
		window:      cfg.FailureWindow,
		lockout:     cfg.Lockout,
		maxClients:  cfg.MaxClients,
		now:         cfg.Now,
		log:         cfg.Logger,
		clients:     map[netip.Addr]*list.Element{},
		clientOrder: list.New(),
	}
	if l.maxFailures <= 0 {
		l.maxFailures = 5
	}
	if l.window <= 0 {
		l.window = time.Minute
	}
	if l.lockout <= 0 {
		l.lockout = 5 * time.Minute
	}
	if l.maxClients <= 0 {
		l.maxClients = 16384
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	return l
}

// Challenges implements [Authenticator]: the wrapped authenticator's.
func (l *Lockout) Challenges() []string { return l.inner.Challenges() }

// Authenticate implements [Authenticator]. A locked-out address gets locked_out without the
// wrapped authenticator being asked (no bcrypt is spent on it).
func (l *Lockout) Authenticate(r *http.Request, client netip.Addr) Outcome {
	key := clientKey(client)
	if wait := l.lockedFor(key, l.now()); wait > 0 {
		l.lockedOut.Add(1)
		o := Outcome{Reason: policy.ReasonLockedOut, RetryAfter: wait}
		if at, ok := l.inner.(attempter); ok {
			o.User = at.attemptedUser(r)
		}
		return o
	}
	o := l.inner.Authenticate(r, client)
	switch {
	case o.OK:
		l.succeed(key, o.User)
	case o.Reason == policy.ReasonAuthFailed:
		o.Failures = l.fail(key, o.User)
	}
	return o
}

func (l *Lockout) lockedFor(key netip.Addr, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.clients[key]; ok {
		if st := el.Value.(*clientState); now.Before(st.lockedUntil) {
			return st.lockedUntil.Sub(now)
		}
	}
	return 0
}

// fail records a failure and returns the count in the window; the failure that reaches
// MaxFailures is still answered 407 (it was a wrong password), later attempts get locked_out.
func (l *Lockout) fail(key netip.Addr, user string) int {
	l.failures.Add(1)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var st *clientState
	if el, ok := l.clients[key]; ok {
		st = el.Value.(*clientState)
		l.clientOrder.MoveToBack(el)
	} else {
		for l.clientOrder.Len() >= l.maxClients {
			oldest := l.clientOrder.Front()
			l.forget(oldest)
		}
		st = &clientState{addr: key}
		l.clients[key] = l.clientOrder.PushBack(st)
	}
	if now.Before(st.lockedUntil) {
		// Raced with the failure that locked it; keep the lockout as it is.
		return 0
	}
	if st.failures == 0 || now.Sub(st.windowStart) >= l.window {
		st.failures, st.windowStart = 0, now
		st.failUser, st.mixed = user, false
	}
	if user != st.failUser {
		st.mixed = true
	}
	st.failures++
	n := st.failures
	if st.failures >= l.maxFailures {
		st.failures = 0
		st.lockedUntil = now.Add(l.lockout)
		l.lockouts.Add(1)
		l.log.Warn("client address locked out after repeated failed logins", "client", key, "failures", n, "lockout", l.lockout, "user", user)
		if !l.closed {
			if st.endTimer != nil {
				st.endTimer.Stop()
			}
			st.endTimer = time.AfterFunc(l.lockout, func() {
				l.log.Warn("client address lockout ended", "client", key)
			})
		}
	}
	return n
}

// succeed resets the client's failure count, unless it is locked out (a concurrent check may have
// locked it while this one was verifying) or the failures were not all for user: a valid account
// must not clear the count of guesses at other accounts' passwords.
func (l *Lockout) succeed(key netip.Addr, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.clients[key]
	if !ok {
		return
	}
	st := el.Value.(*clientState)
	if !l.now().Before(st.lockedUntil) && (st.failures == 0 || (!st.mixed && st.failUser == user)) {
		l.forget(el)
	}
}

// forget drops a client's entry; l.mu is held.
func (l *Lockout) forget(el *list.Element) {
	st := el.Value.(*clientState)
	if st.endTimer != nil {
		st.endTimer.Stop()
	}
	delete(l.clients, st.addr)
	l.clientOrder.Remove(el)
}

// Close stops the timers that log the end of lockouts; lockouts themselves keep working.
func (l *Lockout) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for el := l.clientOrder.Front(); el != nil; el = el.Next() {
		if st := el.Value.(*clientState); st.endTimer != nil {
			st.endTimer.Stop()
			st.endTimer = nil
		}
	}
}

// Stats returns the counters.
func (l *Lockout) Stats() LockoutStats {
	l.mu.Lock()
	tracked := len(l.clients)
	l.mu.Unlock()
	return LockoutStats{Failures: l.failures.Load(), Lockouts: l.lockouts.Load(), LockedOut: l.lockedOut.Load(), TrackedClients: tracked}
}
