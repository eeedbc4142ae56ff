package policy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ParsePort accepts exactly the canonical decimal spelling of 1..65535: no sign, no leading
// zeros, no spaces, so a port that is echoed back or logged is the port that was decided on.
func ParsePort(s string) (uint16, error) {
	if len(s) == 0 || len(s) > 5 || s[0] == '0' {
		return 0, fmt.Errorf("port %q: must be a decimal number from 1 to 65535", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("port %q: must be a decimal number from 1 to 65535", s)
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("port %q: must be a decimal number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// ParseHostPort parses an authority "host:port" as a CONNECT target carries it: the host is
// normalised by ParseHost, and brackets are accepted only around an IPv6 literal.
func ParseHostPort(authority string) (Host, uint16, error) {
	hostPart, portPart, err := net.SplitHostPort(authority)
	if err != nil {
		return Host{}, 0, fmt.Errorf("%q: want host:port", authority)
	}
	port, err := ParsePort(portPart)
	if err != nil {
		return Host{}, 0, err
	}
	host, err := ParseHost(hostPart)
	if err != nil {
		return Host{}, 0, err
	}
	// Judge the spelling, not the parsed address: [::ffff:127.0.0.1] is an IPv6 literal even
	// though it is unmapped to IPv4.
	if strings.HasPrefix(authority, "[") && !(host.IsAddr() && strings.Contains(hostPart, ":")) {
		return Host{}, 0, errors.New("brackets are only valid around an IPv6 address")
	}
	return host, port, nil
}

// Explanation is a decision about one target, as `scpgate policy explain -json` prints it and
// the admin endpoint /v1/explain serves it.
type Explanation struct {
	Target     string `json:"target"`     // as given
	Normalized string `json:"normalized"` // host:port as decided on: punycode, lower case, no trailing dot
	Policy     string `json:"policy"`
	Decision
}

// NewExplanation explains decision d about target, parsed as host and port.
func NewExplanation(target string, host Host, port uint16, policyFile string, d Decision) Explanation {
	return Explanation{
		Target:     target,
		Normalized: net.JoinHostPort(host.String(), strconv.Itoa(int(port))),
		Policy:     policyFile,
		Decision:   d,
	}
}
