package dnssim

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T) *Server {
	t.Helper()
	s := New(nil)
	if err := s.Start(t.Context(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func query(t *testing.T, network, addr, name string, qtype uint16, edns bool) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

// summary renders an answer section compactly for comparison.
func summary(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.Hdr.Name+" A "+v.A.String())
		case *dns.AAAA:
			out = append(out, v.Hdr.Name+" AAAA "+v.AAAA.String())
		case *dns.CNAME:
			out = append(out, v.Hdr.Name+" CNAME "+v.Target)
		default:
			out = append(out, rr.String())
		}
	}
	return out
}

func hasSOA(m *dns.Msg) bool {
	for _, rr := range m.Ns {
		if _, ok := rr.(*dns.SOA); ok {
			return true
		}
	}
	return false
}

func TestAnswers(t *testing.T) {
	s := start(t)
	v4 := netip.MustParseAddr("127.0.0.10")
	v6 := netip.MustParseAddr("::1")
	s.SetA("v4.example.com", v4)
	s.SetA("v6.example.com", v6)
	s.SetA("Both.Example.com.", v4, v6)
	s.SetCNAME("a.example.com", "b.example.com")
	s.SetCNAME("b.example.com", "v4.example.com")
	s.SetCNAME("dangling.example.com", "elsewhere.example.net")
	s.SetCNAME("cdn.example.com", "edge.example.net")
	s.SetA("edge.example.net", v4)
	s.SetOutOfZone("edge.example.net", true)
	s.SetCNAME("gone.example.com", "nx.example.com")
	s.SetNXDOMAIN("nx.example.com")
	s.SetCNAME("loop1.example.com", "loop2.example.com")
	s.SetCNAME("loop2.example.com", "loop1.example.com")
	s.SetA("ttl.example.com", v4)
	s.SetTTL("ttl.example.com", 7)

	tests := []struct {
		name    string
		q       string
		qtype   uint16
		rcode   int
		answer  []string
		soa     bool
		wantTTL uint32
	}{
		{"A", "v4.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"v4.example.com. A 127.0.0.10"}, false, DefaultTTL},
		{"AAAA", "v6.example.com.", dns.TypeAAAA, dns.RcodeSuccess, []string{"v6.example.com. AAAA ::1"}, false, DefaultTTL},
		{"both A", "both.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"both.example.com. A 127.0.0.10"}, false, DefaultTTL},
		{"both AAAA", "both.example.com.", dns.TypeAAAA, dns.RcodeSuccess, []string{"both.example.com. AAAA ::1"}, false, DefaultTTL},
		{"case insensitive", "V4.EXAMPLE.Com.", dns.TypeA, dns.RcodeSuccess, []string{"v4.example.com. A 127.0.0.10"}, false, DefaultTTL},
		{"NODATA", "v4.example.com.", dns.TypeAAAA, dns.RcodeSuccess, nil, true, 0},
		{"NXDOMAIN unknown", "unknown.example.com.", dns.TypeA, dns.RcodeNameError, nil, true, 0},
		{"NXDOMAIN set", "nx.example.com.", dns.TypeA, dns.RcodeNameError, nil, true, 0},
		{"CNAME chain in zone", "a.example.com.", dns.TypeA, dns.RcodeSuccess, []string{
			"a.example.com. CNAME b.example.com.", "b.example.com. CNAME v4.example.com.", "v4.example.com. A 127.0.0.10"}, false, DefaultTTL},
		{"CNAME chain NODATA", "a.example.com.", dns.TypeAAAA, dns.RcodeSuccess, []string{
			"a.example.com. CNAME b.example.com.", "b.example.com. CNAME v4.example.com."}, true, DefaultTTL},
		{"CNAME qtype", "a.example.com.", dns.TypeCNAME, dns.RcodeSuccess, []string{"a.example.com. CNAME b.example.com."}, false, DefaultTTL},
		{"CNAME unknown target", "dangling.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"dangling.example.com. CNAME elsewhere.example.net."}, false, DefaultTTL},
		{"CNAME out of zone", "cdn.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"cdn.example.com. CNAME edge.example.net."}, false, DefaultTTL},
		{"out of zone direct", "edge.example.net.", dns.TypeA, dns.RcodeSuccess, []string{"edge.example.net. A 127.0.0.10"}, false, DefaultTTL},
		{"CNAME to NXDOMAIN", "gone.example.com.", dns.TypeA, dns.RcodeNameError, []string{"gone.example.com. CNAME nx.example.com."}, true, DefaultTTL},
		{"CNAME loop", "loop1.example.com.", dns.TypeA, dns.RcodeSuccess, []string{
			"loop1.example.com. CNAME loop2.example.com.", "loop2.example.com. CNAME loop1.example.com."}, false, DefaultTTL},
		{"TTL", "ttl.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"ttl.example.com. A 127.0.0.10"}, false, 7},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				r := query(t, network, s.Addr(), tc.q, tc.qtype, true)
				if !r.Authoritative {
					t.Error("AA bit not set")
				}
				if r.Rcode != tc.rcode {
					t.Errorf("rcode = %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if got := summary(r.Answer); !slices.Equal(got, tc.answer) {
					t.Errorf("answer = %q, want %q", got, tc.answer)
				}
				if hasSOA(r) != tc.soa {
					t.Errorf("SOA in authority = %v, want %v", hasSOA(r), tc.soa)
				}
				for _, rr := range r.Answer {
					if rr.Header().Ttl != tc.wantTTL {
						t.Errorf("TTL of %s = %d, want %d", rr.Header().Name, rr.Header().Ttl, tc.wantTTL)
					}
				}
				if r.IsEdns0() == nil {
					t.Error("no OPT record in answer to an EDNS0 query")
				}
			})
		}
	}
}

func TestPoison(t *testing.T) {
	s := start(t)
	s.SetA("good.example.com", netip.MustParseAddr("127.0.0.1"))
	s.SetPoison("good.example.com", "victim.example.org", netip.MustParseAddr("10.0.0.1"))
	r := query(t, "udp", s.Addr(), "good.example.com.", dns.TypeA, true)
	want := []string{"good.example.com. A 127.0.0.1", "victim.example.org. A 10.0.0.1"}
	if got := summary(r.Answer); !slices.Equal(got, want) {
		t.Errorf("answer = %q, want %q", got, want)
	}
	s.SetPoison("good.example.com", "victim.example.org")
	if r := query(t, "udp", s.Addr(), "good.example.com.", dns.TypeA, true); len(r.Answer) != 1 {
		t.Errorf("after removing poison: %v", r.Answer)
	}
}

func TestNegativeTTL(t *testing.T) {
	s := start(t)
	s.SetNegativeTTL(5)
	r := query(t, "udp", s.Addr(), "missing.example.com.", dns.TypeA, false)
	if len(r.Ns) != 1 {
		t.Fatalf("authority = %v", r.Ns)
	}
	soa := r.Ns[0].(*dns.SOA)
	if soa.Hdr.Ttl != 5 || soa.Minttl != 5 || soa.Hdr.Name != "example.com." {
		t.Errorf("SOA = %v", soa)
	}
}

func TestFlip(t *testing.T) {
	s := start(t)
	first, rest := netip.MustParseAddr("127.0.0.20"), netip.MustParseAddr("10.0.0.1")
	s.SetFlip("rebind.example.com", first, rest)
	want := []string{first.String(), rest.String(), rest.String()}
	for i, w := range want {
		r := query(t, []string{"udp", "tcp"}[i%2], s.Addr(), "rebind.example.com.", dns.TypeA, true)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != w {
			t.Errorf("query %d: answer %v, want %s", i, r.Answer, w)
		}
	}
	// An AAAA question does not use up the IPv4 flip.
	if r := query(t, "udp", s.Addr(), "rebind.example.com.", dns.TypeAAAA, true); len(r.Answer) != 0 {
		t.Errorf("AAAA answer %v", r.Answer)
	}
	if got := s.QueriesByType("rebind.example.com", dns.TypeA); got != 3 {
		t.Errorf("QueriesByType(A) = %d, want 3", got)
	}
	if got := s.Queries("REBIND.example.com."); got != 4 {
		t.Errorf("Queries = %d, want 4", got)
	}
}

func TestTruncate(t *testing.T) {
	s := start(t)
	s.SetA("big.example.com", netip.MustParseAddr("127.0.0.1"))
	s.SetTruncate("big.example.com", true)
	r := query(t, "udp", s.Addr(), "big.example.com.", dns.TypeA, true)
	if !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("UDP: TC=%v answer=%v, want TC and no answer", r.Truncated, r.Answer)
	}
	r = query(t, "tcp", s.Addr(), "big.example.com.", dns.TypeA, true)
	if r.Truncated || len(r.Answer) != 1 {
		t.Errorf("TCP: TC=%v answer=%v, want full answer", r.Truncated, r.Answer)
	}
	s.SetTruncate("big.example.com", false)
	if r := query(t, "udp", s.Addr(), "big.example.com.", dns.TypeA, true); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("UDP after SetTruncate(false): TC=%v answer=%v", r.Truncated, r.Answer)
	}
}

// An answer larger than the client's buffer is truncated like a real
// server would, independent of SetTruncate.
func TestTruncateBySize(t *testing.T) {
	s := start(t)
	var addrs []netip.Addr
	for i := range 60 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{127, 0, 1, byte(i)}))
	}
	s.SetA("many.example.com", addrs...)
	if r := query(t, "udp", s.Addr(), "many.example.com.", dns.TypeA, false); !r.Truncated {
		t.Errorf("UDP without EDNS0: not truncated, %d answers", len(r.Answer))
	}
	if r := query(t, "udp", s.Addr(), "many.example.com.", dns.TypeA, true); r.Truncated || len(r.Answer) != 60 {
		t.Errorf("UDP with EDNS0 1232: TC=%v, %d answers", r.Truncated, len(r.Answer))
	}
	if r := query(t, "tcp", s.Addr(), "many.example.com.", dns.TypeA, false); r.Truncated || len(r.Answer) != 60 {
		t.Errorf("TCP: TC=%v, %d answers", r.Truncated, len(r.Answer))
	}
}

func TestServFailAndRemove(t *testing.T) {
	s := start(t)
	s.SetA("flaky.example.com", netip.MustParseAddr("127.0.0.1"))
	s.SetServFail("flaky.example.com")
	if r := query(t, "udp", s.Addr(), "flaky.example.com.", dns.TypeA, true); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode = %s", dns.RcodeToString[r.Rcode])
	}
	s.Remove("flaky.example.com")
	if r := query(t, "udp", s.Addr(), "flaky.example.com.", dns.TypeA, true); r.Rcode != dns.RcodeNameError {
		t.Errorf("after Remove: rcode = %s", dns.RcodeToString[r.Rcode])
	}
	if got := s.Queries("flaky.example.com"); got != 2 {
		t.Errorf("Queries = %d, want 2", got)
	}
}

func TestGate(t *testing.T) {
	s := start(t)
	s.SetA("slow.example.com", netip.MustParseAddr("127.0.0.1"))
	gate := make(chan struct{})
	s.SetGate("slow.example.com", gate)
	type result struct {
		r   *dns.Msg
		err error
	}
	got := make(chan result, 1)
	go func() {
		m := new(dns.Msg)
		m.SetQuestion("slow.example.com.", dns.TypeA)
		r, _, err := (&dns.Client{Net: "tcp", Timeout: 10 * time.Second}).Exchange(m, s.Addr())
		got <- result{r, err}
	}()
	if err := s.WaitQuery(t.Context(), "slow.example.com", 1); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-got:
		t.Fatalf("answered before the gate opened: %v %v", res.r, res.err)
	default:
	}
	close(gate)
	res := <-got
	if res.err != nil || len(res.r.Answer) != 1 {
		t.Fatalf("after gate: %v %v", res.r, res.err)
	}
}

func TestWaitQueryContext(t *testing.T) {
	s := start(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.WaitQuery(ctx, "never.example.com", 1); err == nil {
		t.Fatal("WaitQuery with cancelled context returned nil")
	}
}

// Close must not wait for a delayed answer, must release the port for both
// protocols, and must leave no goroutine behind. Rebinding the same port
// also proves the server works on a fixed port.
func TestCloseReleasesPortAndGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t)
	s := New(nil)
	if err := s.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	s.SetA("slow.example.com", netip.MustParseAddr("127.0.0.1"))
	s.SetDelay("slow.example.com", time.Hour)

	for _, network := range []string{"udp", "tcp"} {
		conn, err := net.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		m := new(dns.Msg)
		m.SetQuestion("slow.example.com.", dns.TypeA)
		if err := (&dns.Conn{Conn: conn}).WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WaitQuery(t.Context(), "slow.example.com", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s2 := New(nil)
	if err := s2.Start(context.Background(), addr); err != nil {
		t.Fatalf("restart on fixed port %s: %v", addr, err)
	}
	if s2.Addr() != addr {
		t.Errorf("Addr = %s, want %s", s2.Addr(), addr)
	}
	s2.SetA("x.example.com", netip.MustParseAddr("127.0.0.1"))
	if r := query(t, "udp", addr, "x.example.com.", dns.TypeA, true); len(r.Answer) != 1 {
		t.Errorf("answer on fixed port: %v", r.Answer)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestContextCancelStops(t *testing.T) {
	s := New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	cancel()
	// Close waits for the shutdown the cancellation began.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still bound: %v", err)
	}
	ln.Close()
	if err := s.Start(context.Background(), "127.0.0.1:0"); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestStartErrors(t *testing.T) {
	s := start(t)
	if err := New(nil).Start(t.Context(), s.Addr()); err == nil {
		t.Error("second server on a bound port started")
	}
	if err := New(nil).Start(t.Context(), "no-port"); err == nil {
		t.Error("address without port accepted")
	}
	if err := s.Start(t.Context(), "127.0.0.1:0"); err == nil {
		t.Error("Start twice succeeded")
	}
}
