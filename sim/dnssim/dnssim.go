// Package dnssim is the test world's authoritative DNS server.
//
// It answers A, AAAA and CNAME questions for the names it was given, over UDP
// and TCP on the same port, and can inject the faults the gateway must
// survive: DNS rebinding (flip), NXDOMAIN, SERVFAIL, slow or gated answers and
// truncated UDP answers. It never forwards or recurses: a name it does not
// know is NXDOMAIN, so nothing it does can reach the real internet.
package dnssim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// DefaultTTL is the TTL of answers for names without SetTTL.
const DefaultTTL uint32 = 60

// DefaultNegativeTTL is the SOA TTL and MINIMUM sent with NXDOMAIN and NODATA.
const DefaultNegativeTTL uint32 = 60

// maxChase bounds how many CNAMEs one answer may contain, so a loop in the
// simulated zone cannot make a handler spin.
const maxChase = 16

// Server is an authoritative DNS server for tests and the demo. The zero
// value is not usable; call New.
type Server struct {
	logger *slog.Logger

	mu      sync.Mutex
	names   map[string]*entry
	queries map[string]map[uint16]int
	negTTL  uint32
	// changed is closed and replaced on every query so WaitQuery can wait
	// for an event instead of polling.
	changed chan struct{}

	// lifecycle
	lmu       sync.Mutex
	started   bool
	closed    bool
	addr      string
	udp, tcp  *dns.Server
	done      chan struct{} // closed by Close: releases delayed and gated handlers
	serveWG   sync.WaitGroup
	stopAfter func() bool
	closeErr  error
	closeOnce sync.Once
}

type entry struct {
	exists    bool // SetA, SetCNAME or SetFlip was called: the name has data
	addrs     []netip.Addr
	cname     string
	flip      *flip
	nxdomain  bool
	ttl       uint32
	hasTTL    bool
	servfail  bool
	delay     time.Duration
	gate      <-chan struct{}
	truncate  bool
	outOfZone bool
	poison    []dns.RR
}

type flip struct {
	first, rest netip.Addr
	seen        map[uint16]int // queries answered so far, per type
}

// New returns a server with an empty zone. logger may be nil.
func New(logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		logger:  logger.With("component", "dnssim"),
		names:   make(map[string]*entry),
		queries: make(map[string]map[uint16]int),
		negTTL:  DefaultNegativeTTL,
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Start binds UDP and TCP on addr (for example "127.0.0.1:0" or
// "127.0.0.1:5353") and serves until Close is called or ctx is cancelled.
// It returns once both listeners are serving.
func (s *Server) Start(ctx context.Context, addr string) error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.started || s.closed {
		return errors.New("dnssim: already started or closed")
	}
	pc, ln, err := listenBoth(ctx, addr)
	if err != nil {
		return err
	}
	s.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serveDNS)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}

	// miekg's Shutdown fails on a server that has not reached its serve
	// loop yet, so Start waits for both to be up before returning.
	var up []*dns.Server
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		ready := make(chan struct{})
		failed := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(ready) }
		s.serveWG.Add(1)
		go func() {
			defer s.serveWG.Done()
			if err := srv.ActivateAndServe(); err != nil {
				s.logger.Error("serve", "err", err)
				failed <- err
			}
		}()
		select {
		case <-ready:
			up = append(up, srv)
		case err = <-failed:
		}
		if err != nil {
			for _, u := range up {
				_ = u.Shutdown()
			}
			pc.Close()
			ln.Close()
			s.serveWG.Wait()
			s.closed = true
			return fmt.Errorf("dnssim: start: %w", err)
		}
	}
	s.started = true
	s.stopAfter = context.AfterFunc(ctx, func() { _ = s.Close() })
	s.logger.Info("listening", "addr", s.addr)
	return nil
}

// listenBoth binds UDP first and then TCP on the same port. With port 0 the
// kernel picks the UDP port, which may be taken for TCP; then it tries again.
func listenBoth(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnssim: address %q: %w", addr, err)
	}
	var lc net.ListenConfig
	tries := 1
	if port == "0" {
		tries = 20
	}
	for i := 0; ; i++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnssim: listen udp: %w", err)
		}
		p := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, p))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if i+1 >= tries || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("dnssim: listen tcp: %w", err)
		}
	}
}

// Addr returns the address both listeners are bound to, "127.0.0.1:PORT".
func (s *Server) Addr() string {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.addr
}

// Close stops both listeners, releases delayed and gated handlers without
// answering them, and waits for every goroutine the server started.
// It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.lmu.Lock()
		s.closed = true
		started := s.started
		stop := s.stopAfter
		s.lmu.Unlock()
		close(s.done)
		if stop != nil {
			stop()
		}
		if !started {
			return
		}
		var errs []error
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			if err := srv.Shutdown(); err != nil {
				errs = append(errs, err)
			}
		}
		s.serveWG.Wait()
		s.closeErr = errors.Join(errs...)
		s.logger.Info("closed", "addr", s.addr)
	})
	return s.closeErr
}

func canon(name string) string { return dns.CanonicalName(name) }

// get returns the entry for name, creating it. Caller holds s.mu.
func (s *Server) get(name string) *entry {
	n := canon(name)
	e := s.names[n]
	if e == nil {
		e = &entry{}
		s.names[n] = e
	}
	return e
}

// setData replaces a name's data (addresses, CNAME, flip, NXDOMAIN), keeping
// its TTL and faults. Caller holds s.mu.
func (s *Server) setData(name string, f func(e *entry)) {
	e := s.get(name)
	e.exists, e.addrs, e.cname, e.flip, e.nxdomain = false, nil, "", nil, false
	f(e)
}

// SetA sets the addresses of name: IPv4 ones answer A, IPv6 ones AAAA. It
// replaces any earlier addresses, CNAME, flip or NXDOMAIN for the name.
// With no addresses the name exists but has no data (NODATA for A and AAAA).
func (s *Server) SetA(name string, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setData(name, func(e *entry) {
		e.exists = true
		e.addrs = append([]netip.Addr(nil), addrs...)
	})
}

// SetCNAME makes name an alias of target.
func (s *Server) SetCNAME(name, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setData(name, func(e *entry) {
		e.exists = true
		e.cname = canon(target)
	})
}

// SetFlip answers the first query of the matching type (A for an IPv4
// address, AAAA for IPv6) with first and every later one with rest: the DNS
// rebinding attack a vet-then-dial gateway must not fall for.
func (s *Server) SetFlip(name string, first, rest netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setData(name, func(e *entry) {
		e.exists = true
		e.flip = &flip{first: first, rest: rest, seen: make(map[uint16]int)}
	})
}

// SetNXDOMAIN makes name answer NXDOMAIN, also when reached through a CNAME.
func (s *Server) SetNXDOMAIN(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setData(name, func(e *entry) { e.nxdomain = true })
}

// SetTTL sets the TTL of name's records (default DefaultTTL).
func (s *Server) SetTTL(name string, ttl uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.get(name)
	e.ttl, e.hasTTL = ttl, true
}

// SetNegativeTTL sets the SOA TTL and MINIMUM sent with NXDOMAIN and NODATA
// answers (default DefaultNegativeTTL).
func (s *Server) SetNegativeTTL(ttl uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.negTTL = ttl
}

// SetServFail makes every direct query for name answer SERVFAIL.
func (s *Server) SetServFail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(name).servfail = true
}

// SetDelay delays answers to direct queries for name by d. Close does not
// wait for the delay: pending answers are dropped.
func (s *Server) SetDelay(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(name).delay = d
}

// SetGate holds answers to direct queries for name until gate is closed
// (or the server is closed, then they are dropped). Queries are counted when
// they arrive, so WaitQuery sees a held query. A nil gate removes the gate.
func (s *Server) SetGate(name string, gate <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(name).gate = gate
}

// SetTruncate makes UDP answers to direct queries for name carry TC=1 and
// no records; TCP answers stay complete.
func (s *Server) SetTruncate(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(name).truncate = on
}

// SetOutOfZone marks name as belonging to another zone: a CNAME chain that
// reaches it stops there and the client has to query it separately, as with
// a real authoritative server whose CNAME points at another provider.
// Direct queries for name are answered as usual.
func (s *Server) SetOutOfZone(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(name).outOfZone = on
}

// SetPoison makes answers to direct queries for name also carry A/AAAA
// records for owner, an unrelated name, the way a cache-poisoning attempt
// would. A resolver must ignore them. No addresses removes the poison.
func (s *Server) SetPoison(name, owner string, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.get(name)
	e.poison = nil
	for _, a := range addrs {
		hdr := dns.RR_Header{Name: canon(owner), Class: dns.ClassINET, Ttl: DefaultTTL}
		if a.Is4() {
			hdr.Rrtype = dns.TypeA
			e.poison = append(e.poison, &dns.A{Hdr: hdr, A: a.AsSlice()})
		} else {
			hdr.Rrtype = dns.TypeAAAA
			e.poison = append(e.poison, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
}

// Remove forgets everything about name (data, TTL and faults), but not its
// query counts.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, canon(name))
}

// Queries returns how many questions for name arrived, of any type, over
// UDP and TCP.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.queries[canon(name)] {
		n += c
	}
	return n
}

// QueriesByType returns how many questions of type qtype for name arrived.
func (s *Server) QueriesByType(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[canon(name)][qtype]
}

// WaitQuery returns nil once at least n questions for name have arrived, or
// ctx's error.
func (s *Server) WaitQuery(ctx context.Context, name string, n int) error {
	name = canon(name)
	for {
		s.mu.Lock()
		got := 0
		for _, c := range s.queries[name] {
			got += c
		}
		ch := s.changed
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("dnssim: waiting for %d queries for %s (saw %d): %w", n, name, got, ctx.Err())
		}
	}
}

// faults is a snapshot of a name's per-query behaviour, taken under s.mu so
// the handler can wait without holding the lock.
type faults struct {
	servfail, truncate bool
	delay              time.Duration
	gate               <-chan struct{}
	poison             []dns.RR
}

func (s *Server) count(name string, qtype uint16) faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.queries[name]
	if m == nil {
		m = make(map[uint16]int)
		s.queries[name] = m
	}
	m[qtype]++
	close(s.changed)
	s.changed = make(chan struct{})
	var f faults
	if e := s.names[name]; e != nil {
		f = faults{servfail: e.servfail, truncate: e.truncate, delay: e.delay, gate: e.gate, poison: e.poison}
	}
	return f
}

// hold waits out a delay and a gate; false means the server is closing.
func (s *Server) hold(f faults) bool {
	if f.delay > 0 {
		t := time.NewTimer(f.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.done:
			return false
		}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-s.done:
			return false
		}
	}
	return true
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	udp := w.LocalAddr().Network() == "udp"
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = false

	if req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 {
		resp.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	name := canon(q.Name)
	f := s.count(name, q.Qtype)
	s.logger.Debug("query", "name", name, "type", dns.TypeToString[q.Qtype], "udp", udp)
	if !s.hold(f) {
		return
	}

	switch {
	case q.Qclass != dns.ClassINET:
		resp.Rcode = dns.RcodeRefused
	case f.servfail:
		resp.Rcode = dns.RcodeServerFailure
	case udp && f.truncate:
		resp.Truncated = true
	default:
		s.answer(resp, name, q.Qtype)
		for _, rr := range f.poison {
			resp.Answer = append(resp.Answer, dns.Copy(rr))
		}
	}

	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(dns.DefaultMsgSize, false)
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	if udp {
		// A real server truncates what does not fit the client's buffer.
		resp.Truncate(size)
	}
	if err := w.WriteMsg(resp); err != nil {
		s.logger.Debug("write", "name", name, "err", err)
	}
}

// answer fills resp for (qname, qtype) like an authoritative server: it
// follows CNAMEs inside the zone so one answer carries the whole chain, and
// stops at a target it does not know or that is out of zone.
func (s *Server) answer(resp *dns.Msg, qname string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := qname
	visited := map[string]bool{}
	for i := 0; i < maxChase; i++ {
		e := s.names[cur]
		if e == nil || (!e.exists && !e.nxdomain) {
			if i == 0 {
				resp.Rcode = dns.RcodeNameError
				resp.Ns = append(resp.Ns, s.soa(cur))
			}
			// A CNAME target we know nothing about lives elsewhere: the
			// client must ask for it itself.
			return
		}
		if i > 0 && e.outOfZone {
			return
		}
		if e.nxdomain {
			// RFC 6604: the rcode describes the last name of the chain.
			resp.Rcode = dns.RcodeNameError
			resp.Ns = append(resp.Ns, s.soa(cur))
			return
		}
		ttl := DefaultTTL
		if e.hasTTL {
			ttl = e.ttl
		}
		hdr := func(t uint16) dns.RR_Header {
			return dns.RR_Header{Name: cur, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
		}
		if e.cname != "" {
			resp.Answer = append(resp.Answer, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: e.cname})
			visited[cur] = true
			if qtype == dns.TypeCNAME || visited[e.cname] {
				return
			}
			cur = e.cname
			continue
		}
		addrs := e.addrs
		if e.flip != nil {
			a := e.flip.rest
			if e.flip.seen[qtype] == 0 {
				a = e.flip.first
			}
			e.flip.seen[qtype]++
			addrs = []netip.Addr{a}
		}
		n := len(resp.Answer)
		for _, a := range addrs {
			switch {
			case qtype == dns.TypeA && a.Is4():
				resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: a.AsSlice()})
			case qtype == dns.TypeAAAA && a.Is6():
				resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.AsSlice()})
			}
		}
		if len(resp.Answer) == n {
			// NODATA: NOERROR, no record of this type, SOA for negative caching.
			resp.Ns = append(resp.Ns, s.soa(cur))
		}
		return
	}
}

// soa returns a synthetic SOA for the zone of name, taken to be its last two
// labels, so negative answers carry a TTL as RFC 2308 requires.
func (s *Server) soa(name string) dns.RR {
	labels := dns.SplitDomainName(name)
	zone := "."
	if n := len(labels); n > 0 {
		zone = dns.Fqdn(strings.Join(labels[max(0, n-2):], "."))
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.negTTL},
		Ns:      "ns.dnssim.invalid.",
		Mbox:    "hostmaster.dnssim.invalid.",
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  s.negTTL,
	}
}
