package policy

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func FuzzParseHost(f *testing.F) {
	for _, s := range []string{
		"go.microsoft.com", "GO.Microsoft.COM.", "go.microsoft.com..", "bücher.example", "xn--bcher-kva.example",
		"ｇｏ．ｍｉｃｒｏｓｏｆｔ．ｃｏｍ", "１２７．０．０．１", "127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1",
		"127.1", "127.0.1", "0x7f.1", "::1", "::ffff:127.0.0.1", "::ffff:7f00:1", "fe80::1%eth0", "[::1]",
		"under_score.example", "a..b", ".", "", "1.2.3.4.5", "999.1.1.1", "example.0x1f", "xn--zz.example",
		"ab--cd.example", "xn--ls8h.la", "a.b-.c", strings.Repeat("a.", 130) + "com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHost(s)
		if err != nil {
			if h != (Host{}) {
				t.Fatalf("error with non-zero host %+v", h)
			}
			return
		}
		if h.IsAddr() == (h.Name != "") {
			t.Fatalf("ParseHost(%q) = %+v: exactly one of Name and Addr must be set", s, h)
		}
		if h.IsAddr() {
			if h.Addr.Is4In6() || h.Addr.Zone() != "" {
				t.Fatalf("ParseHost(%q) = %v: mapped or zoned address", s, h.Addr)
			}
			return
		}
		n := h.Name
		if len(n) > maxName || strings.HasSuffix(n, ".") {
			t.Fatalf("ParseHost(%q) = %q: too long or trailing dot", s, n)
		}
		for i := 0; i < len(n); i++ {
			c := n[i]
			if !(('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '-' || c == '.') {
				t.Fatalf("ParseHost(%q) = %q: byte %q is not lowercase hostname ASCII", s, n, c)
			}
		}
		again, err := ParseHost(n)
		if err != nil || again != h {
			t.Fatalf("not idempotent: ParseHost(%q) = %q, then ParseHost(%q) = %+v, %v", s, n, n, again, err)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(decidePolicy))
	f.Add([]byte("version: 1\n"))
	f.Add([]byte("version: 1\ngroups:\n  g:\n    hosts: [\"*.com\", \"a*.b.c\", \"{a,b}[x-z]?.example.com\"]\n"))
	f.Add([]byte("version: 1\ngroups:\n  g: &a {hosts: [a.b.c]}\n  h: *a\n"))
	f.Add([]byte("version: 1\ndeny: [\"**\", \"\\\\\"]\ngroups: []\n"))
	f.Add([]byte("version: 1\n---\n- a\n"))
	f.Add([]byte("{version: 1, groups: {g: {ports: [0x1bb, 1_000, -1], addresses: [\"::/0\"]}}}"))
	f.Add([]byte("\t\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", data)
		if err != nil {
			if p != nil {
				t.Fatal("policy and error")
			}
			if _, ok := err.(ErrorList); !ok {
				t.Fatalf("error %T is not an ErrorList", err)
			}
			return
		}
		// A policy that loads can decide anything without panicking.
		for _, h := range []string{"go.microsoft.com", "a.b.example.com", "127.0.0.1", "::1"} {
			hh, _ := ParseHost(h)
			p.DecideVerbose(Request{Host: hh, Port: 443, Method: "CONNECT", AuthEnabled: true}).Explain()
		}
	})
}

func FuzzParseHostPort(f *testing.F) {
	for _, s := range []string{"go.microsoft.com:443", "[::1]:443", "[::ffff:127.0.0.1]:80", "2130706433:443", "a:0443", "[a]:1", ":1", "x:65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, p, err := ParseHostPort(s)
		if err != nil {
			return
		}
		if p == 0 {
			t.Fatalf("%q: port 0 accepted", s)
		}
		// What was accepted round-trips through its canonical spelling.
		canon := net.JoinHostPort(h.String(), strconv.Itoa(int(p)))
		h2, p2, err := ParseHostPort(canon)
		if err != nil || h2 != h || p2 != p {
			t.Fatalf("%q -> %q does not round-trip: %v %v %d", s, canon, err, h2, p2)
		}
	})
}
