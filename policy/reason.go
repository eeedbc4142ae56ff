package policy

// Reason is the code of a denial (or of a would-be denial in report mode). The gateway
// sends it in the X-Scpgate-Reason header and writes it to the audit log.
//
// Every code is one row of reasonTable, which also holds the HTTP status the client gets, the
// message it reads, and a line for the docs. Adding a code is one row there plus its use; the
// README's table of answers is checked against it (TestReadmeListsEveryReason).
type Reason string

// Reasons produced by [Policy.Decide].
const (
	ReasonNoRule           Reason = "no_rule"
	ReasonPortNotAllowed   Reason = "port_not_allowed"
	ReasonDeniedPattern    Reason = "denied_pattern"
	ReasonIPLiteral        Reason = "ip_literal"
	ReasonMethodNotAllowed Reason = "method_not_allowed"
	ReasonUserNotAllowed   Reason = "user_not_allowed"
	ReasonPathNotAllowed   Reason = "path_not_allowed"
	ReasonAuthRequired     Reason = "auth_required"
	ReasonInvalidHost      Reason = "invalid_host"
)

// Reasons produced by the gateway; defined here so there is one list of codes.
const (
	ReasonPrivateAddress     Reason = "private_address"
	ReasonDNSFailure         Reason = "dns_failure"
	ReasonSNIMismatch        Reason = "sni_mismatch"
	ReasonAuthFailed         Reason = "auth_failed"
	ReasonLockedOut          Reason = "locked_out"
	ReasonRateLimited        Reason = "rate_limited"
	ReasonUpstreamRefused    Reason = "upstream_refused"
	ReasonUpstreamTimeout    Reason = "upstream_timeout"
	ReasonBadRequest         Reason = "bad_request"
	ReasonDraining           Reason = "draining"
	ReasonTooManyConnections Reason = "too_many_connections"
	ReasonOutOfResources     Reason = "out_of_resources"
)

// reasonInfo is what a client and an operator are told about a code.
type reasonInfo struct {
	code   Reason
	status int
	// message is what the client reads. With aboutTarget it follows the target
	// ("go.microsoft.com:80 uses a port that is not allowed for this host").
	message     string
	aboutTarget bool
	description string // one line for the docs: when the code is given
}

// reasonTable is every code in a stable order (metrics pre-registration, docs). Statuses are
// written as numbers so that this package stays free of net/http.
var reasonTable = [...]reasonInfo{
	{ReasonNoRule, 403, "is not on the allow-list", true, "no enabled group allows the host"},
	{ReasonPortNotAllowed, 403, "uses a port that is not allowed for this host", true, "a group allows the host, but not on this port"},
	{ReasonDeniedPattern, 403, "is explicitly denied", true, "the host matches the top-level deny list"},
	{ReasonIPLiteral, 403, "is an IP address; use the host name", true, "the target is an IP literal outside every group's addresses"},
	{ReasonMethodNotAllowed, 405, "does not allow this method", true, "the group does not allow the method (plain HTTP only where a group lists it)"},
	{ReasonUserNotAllowed, 403, "is not allowed for this user", true, "the authenticated user is not in the group's users"},
	{ReasonPathNotAllowed, 403, "does not allow this path", true, "the plain-HTTP path is outside the group's paths"},
	{ReasonAuthRequired, 407, "proxy authentication required", false, "authentication is on and the request carried no credentials"},
	{ReasonInvalidHost, 400, "invalid target", false, "the target is not a valid host:port (bad port, brackets around a name, zone, underscore, ...)"},
	{ReasonPrivateAddress, 403, "resolves to an address the gateway does not connect to (private, loopback, link-local or metadata)", true, "a resolved address is private, loopback, link-local (metadata), CGNAT or otherwise special"},
	{ReasonDNSFailure, 502, "does not resolve", true, "the name does not resolve (NXDOMAIN, SERVFAIL, timeout)"},
	{ReasonSNIMismatch, 403, "was tunnelled with a TLS server name for another host", true, "the ClientHello names another host, none, or is not TLS (tunnel closed, audited only)"},
	{ReasonAuthFailed, 407, "proxy credentials were not accepted", false, "the credentials are wrong or malformed"},
	{ReasonLockedOut, 429, "too many failed logins from this address; retry later", false, "the client address is locked out after repeated failed logins (Retry-After)"},
	{ReasonRateLimited, 429, "too many requests from this address; retry later", false, "the client address exceeded its request rate (Retry-After)"},
	{ReasonUpstreamRefused, 502, "could not be reached", true, "the destination refused the connection or failed"},
	{ReasonUpstreamTimeout, 504, "did not answer in time", true, "the destination did not answer in time"},
	{ReasonBadRequest, 400, "malformed proxy request; send CONNECT host:port or an absolute http:// URL", false, "the request is not a proxy request the gateway understands"},
	{ReasonDraining, 503, "the gateway is shutting down; retry on another instance", false, "the gateway is draining (SIGTERM)"},
	{ReasonTooManyConnections, 429, "too many connections; retry later", false, "connections per client address or overall are at their limit (Retry-After)"},
	{ReasonOutOfResources, 503, "the gateway is out of resources; retry shortly", false, "the gateway ran out of file descriptors (or similar) and refused the request"},
}

// reasonIndex finds a code's row.
var reasonIndex = func() map[Reason]int {
	m := make(map[Reason]int, len(reasonTable))
	for i, r := range reasonTable {
		m[r.code] = i
	}
	return m
}()

// Reasons lists every reason code, policy and gateway side, in a stable order
// (for metrics pre-registration and documentation).
func Reasons() []Reason {
	out := make([]Reason, len(reasonTable))
	for i, r := range reasonTable {
		out[i] = r.code
	}
	return out
}

func (r Reason) info() reasonInfo {
	if i, ok := reasonIndex[r]; ok {
		return reasonTable[i]
	}
	return reasonInfo{code: r, status: 403, message: "is not allowed", aboutTarget: true}
}

func (r Reason) String() string { return string(r) }

// Status is the HTTP status a client gets for r (403 for a code not in the table).
func (r Reason) Status() int { return r.info().status }

// Message is the client-facing text for r about target ("host:port"; may be empty).
func (r Reason) Message(target string) string {
	in := r.info()
	if in.aboutTarget {
		if target == "" {
			target = "the destination"
		}
		return target + " " + in.message
	}
	return in.message
}

// Description is one line for the docs: when r is given.
func (r Reason) Description() string { return r.info().description }

// Mode says whether a denial is enforced or only reported.
type Mode string

// Modes.
const (
	ModeEnforce Mode = "enforce"
	ModeReport  Mode = "report"
)

func (m Mode) String() string { return string(m) }

// SNIMode says whether the gateway checks the TLS ClientHello server name against the
// CONNECT host.
type SNIMode string

// SNI modes.
const (
	SNIMatch SNIMode = "match"
	SNIOff   SNIMode = "off"
)

func (s SNIMode) String() string { return string(s) }

// rank orders the failures of a matching rule: a higher rank is more telling (the rule
// got further before it failed).
func rank(r Reason) int {
	switch r {
	case ReasonPathNotAllowed:
		return 5
	case ReasonUserNotAllowed:
		return 4
	case ReasonAuthRequired:
		return 3
	case ReasonMethodNotAllowed:
		return 2
	case ReasonPortNotAllowed:
		return 1
	}
	return 0
}
