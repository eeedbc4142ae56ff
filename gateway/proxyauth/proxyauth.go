// Package proxyauth implements HTTP Basic proxy authentication for the gateway: an htpasswd file
// with bcrypt hashes only, a cache of verified credentials, and a lockout of client addresses that
// keep failing.
//
// Check returns a Result; the gateway maps its Reason:
//
//   - "auth_required": no credentials (or another scheme): 407 with Proxy-Authenticate: Challenge().
//   - "auth_failed": wrong or malformed credentials: 407 again, with the same challenge.
//   - "rate_limited": the client address is locked out: 429 with Retry-After set to RetryAfter
//     rounded up to whole seconds. No bcrypt work is spent on a locked-out client.
//
// The gateway must never forward Proxy-Authorization upstream.
//
// Cost. bcrypt at the default cost takes ~60 ms, far more than the rest of a CONNECT, so verified
// credentials are cached: the key is HMAC-SHA256 under a per-process random key of
// user "\x00" password, compared in constant time; the plaintext password is never stored, and the
// MAC is useless outside this process. A cache hit spends no bcrypt. An unknown user still spends
// one bcrypt comparison against a dummy hash so that timing does not reveal which users exist.
//
// Lockout. Failures are counted per client address (IPv4, or the /64 of an IPv6 address, since one
// IPv6 host can use a whole /64): MaxFailures failures within FailureWindow lock the address out
// for Lockout. A success resets the count only when every failure in the window was for that same
// user (a typo), never after guesses at other accounts. The table of addresses is bounded; when
// full, the least recently failing address is forgotten. Clients behind one NAT share a count.
package proxyauth

import (
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Reasons in Result.
const (
	ReasonAuthRequired = "auth_required"
	ReasonAuthFailed   = "auth_failed"
	ReasonRateLimited  = "rate_limited"
)

// Config configures an Authenticator.
type Config struct {
	Store         *Store        // nil: nobody can log in
	Realm         string        // default "scpgate"
	CacheSize     int           // verified users cached; default 1024, negative disables the cache
	CacheTTL      time.Duration // default 5m
	MaxFailures   int           // failures per client address before lockout; default 5
	FailureWindow time.Duration // default 1m
	Lockout       time.Duration // default 5m
	MaxClients    int           // client addresses tracked for lockout; default 16384
	Now           func() time.Time
}

// Result of a Check.
type Result struct {
	User       string // set only when OK
	OK         bool
	Reason     string // "", "auth_required", "auth_failed", "rate_limited"
	RetryAfter time.Duration
	// Failures is, for auth_failed, how many failures this client address has had in the
	// current window, this one included; the gateway answers later ones more slowly.
	Failures int
}

// Stats are cumulative counters plus current table sizes.
type Stats struct {
	CacheHits      uint64
	CacheMisses    uint64
	BcryptCompares uint64
	Failures       uint64
	Lockouts       uint64
	RateLimited    uint64
	CachedUsers    int
	TrackedClients int
}

// Authenticator checks Proxy-Authorization values. It is safe for concurrent use.
type Authenticator struct {
	realm       string
	cacheSize   int
	ttl         time.Duration
	maxFailures int
	window      time.Duration
	lockout     time.Duration
	maxClients  int
	now         func() time.Time
	key         []byte
	compare     func(hash, password []byte) error // bcrypt; replaced in tests

	mu         sync.Mutex // guards store, gen and the cache
	store      *Store
	gen        uint64 // bumped by Swap, so a check that began before it cannot fill the new cache
	cache      map[string]*list.Element
	cacheOrder *list.List // of *cacheEntry, oldest first

	cmu         sync.Mutex // guards the client table
	clients     map[netip.Addr]*list.Element
	clientOrder *list.List // of *clientState, least recently failing first

	hits, misses, compares, failures, lockouts, limited atomic.Uint64
}

type cacheEntry struct {
	user    string
	mac     [sha256.Size]byte
	expires time.Time
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
}

// NewAuthenticator returns an Authenticator with cfg's defaults filled in.
func NewAuthenticator(cfg Config) *Authenticator {
	a := &Authenticator{
		realm:       cfg.Realm,
		cacheSize:   cfg.CacheSize,
		ttl:         cfg.CacheTTL,
		maxFailures: cfg.MaxFailures,
		window:      cfg.FailureWindow,
		lockout:     cfg.Lockout,
		maxClients:  cfg.MaxClients,
		now:         cfg.Now,
		key:         make([]byte, 32),
		compare:     bcrypt.CompareHashAndPassword,
		store:       cfg.Store,
		cache:       map[string]*list.Element{},
		cacheOrder:  list.New(),
		clients:     map[netip.Addr]*list.Element{},
		clientOrder: list.New(),
	}
	if a.realm == "" {
		a.realm = "scpgate"
	}
	if a.cacheSize == 0 {
		a.cacheSize = 1024
	}
	if a.ttl <= 0 {
		a.ttl = 5 * time.Minute
	}
	if a.maxFailures <= 0 {
		a.maxFailures = 5
	}
	if a.window <= 0 {
		a.window = time.Minute
	}
	if a.lockout <= 0 {
		a.lockout = 5 * time.Minute
	}
	if a.maxClients <= 0 {
		a.maxClients = 16384
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.store == nil {
		a.store = emptyStore()
	}
	rand.Read(a.key) // never fails (crypto/rand panics rather than return weak bytes)
	return a
}

func emptyStore() *Store {
	s, _ := ParseHtpasswd("(none)", nil)
	return s
}

// Challenge is the Proxy-Authenticate value for 407 responses.
func (a *Authenticator) Challenge() string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a.realm)
	return `Basic realm="` + r + `"`
}

// Swap installs a reloaded store. The credential cache is dropped (a removed user or changed
// password must not keep working); lockouts are kept (a reload must not reset an attacker).
func (a *Authenticator) Swap(s *Store) {
	if s == nil {
		s = emptyStore()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.store = s
	a.gen++
	clear(a.cache)
	a.cacheOrder.Init()
}

// Check verifies a Proxy-Authorization value from clientIP.
func (a *Authenticator) Check(clientIP netip.Addr, header string) Result {
	key := clientKey(clientIP)
	if wait := a.lockedFor(key, a.now()); wait > 0 {
		a.limited.Add(1)
		return Result{Reason: ReasonRateLimited, RetryAfter: wait}
	}
	user, pass, pr := parseBasic(header)
	switch pr {
	case basicOther:
		// Nothing tried yet (the first request of every client), or a scheme we do not offer: not a
		// guess, so not counted.
		return Result{Reason: ReasonAuthRequired}
	case basicMalformed:
		return a.fail(key, "")
	}
	mac := a.mac(user, pass)

	a.mu.Lock()
	store, gen := a.store, a.gen
	hit := false
	if el, ok := a.cache[user]; ok {
		e := el.Value.(*cacheEntry)
		switch {
		case !a.now().Before(e.expires):
			a.cacheOrder.Remove(el)
			delete(a.cache, user)
		case hmac.Equal(e.mac[:], mac[:]):
			hit = true
		}
	}
	a.mu.Unlock()
	if hit {
		a.hits.Add(1)
		a.succeed(key, user)
		return Result{User: user, OK: true}
	}
	a.misses.Add(1)

	if len(pass) > maxPassword {
		return a.fail(key, user)
	}
	hash, known := store.users[user]
	if !known {
		hash = store.dummy
	}
	a.compares.Add(1)
	if err := a.compare(hash, []byte(pass)); err != nil || !known {
		return a.fail(key, user)
	}
	a.remember(gen, user, mac)
	a.succeed(key, user)
	return Result{User: user, OK: true}
}

func (a *Authenticator) mac(user, pass string) [sha256.Size]byte {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(pass))
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

func (a *Authenticator) remember(gen uint64, user string, mac [sha256.Size]byte) {
	if a.cacheSize < 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen {
		return // verified against a store that has since been replaced
	}
	if el, ok := a.cache[user]; ok {
		a.cacheOrder.Remove(el)
	}
	for a.cacheOrder.Len() >= a.cacheSize {
		oldest := a.cacheOrder.Front()
		delete(a.cache, oldest.Value.(*cacheEntry).user)
		a.cacheOrder.Remove(oldest)
	}
	a.cache[user] = a.cacheOrder.PushBack(&cacheEntry{user: user, mac: mac, expires: a.now().Add(a.ttl)})
}

// clientKey is the unit of lockout: the address for IPv4, its /64 for IPv6.
func clientKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

func (a *Authenticator) lockedFor(key netip.Addr, now time.Time) time.Duration {
	a.cmu.Lock()
	defer a.cmu.Unlock()
	if el, ok := a.clients[key]; ok {
		if st := el.Value.(*clientState); now.Before(st.lockedUntil) {
			return st.lockedUntil.Sub(now)
		}
	}
	return 0
}

// fail records a failure and returns the auth_failed result; the failure that reaches MaxFailures
// is still answered 407 (it was a wrong password), later attempts get rate_limited.
func (a *Authenticator) fail(key netip.Addr, user string) Result {
	a.failures.Add(1)
	now := a.now()
	a.cmu.Lock()
	defer a.cmu.Unlock()
	var st *clientState
	if el, ok := a.clients[key]; ok {
		st = el.Value.(*clientState)
		a.clientOrder.MoveToBack(el)
	} else {
		for a.clientOrder.Len() >= a.maxClients {
			oldest := a.clientOrder.Front()
			delete(a.clients, oldest.Value.(*clientState).addr)
			a.clientOrder.Remove(oldest)
		}
		st = &clientState{addr: key}
		a.clients[key] = a.clientOrder.PushBack(st)
	}
	if now.Before(st.lockedUntil) {
		// Raced with the failure that locked it; keep the lockout as it is.
		return Result{Reason: ReasonAuthFailed}
	}
	if st.failures == 0 || now.Sub(st.windowStart) >= a.window {
		st.failures, st.windowStart = 0, now
		st.failUser, st.mixed = user, false
	}
	if user != st.failUser {
		st.mixed = true
	}
	st.failures++
	n := st.failures
	if st.failures >= a.maxFailures {
		st.failures = 0
		st.lockedUntil = now.Add(a.lockout)
		a.lockouts.Add(1)
	}
	return Result{Reason: ReasonAuthFailed, Failures: n}
}

// succeed resets the client's failure count, unless it is locked out (a concurrent check may have
// locked it while this one was verifying) or the failures were not all for user: a valid account
// must not clear the count of guesses at other accounts' passwords.
func (a *Authenticator) succeed(key netip.Addr, user string) {
	a.cmu.Lock()
	defer a.cmu.Unlock()
	el, ok := a.clients[key]
	if !ok {
		return
	}
	st := el.Value.(*clientState)
	if !a.now().Before(st.lockedUntil) && (st.failures == 0 || (!st.mixed && st.failUser == user)) {
		a.clientOrder.Remove(el)
		delete(a.clients, key)
	}
}

// Stats returns the counters.
func (a *Authenticator) Stats() Stats {
	a.mu.Lock()
	cached := len(a.cache)
	a.mu.Unlock()
	a.cmu.Lock()
	tracked := len(a.clients)
	a.cmu.Unlock()
	return Stats{
		CacheHits:      a.hits.Load(),
		CacheMisses:    a.misses.Load(),
		BcryptCompares: a.compares.Load(),
		Failures:       a.failures.Load(),
		Lockouts:       a.lockouts.Load(),
		RateLimited:    a.limited.Load(),
		CachedUsers:    cached,
		TrackedClients: tracked,
	}
}
