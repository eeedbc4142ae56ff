package admin

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/gateway/metrics"
	"github.com/scpgate/scpgate/policy"
)

const testPolicy = `version: 1
mode: enforce
deny: ["*.evil.example.com"]
groups:
  updates:
    enabled: true
    hosts: [manage.example.com, "*.cdn.example.com"]
  alice-only:
    enabled: true
    users: [alice]
    hosts: [users.example.net]
  crl:
    enabled: true
    ports: [80]
    methods: [GET, HEAD]
    sni: off
    mode: report
    hosts: [crl.example.net]
  switched-off:
    enabled: false
    hosts: [off.example.net]
  addrs:
    enabled: true
    addresses: ["203.0.113.0/24", "2001:db8::/32"]
`

type fixture struct {
	srv     *httptest.Server
	m       *metrics.Metrics
	pol     *policy.Policy
	ready   atomic.Bool
	auth    atomic.Bool
	loadAt  atomic.Value // time.Time; set while the server runs
	polNone atomic.Bool  // Policy() returns nil
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{m: metrics.New(), pol: p}
	f.loadAt.Store(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))
	f.ready.Store(true)
	h := New(Options{
		Metrics: f.m,
		Policy: func() *policy.Policy {
			if f.polNone.Load() {
				return nil
			}
			return f.pol
		},
		LoadedAt:    f.loadedAt,
		Ready:       f.ready.Load,
		AuthEnabled: f.auth.Load,
		Logger:      slog.New(slog.DiscardHandler),
	})
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) loadedAt() time.Time { return f.loadAt.Load().(time.Time) }

func (f *fixture) do(t *testing.T, method, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestRoutes(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		method, path string
		status       int
		ctype        string // prefix
		body         string // exact, when set
		allow        string
	}{
		{"GET", "/healthz", 200, "text/plain", "ok", ""},
		{"HEAD", "/healthz", 200, "text/plain", "", ""},
		{"GET", "/readyz", 200, "text/plain", "ready", ""},
		{"GET", "/metrics", 200, "text/plain", "", ""},
		{"HEAD", "/metrics", 200, "text/plain", "", ""},
		{"GET", "/v1/policy", 200, "application/json", "", ""},
		{"GET", "/v1/explain?host=manage.example.com&port=443", 200, "application/json", "", ""},
		{"GET", "/", 404, "application/json", "{\"error\":\"not found\"}\n", ""},
		{"GET", "/metrics/", 404, "application/json", "", ""},
		{"GET", "/v1/explain/", 404, "application/json", "", ""},
		{"POST", "/nope", 404, "application/json", "", ""},
		{"POST", "/metrics", 405, "application/json", "{\"error\":\"method not allowed\"}\n", "GET, HEAD"},
		{"PUT", "/healthz", 405, "application/json", "", "GET, HEAD"},
		{"DELETE", "/v1/policy", 405, "application/json", "", "GET, HEAD"},
		{"OPTIONS", "/v1/explain?host=a.example&port=443", 405, "application/json", "", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, body := f.do(t, tt.method, tt.path)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.ctype) {
				t.Errorf("Content-Type %q, want %s...", ct, tt.ctype)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			if tt.body != "" && body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if tt.method == "HEAD" && body != "" {
				t.Errorf("HEAD has a body: %q", body)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
}

func TestReadyzFlip(t *testing.T) {
	f := newFixture(t)
	steps := []struct {
		name     string
		ready    bool
		draining bool
		status   int
		body     string
	}{
		{"starting", false, false, 503, "not ready"},
		{"ready", true, false, 200, "ready"},
		{"draining", false, true, 503, "draining"},
		{"draining wins over a stale ready", true, true, 503, "draining"},
		{"back", true, false, 200, "ready"},
	}
	for _, s := range steps {
		f.ready.Store(s.ready)
		f.m.SetDraining(s.draining)
		resp, body := f.do(t, "GET", "/readyz")
		if resp.StatusCode != s.status || body != s.body {
			t.Errorf("%s: %d %q, want %d %q", s.name, resp.StatusCode, body, s.status, s.body)
		}
		// Liveness does not depend on readiness.
		if resp, body := f.do(t, "GET", "/healthz"); resp.StatusCode != 200 || body != "ok" {
			t.Errorf("%s: healthz %d %q", s.name, resp.StatusCode, body)
		}
	}
}

// TestNilOptions: a zero Options must not panic; each nil means what Options documents.
func TestNilOptions(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/healthz", 200},
		{"/readyz", 200},
		{"/metrics", 404},
		{"/v1/policy", 503},
		{"/v1/explain?host=a.example.com&port=443", 503},
		{"/v1/explain?port=443", 400}, // input is checked before the policy
	} {
		resp, err := srv.Client().Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s: %d, want %d", tt.path, resp.StatusCode, tt.status)
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	f := newFixture(t)
	f.m.Observe(audit.Record{Event: audit.EventClose, Decision: audit.DecisionAllow, Group: "updates",
		Host: "manage.example.com", Port: 443, BytesUp: 10, BytesDown: 20, DurationMS: 1200})
	f.m.Observe(audit.Record{Event: audit.EventDecision, Decision: audit.DecisionDeny, Reason: "no_rule",
		Host: "nope.example.org", Port: 443, Status: 403})
	f.m.PolicyLoaded(f.pol.Version, f.loadedAt())

	resp, body := f.do(t, "GET", "/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	mf, ok := mfs["scpgate_requests_total"]
	if !ok {
		t.Fatal("no scpgate_requests_total")
	}
	got := map[string]float64{}
	for _, m := range mf.GetMetric() {
		var key []string
		for _, l := range m.GetLabel() {
			key = append(key, l.GetName()+"="+l.GetValue())
		}
		got[strings.Join(key, ",")] = m.GetCounter().GetValue()
	}
	want := map[string]float64{
		"decision=allow,group=updates,reason=none": 1,
		"decision=deny,group=none,reason=no_rule":  1,
	}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if strings.Contains(body, "manage.example.com") || strings.Contains(body, "nope.example.org") {
		t.Error("a host name leaked into the metrics")
	}
	info := mfs["scpgate_policy_info"]
	if info == nil || len(info.GetMetric()) != 1 || info.GetMetric()[0].GetLabel()[0].GetValue() != f.pol.Version {
		t.Errorf("policy_info = %v", info)
	}
}

// TestTwoHandlersOneRegistry: building the handler twice (say, a restarted admin listener)
// must not panic on the promhttp error counter's registration.
func TestTwoHandlersOneRegistry(t *testing.T) {
	m := metrics.New()
	for range 2 {
		srv := httptest.NewServer(New(Options{Metrics: m}))
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
}

type explainJSON struct {
	Target  string         `json:"target"`
	Policy  string         `json:"policy"`
	Allow   bool           `json:"allow"`
	Would   bool           `json:"would_deny"`
	Reason  string         `json:"reason"`
	Group   string         `json:"group"`
	Pattern string         `json:"pattern"`
	Ports   []uint16       `json:"ports"`
	Mode    string         `json:"mode"`
	SNI     string         `json:"sni"`
	Detail  string         `json:"detail"`
	Matches []policy.Match `json:"matches"`
}

func TestExplain(t *testing.T) {
	tests := []struct {
		name    string
		query   string
		auth    bool
		target  string
		allow   bool
		would   bool
		reason  string
		group   string
		matches int
	}{
		{"allowed exact", "host=manage.example.com&port=443", false, "manage.example.com:443", true, false, "", "updates", 1},
		{"normalised host", "host=MANAGE.Example.COM.&port=443", false, "MANAGE.Example.COM.:443", true, false, "", "updates", 1},
		{"wildcard", "host=a.b.cdn.example.com&port=443", false, "a.b.cdn.example.com:443", true, false, "", "updates", 1},
		{"wrong port", "host=manage.example.com&port=8443", false, "manage.example.com:8443", false, false, "port_not_allowed", "updates", 1},
		{"no rule", "host=unknown.example.org&port=443", false, "unknown.example.org:443", false, false, "no_rule", "", 0},
		{"deny pattern", "host=x.evil.example.com&port=443", false, "x.evil.example.com:443", false, false, "denied_pattern", "", 1},
		{"disabled group", "host=off.example.net&port=443", false, "off.example.net:443", false, false, "no_rule", "", 1},
		{"method default is CONNECT", "host=crl.example.net&port=80", false, "crl.example.net:80", true, true, "method_not_allowed", "crl", 1},
		{"method lowercased input", "host=crl.example.net&port=80&method=get", false, "crl.example.net:80", true, false, "", "crl", 1},
		{"user implies auth: other user", "host=users.example.net&port=443&user=bob", false, "users.example.net:443", false, false, "user_not_allowed", "alice-only", 1},
		{"user implies auth: alice", "host=users.example.net&port=443&user=alice", false, "users.example.net:443", true, false, "", "alice-only", 1},
		{"auth off: anonymous passes", "host=users.example.net&port=443", false, "users.example.net:443", true, false, "", "alice-only", 1},
		{"auth on: anonymous refused", "host=users.example.net&port=443", true, "users.example.net:443", false, false, "auth_required", "alice-only", 1},
		{"IPv4 literal", "host=203.0.113.9&port=443", false, "203.0.113.9:443", true, false, "", "addrs", 1},
		{"IPv6 literal", "host=2001:db8::1&port=443", false, "[2001:db8::1]:443", true, false, "", "addrs", 1},
		{"IPv6 in brackets", "host=[2001:db8::1]&port=443", false, "[2001:db8::1]:443", true, false, "", "addrs", 1},
		{"IP literal outside", "host=198.51.100.1&port=443", false, "198.51.100.1:443", false, false, "ip_literal", "", 0},
	}
	f := newFixture(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.auth.Store(tt.auth)
			resp, body := f.do(t, "GET", "/v1/explain?"+tt.query)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var got explainJSON
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if got.Target != tt.target || got.Policy != "test.yaml" || got.Allow != tt.allow || got.Would != tt.would ||
				got.Reason != tt.reason || got.Group != tt.group || len(got.Matches) != tt.matches {
				t.Errorf("got %+v\nwant target %s allow %v would %v reason %q group %q matches %d",
					got, tt.target, tt.allow, tt.would, tt.reason, tt.group, tt.matches)
			}
			if got.Detail == "" || got.Mode == "" || got.SNI == "" {
				t.Errorf("incomplete decision: %s", body)
			}
		})
	}
}

// TestExplainSameAsCLI: the body is the CLI's -json output byte for byte (same struct shape,
// same two-space indent).
func TestExplainSameAsCLI(t *testing.T) {
	f := newFixture(t)
	_, body := f.do(t, "GET", "/v1/explain?host=manage.example.com&port=443")
	h, _ := policy.ParseHost("manage.example.com")
	d := f.pol.DecideVerbose(policy.Request{Host: h, Port: 443, Method: "CONNECT"})
	var want strings.Builder
	enc := json.NewEncoder(&want)
	enc.SetIndent("", "  ")
	if err := enc.Encode(struct {
		Target     string `json:"target"`
		Normalized string `json:"normalized"`
		Policy     string `json:"policy"`
		policy.Decision
	}{"manage.example.com:443", "manage.example.com:443", f.pol.File, d}); err != nil {
		t.Fatal(err)
	}
	if body != want.String() {
		t.Errorf("body\n%s\nwant\n%s", body, want.String())
	}
}

func TestExplainBadInput(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, query string
		status      int
		errHas      string
	}{
		{"no host", "port=443", 400, "missing host"},
		{"empty host", "host=&port=443", 400, "missing host"},
		{"no port", "host=a.example.com", 400, "missing port"},
		{"port zero", "host=a.example.com&port=0", 400, "port"},
		{"port too big", "host=a.example.com&port=65536", 400, "port"},
		{"port leading zero", "host=a.example.com&port=0443", 400, "port"},
		{"port sign", "host=a.example.com&port=%2B443", 400, "port"},
		{"port hex", "host=a.example.com&port=0x1bb", 400, "port"},
		{"port space", "host=a.example.com&port=443%20", 400, "port"},
		{"port huge", "host=a.example.com&port=99999999999999999999", 400, "port"},
		{"host with port", "host=a.example.com:443&port=443", 400, "invalid host"},
		{"host underscore", "host=a_b.example.com&port=443", 400, "invalid host"},
		{"host bad number", "host=1.2.3.999&port=443", 400, "invalid host"},
		{"host zone", "host=fe80::1%25eth0&port=443", 400, "invalid host"},
		{"host twice", "host=a.example.com&host=b.example.com&port=443", 400, "more than once"},
		{"port twice", "host=a.example.com&port=443&port=80", 400, "more than once"},
		{"bad method", "host=a.example.com&port=443&method=GE%20T", 400, "method"},
		{"bad escape", "host=%zz&port=443", 400, "malformed query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, "GET", "/v1/explain?"+tt.query)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tt.errHas) {
				t.Errorf("error body %q (%v), want it to mention %q", body, err, tt.errHas)
			}
		})
	}
}

func TestPolicyView(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, "GET", "/v1/policy")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var got struct {
		File     string     `json:"file"`
		Version  string     `json:"version"`
		LoadedAt *time.Time `json:"loaded_at"`
		Mode     string     `json:"mode"`
		Groups   []struct {
			Name    string   `json:"name"`
			Enabled bool     `json:"enabled"`
			Mode    string   `json:"mode"`
			Ports   []uint16 `json:"ports"`
			Hosts   int      `json:"hosts"`
		} `json:"groups"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.File != "test.yaml" || got.Version != f.pol.Version || len(got.Version) != 64 || got.Mode != "enforce" ||
		got.LoadedAt == nil || !got.LoadedAt.Equal(f.loadedAt()) {
		t.Errorf("header fields: %s", body)
	}
	type g struct {
		name    string
		enabled bool
		mode    string
		ports   string
		hosts   int
	}
	want := []g{
		{"updates", true, "enforce", "[443]", 2},
		{"alice-only", true, "enforce", "[443]", 1},
		{"crl", true, "report", "[80]", 1},
		{"switched-off", false, "enforce", "[443]", 1},
		{"addrs", true, "enforce", "[443]", 0},
	}
	if len(got.Groups) != len(want) {
		t.Fatalf("groups: %s", body)
	}
	for i, w := range want {
		gg := got.Groups[i]
		ports, _ := json.Marshal(gg.Ports)
		if gg.Name != w.name || gg.Enabled != w.enabled || gg.Mode != w.mode || string(ports) != w.ports || gg.Hosts != w.hosts {
			t.Errorf("group %d = %+v, want %+v", i, gg, w)
		}
	}

	// An unknown load time is null, not year 1.
	f.loadAt.Store(time.Time{})
	_, body = f.do(t, "GET", "/v1/policy")
	if !strings.Contains(body, `"loaded_at": null`) {
		t.Errorf("zero load time not null: %s", body)
	}
	f.polNone.Store(true)
	if resp, _ := f.do(t, "GET", "/v1/policy"); resp.StatusCode != 503 {
		t.Errorf("no policy: status %d, want 503", resp.StatusCode)
	}
}

func TestProxyPAC(t *testing.T) {
	f := newFixture(t)
	// No PACProxy configured in the fixture: the address must come from the query.
	if resp, body := f.do(t, "GET", PathPAC); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "?proxy=HOST:PORT") {
		t.Fatalf("without a proxy: %d %s", resp.StatusCode, body)
	}
	resp, body := f.do(t, "GET", PathPAC+"?proxy=gw.corp.example:3128")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"function FindProxyForURL(url, host)", `"proxy": "gw.corp.example:3128"`, `"p": "*.cdn.example.com"`, `"all": false`, `"prefix": "203.0.113.0/24"`} {
		if !strings.Contains(body, want) {
			t.Errorf("PAC lacks %s", want)
		}
	}
	if strings.Contains(body, "off.example.net") {
		t.Error("PAC routes a disabled group's host")
	}
	if _, body := f.do(t, "GET", PathPAC+"?proxy=gw:3128&all=1"); !strings.Contains(body, `"all": true`) {
		t.Error("all=1 not honoured")
	}
	for _, q := range []string{"?proxy=gw", "?proxy=gw:3128&all=maybe", "?proxy=gw:1;DIRECT"} {
		if resp, body := f.do(t, "GET", PathPAC+q); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s", q, resp.StatusCode, body)
		}
	}
	f.polNone.Store(true)
	if resp, _ := f.do(t, "GET", PathPAC+"?proxy=gw:3128"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("no policy: %d", resp.StatusCode)
	}
}
