package validate

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// configMgrFailures are the status codes ConfigMgr's "Validate internet access" counts as a
// failure; every other status, 403 included, counts as reachable.
var configMgrFailures = []int{407, 408, 426, 451, 502, 511, 598, 599}

// ConfigMgrFails reports whether ConfigMgr counts status as a failure.
func ConfigMgrFails(status int) bool { return slices.Contains(configMgrFailures, status) }

// expiryWarnDays: a certificate closer than this to its end is a warning.
const expiryWarnDays = 21

// configMgrReading is how ConfigMgr would classify the answer the probe got.
func configMgrReading(r *Result) ConfigMgrView {
	status := 0
	switch {
	case r.Proxy != nil && r.Proxy.Status != http.StatusOK:
		status = r.Proxy.Status
	case r.Proxy == nil && r.Error != "":
		if strings.Contains(r.Error, "timeout") || strings.Contains(r.Error, "deadline") {
			return ConfigMgrView{Reachable: false, Reading: "timeout: failure"}
		}
		return ConfigMgrView{Reachable: false, Reading: "connection failure: failure"}
	case r.Probe != ProbeHTTP && r.TLS == nil:
		if strings.Contains(r.Error, "timeout") {
			return ConfigMgrView{Reachable: false, Reading: "timeout: failure"}
		}
		return ConfigMgrView{Reachable: false, Reading: "TLS failure: failure"}
	case r.TLS != nil && !r.TLS.Verified:
		return ConfigMgrView{Reachable: false, Reading: "TLS failure (certificate chain): failure"}
	default:
		status = r.HTTPStatus
	}
	if status == 0 {
		return ConfigMgrView{Reachable: false, Reading: "no answer: failure"}
	}
	if ConfigMgrFails(status) {
		return ConfigMgrView{Reachable: false, Reading: fmt.Sprintf("%d: failure", status)}
	}
	v := ConfigMgrView{Reachable: true, Reading: fmt.Sprintf("%d: reachable", status)}
	if status == http.StatusForbidden {
		v.Reading += " (ConfigMgr counts a 403 as reachable)"
	}
	return v
}

// judge sets Status, Detail, Blocked and BlockedBy from what the probe saw; audited says
// whether an audit source was given (then a missing record means the gateway did not decide).
func judge(r *Result, audited bool) {
	r.Blocked, r.BlockedBy = blocked(r, audited)
	if r.Expect == ExpectPass {
		judgePass(r, audited)
	} else {
		judgeBlock(r, audited)
	}
	r.ConfigMgr = configMgrReading(r)
	r.ConfigMgr.Disagrees = r.ConfigMgr.Reachable == r.Blocked
}

// blocked says whether the probe was stopped and by whom.
func blocked(r *Result, audited bool) (bool, string) {
	gw := r.Gateway
	switch {
	case r.Proxy == nil:
		return true, "other" // never got an answer from the proxy
	case r.Probe == ProbeHTTP:
		if r.Proxy.Reason == "" && !(gw != nil && gw.Found && gw.Decision == "deny") {
			if r.Proxy.ConnID == "" && isRefusal(r.Proxy.Status) {
				return true, "other"
			}
			return false, ""
		}
	case r.Proxy.Status == http.StatusOK:
		if r.Probe != ProbeFronting || r.TLS != nil {
			return false, ""
		}
		// The tunnel was opened and then cut during the handshake.
		if audited && (gw == nil || !gw.Found) {
			return true, "other"
		}
		return true, "gateway"
	}
	if audited {
		if gw == nil || !gw.Found {
			return true, "other"
		}
		return true, "gateway"
	}
	if r.Proxy.Reason == "" {
		return true, "other"
	}
	return true, "gateway"
}

func isRefusal(status int) bool {
	return status == 403 || status == 407 || status == 405 || status >= 500
}

// reason is the reason code the gateway gave: from its record when there is one, else its
// answer.
func reason(r *Result) string {
	if r.Gateway != nil && r.Gateway.Found && r.Gateway.Reason != "" {
		return r.Gateway.Reason
	}
	if r.Proxy != nil {
		return r.Proxy.Reason
	}
	return ""
}

func judgePass(r *Result, audited bool) {
	fail := func(format string, args ...any) { r.Status, r.Detail = StatusFail, fmt.Sprintf(format, args...) }
	switch {
	case r.Proxy == nil:
		fail("%s", r.Error)
		return
	case r.Blocked:
		code := reason(r)
		switch {
		case r.Proxy.Status == http.StatusProxyAuthRequired && r.Proxy.AuthChallenge:
			fail("credentials not accepted: 407 with an authentication challenge (%s)", orUnknown(code))
		case r.BlockedBy == "other":
			fail("blocked, but not by the gateway: %d without a gateway record (a firewall or another proxy decided)", r.Proxy.Status)
		default:
			fail("refused by the gateway: %d %s", r.Proxy.Status, orUnknown(code))
		}
		return
	case r.Probe == ProbeHTTP:
		judgePlainHTTP(r, audited)
		return
	case r.TLS == nil:
		fail("%s", r.Error)
		return
	case r.TLS.Inspected:
		fail("TLS inspection detected: the chain is issued by %q, expected %s (Microsoft does not support inspection of these endpoints)",
			issuerOfChain(r.TLS), expectedText(r.TLS))
		return
	case !r.TLS.Verified:
		fail("certificate not trusted for %s: %s", r.Host, r.TLS.VerifyError)
		return
	case r.HTTPStatus == 0:
		fail("no HTTP answer through the tunnel: %s", lastStepError(r))
		return
	case ConfigMgrFails(r.HTTPStatus):
		fail("the endpoint answered %d, which ConfigMgr counts as a failure", r.HTTPStatus)
		return
	}
	var warns []string
	if r.HTTPStatus >= 500 {
		warns = append(warns, fmt.Sprintf("the endpoint answered %d", r.HTTPStatus))
	}
	if len(r.TLS.Chain) > 0 && r.TLS.Chain[0].DaysLeft < expiryWarnDays {
		warns = append(warns, fmt.Sprintf("the certificate expires in %d days", r.TLS.Chain[0].DaysLeft))
	}
	if audited && (r.Gateway == nil || !r.Gateway.Found) {
		warns = append(warns, "no gateway audit record for connection "+orUnknown(r.Proxy.ConnID))
	}
	if r.Gateway != nil && r.Gateway.Decision == "would_deny" {
		warns = append(warns, "the gateway let it through in report mode only (would_deny "+r.Gateway.Reason+")")
	}
	if len(warns) > 0 {
		r.Status, r.Detail = StatusWarn, strings.Join(warns, "; ")
		return
	}
	r.Status = StatusPass
	r.Detail = fmt.Sprintf("reachable: %s, %s, HTTP %d", r.TLS.Version, r.TLS.Cipher, r.HTTPStatus)
	if r.Gateway != nil && r.Gateway.Found {
		r.Detail += fmt.Sprintf("; gateway: %s by %s (%s) via %s", r.Gateway.Decision, r.Gateway.Group, r.Gateway.Pattern, orUnknown(r.Gateway.Address))
	}
}

// judgePlainHTTP judges a plain-HTTP endpoint the gateway forwarded: the origin's answer counts.
func judgePlainHTTP(r *Result, audited bool) {
	switch {
	case r.HTTPStatus == 0:
		r.Status, r.Detail = StatusFail, "no HTTP answer: "+lastStepError(r)
	case ConfigMgrFails(r.HTTPStatus):
		r.Status, r.Detail = StatusFail, fmt.Sprintf("the endpoint answered %d, which ConfigMgr counts as a failure", r.HTTPStatus)
	case audited && (r.Gateway == nil || !r.Gateway.Found):
		r.Status, r.Detail = StatusWarn, "no gateway audit record for connection "+orUnknown(r.Proxy.ConnID)
	case r.HTTPStatus >= 500:
		r.Status, r.Detail = StatusWarn, fmt.Sprintf("the endpoint answered %d", r.HTTPStatus)
	default:
		r.Status, r.Detail = StatusPass, fmt.Sprintf("reachable over plain HTTP: %d", r.HTTPStatus)
	}
}

func judgeBlock(r *Result, audited bool) {
	if r.Proxy == nil {
		r.Status, r.Detail = StatusFail, "proves nothing: "+r.Error
		return
	}
	if !r.Blocked {
		if r.ReportMode || (r.Gateway != nil && r.Gateway.Decision == "would_deny") {
			r.Status, r.Detail = StatusWarn, "let through in report mode (would_deny "+string(r.ExpectReason)+"): enforce mode would block it"
			return
		}
		r.Status = StatusFail
		r.Detail = fmt.Sprintf("must-block check passed: the gateway let %s through (expected %s)", r.Target(), r.ExpectReason)
		if r.Probe == ProbeFronting {
			r.Detail = fmt.Sprintf("must-block check passed: a ClientHello for %s went through a tunnel to %s (expected %s)", r.SNI, r.Target(), r.ExpectReason)
		}
		return
	}
	if r.BlockedBy == "other" {
		r.Status = StatusWarn
		r.Detail = fmt.Sprintf("blocked, but not by the gateway: %s without X-Scpgate-Reason", statusText(r))
		if audited {
			r.Detail = fmt.Sprintf("blocked, but not by the gateway: %s and no gateway audit record (a firewall or another proxy decided)", statusText(r))
		}
		return
	}
	got := reason(r)
	var notes []string
	if r.Proxy.Status == http.StatusProxyAuthRequired {
		if r.Proxy.AuthChallenge {
			notes = append(notes, "407 with a Proxy-Authenticate challenge: an authentication challenge")
		} else {
			notes = append(notes, "407 without Proxy-Authenticate: a policy denial, not an authentication challenge")
		}
	}
	switch {
	case got == "" && r.Probe == ProbeFronting:
		r.Status = StatusPass
		r.Detail = "the gateway cut the tunnel during the handshake (reason not confirmed: no audit source)"
	case got == string(r.ExpectReason) && r.ExpectStatus != 0 && r.Proxy.Status != r.ExpectStatus:
		r.Status = StatusWarn
		r.Detail = fmt.Sprintf("blocked by the gateway with %s, but status %d instead of %d", got, r.Proxy.Status, r.ExpectStatus)
	case got == string(r.ExpectReason):
		r.Status = StatusPass
		r.Detail = fmt.Sprintf("blocked by the gateway: %s %s", statusText(r), got)
	default:
		r.Status = StatusWarn
		r.Detail = fmt.Sprintf("blocked by the gateway, but with reason %s instead of %s", orUnknown(got), r.ExpectReason)
	}
	if (r.ExpectReason == "auth_required" || r.ExpectReason == "auth_failed") && r.Proxy.Status == http.StatusProxyAuthRequired && !r.Proxy.AuthChallenge {
		r.Status = StatusWarn
	}
	if len(notes) > 0 {
		r.Detail += "; " + strings.Join(notes, "; ")
	}
}

func statusText(r *Result) string {
	if r.Proxy.Status == http.StatusOK && r.Probe == ProbeFronting {
		return "tunnel cut after 200"
	}
	return fmt.Sprint(r.Proxy.Status)
}

func orUnknown(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func issuerOfChain(t *TLSInfo) string {
	if len(t.Chain) == 0 {
		return "(no certificate)"
	}
	return t.Chain[len(t.Chain)-1].Issuer
}

func expectedText(t *TLSInfo) string {
	if len(t.ExpectedIssuers) == 0 {
		return "a chain to the trusted CA bundle"
	}
	return "one of " + strings.Join(t.ExpectedIssuers, ", ")
}

func lastStepError(r *Result) string {
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if r.Steps[i].Error != "" {
			return r.Steps[i].Error
		}
	}
	return "no answer"
}

// outcome maps the results to ConfigMgr's status message and the exit code.
func outcome(results []Result) (Outcome, Summary) {
	s := Summary{Total: len(results)}
	var failed, warned []string
	for _, r := range results {
		switch r.Status {
		case StatusPass:
			s.Pass++
		case StatusWarn:
			s.Warn++
			warned = append(warned, r.ID)
		default:
			s.Fail++
			failed = append(failed, r.ID)
		}
	}
	switch {
	case s.Fail > 0:
		return Outcome{Message: MsgError, Severity: "error", ExitCode: 2, Failed: failed,
			Text: fmt.Sprintf("%d of %d checks failed: a required endpoint is unreachable or a must-block check passed", s.Fail, s.Total)}, s
	case s.Warn > 0:
		return Outcome{Message: MsgWarning, Severity: "warning", ExitCode: 1, Failed: warned,
			Text: fmt.Sprintf("all required checks passed; %d of %d with warnings", s.Warn, s.Total)}, s
	}
	return Outcome{Message: MsgAllPassed, Severity: "informational", ExitCode: 0, Failed: []string{},
		Text: fmt.Sprintf("all %d checks passed", s.Total)}, s
}
