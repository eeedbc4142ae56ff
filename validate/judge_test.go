package validate

import (
	"strings"
	"testing"
)

func TestConfigMgrReading(t *testing.T) {
	tls := &TLSInfo{Verified: true}
	tests := []struct {
		name      string
		r         Result
		reachable bool
		reading   string
	}{
		{"403 denial is reachable", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 403}}, true, "403: reachable (ConfigMgr counts a 403 as reachable)"},
		{"407", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 407}}, false, "407: failure"},
		{"408", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 408}}, false, "408: failure"},
		{"426", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 426}}, false, "426: failure"},
		{"451", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 451}}, false, "451: failure"},
		{"502", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 502}}, false, "502: failure"},
		{"511", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 511}}, false, "511: failure"},
		{"598", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 598}}, false, "598: failure"},
		{"599", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 599}}, false, "599: failure"},
		{"503 is reachable", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 503}}, true, "503: reachable"},
		{"429 is reachable", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 429}}, true, "429: reachable"},
		{"timeout", Result{Check: Check{Probe: ProbeTLS}, Error: "proxy x not reachable: dial tcp: i/o timeout"}, false, "timeout: failure"},
		{"refused", Result{Check: Check{Probe: ProbeTLS}, Error: "proxy x not reachable: connection refused"}, false, "connection failure: failure"},
		{"TLS failure", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 200}, Error: "TLS handshake: EOF"}, false, "TLS failure: failure"},
		{"untrusted chain", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 200}, TLS: &TLSInfo{}}, false, "TLS failure (certificate chain): failure"},
		{"origin 200", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 200}, TLS: tls, HTTPStatus: 200}, true, "200: reachable"},
		{"origin 404", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 200}, TLS: tls, HTTPStatus: 404}, true, "404: reachable"},
		{"origin 502", Result{Check: Check{Probe: ProbeTLS}, Proxy: &ProxyAnswer{Status: 200}, TLS: tls, HTTPStatus: 502}, false, "502: failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := configMgrReading(&tt.r)
			if v.Reachable != tt.reachable || v.Reading != tt.reading {
				t.Errorf("got %+v, want reachable=%v %q", v, tt.reachable, tt.reading)
			}
		})
	}
}

func TestJudge(t *testing.T) {
	okTLS := &TLSInfo{Verified: true, NameMatch: true, Chain: []Cert{{DaysLeft: 300}}}
	block := Check{Expect: ExpectBlock, Probe: ProbeTLS, Host: "x.test", Port: 443, ExpectReason: "no_rule"}
	pass := Check{Expect: ExpectPass, Probe: ProbeTLS, Host: "a.test", Port: 443}
	tests := []struct {
		name    string
		r       Result
		audited bool
		status  Status
		by      string
		detail  string
	}{
		{"gateway denial with expected reason", Result{Check: block, Proxy: &ProxyAnswer{Status: 403, Reason: "no_rule", ConnID: "c1"}}, false, StatusPass, "gateway", "blocked by the gateway: 403 no_rule"},
		{"expected reason, other status", Result{Check: Check{Expect: ExpectBlock, Probe: ProbeTLS, Host: "x.test", Port: 443, ExpectReason: "no_rule", ExpectStatus: 403}, Proxy: &ProxyAnswer{Status: 502, Reason: "no_rule"}}, false, StatusWarn, "gateway", "status 502 instead of 403"},
		{"other reason", Result{Check: block, Proxy: &ProxyAnswer{Status: 403, Reason: "denied_pattern", ConnID: "c1"}}, false, StatusWarn, "gateway", "instead of no_rule"},
		{"403 without headers", Result{Check: block, Proxy: &ProxyAnswer{Status: 403}}, false, StatusWarn, "other", "blocked, but not by the gateway"},
		{"403 with headers but no audit record", Result{Check: block, Proxy: &ProxyAnswer{Status: 403, Reason: "no_rule", ConnID: "c1"}, Gateway: &GatewayRecord{ConnID: "c1"}}, true, StatusWarn, "other", "no gateway audit record"},
		{"audit record decides", Result{Check: block, Proxy: &ProxyAnswer{Status: 403, Reason: "no_rule", ConnID: "c1"}, Gateway: &GatewayRecord{Found: true, ConnID: "c1", Decision: "deny", Reason: "no_rule"}}, true, StatusPass, "gateway", "403 no_rule"},
		{"must-block let through", Result{Check: block, Proxy: &ProxyAnswer{Status: 200, ConnID: "c1"}, TLS: okTLS, HTTPStatus: 200}, false, StatusFail, "", "must-block check passed"},
		{"must-block let through in report mode", Result{Check: Check{Expect: ExpectBlock, Probe: ProbeTLS, Host: "x.test", Port: 443, ExpectReason: "no_rule", ReportMode: true}, Proxy: &ProxyAnswer{Status: 200}}, false, StatusWarn, "", "report mode"},
		{"policy 407 without challenge", Result{Check: Check{Expect: ExpectBlock, Probe: ProbeTLS, Host: "x.test", Port: 443, ExpectReason: "auth_required"}, Proxy: &ProxyAnswer{Status: 407, Reason: "auth_required"}}, false, StatusWarn, "gateway", "a policy denial, not an authentication challenge"},
		{"auth challenge", Result{Check: Check{Expect: ExpectBlock, Probe: ProbeTLS, Host: "x.test", Port: 443, ExpectReason: "auth_required"}, Proxy: &ProxyAnswer{Status: 407, Reason: "auth_required", Challenges: []string{`Basic realm="scpgate"`}, AuthChallenge: true}}, false, StatusPass, "gateway", "an authentication challenge"},
		{"fronting cut", Result{Check: Check{Expect: ExpectBlock, Probe: ProbeFronting, Host: "a.test", Port: 443, SNI: "f.invalid", ExpectReason: "sni_mismatch"}, Proxy: &ProxyAnswer{Status: 200, ConnID: "c1"}, Gateway: &GatewayRecord{Found: true, ConnID: "c1", Decision: "deny", Reason: "sni_mismatch"}}, true, StatusPass, "gateway", "tunnel cut after 200 sni_mismatch"},
		{"fronting through", Result{Check: Check{Expect: ExpectBlock, Probe: ProbeFronting, Host: "a.test", Port: 443, SNI: "f.invalid", ExpectReason: "sni_mismatch"}, Proxy: &ProxyAnswer{Status: 200}, TLS: okTLS}, false, StatusFail, "", "ClientHello for f.invalid"},
		{"endpoint ok", Result{Check: pass, Proxy: &ProxyAnswer{Status: 200}, TLS: okTLS, HTTPStatus: 200}, false, StatusPass, "", "reachable"},
		{"endpoint denied", Result{Check: pass, Proxy: &ProxyAnswer{Status: 403, Reason: "no_rule"}}, false, StatusFail, "gateway", "refused by the gateway: 403 no_rule"},
		{"endpoint auth challenge", Result{Check: pass, Proxy: &ProxyAnswer{Status: 407, Reason: "auth_failed", AuthChallenge: true}}, false, StatusFail, "gateway", "credentials not accepted"},
		{"endpoint inspected", Result{Check: pass, Proxy: &ProxyAnswer{Status: 200}, TLS: &TLSInfo{Inspected: true, ExpectedIssuers: []string{"R"}, Chain: []Cert{{Issuer: "CN=Evil"}}}}, false, StatusFail, "", "TLS inspection detected"},
		{"endpoint expiring", Result{Check: pass, Proxy: &ProxyAnswer{Status: 200}, TLS: &TLSInfo{Verified: true, Chain: []Cert{{DaysLeft: 3}}}, HTTPStatus: 200}, false, StatusWarn, "", "expires in 3 days"},
		{"endpoint without record", Result{Check: pass, Proxy: &ProxyAnswer{Status: 200, ConnID: "c9"}, TLS: okTLS, HTTPStatus: 200, Gateway: &GatewayRecord{ConnID: "c9"}}, true, StatusWarn, "", "no gateway audit record for connection c9"},
		{"plain HTTP endpoint", Result{Check: Check{Expect: ExpectPass, Probe: ProbeHTTP, Host: "crl.test", Port: 80, Path: "/pki/"}, Proxy: &ProxyAnswer{Status: 200, ConnID: "c5"}, HTTPStatus: 200, Gateway: &GatewayRecord{Found: true, ConnID: "c5", Decision: "allow"}}, true, StatusPass, "", "reachable over plain HTTP: 200"},
		{"plain HTTP endpoint 404", Result{Check: Check{Expect: ExpectPass, Probe: ProbeHTTP, Host: "crl.test", Port: 80}, Proxy: &ProxyAnswer{Status: 404}, HTTPStatus: 404}, false, StatusPass, "", "404"},
		{"plain HTTP endpoint refused", Result{Check: Check{Expect: ExpectPass, Probe: ProbeHTTP, Host: "crl.test", Port: 80}, Proxy: &ProxyAnswer{Status: 403, Reason: "path_not_allowed", ConnID: "c6"}, HTTPStatus: 403}, false, StatusFail, "gateway", "refused by the gateway: 403 path_not_allowed"},
		{"plain HTTP near miss refused", Result{Check: Check{Expect: ExpectBlock, Probe: ProbeHTTP, Host: "go.test", Port: 80, ExpectReason: "port_not_allowed"}, Proxy: &ProxyAnswer{Status: 403, Reason: "port_not_allowed", ConnID: "c7"}, HTTPStatus: 403}, false, StatusPass, "gateway", "403 port_not_allowed"},
		{"proxy down", Result{Check: pass, Error: "proxy 127.0.0.1:1 not reachable: connection refused"}, false, StatusFail, "other", "not reachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r
			judge(&r, tt.audited)
			if r.Status != tt.status || r.BlockedBy != tt.by || !strings.Contains(r.Detail, tt.detail) {
				t.Errorf("got %s by %q: %q; want %s by %q containing %q", r.Status, r.BlockedBy, r.Detail, tt.status, tt.by, tt.detail)
			}
		})
	}
}

func TestOutcome(t *testing.T) {
	mk := func(s ...Status) []Result {
		var out []Result
		for i, st := range s {
			out = append(out, Result{Check: Check{ID: string(rune('a' + i))}, Status: st})
		}
		return out
	}
	tests := []struct {
		in   []Result
		msg  int
		exit int
	}{
		{mk(StatusPass, StatusPass), 11410, 0},
		{mk(StatusPass, StatusWarn), 11411, 1},
		{mk(StatusWarn, StatusFail), 11412, 2},
		{mk(), 11410, 0},
	}
	for _, tt := range tests {
		o, s := outcome(tt.in)
		if o.Message != tt.msg || o.ExitCode != tt.exit || s.Total != len(tt.in) || o.Failed == nil {
			t.Errorf("%v: got %+v %+v", tt.in, o, s)
		}
	}
}
