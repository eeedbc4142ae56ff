// Package resolver is the gateway's only source of addresses.
//
// It asks the configured DNS servers itself (miekg/dns) instead of using the
// system resolver so that the gateway knows exactly which addresses it vetted
// and dials: it follows CNAME chains while accepting only records whose owner
// is on the chain (so an unrelated A record smuggled into an answer is
// ignored), retries over TCP when a UDP answer is truncated, caches answers by
// TTL and collapses concurrent lookups of one name into one query per type.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults for zero Config fields.
const (
	DefaultTimeout       = 2 * time.Second
	DefaultAttempts      = 2
	DefaultMaxTTL        = 5 * time.Minute
	DefaultNegativeTTL   = 30 * time.Second
	DefaultMaxCNAMEChain = 8
	DefaultCacheSize     = 10000

	// ednsSize is the EDNS0 UDP payload size recommended by DNS Flag Day
	// 2020: large enough for typical answers, small enough to avoid IP
	// fragmentation (a spoofing vector).
	ednsSize = 1232
)

// Error kinds.
const (
	KindNXDOMAIN     = "nxdomain"
	KindNODATA       = "nodata"
	KindSERVFAIL     = "servfail"
	KindTimeout      = "timeout"
	KindRefused      = "refused"
	KindCNAMELoop    = "cname_loop"
	KindCNAMETooLong = "cname_too_long"
	KindBadResponse  = "bad_response"
	// KindNetwork is a transport failure other than a timeout, such as an
	// ICMP port unreachable from a server that is not listening.
	KindNetwork = "network"
	// KindInvalidName is a host that is not a lowercase DNS name (an IP
	// literal included: those are the policy's business, never DNS's).
	KindInvalidName = "invalid_name"
	// KindCanceled is the caller's context being cancelled.
	KindCanceled = "canceled"
)

// ErrNotFound is matched (errors.Is) by an *Error of kind nxdomain or nodata:
// the name does not exist or has no A/AAAA data.
var ErrNotFound = errors.New("resolver: host not found")

// Error describes a failed lookup.
type Error struct {
	Host string
	Kind string
	Err  error // underlying cause, if any
}

func (e *Error) Error() string {
	s := "resolve " + e.Host + ": " + e.Kind
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) true for NXDOMAIN and NODATA.
func (e *Error) Is(target error) bool {
	return target == ErrNotFound && (e.Kind == KindNXDOMAIN || e.Kind == KindNODATA)
}

// Timeout reports whether the lookup ran out of time, so callers can map
// it like a net.Error.
func (e *Error) Timeout() bool { return e.Kind == KindTimeout }

// Config configures a Resolver. Zero fields take the defaults above.
type Config struct {
	// Servers are "ip:port" (or a bare IP, port 53). Names are refused:
	// resolving the resolver's own servers would need another resolver.
	// Empty means the nameservers of /etc/resolv.conf, read once by New.
	Servers  []string      `yaml:"servers"`
	Timeout  time.Duration `yaml:"timeout"` // per query attempt
	Attempts int           `yaml:"-"`       // per server
	// MinTTL and MaxTTL clamp how long positive answers are cached. An
	// answer whose TTL (after clamping) is 0 is not cached.
	MinTTL time.Duration `yaml:"-"`
	MaxTTL time.Duration `yaml:"-"`
	// NegativeTTL caps how long NXDOMAIN/NODATA are cached; the SOA's
	// value is used if smaller (RFC 2308). Negative disables it.
	NegativeTTL   time.Duration    `yaml:"-"`
	MaxCNAMEChain int              `yaml:"-"` // CNAME records followed per lookup
	CacheSize     int              `yaml:"-"` // entries, one per (name, type); least recently used go first
	Logger        *slog.Logger     `yaml:"-"`
	Now           func() time.Time `yaml:"-"`
}

// Stats counts DNS messages sent and cache use. Hits and misses count
// per (name, type), so a fully cached LookupNetIP is two hits.
type Stats struct{ Queries, CacheHits, CacheMisses uint64 }

// Resolver resolves names to addresses. It is safe for concurrent use and
// starts no goroutine that outlives the lookups that need it.
type Resolver struct {
	servers     []string
	timeout     time.Duration
	attempts    int
	minTTL      time.Duration
	maxTTL      time.Duration
	negTTL      time.Duration
	maxChain    int
	log         *slog.Logger
	now         func() time.Time
	dialer      net.Dialer
	queries     atomic.Uint64
	cacheHits   atomic.Uint64
	cacheMisses atomic.Uint64

	// exchange sends one question to the servers; a field so tests and the
	// fuzz target can drive the chain logic without a network.
	exchange func(ctx context.Context, name string, qtype uint16) (*dns.Msg, *Error)
	// onJoin, if set, is called when a lookup joins a query already in
	// flight: it lets tests wait for the event instead of sleeping.
	onJoin func()

	mu      sync.Mutex
	cache   *lru
	flights map[key]*call
	gen     uint64 // bumped by Flush so flights started before it do not refill the cache
}

type key struct {
	name  string
	qtype uint16
}

// result is the outcome of resolving one (name, type). Exactly one of addrs
// and err is set; ttl is how long it may be cached (0: not at all).
type result struct {
	addrs []netip.Addr
	err   *Error
	ttl   time.Duration
}

type call struct {
	done    chan struct{}
	res     result
	waiters int
	cancel  context.CancelFunc
}

// New returns a Resolver. With no Servers it reads /etc/resolv.conf.
func New(cfg Config) (*Resolver, error) {
	r := &Resolver{
		timeout:  cfg.Timeout,
		attempts: cfg.Attempts,
		minTTL:   cfg.MinTTL,
		maxTTL:   cfg.MaxTTL,
		negTTL:   cfg.NegativeTTL,
		maxChain: cfg.MaxCNAMEChain,
		log:      cfg.Logger,
		now:      cfg.Now,
		flights:  make(map[key]*call),
	}
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	if r.attempts <= 0 {
		r.attempts = DefaultAttempts
	}
	if r.maxTTL <= 0 {
		r.maxTTL = DefaultMaxTTL
	}
	if r.minTTL < 0 || r.minTTL > r.maxTTL {
		return nil, fmt.Errorf("resolver: MinTTL %v outside [0, MaxTTL %v]", r.minTTL, r.maxTTL)
	}
	switch {
	case r.negTTL == 0:
		r.negTTL = DefaultNegativeTTL
	case r.negTTL < 0:
		r.negTTL = 0
	}
	if r.maxChain <= 0 {
		r.maxChain = DefaultMaxCNAMEChain
	}
	size := cfg.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	r.cache = newLRU(size)
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("component", "resolver")
	if r.now == nil {
		r.now = time.Now
	}

	servers := cfg.Servers
	if len(servers) == 0 {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("resolver: no servers configured and /etc/resolv.conf unusable: %w", err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
		if len(servers) == 0 {
			return nil, errors.New("resolver: no servers configured and none in /etc/resolv.conf")
		}
	}
	for _, s := range servers {
		ap, err := parseServer(s)
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, ap.String())
	}
	r.exchange = r.exchangeServers
	return r, nil
}

func parseServer(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53), nil
	}
	return netip.AddrPort{}, fmt.Errorf("resolver: server %q is not ip:port", s)
}

// Stats returns counters since New.
func (r *Resolver) Stats() Stats {
	return Stats{Queries: r.queries.Load(), CacheHits: r.cacheHits.Load(), CacheMisses: r.cacheMisses.Load()}
}

// Flush empties the cache. Lookups in flight finish but do not store their
// result, so nothing resolved before Flush survives it.
func (r *Resolver) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cache.reset()
	r.gen++
}

// LookupNetIP returns the IPv4 then the IPv6 addresses of host, an already
// normalised lowercase name without trailing dot. A and AAAA are asked
// concurrently. If one type fails and the other has addresses, those
// addresses are returned: the gateway vets whatever it gets.
func (r *Resolver) LookupNetIP(ctx context.Context, host string) ([]netip.Addr, error) {
	name, ok := canonicalName(host)
	if !ok {
		return nil, &Error{Host: host, Kind: KindInvalidName}
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxError(host, err)
	}
	var (
		res   [2]result
		calls [2]*call
		keys  = [2]key{{name, dns.TypeA}, {name, dns.TypeAAAA}}
	)
	for i, k := range keys {
		res[i], calls[i] = r.cachedOrJoin(ctx, k)
	}
	for i, c := range calls {
		if c == nil {
			continue
		}
		select {
		case <-c.done:
			res[i] = c.res
		case <-ctx.Done():
			for j := i; j < len(calls); j++ {
				if calls[j] != nil {
					r.leave(keys[j], calls[j])
				}
			}
			return nil, ctxError(host, ctx.Err())
		}
	}
	return merge(host, res)
}

// LookupCached answers host from the cache alone: ok is false unless both its A and AAAA
// answers are cached and fresh and hold at least one address. The gateway asks it first, so a
// cached name costs no context or timer for the DNS timeout.
func (r *Resolver) LookupCached(host string) (_ []netip.Addr, ok bool) {
	name, ok := canonicalName(host)
	if !ok {
		return nil, false
	}
	var res [2]result
	now := r.now()
	r.mu.Lock()
	for i, qtype := range [2]uint16{dns.TypeA, dns.TypeAAAA} {
		if res[i], ok = r.cache.get(key{name, qtype}, now); !ok {
			r.mu.Unlock()
			return nil, false
		}
	}
	r.mu.Unlock()
	addrs, err := merge(host, res)
	if err != nil {
		return nil, false
	}
	r.cacheHits.Add(2)
	return addrs, true
}

// merge combines the A and AAAA results. With no address at all, a real
// failure (SERVFAIL, timeout, ...) says more than a NODATA for the other
// type, and NXDOMAIN more than NODATA.
func merge(host string, res [2]result) ([]netip.Addr, error) {
	if n := len(res[0].addrs) + len(res[1].addrs); n > 0 {
		out := make([]netip.Addr, 0, n)
		return append(append(out, res[0].addrs...), res[1].addrs...), nil
	}
	var best *Error
	rank := func(e *Error) int {
		switch e.Kind {
		case KindNODATA:
			return 0
		case KindNXDOMAIN:
			return 1
		}
		return 2
	}
	for _, r := range res {
		if r.err != nil && (best == nil || rank(r.err) > rank(best)) {
			best = r.err
		}
	}
	if best == nil {
		best = &Error{Kind: KindNODATA}
	}
	return nil, &Error{Host: host, Kind: best.Kind, Err: best.Err}
}

// cachedOrJoin returns a cached result, or the flight for k, joining one in
// progress or starting it. Cache and flights are checked under one lock so
// a flight that just finished is seen in the cache.
func (r *Resolver) cachedOrJoin(ctx context.Context, k key) (result, *call) {
	r.mu.Lock()
	if res, ok := r.cache.get(k, r.now()); ok {
		r.mu.Unlock()
		r.cacheHits.Add(1)
		return res, nil
	}
	r.cacheMisses.Add(1)
	if c, ok := r.flights[k]; ok {
		c.waiters++
		r.mu.Unlock()
		if r.onJoin != nil {
			r.onJoin()
		}
		return result{}, c
	}
	// The flight serves every waiter, so it must not die with the first
	// caller's context; it is cancelled when the last waiter leaves.
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &call{done: make(chan struct{}), waiters: 1, cancel: cancel}
	r.flights[k] = c
	gen := r.gen
	r.mu.Unlock()
	go r.fly(fctx, k, c, gen)
	return result{}, c
}

func (r *Resolver) fly(ctx context.Context, k key, c *call, gen uint64) {
	res := r.resolve(ctx, k.name, k.qtype)
	r.mu.Lock()
	if r.flights[k] == c {
		delete(r.flights, k)
	}
	if res.ttl > 0 && gen == r.gen {
		r.cache.put(k, res, r.now().Add(res.ttl))
	}
	r.mu.Unlock()
	c.cancel()
	c.res = res
	close(c.done)
}

// leave drops a waiter that gave up; the last one out cancels the query.
func (r *Resolver) leave(k key, c *call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.waiters--
	if c.waiters == 0 {
		c.cancel()
		if r.flights[k] == c {
			delete(r.flights, k)
		}
	}
}

// resolve answers (name, qtype), following CNAMEs across as many queries
// as needed. The chain bound also bounds the number of queries: each new
// query is only sent after the chain grew.
func (r *Resolver) resolve(ctx context.Context, name string, qtype uint16) result {
	ch := newChain(name, r.maxChain)
	target := name
	for {
		resp, qerr := r.exchange(ctx, target, qtype)
		if qerr != nil {
			r.log.Debug("query failed", "name", target, "type", dns.TypeToString[qtype], "kind", qerr.Kind, "err", qerr.Err)
			return result{err: qerr}
		}
		addrs, kind := ch.follow(resp.Answer, qtype)
		if kind != "" {
			r.log.Debug("bad chain", "name", name, "type", dns.TypeToString[qtype], "kind", kind, "chain", ch.names)
			return result{err: &Error{Kind: kind}}
		}
		if len(addrs) > 0 {
			return result{addrs: addrs, ttl: r.clamp(ch.ttl)}
		}
		end := ch.end()
		if resp.Rcode == dns.RcodeNameError {
			return r.negative(KindNXDOMAIN, resp, ch)
		}
		if end != target && !soaCovers(resp, end) {
			// The answer stopped at a CNAME whose target the server is not
			// authoritative for: ask for the target ourselves.
			target = end
			continue
		}
		return r.negative(KindNODATA, resp, ch)
	}
}

// negative builds an NXDOMAIN/NODATA result cached for RFC 2308's
// min(SOA TTL, SOA MINIMUM), capped by NegativeTTL and the chain's TTL.
func (r *Resolver) negative(kind string, resp *dns.Msg, ch *chain) result {
	ttl := min(r.negTTL, r.maxTTL)
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			ttl = min(ttl, time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second)
			break
		}
	}
	if len(ch.names) > 1 {
		ttl = min(ttl, time.Duration(ch.ttl)*time.Second)
	}
	return result{err: &Error{Kind: kind}, ttl: ttl}
}

func (r *Resolver) clamp(ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	return min(max(d, r.minTTL), r.maxTTL)
}

// soaCovers reports whether the authority section has an SOA for a zone
// containing name: the server is authoritative for it, so an empty answer
// is a real NODATA rather than a CNAME target left for us to chase.
func soaCovers(resp *dns.Msg, name string) bool {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok && dns.IsSubDomain(dns.CanonicalName(soa.Hdr.Name), name) {
			return true
		}
	}
	return false
}

// chain is the CNAME chain of one lookup: names[0] is the queried name and
// every later one a CNAME target. Only records owned by its end are used.
type chain struct {
	names []string
	seen  map[string]bool
	max   int
	ttl   uint32 // minimum TTL of the records used so far
}

func newChain(name string, maxCNAMEs int) *chain {
	return &chain{names: []string{name}, seen: map[string]bool{name: true}, max: maxCNAMEs, ttl: ^uint32(0)}
}

func (c *chain) end() string { return c.names[len(c.names)-1] }

// follow walks answer from the chain's end: it returns the addresses of
// type qtype owned by the end, or extends the chain by CNAMEs owned by the
// end until it finds some or the answer has nothing more for it. Records
// owned by any other name are ignored: that is what keeps an injected
// "www.victim. A 10.0.0.1" in an answer about another name from being used.
func (c *chain) follow(answer []dns.RR, qtype uint16) ([]netip.Addr, string) {
	for {
		cur := c.end()
		var addrs []netip.Addr
		ttl := ^uint32(0)
		for _, rr := range answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || h.Rrtype != qtype || !sameName(h.Name, cur) {
				continue
			}
			var a netip.Addr
			var ok bool
			switch v := rr.(type) {
			case *dns.A:
				a, ok = netip.AddrFromSlice(v.A)
				a = a.Unmap()
				ok = ok && a.Is4()
			case *dns.AAAA:
				ok = len(v.AAAA) == net.IPv6len
				if ok {
					a = netip.AddrFrom16([16]byte(v.AAAA))
				}
			}
			if !ok {
				continue
			}
			ttl = min(ttl, h.Ttl)
			if !containsAddr(addrs, a) {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) > 0 {
			c.ttl = min(c.ttl, ttl)
			return addrs, ""
		}
		next := ""
		for _, rr := range answer {
			if cn, ok := rr.(*dns.CNAME); ok && cn.Hdr.Class == dns.ClassINET && sameName(cn.Hdr.Name, cur) {
				next, ttl = dns.CanonicalName(cn.Target), cn.Hdr.Ttl
				break
			}
		}
		if next == "" {
			return nil, ""
		}
		if c.seen[next] {
			return nil, KindCNAMELoop
		}
		if len(c.names)-1 >= c.max {
			return nil, KindCNAMETooLong
		}
		c.names = append(c.names, next)
		c.seen[next] = true
		c.ttl = min(c.ttl, ttl)
	}
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if a == b {
			return true
		}
	}
	return false
}

// sameName compares a wire name with a canonical one; DNS names are
// case-insensitive (RFC 4343).
func sameName(wire, canonical string) bool {
	return len(wire) == len(canonical) && strings.EqualFold(wire, canonical)
}

// canonicalName turns host into a lowercase FQDN, accepting only hostname
// bytes so an escaped or binary label cannot reach the wire. IP literals
// are refused: asking DNS for "10.0.0.1." would be meaningless.
func canonicalName(host string) (string, bool) {
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > 253 {
		return "", false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return "", false
	}
	for i := 0; i < len(host); i++ {
		b := host[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.' || b == '_') {
			return "", false
		}
	}
	name := dns.CanonicalName(host)
	if _, ok := dns.IsDomainName(name); !ok || strings.Contains(name, "..") {
		return "", false
	}
	return name, true
}

func ctxError(host string, err error) *Error {
	kind := KindCanceled
	if errors.Is(err, context.DeadlineExceeded) {
		kind = KindTimeout
	}
	return &Error{Host: host, Kind: kind, Err: err}
}

// exchangeServers asks each server in turn, Attempts times each, and returns
// the first NOERROR or NXDOMAIN answer. A timeout is retried on the same
// server; SERVFAIL, REFUSED, a bad answer or a network error move on to the
// next one. The returned error is the last failure seen.
func (r *Resolver) exchangeServers(ctx context.Context, name string, qtype uint16) (*dns.Msg, *Error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	q.SetEdns0(ednsSize, false)
	last := &Error{Kind: KindTimeout}
	for _, srv := range r.servers {
		for attempt := 0; attempt < r.attempts; attempt++ {
			// A new ID per attempt: a late answer to an earlier attempt
			// must not be taken for this one.
			q.Id = dns.Id()
			resp, err := r.exchangeOnce(ctx, srv, q)
			if ctx.Err() != nil {
				return nil, ctxError("", ctx.Err())
			}
			if err != nil {
				r.log.Debug("exchange", "server", srv, "name", name, "type", dns.TypeToString[qtype], "attempt", attempt+1, "kind", err.Kind, "err", err.Err)
				last = err
				if err.Kind == KindTimeout {
					continue
				}
				break
			}
			switch resp.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				return resp, nil
			case dns.RcodeServerFailure:
				last = &Error{Kind: KindSERVFAIL}
			case dns.RcodeRefused:
				last = &Error{Kind: KindRefused}
			default:
				last = &Error{Kind: KindBadResponse, Err: fmt.Errorf("rcode %s", dns.RcodeToString[resp.Rcode])}
			}
			r.log.Debug("exchange", "server", srv, "name", name, "type", dns.TypeToString[qtype], "kind", last.Kind)
			break
		}
	}
	return nil, last
}

// exchangeOnce is one attempt: UDP, then TCP if the UDP answer was
// truncated (a truncated answer is never used, it may be incomplete).
func (r *Resolver) exchangeOnce(ctx context.Context, srv string, q *dns.Msg) (*dns.Msg, *Error) {
	resp, err := r.roundTrip(ctx, "udp", srv, q)
	if err != nil || !resp.Truncated {
		return resp, err
	}
	resp, err = r.roundTrip(ctx, "tcp", srv, q)
	if err == nil && resp.Truncated {
		return nil, &Error{Kind: KindBadResponse, Err: errors.New("truncated TCP answer")}
	}
	return resp, err
}

// longAgo is a deadline in the past, used to abort blocked I/O at once.
var longAgo = time.Unix(1, 0)

func (r *Resolver) roundTrip(ctx context.Context, network, srv string, q *dns.Msg) (*dns.Msg, *Error) {
	actx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	r.queries.Add(1)
	conn, err := r.dialer.DialContext(actx, network, srv)
	if err != nil {
		return nil, transportError(actx, err)
	}
	defer conn.Close()
	// miekg honours the context's deadline but not its cancellation.
	stop := context.AfterFunc(actx, func() { _ = conn.SetDeadline(longAgo) })
	defer stop()
	client := &dns.Client{Net: network, UDPSize: ednsSize, Timeout: r.timeout}
	resp, _, err := client.ExchangeWithConnContext(actx, q, &dns.Conn{Conn: conn, UDPSize: ednsSize})
	if err != nil {
		return nil, transportError(actx, err)
	}
	if !matches(q, resp) {
		return nil, &Error{Kind: KindBadResponse, Err: errors.New("answer does not match the question")}
	}
	return resp, nil
}

func transportError(ctx context.Context, err error) *Error {
	var ne net.Error
	if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
		return &Error{Kind: KindTimeout, Err: err}
	}
	var de *dns.Error
	if errors.As(err, &de) || errors.Is(err, dns.ErrId) {
		return &Error{Kind: KindBadResponse, Err: err}
	}
	return &Error{Kind: KindNetwork, Err: err}
}

// matches checks that resp answers q (miekg already checked the ID).
func matches(q, resp *dns.Msg) bool {
	if resp == nil || !resp.Response || resp.Opcode != dns.OpcodeQuery || len(resp.Question) != 1 {
		return false
	}
	a, b := q.Question[0], resp.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && sameName(b.Name, a.Name)
}
