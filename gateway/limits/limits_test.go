package limits

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scpgate/scpgate/policy"
)

var (
	v4a      = netip.MustParseAddr("192.0.2.1")
	v4b      = netip.MustParseAddr("192.0.2.2")
	v4aMap   = netip.MustParseAddr("::ffff:192.0.2.1")
	v6a1     = netip.MustParseAddr("2001:db8:1:2::1")
	v6a2     = netip.MustParseAddr("2001:db8:1:2:ffff:ffff:ffff:fffe") // same /64 as v6a1
	v6aZone  = netip.MustParseAddr("2001:db8:1:2::3%eth0")
	v6b      = netip.MustParseAddr("2001:db8:1:3::1") // the next /64
	invalid  = netip.Addr{}
	invalid2 = netip.Addr{}
)

func TestClientKey(t *testing.T) {
	tests := []struct {
		in, want netip.Addr
	}{
		{v4a, v4a},
		{v4aMap, v4a},
		{v6a1, netip.MustParseAddr("2001:db8:1:2::")},
		{v6a2, netip.MustParseAddr("2001:db8:1:2::")},
		{v6aZone, netip.MustParseAddr("2001:db8:1:2::")},
		{v6b, netip.MustParseAddr("2001:db8:1:3::")},
		{invalid, invalid},
	}
	for _, tt := range tests {
		if got := clientKey(tt.in); got != tt.want {
			t.Errorf("clientKey(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestConnLimiter(t *testing.T) {
	tests := []struct {
		name             string
		maxTotal, maxPer int
		clients          []netip.Addr
		want             []bool
	}{
		{"per client, two clients", 0, 2, []netip.Addr{v4a, v4a, v4a, v4b, v4b, v4b}, []bool{true, true, false, true, true, false}},
		{"total", 3, 0, []netip.Addr{v4a, v4b, v4a, v4b}, []bool{true, true, true, false}},
		{"total wins over per client", 3, 2, []netip.Addr{v4a, v4a, v4b, v4a, v4b}, []bool{true, true, true, false, false}},
		{"ipv6 keyed by /64", 0, 1, []netip.Addr{v6a1, v6a2, v6aZone, v6b}, []bool{true, false, false, true}},
		{"ipv4-mapped is ipv4", 0, 1, []netip.Addr{v4a, v4aMap}, []bool{true, false}},
		{"invalid addresses share a key", 0, 1, []netip.Addr{invalid, invalid2}, []bool{true, false}},
		{"unlimited", 0, 0, []netip.Addr{v4a, v4a, v4a, v4a, v6a1, v6a1}, []bool{true, true, true, true, true, true}},
		{"negative is unlimited", -1, -1, []netip.Addr{v4a, v4a}, []bool{true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewConnLimiter(tt.maxTotal, tt.maxPer)
			admitted := 0
			perKey := map[netip.Addr]int{}
			var releases []func()
			for i, c := range tt.clients {
				release, reason, ok := l.Acquire(c)
				if release == nil {
					t.Fatalf("step %d: nil release", i)
				}
				if ok != tt.want[i] {
					t.Fatalf("step %d (%v): ok = %v, want %v", i, c, ok, tt.want[i])
				}
				if ok {
					if reason != "" {
						t.Fatalf("step %d: reason %q on success", i, reason)
					}
					admitted++
					perKey[clientKey(c)]++
					releases = append(releases, release)
				} else {
					if reason != policy.ReasonTooManyConnections {
						t.Fatalf("step %d: reason %q", i, reason)
					}
					release() // a no-op: must not free someone else's slot
				}
				if l.Open() != admitted || l.OpenFor(c) != perKey[clientKey(c)] {
					t.Fatalf("step %d: Open %d OpenFor %d, want %d %d", i, l.Open(), l.OpenFor(c), admitted, perKey[clientKey(c)])
				}
			}
			for _, r := range releases {
				r()
			}
			if l.Open() != 0 || len(l.per) != 0 {
				t.Fatalf("after releasing all: Open %d, %d keys", l.Open(), len(l.per))
			}
		})
	}
}

func TestConnLimiterReleaseIdempotent(t *testing.T) {
	l := NewConnLimiter(2, 2)
	r1, _, ok1 := l.Acquire(v4a)
	r2, _, ok2 := l.Acquire(v4a)
	if !ok1 || !ok2 {
		t.Fatal("first two acquires refused")
	}
	if _, _, ok := l.Acquire(v4a); ok {
		t.Fatal("third acquire admitted")
	}
	r1()
	r1()
	r1()
	if l.Open() != 1 || l.OpenFor(v4a) != 1 {
		t.Fatalf("after triple release: Open %d OpenFor %d, want 1 1", l.Open(), l.OpenFor(v4a))
	}
	r3, _, ok := l.Acquire(v4a)
	if !ok {
		t.Fatal("acquire after release refused")
	}
	if _, _, ok := l.Acquire(v4a); ok {
		t.Fatal("a repeated release freed more than one slot")
	}
	r2()
	r3()
	r2()
	if l.Open() != 0 || l.OpenFor(v4a) != 0 {
		t.Fatalf("Open %d OpenFor %d, want 0 0", l.Open(), l.OpenFor(v4a))
	}
}

func TestConnLimiterConcurrent(t *testing.T) {
	const maxTotal, maxPer = 8, 3
	l := NewConnLimiter(maxTotal, maxPer)
	clients := []netip.Addr{v4a, v4b, v6a1, v6a2, v6b}
	var cur atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 500 {
				ci := (g + i) % len(clients)
				release, _, ok := l.Acquire(clients[ci])
				if !ok {
					continue
				}
				if n := cur.Add(1); n > maxTotal {
					t.Errorf("%d open, limit %d", n, maxTotal)
				}
				if n := l.OpenFor(clients[ci]); n > maxPer {
					t.Errorf("%d open for %v, limit %d", n, clients[ci], maxPer)
				}
				cur.Add(-1)
				release()
				release()
			}
		})
	}
	wg.Wait()
	if l.Open() != 0 || len(l.per) != 0 {
		t.Fatalf("Open %d, %d keys left", l.Open(), len(l.per))
	}
}

func TestNilLimiters(t *testing.T) {
	var cl *ConnLimiter
	release, _, ok := cl.Acquire(v4a)
	release()
	if !ok || cl.Open() != 0 || cl.OpenFor(v4a) != 0 {
		t.Fatal("nil ConnLimiter must admit everything")
	}
	var rl *RateLimiter
	if ok, _ := rl.Allow(v4a); !ok || rl.Len() != 0 {
		t.Fatal("nil RateLimiter must admit everything")
	}
}

// fakeClock is an injected clock; tests move it explicitly.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestRateLimiter(t *testing.T) {
	type step struct {
		advance   time.Duration
		client    netip.Addr
		ok        bool
		retry     time.Duration
		repeatFor int // repeat the check this many times (0 = once)
	}
	tests := []struct {
		name       string
		perSecond  float64
		burst      int
		maxClients int
		steps      []step
	}{
		{"burst then refill", 2, 3, 0, []step{
			{client: v4a, ok: true, repeatFor: 3},
			{client: v4a, ok: false, retry: 500 * time.Millisecond},
			{advance: 250 * time.Millisecond, client: v4a, ok: false, retry: 250 * time.Millisecond},
			{advance: 250 * time.Millisecond, client: v4a, ok: true},
			{client: v4a, ok: false, retry: 500 * time.Millisecond},
			{advance: time.Hour, client: v4a, ok: true, repeatFor: 3}, // refills to burst, no more
			{client: v4a, ok: false, retry: 500 * time.Millisecond},
		}},
		{"denied requests take no token", 1, 1, 0, []step{
			{client: v4a, ok: true},
			{client: v4a, ok: false, retry: time.Second, repeatFor: 5},
			{advance: time.Second, client: v4a, ok: true},
		}},
		{"clients are independent", 1, 1, 0, []step{
			{client: v4a, ok: true},
			{client: v4a, ok: false, retry: time.Second},
			{client: v4b, ok: true},
			{client: v6a1, ok: true},
			{client: v6b, ok: true},
		}},
		{"ipv6 /64 shares a bucket", 1, 2, 0, []step{
			{client: v6a1, ok: true},
			{client: v6a2, ok: true},
			{client: v6aZone, ok: false, retry: time.Second},
			{client: v6b, ok: true},
		}},
		{"ipv4-mapped shares the ipv4 bucket", 1, 1, 0, []step{
			{client: v4a, ok: true},
			{client: v4aMap, ok: false, retry: time.Second},
		}},
		{"fractional rate", 0.1, 1, 0, []step{
			{client: v4a, ok: true},
			{advance: 4 * time.Second, client: v4a, ok: false, retry: 6 * time.Second},
		}},
		{"burst below one is one", 1, 0, 0, []step{
			{client: v4a, ok: true},
			{client: v4a, ok: false, retry: time.Second},
		}},
		{"unlimited", 0, 0, 1, []step{
			{client: v4a, ok: true, repeatFor: 100},
			{client: v4b, ok: true},
		}},
		{"tiny rate capped at one a day", 1e-30, 1, 0, []step{
			{client: v4a, ok: true},
			{client: v4a, ok: false, retry: 24 * time.Hour},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			r := NewRateLimiter(tt.perSecond, tt.burst, tt.maxClients, clk.Now)
			for i, s := range tt.steps {
				clk.Advance(s.advance)
				for range max(s.repeatFor, 1) {
					ok, retry := r.Allow(s.client)
					if ok != s.ok || retry != s.retry {
						t.Fatalf("step %d (%v): Allow = %v, %v; want %v, %v", i, s.client, ok, retry, s.ok, s.retry)
					}
				}
			}
		})
	}
}

func TestRateLimiterHugeBurst(t *testing.T) {
	clk := newFakeClock()
	r := NewRateLimiter(1e-30, math.MaxInt, 0, clk.Now) // must not overflow time.Duration
	for range 1000 {
		if ok, _ := r.Allow(v4a); !ok {
			t.Fatal("huge burst refused")
		}
	}
}

func TestRateLimiterEviction(t *testing.T) {
	clk := newFakeClock()
	r := NewRateLimiter(1, 1, 3, clk.Now)
	a, b, c, d := v4a, v4b, netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("192.0.2.4")
	mustAllow := func(addr netip.Addr, want bool) {
		t.Helper()
		if ok, _ := r.Allow(addr); ok != want {
			t.Fatalf("Allow(%v) = %v, want %v", addr, ok, want)
		}
	}
	mustAllow(a, true) // a's bucket is now empty
	mustAllow(b, true)
	mustAllow(c, true)
	mustAllow(a, false) // seen again: a is the most recent, b the least
	mustAllow(d, true)  // evicts b
	if r.Len() != 3 {
		t.Fatalf("Len = %d, want 3", r.Len())
	}
	mustAllow(a, false) // a was kept, still empty
	mustAllow(b, true)  // b was forgotten: a fresh bucket (this evicts c)
	mustAllow(d, false)
	mustAllow(c, true) // c was forgotten too

	// A flood of distinct clients never grows the limiter beyond its bound.
	for i := range 10000 {
		r.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if r.Len() != 3 {
		t.Fatalf("Len after flood = %d, want 3", r.Len())
	}
	n := 0
	for e := r.lru.next; e != &r.lru; e = e.next {
		if r.clients[e.key] != e {
			t.Fatalf("list entry %v not in the map", e.key)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("list holds %d entries, want 3", n)
	}
}

func TestRateLimiterConcurrent(t *testing.T) {
	clk := newFakeClock()
	const burst = 10
	r := NewRateLimiter(1, burst, 4, clk.Now)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if ok, _ := r.Allow(v4a); ok {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != burst {
		t.Fatalf("%d allowed with a frozen clock, want the burst %d", allowed.Load(), burst)
	}
}

func BenchmarkRateLimiterAllow(b *testing.B) {
	r := NewRateLimiter(1e6, 100, 1024, nil)
	addrs := make([]netip.Addr, 4096)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Allow(addrs[i%len(addrs)])
		i++
	}
}
