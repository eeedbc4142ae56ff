// Package netguard decides whether an IP address may be dialed by the gateway.
//
// The gateway resolves names itself and dials the address it vetted, never the name again, so
// this check is the one place that stops SSRF towards internal services and DNS rebinding.
// Everything that is not globally routable unicast is refused unless the operator listed it in
// allow_ranges; addresses embedded in IPv6 transition forms (IPv4-mapped, NAT64, 6to4, Teredo)
// are judged by the IPv4 address they carry, because that is where the packets end up.
package netguard

import (
	"fmt"
	"net/netip"
	"slices"
)

// Class names a kind of address the gateway refuses by default.
type Class string

const (
	ClassPublic        Class = "public"
	ClassUnspecified   Class = "unspecified"
	ClassLoopback      Class = "loopback"
	ClassPrivate       Class = "private"
	ClassLinkLocal     Class = "link_local" // includes cloud metadata 169.254.169.254
	ClassCGNAT         Class = "cgnat"
	ClassMulticast     Class = "multicast"
	ClassBroadcast     Class = "broadcast"
	ClassReserved      Class = "reserved"
	ClassDocumentation Class = "documentation"
	ClassOwnListener   Class = "own_listener"
	ClassInvalid       Class = "invalid"
)

type rangeClass struct {
	prefix netip.Prefix
	class  Class
}

// special lists the IANA special-purpose ranges that must never be reached through an egress
// gateway unless explicitly allowed. Order matters only for the class reported.
var special = mustRanges(
	"0.0.0.0/8", ClassUnspecified,
	"10.0.0.0/8", ClassPrivate,
	"100.64.0.0/10", ClassCGNAT,
	"127.0.0.0/8", ClassLoopback,
	"169.254.0.0/16", ClassLinkLocal,
	// Azure's WireServer (VM agent configuration, extension settings and certificates): a public
	// address that only the host answers, reached from inside a VM like link-local metadata.
	"168.63.129.16/32", ClassLinkLocal,
	"172.16.0.0/12", ClassPrivate,
	"192.0.0.0/24", ClassReserved,
	"192.0.2.0/24", ClassDocumentation,
	"192.88.99.0/24", ClassReserved, // deprecated 6to4 relay anycast
	"192.168.0.0/16", ClassPrivate,
	"198.18.0.0/15", ClassReserved, // benchmarking
	"198.51.100.0/24", ClassDocumentation,
	"203.0.113.0/24", ClassDocumentation,
	"224.0.0.0/4", ClassMulticast,
	"255.255.255.255/32", ClassBroadcast,
	"240.0.0.0/4", ClassReserved,
	"::/128", ClassUnspecified,
	"::1/128", ClassLoopback,
	"64:ff9b:1::/48", ClassPrivate, // local-use NAT64 (RFC 8215)
	"100::/64", ClassReserved, // discard-only
	"2001:db8::/32", ClassDocumentation,
	"2001:10::/28", ClassReserved, // ORCHID
	"2001:20::/28", ClassReserved, // ORCHIDv2
	"fc00::/7", ClassPrivate, // unique local
	"fe80::/10", ClassLinkLocal,
	"fec0::/10", ClassPrivate, // deprecated site-local
	"ff00::/8", ClassMulticast,
)

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	teredo    = netip.MustParsePrefix("2001::/32")
	v4compat  = netip.MustParsePrefix("::/96")
	global6   = netip.MustParsePrefix("2000::/3")
)

func mustRanges(pairs ...any) []rangeClass {
	out := make([]rangeClass, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, rangeClass{netip.MustParsePrefix(pairs[i].(string)), pairs[i+1].(Class)})
	}
	return out
}

// Classify reports the class of a, looking through IPv6 forms that carry an IPv4 address.
// The second result is the address that was finally judged (the embedded IPv4, if any).
func Classify(a netip.Addr) (Class, netip.Addr) {
	if !a.IsValid() {
		return ClassInvalid, a
	}
	a = a.WithZone("")
	if a.Is4In6() {
		a = a.Unmap()
	}
	if a.Is6() {
		if inner, ok := embeddedIPv4(a); ok {
			// The carrier prefix itself is public, but the packets go to the embedded address.
			c, _ := Classify(inner)
			if c != ClassPublic || nat64.Contains(a) {
				// NAT64 of a public address is how IPv6-only networks reach IPv4: public.
				return c, inner
			}
		}
	}
	for _, r := range special {
		if r.prefix.Contains(a) {
			return r.class, a
		}
	}
	if a.Is6() && !global6.Contains(a) {
		// Only 2000::/3 is allocated as global unicast; anything else is not a place a
		// legitimate endpoint lives.
		return ClassReserved, a
	}
	return ClassPublic, a
}

// embeddedIPv4 extracts the IPv4 address that NAT64, 6to4, Teredo or the deprecated
// IPv4-compatible form would deliver to.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	case teredo.Contains(a):
		// RFC 4380: the client's IPv4 address is stored inverted in the last 32 bits.
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), true
	case v4compat.Contains(a) && a != netip.IPv6Unspecified() && a != netip.IPv6Loopback():
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	}
	return netip.Addr{}, false
}

// DeniedError says why an address may not be dialed.
type DeniedError struct {
	Addr  netip.AddrPort
	Class Class
	// Judged is the address that was classified; it differs from Addr.Addr() when Addr
	// embeds an IPv4 address.
	Judged netip.Addr
}

func (e *DeniedError) Error() string {
	if e.Class == ClassOwnListener {
		return fmt.Sprintf("destination %s is the gateway's own listener", e.Addr)
	}
	if e.Judged.IsValid() && e.Judged != e.Addr.Addr() {
		return fmt.Sprintf("destination %s embeds %s address %s; add it to allow_ranges if this is intended", e.Addr, e.Class, e.Judged)
	}
	return fmt.Sprintf("destination %s is a %s address; add it to allow_ranges if this is intended", e.Addr, e.Class)
}

// Guard holds the operator's exceptions and the gateway's own listener addresses.
// It is immutable and safe for concurrent use.
type Guard struct {
	allow []netip.Prefix
	self  []netip.AddrPort
}

// New returns a Guard that permits the special-purpose addresses inside allow.
func New(allow []netip.Prefix) *Guard {
	return &Guard{allow: slices.Clone(allow)}
}

// WithListeners returns a copy of g that also refuses the given listener addresses, so a client
// cannot make the gateway connect to itself (a loop that would exhaust its connections).
// An unspecified listener IP (0.0.0.0, ::) refuses that port on every loopback address.
func (g *Guard) WithListeners(self ...netip.AddrPort) *Guard {
	return &Guard{allow: g.allow, self: append(slices.Clone(g.self), self...)}
}

// Check returns nil if ap may be dialed, else a *DeniedError.
func (g *Guard) Check(ap netip.AddrPort) error {
	a := ap.Addr().WithZone("")
	if a.Is4In6() {
		a = a.Unmap()
	}
	for _, s := range g.self {
		sa := s.Addr().Unmap()
		if s.Port() == ap.Port() && (sa == a || (sa.IsUnspecified() && (a.IsLoopback() || a.IsUnspecified()))) {
			return &DeniedError{Addr: ap, Class: ClassOwnListener, Judged: a}
		}
	}
	class, judged := Classify(a)
	if class == ClassPublic {
		return nil
	}
	if class == ClassInvalid {
		return &DeniedError{Addr: ap, Class: class}
	}
	for _, p := range g.allow {
		if p.Contains(judged) || p.Contains(a) {
			return nil
		}
	}
	return &DeniedError{Addr: ap, Class: class, Judged: judged}
}
