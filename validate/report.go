package validate

import (
	"time"
)

// SchemaVersion is the version of the JSON report (validate/render/report.schema.json). It
// changes when a field is removed or changes meaning; a field added to the report is added to
// the schema in the same change and keeps the version.
const SchemaVersion = 1

// Status is the verdict of one check.
type Status string

// Statuses.
const (
	StatusPass Status = "pass"
	StatusWarn Status = "warn"
	StatusFail Status = "fail"
)

// ConfigMgr status message IDs of the SMS_SERVICE_CONNECTOR component.
const (
	MsgAllPassed = 11410 // informational: all checks passed
	MsgWarning   = 11411 // warning: non-critical failure
	MsgError     = 11412 // error: a required endpoint failed or a must-block check passed
)

// Report is the result of a run.
type Report struct {
	SchemaVersion int       `json:"schema_version"`
	Tool          string    `json:"tool"`
	Started       time.Time `json:"started"`
	Finished      time.Time `json:"finished"`
	DurationMS    float64   `json:"duration_ms"`
	Proxy         string    `json:"proxy"`
	User          string    `json:"user,omitempty"`
	Policy        PolicyRef `json:"policy"`
	Groups        []string  `json:"groups"`
	// GatewayPolicy is the gateway's own account of its policy (when an admin URL was given).
	GatewayPolicy *GatewayPolicy `json:"gateway_policy,omitempty"`
	// AuditSource says where gateway records came from ("" when none was given).
	AuditSource string   `json:"audit_source,omitempty"`
	Outcome     Outcome  `json:"outcome"`
	Summary     Summary  `json:"summary"`
	Results     []Result `json:"results"`
	Drift       Drift    `json:"drift"`
	// Incomplete is set when the overall timeout cut the run short; unfinished checks fail.
	Incomplete bool `json:"incomplete,omitempty"`
}

// PolicyRef names the policy the checks were derived from.
type PolicyRef struct {
	File    string `json:"file"`
	Version string `json:"version"` // hex SHA-256 of the file
}

// Outcome is the overall result in ConfigMgr's terms.
type Outcome struct {
	Message  int    `json:"message"`   // 11410, 11411 or 11412
	Severity string `json:"severity"`  // informational, warning, error
	Text     string `json:"text"`      // one sentence
	ExitCode int    `json:"exit_code"` // 0, 1 or 2
	// Failed names the failing checks (for 11412) or the warning ones (for 11411).
	Failed []string `json:"failed"`
}

// Summary counts the results.
type Summary struct {
	Total int `json:"total"`
	Pass  int `json:"pass"`
	Warn  int `json:"warn"`
	Fail  int `json:"fail"`
}

// Result is one check's outcome.
type Result struct {
	Check
	Status Status `json:"status"`
	// Detail says why, in one or two sentences.
	Detail string `json:"detail"`
	// Blocked: the probe did not get through (refused, cut or failed).
	Blocked bool `json:"blocked"`
	// BlockedBy: "gateway" when the gateway's answer or record shows it decided, "other" when
	// something else did (a firewall, another proxy), "" when not blocked.
	BlockedBy string `json:"blocked_by,omitempty"`
	Steps     []Step `json:"steps"`
	// Attempts is how many tries the probe took (more than one when the proxy rate-limited it).
	Attempts int `json:"attempts"`
	// Proxy is the proxy's answer to CONNECT (or to the plain-HTTP request).
	Proxy *ProxyAnswer `json:"proxy,omitempty"`
	TLS   *TLSInfo     `json:"tls,omitempty"`
	// HTTPStatus is the origin's status through the tunnel (0 when no request was made).
	HTTPStatus int `json:"http_status,omitempty"`
	// Gateway is the gateway's audit record for this probe, when an audit source was given.
	Gateway   *GatewayRecord `json:"gateway,omitempty"`
	ConfigMgr ConfigMgrView  `json:"configmgr"`
	Error     string         `json:"error,omitempty"`
}

// Step is the time one step of a probe took.
type Step struct {
	Name  string  `json:"name"` // proxy_tcp, proxy_tls, connect, tls, http
	MS    float64 `json:"ms"`
	OK    bool    `json:"ok"`
	Error string  `json:"error,omitempty"`
}

// ProxyAnswer is what the proxy answered.
type ProxyAnswer struct {
	Status int    `json:"status"`
	Reason string `json:"reason,omitempty"`  // X-Scpgate-Reason
	ConnID string `json:"conn_id,omitempty"` // X-Scpgate-Conn
	// Challenges are the Proxy-Authenticate values. A 407 with a challenge asks for
	// credentials; a 407 without one is a policy denial that happens to use 407.
	Challenges []string `json:"challenges,omitempty"`
	// AuthChallenge is true for a 407 that carries a Proxy-Authenticate challenge.
	AuthChallenge bool `json:"auth_challenge"`

	retryAfter time.Duration // Retry-After of a 429
}

// TLSInfo is what the TLS handshake through the tunnel showed.
type TLSInfo struct {
	Version     string `json:"version"`
	Cipher      string `json:"cipher"`
	ALPN        string `json:"alpn,omitempty"`
	ServerName  string `json:"server_name"`
	NameMatch   bool   `json:"name_match"`
	Verified    bool   `json:"verified"`
	VerifyError string `json:"verify_error,omitempty"`
	Chain       []Cert `json:"chain"`
	// ExpectedIssuers are the configured issuers for this endpoint; IssuerMatch says whether
	// the chain shows one of them. A mismatch is TLS inspection.
	ExpectedIssuers []string `json:"expected_issuers,omitempty"`
	IssuerMatch     bool     `json:"issuer_match"`
	Inspected       bool     `json:"inspected"`
}

// Cert is one certificate of the presented chain.
type Cert struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
	DaysLeft int       `json:"days_left"`
	SHA256   string    `json:"sha256"`
	DNSNames []string  `json:"dns_names,omitempty"`
}

// GatewayRecord is the gateway's audit record matched to a probe by connection id.
type GatewayRecord struct {
	Found    bool   `json:"found"`
	ConnID   string `json:"conn_id"`
	Decision string `json:"decision,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Group    string `json:"group,omitempty"`
	Pattern  string `json:"pattern,omitempty"`
	Address  string `json:"address,omitempty"`
	Status   int    `json:"status,omitempty"`
	SNI      string `json:"sni,omitempty"`
	// Line is the raw audit line (for the evidence bundle).
	Line string `json:"-"`
}

// ConfigMgrView is how ConfigMgr's "Validate internet access" would read the same answer.
type ConfigMgrView struct {
	Reachable bool   `json:"reachable"`
	Reading   string `json:"reading"` // e.g. "403: reachable (ConfigMgr counts a 403 as reachable)"
	// Disagrees is set when ConfigMgr's reading and this check's verdict point different ways
	// (a denied endpoint ConfigMgr calls reachable, for example).
	Disagrees bool `json:"disagrees"`
}
