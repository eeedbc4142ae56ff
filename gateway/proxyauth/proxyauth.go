// Package proxyauth authenticates proxy clients for the gateway.
//
// An [Authenticator] looks at a request's Proxy-Authorization (or whatever its scheme uses) and
// returns an [Outcome]: the verified user, or why not, with the Proxy-Authenticate challenges
// to send and any headers a successful handshake needs. [Basic] (HTTP Basic against an
// htpasswd file, bcrypt only) is one implementation; [Chain] offers several schemes at once (a
// 407 carries every challenge, in order); [Lockout] wraps any of them to slow and then lock out
// client addresses that keep failing. The gateway must never forward Proxy-Authorization
// upstream.
//
// Outcome reasons (codes from the policy package's reason table):
//
//   - auth_required: no credentials of any offered scheme: the request goes on as anonymous,
//     and the policy answers 407 unless the group is anonymous.
//   - auth_failed: wrong or malformed credentials: 407 again, with the same challenges.
//   - locked_out: the client address is locked out: 429 with Retry-After set to RetryAfter
//     rounded up to whole seconds. No verification work is spent on a locked-out client.
//
// Cost. bcrypt at the default cost takes ~60 ms, far more than the rest of a CONNECT, so Basic
// caches verified credentials: the key is HMAC-SHA256 under a per-process random key of
// user "\x00" password, compared in constant time; the plaintext password is never stored, and the
// MAC is useless outside this process. A cache hit spends no bcrypt. An unknown user still spends
// one bcrypt comparison against a dummy hash so that timing does not reveal which users exist.
//
// Lockout. Failures are counted per client address (IPv4, or the /64 of an IPv6 address, since one
// IPv6 host can use a whole /64): MaxFailures failures within FailureWindow lock the address out
// for Lockout. A success resets the count only when every failure in the window was for that same
// user (a typo), never after guesses at other accounts. The table of addresses is bounded; when
// full, the least recently failing address is forgotten. Clients behind one NAT share a count.
package proxyauth

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/scpgate/scpgate/policy"
)

// Authenticator checks one request's proxy credentials. Implementations are safe for
// concurrent use.
type Authenticator interface {
	// Authenticate verifies the credentials r carries, coming from client.
	Authenticate(r *http.Request, client netip.Addr) Outcome
	// Challenges are the Proxy-Authenticate values a 407 carries for this authenticator, in the
	// order the client should prefer them.
	Challenges() []string
}

// Outcome is the result of an authentication.
type Outcome struct {
	OK bool
	// User is the verified user when OK, else the user name that was tried (for the audit log;
	// never the password), or "".
	User string
	// Reason is "" when OK, else auth_required, auth_failed or locked_out.
	Reason     policy.Reason
	RetryAfter time.Duration // locked_out only
	// Failures is, for auth_failed, how many failures this client address has had in the
	// current window, this one included (set by Lockout); the gateway answers later ones more
	// slowly.
	Failures int
	// Header holds response headers a successful handshake needs (Negotiate's mutual-auth
	// token); nil for Basic.
	Header http.Header
}

// attempter is implemented by authenticators that can name the user a request tries to log in
// as without verifying it, so a locked-out attempt is still audited with its user name.
type attempter interface {
	attemptedUser(r *http.Request) string
}

// Chain offers several authenticators at once. The first one that recognises the request's
// credentials decides; a 407 carries every challenge, in the chain's order.
type Chain []Authenticator

// Authenticate implements [Authenticator].
func (c Chain) Authenticate(r *http.Request, client netip.Addr) Outcome {
	for _, a := range c {
		if o := a.Authenticate(r, client); o.Reason != policy.ReasonAuthRequired {
			return o
		}
	}
	return Outcome{Reason: policy.ReasonAuthRequired}
}

// Challenges implements [Authenticator].
func (c Chain) Challenges() []string {
	var out []string
	for _, a := range c {
		out = append(out, a.Challenges()...)
	}
	return out
}

func (c Chain) attemptedUser(r *http.Request) string {
	for _, a := range c {
		if at, ok := a.(attempter); ok {
			if u := at.attemptedUser(r); u != "" {
				return u
			}
		}
	}
	return ""
}

// clientKey is the unit of lockout: the address for IPv4, its /64 for IPv6.
func clientKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}
