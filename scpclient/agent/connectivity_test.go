package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/validate"
)

// fakeClock hands each requested wait to the test, which fires it.
type fakeClock struct {
	waits chan wait1
}

type wait1 struct {
	d    time.Duration
	fire chan time.Time
}

func (f *fakeClock) after(d time.Duration) <-chan time.Time {
	w := wait1{d: d, fire: make(chan time.Time, 1)}
	f.waits <- w
	return w.fire
}

// TestSchedule drives the connectivity check's schedule with a fake clock and the trigger: a
// run at start-up, one per interval, one per trigger; without a schedule only triggers run it.
func TestSchedule(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		scheduled bool
	}{{"every hour", true}, {"no schedule", false}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{waits: make(chan wait1)}
			r := &Runner{site: &Site{opts: Options{Now: func() time.Time { return now }}}, after: clk.after}
			c := &comp{name: ConnectivityComponent, trigger: make(chan struct{}, 1)}
			runs := make(chan struct{})
			nexts := make(chan time.Time, 10)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				r.schedule(ctx, c, tt.scheduled, time.Hour, func(context.Context) error {
					runs <- struct{}{}
					return nil
				}, func(t time.Time) { nexts <- t })
			}()
			expectNext := func() {
				t.Helper()
				got := <-nexts
				want := time.Time{}
				if tt.scheduled {
					want = now.Add(time.Hour)
				}
				if !got.Equal(want) {
					t.Fatalf("next run %v, want %v", got, want)
				}
			}
			if tt.scheduled {
				<-runs // at start-up
				w := <-clk.waits
				if w.d != time.Hour {
					t.Fatalf("waits %s, want the interval", w.d)
				}
				expectNext()
				w.fire <- now.Add(time.Hour)
				<-runs // the interval passed
				<-clk.waits
			}
			expectNext()
			c.trigger <- struct{}{}
			<-runs // triggered
			if tt.scheduled {
				<-clk.waits
			}
			expectNext()
			cancel()
			<-done
			c.mu.Lock()
			defer c.mu.Unlock()
			want := 1
			if tt.scheduled {
				want = 3
			}
			if c.cycles != want {
				t.Fatalf("%d cycles recorded, want %d", c.cycles, want)
			}
			select {
			case <-runs:
				t.Fatal("a run after cancel")
			default:
			}
		})
	}
}

func TestOutcomeLine(t *testing.T) {
	tests := []struct {
		o     validate.Outcome
		level int
		want  string
	}{
		{validate.Outcome{Message: 11410, Severity: "informational", Text: "all 3 checks passed", Failed: []string{}}, levelInfo,
			"Status message 11410 (informational): all 3 checks passed"},
		{validate.Outcome{Message: 11411, Severity: "warning", Text: "1 warning", Failed: []string{"pass/endpoint/a:443"}}, levelWarning,
			"Status message 11411 (warning): 1 warning Failed: pass/endpoint/a:443"},
		{validate.Outcome{Message: 11412, Severity: "error", Text: "1 required endpoint failed", Failed: []string{"pass/endpoint/aka.ms:443"}}, levelError,
			"Status message 11412 (error): 1 required endpoint failed Failed: pass/endpoint/aka.ms:443"},
		{validate.Outcome{Message: 0}, levelError, "Status message 0 (): "},
	}
	for _, tt := range tests {
		level, line := OutcomeLine(tt.o)
		if level != tt.level || line != tt.want {
			t.Errorf("OutcomeLine(%d) = %d %q, want %d %q", tt.o.Message, level, line, tt.level, tt.want)
		}
	}
}

// TestLogReport writes a report with a passed and a refused endpoint and reads the log back
// with cmtrace.ParseLine.
func TestLogReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), ConnectivityLogFileName)
	lg, err := cmtrace.Open(path, ConnectivityComponent)
	if err != nil {
		t.Fatal(err)
	}
	rep := &validate.Report{
		Results: []validate.Result{
			{Check: validate.Check{Host: "go.microsoft.com", Port: 443, Group: "core"}, Status: validate.StatusPass,
				Proxy:     &validate.ProxyAnswer{Status: 200, ConnID: "c1"},
				ConfigMgr: validate.ConfigMgrView{Reachable: true, Reading: "200: reachable"}},
			{Check: validate.Check{Host: "aka.ms", Port: 443, Group: "core"}, Status: validate.StatusFail,
				Detail:    "refused by the gateway: 403 no_rule",
				Proxy:     &validate.ProxyAnswer{Status: 403, Reason: "no_rule", ConnID: "c2"},
				ConfigMgr: validate.ConfigMgrView{Reachable: true, Reading: "403: reachable (ConfigMgr counts a 403 as reachable)", Disagrees: true}},
		},
		Drift:   validate.Drift{Rules: []validate.RuleCoverage{{Group: "core", Pattern: "*.manage.microsoft.com", Coverage: "not_sampled"}}},
		Outcome: validate.Outcome{Message: 11412, Severity: "error", Text: "1 required endpoint failed", Failed: []string{"pass/endpoint/aka.ms:443"}},
	}
	LogReport(lg, rep)
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := cmtrace.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range entries {
		if e.Component != ConnectivityComponent {
			t.Errorf("component %q", e.Component)
		}
		msgs = append(msgs, e.Message)
	}
	want := []string{
		"go.microsoft.com:443 (group core): PASS conn=c1; ConfigMgr would read: 200: reachable",
		"ERROR: aka.ms:443 (group core): FAIL; gateway answered 403 reason=no_rule conn=c2; refused by the gateway: 403 no_rule; ConfigMgr would read: 403: reachable (ConfigMgr counts a 403 as reachable)",
		"Not checked: *.manage.microsoft.com (group core): a wildcard is checked through sample names in connectivity_check.samples",
		"ERROR: Status message 11412 (error): 1 required endpoint failed Failed: pass/endpoint/aka.ms:443",
	}
	if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Fatalf("log:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
}
