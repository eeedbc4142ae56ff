package policy

// Reason is the code of a denial (or of a would-be denial in report mode). The gateway
// sends it in the X-Scpgate-Reason header and writes it to the audit log.
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
	ReasonRateLimited        Reason = "rate_limited"
	ReasonUpstreamRefused    Reason = "upstream_refused"
	ReasonUpstreamTimeout    Reason = "upstream_timeout"
	ReasonBadRequest         Reason = "bad_request"
	ReasonDraining           Reason = "draining"
	ReasonTooManyConnections Reason = "too_many_connections"
)

// Reasons lists every reason code, policy and gateway side, in a stable order
// (for metrics pre-registration and documentation).
func Reasons() []Reason {
	return []Reason{
		ReasonNoRule, ReasonPortNotAllowed, ReasonDeniedPattern, ReasonIPLiteral,
		ReasonMethodNotAllowed, ReasonUserNotAllowed, ReasonPathNotAllowed, ReasonAuthRequired, ReasonInvalidHost,
		ReasonPrivateAddress, ReasonDNSFailure, ReasonSNIMismatch, ReasonAuthFailed,
		ReasonRateLimited, ReasonUpstreamRefused, ReasonUpstreamTimeout, ReasonBadRequest,
		ReasonDraining, ReasonTooManyConnections,
	}
}

func (r Reason) String() string { return string(r) }

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
