package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// ErrInvalidHost is wrapped by every error [ParseHost] returns.
var ErrInvalidHost = errors.New("invalid host")

// Host is a normalised destination: exactly one of Name and Addr is set.
type Host struct {
	// Name is lowercase ASCII (IDNs in punycode), without a trailing dot.
	Name string
	// Addr is an IP literal destination; IPv4-mapped IPv6 addresses are unmapped.
	Addr netip.Addr
}

// IsAddr reports whether the host is an IP literal.
func (h Host) IsAddr() bool { return h.Addr.IsValid() }

// String returns the name or the address (IPv6 without brackets).
func (h Host) String() string {
	if h.Addr.IsValid() {
		return h.Addr.String()
	}
	return h.Name
}

const (
	maxHostInput = 1024 // bytes accepted before any work is done
	maxName      = 253
	maxLabel     = 63
)

func hostErr(s, format string, args ...any) error {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return fmt.Errorf("%w %q: %s", ErrInvalidHost, s, fmt.Sprintf(format, args...))
}

// ParseHost normalises a destination host as it appears in a CONNECT target or a URL
// (without port and without IPv6 brackets).
//
// Names: IDNA (UTS #46 lookup profile) to punycode, ASCII lowercase, one trailing dot
// stripped; every label 1..63 bytes of letters, digits and inner hyphens; at most 253 bytes.
// Brackets, zones, underscores and empty labels are rejected.
//
// IP literals are parsed strictly and returned as addresses, never as names: IPv6 (an
// IPv4-mapped address is unmapped), and IPv4 in every inet_aton spelling (decimal
// 2130706433, hex 0x7f000001, octal 0177.0.0.1, short 127.1). As in the WHATWG URL
// standard, a host whose last label is numeric (all digits, or 0x followed by hex digits)
// must be a valid IPv4 literal or it is an error.
func ParseHost(s string) (Host, error) {
	if s == "" {
		return Host{}, hostErr(s, "empty host")
	}
	if len(s) > maxHostInput {
		return Host{}, hostErr(s, "longer than %d bytes", maxHostInput)
	}
	if strings.ContainsAny(s, "[]") {
		return Host{}, hostErr(s, "brackets are not allowed (give the address without them)")
	}
	if strings.IndexByte(s, '%') >= 0 {
		return Host{}, hostErr(s, "zone identifiers and percent-encoding are not allowed")
	}
	if strings.IndexByte(s, ':') >= 0 {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() {
			return Host{}, hostErr(s, "not a valid IPv6 address")
		}
		return Host{Addr: a.Unmap()}, nil
	}
	name := s
	if !isASCII(name) {
		out, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return Host{}, hostErr(s, "not a valid internationalised name: %v", err)
		}
		name = out
	}
	name = lowerASCII(name)
	if strings.HasSuffix(name, ".") {
		name = name[:len(name)-1]
	}
	if name == "" {
		return Host{}, hostErr(s, "empty name")
	}
	if looksNumeric(lastLabel(name)) {
		a, ok := parseIPv4(name)
		if !ok {
			return Host{}, hostErr(s, "ends in a number but is not a valid IPv4 address")
		}
		return Host{Addr: a}, nil
	}
	if err := checkName(name); err != nil {
		return Host{}, hostErr(s, "%s", err)
	}
	if hasACELabel(name) {
		// Validate punycode; require it to be canonical so that the result is a fixed
		// point (ParseHost(h.Name) == h).
		out, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return Host{}, hostErr(s, "invalid punycode: %v", err)
		}
		if out != name {
			return Host{}, hostErr(s, "punycode is not in canonical form (%s)", out)
		}
	}
	return Host{Name: name}, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// lowerASCII lowercases ASCII letters, allocating only when something changes.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + ('a' - 'A')
				}
			}
			return string(b)
		}
	}
	return s
}

func lastLabel(name string) string {
	return name[strings.LastIndexByte(name, '.')+1:]
}

func hasACELabel(name string) bool {
	for l := range strings.SplitSeq(name, ".") {
		if strings.HasPrefix(l, "xn--") {
			return true
		}
	}
	return false
}

// checkName validates a lowercase ASCII name without trailing dot.
func checkName(name string) error {
	if len(name) > maxName {
		return fmt.Errorf("name longer than %d bytes", maxName)
	}
	for l := range strings.SplitSeq(name, ".") {
		if err := checkLabel(l); err != nil {
			return err
		}
	}
	return nil
}

// checkLabel validates one lowercase hostname label.
func checkLabel(l string) error {
	if l == "" {
		return errors.New("empty label")
	}
	if len(l) > maxLabel {
		return fmt.Errorf("label longer than %d bytes", maxLabel)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '-' {
			continue
		}
		return fmt.Errorf("invalid character %q in label %q", c, l)
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	return nil
}

// looksNumeric is the WHATWG "ends in a number" test for one (lowercase) label.
func looksNumeric(l string) bool {
	if l == "" {
		return false
	}
	if allDigits(l, 10) {
		return true
	}
	return len(l) >= 2 && l[0] == '0' && l[1] == 'x' && allDigits(l[2:], 16)
}

func allDigits(s string, base int) bool {
	for i := 0; i < len(s); i++ {
		if digitVal(s[i]) >= base {
			return false
		}
	}
	return true
}

func digitVal(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return 99
}

// parseIPv4 parses the inet_aton / WHATWG IPv4 forms: one to four dot-separated numbers,
// each decimal, octal (leading 0) or hex (leading 0x); the last number fills the
// remaining bytes. The input is lowercase and has no trailing dot.
func parseIPv4(s string) (netip.Addr, bool) {
	var nums [4]uint64
	n := 0
	for part := range strings.SplitSeq(s, ".") {
		if n == 4 {
			return netip.Addr{}, false
		}
		v, ok := parseIPv4Number(part)
		if !ok {
			return netip.Addr{}, false
		}
		nums[n] = v
		n++
	}
	for i := 0; i < n-1; i++ {
		if nums[i] > 255 {
			return netip.Addr{}, false
		}
	}
	if nums[n-1] >= 1<<(8*(5-n)) {
		return netip.Addr{}, false
	}
	v := nums[n-1]
	for i := 0; i < n-1; i++ {
		v += nums[i] << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func parseIPv4Number(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	base := 10
	switch {
	case len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, s = 16, s[2:]
	case len(s) >= 2 && s[0] == '0':
		base, s = 8, s[1:]
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d := digitVal(s[i])
		if d >= base {
			return 0, false
		}
		v = v*uint64(base) + uint64(d)
		if v > 0xFFFFFFFF {
			return 0, false
		}
	}
	return v, true
}
