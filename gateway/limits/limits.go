// Package limits is the gateway's admission control: how many connections may be open, overall
// and per client, and how fast one client may make requests (README.md, "The gateway configuration").
//
// # Client identity
//
// Limits count per client key, not per raw address:
//   - IPv4 clients by their address;
//   - IPv6 clients by their /64, because one host usually owns (and may freely pick addresses
//     from) a whole /64 (RFC 4291 interface identifiers, RFC 8981 temporary addresses): keying
//     by address would let one host open 2^64 "clients";
//   - IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4
//     peer) are unmapped first, so they count as the IPv4 address; zones are dropped.
//
// An invalid (zero) netip.Addr, for example a peer on a non-IP listener, is one key of its own.
//
// Everything here is safe for concurrent use, starts no goroutines (the token buckets refill
// lazily from the clock when asked) and holds memory bounded by its limits. A nil *ConnLimiter or
// *RateLimiter admits everything, so a gateway without limits configured needs no special case.
package limits

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scpgate/scpgate/policy"
)

// clientKey maps an address to the unit limits are counted in (see the package comment).
func clientKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64) // cannot fail: 64 <= 128 and the zone is gone
		return p.Addr()
	}
	return a
}

// ConnLimiter bounds concurrent connections overall and per client key.
type ConnLimiter struct {
	maxTotal, maxPerClient int

	mu    sync.Mutex
	total int
	// per holds only clients with open connections (entries are deleted at zero), so its size
	// is bounded by the number of open connections, which maxTotal or the fd limit bounds.
	per map[netip.Addr]int
}

// NewConnLimiter returns a limiter for at most maxTotal connections in all and maxPerClient per
// client key; 0 (or less) means unlimited.
func NewConnLimiter(maxTotal, maxPerClient int) *ConnLimiter {
	return &ConnLimiter{maxTotal: maxTotal, maxPerClient: maxPerClient, per: make(map[netip.Addr]int)}
}

// Acquire admits one connection from client, or reports why not (too_many_connections).
// When ok, the caller must call release once the connection is closed; calling it again does
// nothing, so it is safe to both defer it and call it on an early path. When !ok, release is a
// no-op (never nil).
func (l *ConnLimiter) Acquire(client netip.Addr) (release func(), reason policy.Reason, ok bool) {
	if l == nil {
		return func() {}, "", true
	}
	k := clientKey(client)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxTotal > 0 && l.total >= l.maxTotal || l.maxPerClient > 0 && l.per[k] >= l.maxPerClient {
		return func() {}, policy.ReasonTooManyConnections, false
	}
	l.total++
	l.per[k]++
	var done atomic.Bool
	return func() {
		if done.Swap(true) {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.total--
		if l.per[k]--; l.per[k] <= 0 {
			delete(l.per, k)
		}
	}, "", true
}

// Open returns the number of admitted connections not yet released.
func (l *ConnLimiter) Open() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// OpenFor returns the open connections counted against client's key: for an IPv6 client that
// is its whole /64.
func (l *ConnLimiter) OpenFor(client netip.Addr) int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.per[clientKey(client)]
}

// DefaultMaxClients is the number of clients a RateLimiter remembers when given maxClients <= 0.
// An entry costs roughly 100 bytes, so the default bounds the limiter to a few MiB.
const DefaultMaxClients = 65536

// RateLimiter is a token bucket per client key: a client may make burst requests at once and
// then perSecond requests per second on average.
//
// It is implemented as GCRA (the "virtual scheduling" form of the token bucket, ITU-T I.371):
// per client it stores only the theoretical arrival time of the next request, refills are
// computed from the clock when the client is next seen, and the arithmetic is exact integer
// nanoseconds instead of fractional tokens.
//
// At most maxClients clients are remembered; a new client beyond that evicts the least recently
// seen one. The least recently seen is the client whose bucket is most likely full again, so
// forgetting it (it comes back with a full bucket) usually changes nothing.
type RateLimiter struct {
	interval time.Duration // time to earn one token (1/perSecond)
	tau      time.Duration // how far ahead of now a client may run: (burst-1) intervals
	max      int
	now      func() time.Time

	mu      sync.Mutex
	clients map[netip.Addr]*bucket
	lru     bucket // sentinel of a circular list, most recently seen first
}

type bucket struct {
	key        netip.Addr
	tat        time.Time // theoretical arrival time: when the bucket will be full again
	prev, next *bucket
}

// maxInterval caps the emission interval so that tiny rates cannot overflow time.Duration.
const maxInterval = 24 * time.Hour

// NewRateLimiter returns a limiter allowing perSecond requests per second with bursts of burst
// per client key. perSecond <= 0 means unlimited (Allow always admits and stores nothing);
// rates below one a day are treated as one a day. burst < 1 is taken as 1. maxClients bounds the
// clients remembered (<= 0 means DefaultMaxClients). now is the clock (nil means time.Now);
// tests inject a fake one.
func NewRateLimiter(perSecond float64, burst int, maxClients int, now func() time.Time) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	if maxClients <= 0 {
		maxClients = DefaultMaxClients
	}
	burst = max(burst, 1)
	r := &RateLimiter{max: maxClients, now: now, clients: make(map[netip.Addr]*bucket)}
	r.lru.prev, r.lru.next = &r.lru, &r.lru
	if !(perSecond > 0) { // also NaN
		return r // interval 0: unlimited
	}
	iv := float64(time.Second) / perSecond
	switch {
	case iv > float64(maxInterval):
		r.interval = maxInterval
	case iv < 1:
		r.interval = 1 // over 10^9 per second: as good as unlimited, but still counted
	default:
		r.interval = time.Duration(iv)
	}
	r.tau = time.Duration(min(float64(r.interval)*float64(burst-1), float64(100*365*24*time.Hour)))
	return r
}

// Allow reports whether client may make a request now and, if so, takes a token. When it may
// not, retryAfter is how long until a token is available (always > 0); HTTP callers round it up
// to whole seconds for Retry-After.
func (r *RateLimiter) Allow(client netip.Addr) (ok bool, retryAfter time.Duration) {
	if r == nil || r.interval == 0 {
		return true, 0
	}
	now := r.now()
	k := clientKey(client)
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.clients[k]
	if b == nil {
		if len(r.clients) >= r.max {
			old := r.lru.prev
			r.unlink(old)
			delete(r.clients, old.key)
			// Reuse the evicted entry: under a flood of new clients this allocates nothing.
			*old = bucket{}
			b = old
		} else {
			b = &bucket{}
		}
		b.key, b.tat = k, now // tat == now: a full bucket
		r.clients[k] = b
	} else {
		r.unlink(b)
	}
	r.pushFront(b)

	tat := b.tat
	if tat.Before(now) {
		tat = now // the bucket is full; tokens beyond burst are not banked
	}
	if ahead := tat.Sub(now); ahead > r.tau {
		return false, ahead - r.tau
	}
	b.tat = tat.Add(r.interval)
	return true, 0
}

// Len returns how many clients are remembered (at most maxClients).
func (r *RateLimiter) Len() int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.clients)
}

func (r *RateLimiter) unlink(b *bucket) {
	b.prev.next, b.next.prev = b.next, b.prev
	b.prev, b.next = nil, nil
}

func (r *RateLimiter) pushFront(b *bucket) {
	b.prev, b.next = &r.lru, r.lru.next
	r.lru.next.prev = b
	r.lru.next = b
}
