package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseHost(t *testing.T) {
	ip := netip.MustParseAddr
	tests := []struct {
		in   string
		name string     // expected name, or
		addr netip.Addr // expected address
		err  bool
	}{
		// Names.
		{in: "go.microsoft.com", name: "go.microsoft.com"},
		{in: "Go.Microsoft.COM", name: "go.microsoft.com"},
		{in: "go.microsoft.com.", name: "go.microsoft.com"},
		{in: "go.microsoft.com..", err: true},
		{in: "localhost", name: "localhost"},
		{in: "a-b.example", name: "a-b.example"},
		{in: "1.2.3.example", name: "1.2.3.example"},
		{in: "0xg.example", name: "0xg.example"},
		{in: "x.0xg", name: "x.0xg"},
		{in: "bücher.example", name: "xn--bcher-kva.example"},
		{in: "BÜCHER.example.", name: "xn--bcher-kva.example"},
		{in: "xn--bcher-kva.example", name: "xn--bcher-kva.example"},
		{in: "XN--BCHER-KVA.EXAMPLE", name: "xn--bcher-kva.example"},
		{in: "ｇｏ．ｍｉｃｒｏｓｏｆｔ．ｃｏｍ", name: "go.microsoft.com"}, // full-width letters and dots
		{in: strings.Repeat("a", 63) + ".example", name: strings.Repeat("a", 63) + ".example"},
		{in: strings.Repeat("a", 64) + ".example", err: true},
		{in: strings.Repeat("abcdefghi.", 25) + "abc", name: strings.Repeat("abcdefghi.", 25) + "abc"}, // 253
		{in: strings.Repeat("abcdefghi.", 25) + "abcd", err: true},                                     // 254
		{in: "", err: true},
		{in: ".", err: true},
		{in: ".example.com", err: true},
		{in: "a..b", err: true},
		{in: "under_score.example", err: true},
		{in: "-lead.example", err: true},
		{in: "trail-.example", err: true},
		{in: "sp ace.example", err: true},
		{in: "slash/x.example", err: true},
		{in: "at@x.example", err: true},
		{in: "xn--zz.example", err: true},  // invalid punycode
		{in: "xn--abc.example", err: true}, // punycode of plain ASCII
		{in: "[::1]", err: true},
		{in: "[go.microsoft.com]", err: true},
		{in: "fe80::1%eth0", err: true},
		{in: "go.microsoft.com%2e", err: true},
		{in: "a:b", err: true},
		{in: "go.microsoft.com:443", err: true},

		// IPv4, every inet_aton spelling.
		{in: "127.0.0.1", addr: ip("127.0.0.1")},
		{in: "127.0.0.1.", addr: ip("127.0.0.1")},
		{in: "2130706433", addr: ip("127.0.0.1")},
		{in: "0x7f000001", addr: ip("127.0.0.1")},
		{in: "0X7F000001", addr: ip("127.0.0.1")},
		{in: "0177.0.0.1", addr: ip("127.0.0.1")},
		{in: "0177.0.0.01", addr: ip("127.0.0.1")},
		{in: "127.1", addr: ip("127.0.0.1")},
		{in: "127.0.1", addr: ip("127.0.0.1")},
		{in: "0x7f.1", addr: ip("127.0.0.1")},
		{in: "0x7f.0.0x0.1", addr: ip("127.0.0.1")},
		{in: "0177.0x0.1", addr: ip("127.0.0.1")},
		{in: "169.254.43518", addr: ip("169.254.169.254")},
		{in: "0", addr: ip("0.0.0.0")},
		{in: "0x", addr: ip("0.0.0.0")},
		{in: "255.255.255.255", addr: ip("255.255.255.255")},
		{in: "4294967295", addr: ip("255.255.255.255")},
		{in: "１２７．０．０．１", addr: ip("127.0.0.1")}, // full-width digits map to ASCII
		{in: "4294967296", err: true},
		{in: "1.2.3.4.5", err: true},
		{in: "999.1.1.1", err: true},
		{in: "1.2.3.256", err: true},
		{in: "1.2.65536", err: true},
		{in: "09.1.1.1", err: true}, // not octal
		{in: "1.2.3.08", err: true},
		{in: "example.123", err: true},
		{in: "example.0x1f", err: true},
		{in: "1..1", err: true},
		{in: "0x100000000", err: true},

		// IPv6.
		{in: "::1", addr: ip("::1")},
		{in: "2001:DB8::1", addr: ip("2001:db8::1")},
		{in: "::ffff:127.0.0.1", addr: ip("127.0.0.1")},
		{in: "::ffff:7f00:1", addr: ip("127.0.0.1")},
		{in: "::FFFF:A9FE:A9FE", addr: ip("169.254.169.254")},
		{in: "64:ff9b::7f00:1", addr: ip("64:ff9b::7f00:1")}, // NAT64 stays IPv6 (netguard's job)
		{in: "1:2:3", err: true},
		{in: "::1::", err: true},
		{in: "::ffff:1.2.3", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			h, err := ParseHost(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("ParseHost(%q) = %+v, want error", tt.in, h)
				}
				if !errors.Is(err, ErrInvalidHost) {
					t.Fatalf("error %v does not wrap ErrInvalidHost", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHost(%q): %v", tt.in, err)
			}
			if tt.addr.IsValid() {
				if !h.IsAddr() || h.Addr != tt.addr || h.Name != "" {
					t.Fatalf("ParseHost(%q) = %+v, want address %v", tt.in, h, tt.addr)
				}
				if h.String() != tt.addr.String() {
					t.Fatalf("String() = %q", h.String())
				}
				return
			}
			if h.IsAddr() || h.Name != tt.name {
				t.Fatalf("ParseHost(%q) = %+v, want name %q", tt.in, h, tt.name)
			}
			if h.String() != tt.name {
				t.Fatalf("String() = %q", h.String())
			}
			again, err := ParseHost(h.Name)
			if err != nil || again != h {
				t.Fatalf("not idempotent: ParseHost(%q) = %+v, %v", h.Name, again, err)
			}
		})
	}
}

func TestHostZero(t *testing.T) {
	var h Host
	if h.IsAddr() || h.String() != "" {
		t.Fatalf("zero Host: IsAddr=%v String=%q", h.IsAddr(), h.String())
	}
}

func TestParseHostPort(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port uint16
		ok   bool
	}{
		{"go.microsoft.com:443", "go.microsoft.com", 443, true},
		{"GO.microsoft.com.:443", "go.microsoft.com", 443, true},
		{"[::1]:443", "::1", 443, true},
		{"[::ffff:127.0.0.1]:80", "127.0.0.1", 80, true},
		{"127.0.0.1:65535", "127.0.0.1", 65535, true},
		{"go.microsoft.com", "", 0, false},
		{"go.microsoft.com:0", "", 0, false},
		{"go.microsoft.com:0443", "", 0, false},
		{"go.microsoft.com:+443", "", 0, false},
		{"go.microsoft.com:65536", "", 0, false},
		{"go.microsoft.com: 443", "", 0, false},
		{"[go.microsoft.com]:443", "", 0, false},
		{"[127.0.0.1]:443", "", 0, false},
		{":443", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			h, p, err := ParseHostPort(tt.in)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && (h.String() != tt.host || p != tt.port) {
				t.Fatalf("got %s %d, want %s %d", h, p, tt.host, tt.port)
			}
		})
	}
}

func TestParsePort(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint16
		ok   bool
	}{
		{"1", 1, true}, {"443", 443, true}, {"65535", 65535, true},
		{"", 0, false}, {"0", 0, false}, {"65536", 0, false}, {"00443", 0, false},
		{"-1", 0, false}, {"+1", 0, false}, {" 1", 0, false}, {"1e3", 0, false}, {"١٢٣", 0, false},
	} {
		got, err := ParsePort(tt.in)
		ok := err == nil
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParsePort(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
