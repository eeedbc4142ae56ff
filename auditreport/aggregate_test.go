package auditreport

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/policy"
)

const testPolicy = `version: 1
groups:
  updates:
    enabled: true
    hosts: [go.microsoft.com, "*.manage.microsoft.com"]
  spare:
    enabled: true
    hosts: [unused.example.com]
    addresses: [192.0.2.0/24]
  azure:
    enabled: false
    hosts: [management.azure.com]
  web:
    enabled: false
    ports: [80]
    hosts: [crl.example.com]
`

func mustPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

// Record builders, named after what the gateway writes.
func allow(min int, client, host, pattern string, up, down int64) audit.Record {
	return audit.Record{Time: at(min), Client: client, Method: "CONNECT", Host: host, Port: 443, Group: "updates",
		Pattern: pattern, Decision: "allow", Status: 200, BytesUp: up, BytesDown: down, Event: "close"}
}

func failed(min int, client, host, pattern, reason string) audit.Record {
	return audit.Record{Time: at(min), Client: client, Method: "CONNECT", Host: host, Port: 443, Group: "updates",
		Pattern: pattern, Decision: "deny", Reason: reason, Status: 502, Event: "decision"}
}

func denied(min int, client, host string, port uint16, reason string) audit.Record {
	return audit.Record{Time: at(min), Client: client, Method: "CONNECT", Host: host, Port: port, Decision: "deny",
		Reason: reason, Status: 403, Event: "decision"}
}

func refused(min int, client, reason string) audit.Record {
	return audit.Record{Time: at(min), Client: client, Method: "CONNECT", Host: "go.microsoft.com", Port: 443,
		Decision: "deny", Reason: reason, Status: 407, Event: "decision"}
}

func lines(t testing.TB, recs ...audit.Record) string {
	t.Helper()
	var b strings.Builder
	for _, r := range recs {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
		b.WriteByte('\n')
	}
	return b.String()
}

func writeFile(t testing.TB, dir, name, text string, gz bool) string {
	t.Helper()
	path := filepath.Join(dir, name)
	data := []byte(text)
	if gz {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		data = buf.Bytes()
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func findEndpoint(r *Report, host, pattern string) *Endpoint {
	for i := range r.Endpoints {
		if r.Endpoints[i].Host == host && r.Endpoints[i].Pattern == pattern {
			return &r.Endpoints[i]
		}
	}
	return nil
}

func findDenied(r *Report, host string, port uint16) *Denied {
	for i := range r.Denied {
		if r.Denied[i].Host == host && r.Denied[i].Port == port {
			return &r.Denied[i]
		}
	}
	return nil
}

func TestAggregate(t *testing.T) {
	const dl = "dl.manage.microsoft.com"
	for _, tt := range []struct {
		name  string
		files map[string]string // name → content; ".gz" names are compressed
		opts  Options
		check func(t *testing.T, r *Report)
	}{{
		name: "rotated files and two instances add up",
		files: map[string]string{
			"a/audit.log":      lines(t, allow(5, "10.0.0.1:5000", "go.microsoft.com", "go.microsoft.com", 10, 100)),
			"a/audit.log.1":    lines(t, allow(1, "10.0.0.1:5001", "go.microsoft.com", "go.microsoft.com", 1, 2)),
			"a/audit.log.2.gz": lines(t, allow(0, "10.0.0.2:5002", "go.microsoft.com", "go.microsoft.com", 3, 4)),
			"b/audit.log":      lines(t, allow(9, "10.0.0.3:6000", dl, "*.manage.microsoft.com", 5, 50), failed(10, "10.0.0.3:6001", dl, "*.manage.microsoft.com", "upstream_refused")),
		},
		check: func(t *testing.T, r *Report) {
			if r.Totals.Records != 5 || r.Totals.Passed != 4 || r.Totals.Refused != 1 {
				t.Errorf("totals %+v, want 5 records, 4 passed, 1 refused", r.Totals)
			}
			if r.Totals.Clients != (Count{N: 3}) {
				t.Errorf("distinct clients %+v, want exactly 3 (ports do not count)", r.Totals.Clients)
			}
			e := findEndpoint(r, "go.microsoft.com", "go.microsoft.com")
			if e == nil || e.Successes != 3 || e.BytesUp != 14 || e.BytesDown != 106 || e.Clients.N != 2 || !e.LastSuccess.Equal(at(5)) || !e.InPolicy {
				t.Errorf("go.microsoft.com row %+v", e)
			}
			e = findEndpoint(r, dl, "*.manage.microsoft.com")
			if e == nil || e.Successes != 1 || e.Failures != 1 || e.FailureReasons["upstream_refused"] != 1 || !e.LastSuccess.Equal(at(9)) || !e.LastSeen.Equal(at(10)) {
				t.Errorf("%s row %+v", dl, e)
			}
			gz := 0
			for _, in := range r.Inputs {
				if in.Compressed {
					gz++
				}
			}
			if len(r.Inputs) != 4 || gz != 1 {
				t.Errorf("inputs %+v, want 4 with one gzip", r.Inputs)
			}
			if !r.Period.FirstRecord.Equal(at(0)) || !r.Period.LastRecord.Equal(at(10)) {
				t.Errorf("period %v..%v", r.Period.FirstRecord, r.Period.LastRecord)
			}
		},
	}, {
		name: "since and until select by record time",
		files: map[string]string{"audit.log": lines(t,
			allow(0, "10.0.0.1:1", "go.microsoft.com", "go.microsoft.com", 1, 1),
			allow(10, "10.0.0.1:2", "go.microsoft.com", "go.microsoft.com", 1, 1),
			allow(20, "10.0.0.1:3", "go.microsoft.com", "go.microsoft.com", 1, 1),
			denied(30, "10.0.0.1:4", "www.example.com", 443, "no_rule"))},
		opts: Options{Since: at(10), Until: at(30)},
		check: func(t *testing.T, r *Report) {
			if r.Totals.Records != 2 || r.Inputs[0].OutsidePeriod != 2 || r.Inputs[0].Records != 4 {
				t.Errorf("totals %+v input %+v, want 2 in period (since inclusive, until exclusive)", r.Totals, r.Inputs[0])
			}
			if len(r.Denied) != 0 {
				t.Errorf("denied %+v: the denial at the until bound is outside the period", r.Denied)
			}
			if e := findEndpoint(r, "go.microsoft.com", "go.microsoft.com"); e == nil || !e.LastSuccess.Equal(at(20)) {
				t.Errorf("row %+v", e)
			}
		},
	}, {
		name: "malformed lines are counted with file:line and skipped",
		files: map[string]string{"audit.log": lines(t, allow(0, "10.0.0.1:1", "go.microsoft.com", "go.microsoft.com", 1, 1)) +
			"not json\n\n{\"time\": 5}\n" + `{"time":"2026-11-30T10:00:00Z"} trailing` + "\n" +
			lines(t, allow(1, "10.0.0.1:1", "go.microsoft.com", "go.microsoft.com", 1, 1)) +
			`{"time":"2026-11-30T10:02:00Z","host":"go.micr`}, // a torn last line
		check: func(t *testing.T, r *Report) {
			if r.Malformed.Count != 4 || r.Totals.Records != 2 || r.Inputs[0].Blank != 1 || r.Inputs[0].Lines != 7 {
				t.Fatalf("malformed %+v totals %+v input %+v", r.Malformed, r.Totals, r.Inputs[0])
			}
			var where []string
			for _, m := range r.Malformed.Shown {
				where = append(where, fmt.Sprintf("%s:%d", filepath.Base(m.File), m.Line))
			}
			if got := strings.Join(where, " "); got != "audit.log:2 audit.log:4 audit.log:5 audit.log:7" {
				t.Errorf("malformed at %s", got)
			}
		},
	}, {
		name: "denied names most frequent first, with the disabled group that would allow them",
		files: map[string]string{"audit.log": lines(t,
			denied(0, "10.0.0.1:1", "www.example.com", 443, "no_rule"),
			denied(1, "10.0.0.1:2", "management.azure.com", 443, "no_rule"),
			denied(2, "10.0.0.2:3", "management.azure.com", 443, "no_rule"),
			denied(3, "10.0.0.1:4", "management.azure.com", 8443, "no_rule"),
			denied(4, "10.0.0.1:5", "crl.example.com", 80, "no_rule"),
			func() audit.Record {
				r := denied(5, "10.0.0.1:6", "go.microsoft.com", 22, "port_not_allowed")
				r.Group, r.Pattern = "updates", "go.microsoft.com"
				return r
			}())},
		check: func(t *testing.T, r *Report) {
			if len(r.Denied) != 5 || r.Denied[0].Host != "management.azure.com" || r.Denied[0].Count != 2 || r.Denied[0].Clients.N != 2 {
				t.Fatalf("denied %+v, want management.azure.com:443 first with 2 from 2 clients", r.Denied)
			}
			for _, tc := range []struct {
				host          string
				port          uint16
				group, rule   string
				matched, patt string
			}{
				{"management.azure.com", 443, "azure", "management.azure.com", "", ""},
				{"management.azure.com", 8443, "", "", "", ""}, // azure allows only 443
				{"crl.example.com", 80, "web", "crl.example.com", "", ""},
				{"www.example.com", 443, "", "", "", ""},
				{"go.microsoft.com", 22, "", "", "updates", "go.microsoft.com"},
			} {
				d := findDenied(r, tc.host, tc.port)
				if d == nil || d.DisabledGroup != tc.group || d.DisabledPattern != tc.rule || d.Group != tc.matched || d.Pattern != tc.patt {
					t.Errorf("%s:%d: %+v, want disabled %q/%q matched %q/%q", tc.host, tc.port, d, tc.group, tc.rule, tc.matched, tc.patt)
				}
			}
			if r.Totals.Refused != 6 || len(r.Endpoints) != 0 {
				t.Errorf("totals %+v endpoints %+v", r.Totals, r.Endpoints)
			}
		},
	}, {
		name: "rules of enabled groups that allowed nothing",
		files: map[string]string{"audit.log": lines(t,
			allow(0, "10.0.0.1:1", "go.microsoft.com", "go.microsoft.com", 1, 1),
			failed(1, "10.0.0.1:1", "x.manage.microsoft.com", "*.manage.microsoft.com", "dns_failure"))},
		check: func(t *testing.T, r *Report) {
			var got []string
			for _, u := range r.UnusedRules {
				got = append(got, u.Group+" "+u.Pattern+" "+u.Kind)
			}
			// A rule whose every attempt failed allowed nothing either; disabled groups are not rules.
			want := "updates *.manage.microsoft.com host|spare unused.example.com host|spare 192.0.2.0/24 address"
			if strings.Join(got, "|") != want {
				t.Errorf("unused rules %q, want %q", strings.Join(got, "|"), want)
			}
			if r.Policy == nil || r.Policy.EnabledRules != 4 {
				t.Errorf("policy %+v, want 4 enabled rules", r.Policy)
			}
		},
	}, {
		name: "refusals before the destination was judged, and report mode",
		files: map[string]string{"audit.log": lines(t,
			refused(0, "10.0.0.9:1", "auth_failed"),
			refused(1, "10.0.0.9:2", "auth_failed"),
			refused(2, "10.0.0.8:1", "rate_limited"),
			func() audit.Record {
				r := denied(3, "10.0.0.1:1", "www.example.com", 443, "no_rule")
				r.Decision, r.Event, r.Status, r.BytesDown = "would_deny", "close", 200, 7
				return r
			}(),
			func() audit.Record {
				r := allow(4, "10.0.0.1:1", "go.microsoft.com", "go.microsoft.com", 1, 1)
				r.Decision, r.Reason = "would_deny", "sni_mismatch"
				return r
			}())},
		check: func(t *testing.T, r *Report) {
			if len(r.Refusals) != 2 || r.Refusals[0].Reason != "auth_failed" || r.Refusals[0].Count != 2 || r.Refusals[0].Clients.N != 1 {
				t.Errorf("refusals %+v", r.Refusals)
			}
			if d := findDenied(r, "www.example.com", 443); d == nil || d.WouldDeny != 1 {
				t.Errorf("report-mode denial %+v", d)
			}
			e := findEndpoint(r, "go.microsoft.com", "go.microsoft.com")
			if e == nil || e.Successes != 1 || e.WouldDeny != 1 || e.WouldDenyReasons["sni_mismatch"] != 1 || e.LastSuccess != nil {
				t.Errorf("report-mode endpoint %+v", e)
			}
			if r.Totals.Passed != 2 || r.Totals.Refused != 3 {
				t.Errorf("totals %+v", r.Totals)
			}
		},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := tt.opts
			opts.Policy = mustPolicy(t)
			a := New(opts)
			for name, text := range tt.files {
				if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
					t.Fatal(err)
				}
				path := writeFile(t, dir, name, text, strings.HasSuffix(name, ".gz"))
				if err := a.ReadFile(context.Background(), path); err != nil {
					t.Fatal(err)
				}
			}
			tt.check(t, a.Report())
		})
	}
}

func TestDistinctClientsSwitchToEstimate(t *testing.T) {
	a := New(Options{ClientExactLimit: 100})
	const n = 20000
	for i := range n {
		rec := allow(0, fmt.Sprintf("10.%d.%d.%d:443", i>>16, (i>>8)&255, i&255), "go.microsoft.com", "go.microsoft.com", 0, 0)
		a.Add(rec)
		a.Add(rec) // a repeat changes nothing
	}
	r := a.Report()
	c := r.Totals.Clients
	if !c.Estimated || c.N < n*95/100 || c.N > n*105/100 {
		t.Errorf("clients %+v, want an estimate within 5%% of %d", c, n)
	}
	small := New(Options{ClientExactLimit: 100})
	for i := range 100 {
		small.Add(allow(0, fmt.Sprintf("10.0.0.%d:1", i), "go.microsoft.com", "go.microsoft.com", 0, 0))
	}
	if got := small.Report().Totals.Clients; got != (Count{N: 100}) {
		t.Errorf("clients at the limit %+v, want exactly 100", got)
	}
}

func TestRowLimitsBoundMemory(t *testing.T) {
	a := New(Options{MaxDenied: 3, MaxEndpoints: 2})
	for i := range 10 {
		a.Add(denied(i, "10.0.0.1:1", fmt.Sprintf("n%d.example.com", i), 443, "no_rule"))
		a.Add(allow(i, "10.0.0.1:1", fmt.Sprintf("h%d.manage.microsoft.com", i), "*.manage.microsoft.com", 1, 1))
	}
	r := a.Report()
	if len(r.Denied) != 3 || r.Omitted.DeniedRecords != 7 || len(r.Endpoints) != 2 || r.Omitted.EndpointRecords != 8 || r.Totals.Records != 20 {
		t.Errorf("denied %d omitted %+v endpoints %d totals %+v", len(r.Denied), r.Omitted, len(r.Endpoints), r.Totals)
	}
}

func TestLongLineIsMalformedNotFatal(t *testing.T) {
	a := New(Options{})
	// A record longer than the read buffer but within maxLine still counts.
	wide := allow(0, "10.0.0.1:1", strings.Repeat("a", 3*readBuffer)+".example.com", "go.microsoft.com", 1, 1)
	text := strings.Repeat("x", maxLine+10) + "\n" + lines(t, allow(0, "10.0.0.1:1", "go.microsoft.com", "go.microsoft.com", 1, 1), wide)
	if err := a.Read(context.Background(), "big", strings.NewReader(text)); err != nil {
		t.Fatal(err)
	}
	r := a.Report()
	if r.Malformed.Count != 1 || r.Malformed.Shown[0].Line != 1 || r.Totals.Records != 2 || len(r.Endpoints) != 2 {
		t.Errorf("malformed %+v totals %+v", r.Malformed, r.Totals)
	}
}

func TestReadErrorsNameTheFile(t *testing.T) {
	a := New(Options{})
	if err := a.ReadFile(context.Background(), filepath.Join(t.TempDir(), "missing.log")); err == nil {
		t.Error("reading a missing file succeeded")
	}
	// A truncated gzip stream: the lines before the cut count, the error names the file.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte(lines(t, allow(0, "10.0.0.1:1", "go.microsoft.com", "go.microsoft.com", 1, 1))))
	_ = zw.Close()
	err := a.Read(context.Background(), "cut.gz", bytes.NewReader(buf.Bytes()[:buf.Len()-4]))
	if err == nil || !strings.Contains(err.Error(), "cut.gz") {
		t.Errorf("truncated gzip: %v", err)
	}
	r := a.Report()
	if in := r.Inputs[len(r.Inputs)-1]; in.Error == "" || !in.Compressed {
		t.Errorf("input %+v", in)
	}
}

func TestParseBound(t *testing.T) {
	for _, tt := range []struct {
		in   string
		end  bool
		want time.Time
		err  bool
	}{
		{"2026-12-01T08:00:00Z", false, time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), false},
		{"2026-12-01T08:00:00+01:00", true, time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC), false},
		{"2026-12-01", false, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), false},
		{"2026-12-01", true, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), false},
		{"yesterday", false, time.Time{}, true},
		{"2026-13-01", false, time.Time{}, true},
	} {
		got, err := ParseBound(tt.in, tt.end)
		if (err != nil) != tt.err || !got.Equal(tt.want) {
			t.Errorf("ParseBound(%q, %v) = %v, %v; want %v, error %v", tt.in, tt.end, got, err, tt.want, tt.err)
		}
	}
}
