package netguard

import (
	"errors"
	"net/netip"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		addr string
		want Class
	}{
		{"8.8.8.8", ClassPublic},
		{"20.42.65.92", ClassPublic},
		{"2620:1ec:c11::200", ClassPublic},
		{"0.0.0.0", ClassUnspecified},
		{"::", ClassUnspecified},
		{"127.0.0.1", ClassLoopback},
		{"127.255.255.254", ClassLoopback},
		{"::1", ClassLoopback},
		{"10.0.0.1", ClassPrivate},
		{"172.16.0.1", ClassPrivate},
		{"172.31.255.255", ClassPrivate},
		{"172.32.0.1", ClassPublic},
		{"192.168.1.1", ClassPrivate},
		{"fd00::1", ClassPrivate},
		{"169.254.169.254", ClassLinkLocal},
		{"168.63.129.16", ClassLinkLocal},        // Azure WireServer: host-only, like metadata
		{"::ffff:168.63.129.16", ClassLinkLocal}, // and in any IPv6 wrapping
		{"64:ff9b::a83f:8110", ClassLinkLocal},   // NAT64 of 168.63.129.16
		{"168.63.129.15", ClassPublic},
		{"fe80::1", ClassLinkLocal},
		{"100.64.0.1", ClassCGNAT},
		{"100.127.255.255", ClassCGNAT},
		{"224.0.0.1", ClassMulticast},
		{"ff02::1", ClassMulticast},
		{"255.255.255.255", ClassBroadcast},
		{"240.0.0.1", ClassReserved},
		{"198.18.0.1", ClassReserved},
		{"192.0.2.1", ClassDocumentation},
		{"2001:db8::1", ClassDocumentation},
		// IPv4 carried inside IPv6 is judged by the IPv4 address.
		{"::ffff:127.0.0.1", ClassLoopback},
		{"::ffff:169.254.169.254", ClassLinkLocal},
		{"::ffff:8.8.8.8", ClassPublic},
		{"64:ff9b::a00:1", ClassPrivate},                       // NAT64 of 10.0.0.1
		{"64:ff9b::a9fe:a9fe", ClassLinkLocal},                 // NAT64 of 169.254.169.254
		{"64:ff9b::808:808", ClassPublic},                      // NAT64 of 8.8.8.8
		{"64:ff9b:1::a00:1", ClassPrivate},                     // local-use NAT64 prefix itself
		{"2002:7f00:1::1", ClassLoopback},                      // 6to4 of 127.0.0.1
		{"2002:c0a8:101::1", ClassPrivate},                     // 6to4 of 192.168.1.1
		{"2001:0:4136:e378:8000:63bf:f5ff:fffe", ClassPrivate}, // Teredo, client 10.0.0.1 inverted
		{"::7f00:1", ClassLoopback},                            // IPv4-compatible (deprecated)
		{"3fff::1", ClassPublic},
		{"4000::1", ClassReserved}, // outside 2000::/3
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			got, _ := Classify(netip.MustParseAddr(tt.addr))
			if got != tt.want {
				t.Errorf("Classify(%s) = %s, want %s", tt.addr, got, tt.want)
			}
		})
	}
}

func TestGuardCheck(t *testing.T) {
	g := New([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/16")}).
		WithListeners(netip.MustParseAddrPort("127.0.0.1:3128"), netip.MustParseAddrPort("[::]:8443"))
	tests := []struct {
		addr  string
		class Class // "" means allowed
	}{
		{"8.8.8.8:443", ""},
		{"127.0.0.5:443", ""},            // inside allow_ranges
		{"[::ffff:127.0.0.5]:443", ""},   // same address, mapped spelling
		{"127.1.0.1:443", ClassLoopback}, // loopback outside allow_ranges
		{"10.0.0.1:443", ClassPrivate},
		{"169.254.169.254:80", ClassLinkLocal},
		{"[64:ff9b::a9fe:a9fe]:80", ClassLinkLocal},
		{"127.0.0.1:3128", ClassOwnListener}, // allowed range, but it is the gateway itself
		{"127.0.0.9:8443", ClassOwnListener}, // wildcard listener: every loopback address
		{"[::1]:8443", ClassOwnListener},
		{"127.0.0.1:3129", ""},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := g.Check(netip.MustParseAddrPort(tt.addr))
			if tt.class == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want allowed", tt.addr, err)
				}
				return
			}
			var de *DeniedError
			if !errors.As(err, &de) {
				t.Fatalf("Check(%s) = %v, want *DeniedError", tt.addr, err)
			}
			if de.Class != tt.class {
				t.Errorf("Check(%s) class = %s, want %s (%v)", tt.addr, de.Class, tt.class, err)
			}
			if de.Error() == "" {
				t.Error("empty error text")
			}
		})
	}
}

func TestGuardInvalid(t *testing.T) {
	if err := New(nil).Check(netip.AddrPort{}); err == nil {
		t.Fatal("zero AddrPort allowed")
	}
}

func FuzzCheck(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, uint16(443))
	f.Add(netip.MustParseAddr("64:ff9b::a00:1").AsSlice(), uint16(80))
	g := New([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	f.Fuzz(func(t *testing.T, raw []byte, port uint16) {
		a, ok := netip.AddrFromSlice(raw)
		if !ok {
			return
		}
		err := g.Check(netip.AddrPortFrom(a, port))
		class, judged := Classify(a)
		if class == ClassPublic && err != nil {
			t.Fatalf("public %s refused: %v", a, err)
		}
		if class != ClassPublic && err == nil && !netip.MustParsePrefix("127.0.0.0/8").Contains(judged) && !netip.MustParsePrefix("127.0.0.0/8").Contains(a.Unmap()) {
			t.Fatalf("%s (%s, judged %s) allowed", a, class, judged)
		}
	})
}
