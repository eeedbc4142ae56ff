package resolver

import (
	"context"
	"net"
	"testing"

	"github.com/miekg/dns"
)

func rr(t testing.TB, s string) dns.RR {
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// seeds are packed answers exercising chains, loops, poison and negatives.
func seeds(t testing.TB) [][]byte {
	msgs := [][]string{
		{"start.example.com. 60 IN A 127.0.0.1"},
		{"start.example.com. 60 IN CNAME b.example.com.", "b.example.com. 30 IN AAAA 2001:db8::1", "b.example.com. 30 IN A 127.0.0.2"},
		{"start.example.com. 60 IN CNAME b.example.com.", "b.example.com. 60 IN CNAME start.example.com."},
		{"start.example.com. 60 IN CNAME b.example.com.", "victim.example. 60 IN A 10.0.0.1"},
		{"Start.Example.COM. 60 IN CNAME b.example.com.", "b.example.com. 60 IN CNAME c.example.com.", "c.example.com. 60 IN CNAME b.example.com."},
	}
	var out [][]byte
	for i, rrs := range msgs {
		m := new(dns.Msg)
		m.SetQuestion("start.example.com.", dns.TypeA)
		m.Response = true
		for _, s := range rrs {
			m.Answer = append(m.Answer, rr(t, s))
		}
		if i == 3 {
			m.Ns = append(m.Ns, rr(t, "example.com. 60 IN SOA ns. host. 1 2 3 4 5"))
			m.Rcode = dns.RcodeNameError
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzFollowChain feeds arbitrary answer sections to the chain walker: it
// must not panic, must respect the CNAME limit and must only return
// addresses of the asked family.
func FuzzFollowChain(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(data); err != nil {
			return
		}
		start := "start.example.com."
		if len(m.Question) > 0 {
			start = dns.CanonicalName(m.Question[0].Name)
		}
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			c := newChain(start, 4)
			addrs, kind := c.follow(m.Answer, qt)
			if len(c.names)-1 > 4 {
				t.Fatalf("chain of %d CNAMEs exceeds limit 4", len(c.names)-1)
			}
			if kind != "" && len(addrs) > 0 {
				t.Fatalf("error %s with addresses %v", kind, addrs)
			}
			for _, a := range addrs {
				if a.Is4() != (qt == dns.TypeA) {
					t.Fatalf("%s lookup returned %v", dns.TypeToString[qt], a)
				}
			}
		}
	})
}

// FuzzResolve drives the whole multi-query loop with an exchange that
// answers every question with the fuzzed message: no panic, a bounded
// number of queries, and either addresses or an error.
func FuzzResolve(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(data); err != nil {
			return
		}
		// Loopback and never used: exchange is replaced below.
		r, err := New(Config{Servers: []string{"127.0.0.1:9"}, MaxCNAMEChain: 4})
		if err != nil {
			t.Fatal(err)
		}
		calls := 0
		r.exchange = func(context.Context, string, uint16) (*dns.Msg, *Error) {
			calls++
			return m, nil
		}
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			calls = 0
			res := r.resolve(context.Background(), "start.example.com.", qt)
			if calls > 5 {
				t.Fatalf("%d queries for a chain limit of 4", calls)
			}
			if (res.err == nil) == (len(res.addrs) == 0) {
				t.Fatalf("result %+v", res)
			}
			if res.ttl < 0 || res.ttl > DefaultMaxTTL {
				t.Fatalf("ttl %v", res.ttl)
			}
			for _, a := range res.addrs {
				if len(a.AsSlice()) != map[uint16]int{dns.TypeA: net.IPv4len, dns.TypeAAAA: net.IPv6len}[qt] {
					t.Fatalf("%s lookup returned %v", dns.TypeToString[qt], a)
				}
			}
		}
	})
}
