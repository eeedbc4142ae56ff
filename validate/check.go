// Package validate proves both sides of a gateway's allow-list from the client's side: every
// endpoint of the enabled groups is reached through the gateway as the service connection
// point reaches it, and near misses derived from the policy (plus a fixed set) are refused for
// the expected reason. Each probe is tied to the gateway's own audit record by connection id.
//
// The package is the engine behind `scpgate validate` and the SCP client's scheduled checks:
// [Derive] turns a policy into [Check]s, [Run] probes them through the proxy and returns a
// [Report]. Rendering lives in validate/render, the evidence bundle in validate/evidence.
// Nothing here assumes an operating system: it cross-compiles to windows/amd64.
package validate

import (
	"net"
	"strconv"

	"github.com/scpgate/scpgate/policy"
)

// Expect says which way a check must go.
type Expect string

// Expectations.
const (
	ExpectPass  Expect = "pass"  // the endpoint must be reachable through the gateway
	ExpectBlock Expect = "block" // the gateway must refuse it
)

// Probe is how a check talks to the proxy.
type Probe string

// Probes.
const (
	// ProbeTLS: CONNECT host:port, TLS handshake with SNI host, one HTTP request.
	ProbeTLS Probe = "connect_tls"
	// ProbeFronting: CONNECT host:port, then a ClientHello naming another host (domain fronting).
	ProbeFronting Probe = "sni_mismatch"
	// ProbeHTTP: a plain-HTTP proxy request (absolute-form GET http://host:port/path).
	ProbeHTTP Probe = "plain_http"
)

// Credentials says which credentials a probe sends.
type Credentials string

// Credential modes.
const (
	CredsConfigured Credentials = "configured" // the configured user (or none when auth is off)
	CredsNone       Credentials = "none"       // no Proxy-Authorization header
	CredsWrong      Credentials = "wrong"      // the configured user with a wrong password
)

// Check is one probe to run and what it must show.
type Check struct {
	// ID is stable across runs for the same policy and configuration (used as the JUnit test
	// name and in evidence).
	ID     string `json:"id"`
	Expect Expect `json:"expect"`
	Probe  Probe  `json:"probe"`
	// Kind names the derivation: endpoint, wildcard_sample, wildcard_apex, extra_label, sibling,
	// other_port, other_path, ip_literal, plain_http, sni_mismatch, unlisted, private_address,
	// metadata_address, private_name, no_credentials, wrong_credentials.
	Kind    string      `json:"kind"`
	Group   string      `json:"group"`   // the group the check belongs to ("" for the fixed set)
	Pattern string      `json:"pattern"` // the rule it was derived from
	Host    string      `json:"host"`
	Port    uint16      `json:"port"`
	Path    string      `json:"path,omitempty"` // plain HTTP only
	SNI     string      `json:"sni,omitempty"`  // fronting only: the name sent in the ClientHello
	Creds   Credentials `json:"credentials"`
	// ExpectReason is the reason code the gateway must give (block checks).
	ExpectReason policy.Reason `json:"expect_reason,omitempty"`
	// ExpectStatus is the HTTP status that goes with ExpectReason (0 for a tunnel that is cut
	// after 200, as for sni_mismatch).
	ExpectStatus int `json:"expect_status,omitempty"`
	// ReportMode: the policy lets this through in report mode (would_deny), so a pass is a
	// warning, not a failure.
	ReportMode bool   `json:"report_mode,omitempty"`
	Why        string `json:"why"` // one human sentence
	// From is the check this one was derived from at run time (ip_literal: the endpoint whose
	// address it uses).
	From string `json:"from,omitempty"`
}

// Target is host:port as sent in CONNECT.
func (c Check) Target() string { return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))) }
