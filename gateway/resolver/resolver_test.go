package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/scpgate/scpgate/sim/dnssim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	v4  = netip.MustParseAddr("127.0.0.10")
	v4b = netip.MustParseAddr("127.0.0.11")
	v6  = netip.MustParseAddr("2001:db8::1")
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newSim(t *testing.T) *dnssim.Server {
	t.Helper()
	s := dnssim.New(nil)
	if err := s.Start(t.Context(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newResolver always names its servers: tests never read /etc/resolv.conf.
func newResolver(t *testing.T, cfg Config, servers ...string) *Resolver {
	t.Helper()
	if len(servers) == 0 {
		t.Fatal("test resolver without servers")
	}
	cfg.Servers = servers
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func kindOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return fmt.Sprintf("not *Error: %v", err)
}

func TestLookup(t *testing.T) {
	sim := newSim(t)
	sim.SetA("v4.example.com", v4)
	sim.SetA("v6.example.com", v6)
	sim.SetA("both.example.com", v6, v4, v4b) // IPv4 must still come first
	sim.SetA("nodata.example.com")
	sim.SetNXDOMAIN("nx.example.com")

	// Chain answered in one response.
	sim.SetCNAME("a.example.com", "b.example.com")
	sim.SetCNAME("b.example.com", "both.example.com")
	// Chain across queries: each target lives in "another zone".
	sim.SetCNAME("cdn.example.com", "edge1.example.net")
	sim.SetCNAME("edge1.example.net", "edge2.example.org")
	sim.SetOutOfZone("edge1.example.net", true)
	sim.SetA("edge2.example.org", v4)
	sim.SetOutOfZone("edge2.example.org", true)
	// Dangling CNAME: the target does not exist.
	sim.SetCNAME("dangling.example.com", "missing.example.net")
	sim.SetCNAME("gone.example.com", "nx.example.com")
	// Loops.
	sim.SetCNAME("loop1.example.com", "loop2.example.com")
	sim.SetCNAME("loop2.example.com", "loop1.example.com")
	sim.SetCNAME("xloop1.example.com", "xloop2.example.net")
	sim.SetCNAME("xloop2.example.net", "xloop1.example.com")
	sim.SetOutOfZone("xloop1.example.com", true)
	sim.SetOutOfZone("xloop2.example.net", true)
	// Chains of exactly the limit and one more.
	for i := range 9 {
		sim.SetCNAME(fmt.Sprintf("c%d.long.example.com", i), fmt.Sprintf("c%d.long.example.com", i+1))
	}
	sim.SetA("c9.long.example.com", v4)
	// Poisoning: the answer also carries an unrelated name's address.
	sim.SetA("poisoned.example.com", v4)
	sim.SetPoison("poisoned.example.com", "www.victim.example", netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1"))
	sim.SetA("poisoned-only.example.com")
	sim.SetPoison("poisoned-only.example.com", "www.victim.example", netip.MustParseAddr("10.0.0.1"))

	r := newResolver(t, Config{}, sim.Addr())
	tests := []struct {
		host     string
		want     []netip.Addr
		kind     string
		notFound bool
	}{
		{host: "v4.example.com", want: []netip.Addr{v4}},
		{host: "v6.example.com", want: []netip.Addr{v6}},
		{host: "both.example.com", want: []netip.Addr{v4, v4b, v6}},
		{host: "a.example.com", want: []netip.Addr{v4, v4b, v6}},
		{host: "cdn.example.com", want: []netip.Addr{v4}},
		{host: "c1.long.example.com", want: []netip.Addr{v4}}, // 8 CNAMEs: the limit
		{host: "c0.long.example.com", kind: KindCNAMETooLong},
		{host: "loop1.example.com", kind: KindCNAMELoop},
		{host: "xloop1.example.com", kind: KindCNAMELoop},
		{host: "nx.example.com", kind: KindNXDOMAIN, notFound: true},
		{host: "unknown.example.com", kind: KindNXDOMAIN, notFound: true},
		{host: "nodata.example.com", kind: KindNODATA, notFound: true},
		{host: "dangling.example.com", kind: KindNXDOMAIN, notFound: true},
		{host: "gone.example.com", kind: KindNXDOMAIN, notFound: true},
		{host: "poisoned.example.com", want: []netip.Addr{v4}},
		{host: "poisoned-only.example.com", kind: KindNODATA, notFound: true},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			got, err := r.LookupNetIP(t.Context(), tc.host)
			if tc.kind != "" {
				if got != nil || kindOf(err) != tc.kind {
					t.Fatalf("got %v, %v; want kind %s", got, err, tc.kind)
				}
				if errors.Is(err, ErrNotFound) != tc.notFound {
					t.Errorf("errors.Is(%v, ErrNotFound) = %v", err, !tc.notFound)
				}
				var e *Error
				if errors.As(err, &e) && e.Host != tc.host {
					t.Errorf("Error.Host = %q", e.Host)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	// The cross-zone chain took one query per hop and type.
	for _, n := range []string{"cdn.example.com", "edge1.example.net", "edge2.example.org"} {
		if q := sim.Queries(n); q != 2 {
			t.Errorf("queries for %s = %d, want 2", n, q)
		}
	}
	// The in-zone chain took one.
	if q := sim.Queries("b.example.com"); q != 0 {
		t.Errorf("queries for b.example.com = %d, want 0", q)
	}
}

// Records owned by a CNAME target in the same answer are used, as RFC 1034
// 4.3.2 answers carry the whole chain; the anti-poisoning rule is "owner on
// the chain", not "owner queried". This pins that boundary down.
func TestChainTargetInSameAnswerAccepted(t *testing.T) {
	sim := newSim(t)
	sim.SetCNAME("svc.example.com", "target.example.net")
	sim.SetOutOfZone("target.example.net", true)
	sim.SetA("target.example.net", v6)
	sim.SetPoison("svc.example.com", "target.example.net", v4b)
	r := newResolver(t, Config{}, sim.Addr())
	got, err := r.LookupNetIP(t.Context(), "svc.example.com")
	if err != nil || !slices.Equal(got, []netip.Addr{v4b, v6}) {
		t.Fatalf("got %v, %v", got, err)
	}
	// A was answered by the first response; AAAA needed the target.
	if q := sim.QueriesByType("target.example.net", dns.TypeA); q != 0 {
		t.Errorf("A queries for the target = %d, want 0", q)
	}
}

func TestCacheAndTTL(t *testing.T) {
	sim := newSim(t)
	sim.SetA("ttl10.example.com", v4, v6)
	sim.SetTTL("ttl10.example.com", 10)
	sim.SetA("ttl0.example.com", v4, v6)
	sim.SetTTL("ttl0.example.com", 0)
	sim.SetA("ttlbig.example.com", v4, v6)
	sim.SetTTL("ttlbig.example.com", 86400)
	sim.SetCNAME("alias.example.com", "ttl10.example.com")
	sim.SetTTL("alias.example.com", 3)

	tests := []struct {
		name    string
		host    string
		cfg     Config
		expires time.Duration // 0: never cached
	}{
		{"ttl", "ttl10.example.com", Config{}, 10 * time.Second},
		{"ttl zero not cached", "ttl0.example.com", Config{}, 0},
		{"min ttl raises zero", "ttl0.example.com", Config{MinTTL: 5 * time.Second}, 5 * time.Second},
		{"max ttl caps", "ttlbig.example.com", Config{MaxTTL: time.Minute}, time.Minute},
		{"default max ttl", "ttlbig.example.com", Config{}, DefaultMaxTTL},
		{"chain minimum", "alias.example.com", Config{}, 3 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			tc.cfg.Now = clk.Now
			r := newResolver(t, tc.cfg, sim.Addr())
			lookup := func() {
				t.Helper()
				if _, err := r.LookupNetIP(t.Context(), tc.host); err != nil {
					t.Fatal(err)
				}
			}
			lookup()
			first := r.Stats()
			if first.Queries != 2 || first.CacheMisses != 2 || first.CacheHits != 0 {
				t.Fatalf("first lookup stats %+v", first)
			}
			if tc.expires == 0 {
				lookup()
				if s := r.Stats(); s.Queries != 4 {
					t.Fatalf("uncached second lookup stats %+v", s)
				}
				return
			}
			clk.Advance(tc.expires - time.Millisecond)
			lookup()
			if s := r.Stats(); s.Queries != 2 || s.CacheHits != 2 {
				t.Fatalf("cached lookup stats %+v", s)
			}
			clk.Advance(time.Millisecond)
			lookup()
			if s := r.Stats(); s.Queries != 4 || s.CacheMisses != 4 {
				t.Fatalf("lookup after expiry stats %+v", s)
			}
		})
	}
}

func TestNegativeCache(t *testing.T) {
	tests := []struct {
		name   string
		soaTTL uint32
		cfg    Config
		want   time.Duration
	}{
		{"default", 60, Config{}, DefaultNegativeTTL},
		{"soa smaller", 5, Config{}, 5 * time.Second},
		{"configured", 60, Config{NegativeTTL: 10 * time.Second}, 10 * time.Second},
		{"disabled", 60, Config{NegativeTTL: -1}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim := newSim(t)
			sim.SetNegativeTTL(tc.soaTTL)
			sim.SetA("v4only.example.com", v4) // AAAA is NODATA, cached negatively
			clk := newClock()
			tc.cfg.Now = clk.Now
			r := newResolver(t, tc.cfg, sim.Addr())
			for _, host := range []string{"nx.example.com", "v4only.example.com"} {
				if _, err := r.LookupNetIP(t.Context(), host); host == "nx.example.com" && !errors.Is(err, ErrNotFound) {
					t.Fatalf("%s: %v", host, err)
				}
			}
			base := r.Stats().Queries
			if tc.want > 0 {
				clk.Advance(tc.want - time.Millisecond)
				_, _ = r.LookupNetIP(t.Context(), "nx.example.com")
				if q := r.Stats().Queries; q != base {
					t.Fatalf("NXDOMAIN not cached: %d queries, want %d", q, base)
				}
				clk.Advance(time.Millisecond)
			}
			_, err := r.LookupNetIP(t.Context(), "nx.example.com")
			if kindOf(err) != KindNXDOMAIN {
				t.Fatalf("err = %v", err)
			}
			if q := r.Stats().Queries; q != base+2 {
				t.Fatalf("NXDOMAIN not re-asked after %v: %d queries, want %d", tc.want, q, base+2)
			}
			if q := sim.QueriesByType("v4only.example.com", dns.TypeAAAA); q != 1 {
				t.Fatalf("AAAA queries for v4only = %d, want 1", q)
			}
			_, _ = r.LookupNetIP(t.Context(), "v4only.example.com")
			wantAAAA := 1
			if tc.want == 0 || tc.want < 60*time.Second {
				// NODATA expired (or was never cached) while A (TTL 60) did not.
				wantAAAA = 2
			}
			if q := sim.QueriesByType("v4only.example.com", dns.TypeAAAA); q != wantAAAA {
				t.Errorf("AAAA queries for v4only = %d, want %d", q, wantAAAA)
			}
			if q := sim.QueriesByType("v4only.example.com", dns.TypeA); q != 1 {
				t.Errorf("A queries for v4only = %d, want 1", q)
			}
		})
	}
}

func TestFailover(t *testing.T) {
	bad := newSim(t)
	bad.SetServFail("svc.example.com")
	good := newSim(t)
	good.SetA("svc.example.com", v4)

	// A UDP port nobody listens on: the kernel answers ICMP unreachable.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close()

	tests := []struct {
		name    string
		servers []string
		want    []netip.Addr
		kind    string
	}{
		{"servfail then success", []string{bad.Addr(), good.Addr()}, []netip.Addr{v4}, ""},
		{"dead then success", []string{dead, good.Addr()}, []netip.Addr{v4}, ""},
		{"all servfail", []string{bad.Addr()}, nil, KindSERVFAIL},
		{"all dead", []string{dead}, nil, KindNetwork},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newResolver(t, Config{Timeout: 5 * time.Second}, tc.servers...)
			got, err := r.LookupNetIP(t.Context(), "svc.example.com")
			if tc.kind != "" {
				if kindOf(err) != tc.kind {
					t.Fatalf("got %v, %v; want %s", got, err, tc.kind)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v", got, err)
			}
		})
	}
	// SERVFAIL is not retried on the same server: one query per type and lookup.
	if q := bad.QueriesByType("svc.example.com", dns.TypeA); q != 2 {
		t.Errorf("A queries to the failing server = %d, want 2", q)
	}
}

func TestTruncatedRetriesOverTCP(t *testing.T) {
	sim := newSim(t)
	sim.SetA("big.example.com", v4, v6)
	sim.SetTruncate("big.example.com", true)
	r := newResolver(t, Config{}, sim.Addr())
	got, err := r.LookupNetIP(t.Context(), "big.example.com")
	if err != nil || !slices.Equal(got, []netip.Addr{v4, v6}) {
		t.Fatalf("got %v, %v", got, err)
	}
	// One UDP (truncated) and one TCP question per type.
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		if q := sim.QueriesByType("big.example.com", qt); q != 2 {
			t.Errorf("%s queries = %d, want 2", dns.TypeToString[qt], q)
		}
	}
	if s := r.Stats(); s.Queries != 4 {
		t.Errorf("Stats.Queries = %d, want 4", s.Queries)
	}
}

// N concurrent lookups of one name must cause one query per type. The
// answer is held at a gate until every lookup has joined, and TTL 0 keeps
// the cache from hiding a missing collapse.
func TestSingleflight(t *testing.T) {
	const n = 32
	sim := newSim(t)
	sim.SetA("burst.example.com", v4, v6)
	sim.SetTTL("burst.example.com", 0)
	gate := make(chan struct{})
	sim.SetGate("burst.example.com", gate)
	r := newResolver(t, Config{}, sim.Addr())
	joined := make(chan struct{}, 2*n)
	r.onJoin = func() { joined <- struct{}{} }

	errs := make(chan error, n)
	for range n {
		go func() {
			got, err := r.LookupNetIP(t.Context(), "burst.example.com")
			if err == nil && !slices.Equal(got, []netip.Addr{v4, v6}) {
				err = fmt.Errorf("got %v", got)
			}
			errs <- err
		}()
	}
	if err := sim.WaitQuery(t.Context(), "burst.example.com", 2); err != nil {
		t.Fatal(err)
	}
	for range 2 * (n - 1) { // every lookup but the first joins both types
		<-joined
	}
	close(gate)
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		if q := sim.QueriesByType("burst.example.com", qt); q != 1 {
			t.Errorf("%s queries = %d, want 1", dns.TypeToString[qt], q)
		}
	}
}

func TestTimeout(t *testing.T) {
	sim := newSim(t)
	sim.SetA("slow.example.com", v4)
	sim.SetDelay("slow.example.com", time.Hour)
	r := newResolver(t, Config{Timeout: 50 * time.Millisecond, Attempts: 2}, sim.Addr())
	_, err := r.LookupNetIP(t.Context(), "slow.example.com")
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindTimeout || !e.Timeout() {
		t.Fatalf("err = %v, want timeout", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Error("timeout matches ErrNotFound")
	}
	if q := sim.Queries("slow.example.com"); q != 4 {
		t.Errorf("queries = %d, want 2 attempts x 2 types", q)
	}
}

func TestContextCancel(t *testing.T) {
	sim := newSim(t)
	sim.SetA("held.example.com", v4)
	gate := make(chan struct{})
	sim.SetGate("held.example.com", gate)
	r := newResolver(t, Config{}, sim.Addr())

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := r.LookupNetIP(ctx, "held.example.com")
		errc <- err
	}()
	if err := sim.WaitQuery(t.Context(), "held.example.com", 2); err != nil {
		t.Fatal(err)
	}
	cancel()
	err := <-errc
	if kindOf(err) != KindCanceled || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
	// The abandoned flight must not be joined by the next lookup.
	close(gate)
	if got, err := r.LookupNetIP(t.Context(), "held.example.com"); err != nil || !slices.Equal(got, []netip.Addr{v4}) {
		t.Fatalf("after cancel: %v, %v", got, err)
	}
	// An already cancelled context sends nothing.
	before := r.Stats().Queries
	if _, err := r.LookupNetIP(ctx, "other.example.com"); kindOf(err) != KindCanceled {
		t.Fatalf("cancelled ctx: %v", err)
	}
	if r.Stats().Queries != before {
		t.Error("query sent with a cancelled context")
	}
}

func TestFlush(t *testing.T) {
	sim := newSim(t)
	sim.SetA("f.example.com", v4)
	r := newResolver(t, Config{}, sim.Addr())
	for range 2 {
		if _, err := r.LookupNetIP(t.Context(), "f.example.com"); err != nil {
			t.Fatal(err)
		}
	}
	if q := sim.Queries("f.example.com"); q != 2 {
		t.Fatalf("queries = %d, want 2", q)
	}
	r.Flush()
	if _, err := r.LookupNetIP(t.Context(), "f.example.com"); err != nil {
		t.Fatal(err)
	}
	if q := sim.Queries("f.example.com"); q != 4 {
		t.Fatalf("after Flush queries = %d, want 4", q)
	}

	// A lookup in flight during Flush must not store its (old) answer.
	gate := make(chan struct{})
	sim.SetGate("g.example.com", gate)
	sim.SetA("g.example.com", v4)
	done := make(chan error, 1)
	go func() {
		_, err := r.LookupNetIP(t.Context(), "g.example.com")
		done <- err
	}()
	if err := sim.WaitQuery(t.Context(), "g.example.com", 2); err != nil {
		t.Fatal(err)
	}
	r.Flush()
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := r.LookupNetIP(t.Context(), "g.example.com"); err != nil {
		t.Fatal(err)
	}
	if q := sim.Queries("g.example.com"); q != 4 {
		t.Fatalf("queries = %d, want 4 (in-flight answer cached across Flush)", q)
	}
}

func TestCacheEviction(t *testing.T) {
	sim := newSim(t)
	for _, n := range []string{"e1.example.com", "e2.example.com"} {
		sim.SetA(n, v4)
	}
	r := newResolver(t, Config{CacheSize: 2}, sim.Addr()) // one name, both types
	for _, n := range []string{"e1.example.com", "e2.example.com", "e1.example.com"} {
		if _, err := r.LookupNetIP(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
	if q := sim.Queries("e1.example.com"); q != 4 {
		t.Errorf("e1 queries = %d, want 4 (evicted by e2)", q)
	}
	if n := r.cache.len(); n != 2 {
		t.Errorf("cache holds %d entries, want 2", n)
	}
}

func TestLRU(t *testing.T) {
	now := time.Now()
	c := newLRU(2)
	k := func(s string) key { return key{s, dns.TypeA} }
	c.put(k("a"), result{}, now.Add(time.Minute))
	c.put(k("b"), result{}, now.Add(time.Minute))
	if _, ok := c.get(k("a"), now); !ok { // a is now most recent
		t.Fatal("a missing")
	}
	c.put(k("c"), result{}, now.Add(time.Minute))
	if _, ok := c.get(k("b"), now); ok {
		t.Error("b (least recently used) not evicted")
	}
	if _, ok := c.get(k("a"), now.Add(time.Minute)); ok {
		t.Error("expired entry returned")
	}
	if c.len() != 1 {
		t.Errorf("len = %d, want 1 (expired entry removed)", c.len())
	}
}

func TestInvalidNames(t *testing.T) {
	sim := newSim(t)
	r := newResolver(t, Config{}, sim.Addr())
	for _, host := range []string{"", ".", "1.2.3.4", "::1", "a..b", "bad name", `a\046b`, "a\x00b", "[::1]", string(make([]byte, 300))} {
		if _, err := r.LookupNetIP(t.Context(), host); kindOf(err) != KindInvalidName {
			t.Errorf("%q: err = %v, want invalid_name", host, err)
		}
	}
	if q := r.Stats().Queries; q != 0 {
		t.Errorf("%d queries sent for invalid names", q)
	}
}

func TestNewConfig(t *testing.T) {
	tests := []struct {
		cfg  Config
		ok   bool
		want []string
	}{
		{Config{Servers: []string{"127.0.0.1:5353", "::1"}}, true, []string{"127.0.0.1:5353", "[::1]:53"}},
		{Config{Servers: []string{"dns.example.com:53"}}, false, nil},
		{Config{Servers: []string{"127.0.0.1:x"}}, false, nil},
		{Config{Servers: []string{"127.0.0.1:53"}, MinTTL: time.Hour}, false, nil},
	}
	for _, tc := range tests {
		r, err := New(tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("New(%+v): err = %v", tc.cfg, err)
			continue
		}
		if tc.ok && !slices.Equal(r.servers, tc.want) {
			t.Errorf("servers = %v, want %v", r.servers, tc.want)
		}
	}
}

// rawServer answers every UDP question with whatever reply builds, for
// misbehaviour dnssim does not model.
func rawServer(t *testing.T, reply func(req *dns.Msg) *dns.Msg) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(up) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) { _ = w.WriteMsg(reply(req)) })}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ActivateAndServe() }()
	<-up
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return pc.LocalAddr().String()
}

func TestMisbehavingServers(t *testing.T) {
	rcode := func(code int) func(*dns.Msg) *dns.Msg {
		return func(req *dns.Msg) *dns.Msg { return new(dns.Msg).SetRcode(req, code) }
	}
	tests := []struct {
		name  string
		reply func(*dns.Msg) *dns.Msg
		kind  string
	}{
		{"refused", rcode(dns.RcodeRefused), KindRefused},
		{"formerr", rcode(dns.RcodeFormatError), KindBadResponse},
		{"other question", func(req *dns.Msg) *dns.Msg {
			m := new(dns.Msg).SetReply(req)
			m.Question[0].Name = "www.victim.example."
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "www.victim.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(10, 0, 0, 1)}}
			return m
		}, KindBadResponse},
		{"truncated but no TCP", func(req *dns.Msg) *dns.Msg {
			m := new(dns.Msg).SetReply(req)
			m.Truncated = true
			return m
		}, KindNetwork},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawServer(t, tc.reply)
			r := newResolver(t, Config{Timeout: 5 * time.Second}, addr)
			if got, err := r.LookupNetIP(t.Context(), "svc.example.com"); kindOf(err) != tc.kind {
				t.Fatalf("got %v, %v; want %s", got, err, tc.kind)
			}
		})
	}
}

// A hard failure of one type does not hide the other type's addresses, and
// with no address the hard failure is reported rather than NODATA.
func TestMerge(t *testing.T) {
	hard := result{err: &Error{Kind: KindTimeout}}
	nodata := result{err: &Error{Kind: KindNODATA}}
	nx := result{err: &Error{Kind: KindNXDOMAIN}}
	ok := result{addrs: []netip.Addr{v4}}
	tests := []struct {
		a, aaaa result
		kind    string
	}{
		{ok, hard, ""},
		{hard, nodata, KindTimeout},
		{nodata, hard, KindTimeout},
		{nodata, nx, KindNXDOMAIN},
		{nodata, nodata, KindNODATA},
	}
	for i, tc := range tests {
		got, err := merge("h", [2]result{tc.a, tc.aaaa})
		if tc.kind == "" {
			if err != nil || len(got) != 1 {
				t.Errorf("%d: %v, %v", i, got, err)
			}
			continue
		}
		if kindOf(err) != tc.kind {
			t.Errorf("%d: err = %v, want %s", i, err, tc.kind)
		}
	}
}

func TestConcurrentRace(t *testing.T) {
	sim := newSim(t)
	for i := range 5 {
		sim.SetA(fmt.Sprintf("h%d.example.com", i), v4, v6)
	}
	r := newResolver(t, Config{CacheSize: 4}, sim.Addr())
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			for j := range 10 {
				host := fmt.Sprintf("h%d.example.com", (i+j)%6) // h5 is NXDOMAIN
				if _, err := r.LookupNetIP(t.Context(), host); err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
				}
				if j == 5 {
					r.Flush()
				}
			}
		})
	}
	wg.Wait()
}

// TestLookupCached: the cache alone answers a name whose A and AAAA answers are both fresh,
// exactly as LookupNetIP would, and nothing else (never asked, expired, NXDOMAIN, invalid).
func TestLookupCached(t *testing.T) {
	sim := newSim(t)
	sim.SetA("both.example.com", v4, v6)
	sim.SetTTL("both.example.com", 10)
	sim.SetA("v4only.example.com", v4) // AAAA is NODATA, cached negatively
	clk := newClock()
	r := newResolver(t, Config{Now: clk.Now}, sim.Addr())
	if _, ok := r.LookupCached("both.example.com"); ok {
		t.Fatal("answered a name never looked up")
	}
	for _, host := range []string{"both.example.com", "v4only.example.com", "nx.example.com"} {
		_, _ = r.LookupNetIP(t.Context(), host)
	}
	queries := r.Stats().Queries
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"both.example.com", true},
		{"BOTH.example.com.", true},
		{"v4only.example.com", true},
		{"nx.example.com", false},
		{"never.example.com", false},
		{"bad..name", false},
	} {
		got, ok := r.LookupCached(tc.host)
		if ok != tc.ok {
			t.Fatalf("LookupCached(%q) ok = %v, want %v", tc.host, ok, tc.ok)
		}
		if ok {
			want, err := r.LookupNetIP(t.Context(), tc.host)
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("LookupCached(%q) = %v, LookupNetIP = %v, %v", tc.host, got, want, err)
			}
		}
	}
	if q := r.Stats().Queries; q != queries {
		t.Fatalf("LookupCached sent %d queries", q-queries)
	}
	clk.Advance(10 * time.Second)
	if _, ok := r.LookupCached("both.example.com"); ok {
		t.Fatal("answered from an expired entry")
	}
}
