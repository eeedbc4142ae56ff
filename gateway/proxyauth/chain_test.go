package proxyauth

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/scpgate/scpgate/policy"
)

// negotiateStub stands in for a second scheme: it recognises "Negotiate ok" and "Negotiate bad".
type negotiateStub struct{}

func (negotiateStub) Authenticate(r *http.Request, _ netip.Addr) Outcome {
	switch r.Header.Get("Proxy-Authorization") {
	case "Negotiate ok":
		return Outcome{OK: true, User: "HOST$", Header: http.Header{"Proxy-Authenticate": {"Negotiate mutual"}}}
	case "Negotiate bad":
		return Outcome{Reason: policy.ReasonAuthFailed}
	}
	return Outcome{Reason: policy.ReasonAuthRequired}
}

func (negotiateStub) Challenges() []string { return []string{"Negotiate"} }

func TestChainOffersEverySchemeInOrder(t *testing.T) {
	a, _ := newAuth(t, testConfig{}, "alice")
	chain := Chain{negotiateStub{}, a.basic}
	if got := strings.Join(chain.Challenges(), " | "); got != `Negotiate | Basic realm="scpgate"` {
		t.Fatalf("challenges %q", got)
	}
	req := func(h string) *http.Request {
		r := &http.Request{Header: http.Header{}}
		if h != "" {
			r.Header.Set("Proxy-Authorization", h)
		}
		return r
	}
	tests := []struct {
		header string
		ok     bool
		user   string
		reason policy.Reason
		mutual bool
	}{
		{"", false, "", policy.ReasonAuthRequired, false},
		{"Negotiate ok", true, "HOST$", "", true},
		{"Negotiate bad", false, "", policy.ReasonAuthFailed, false},
		{basic("alice", "pw-alice"), true, "alice", "", false},
		{basic("alice", "wrong"), false, "alice", policy.ReasonAuthFailed, false},
		{"Digest x", false, "", policy.ReasonAuthRequired, false},
	}
	for _, tc := range tests {
		o := chain.Authenticate(req(tc.header), ip)
		if o.OK != tc.ok || o.User != tc.user || o.Reason != tc.reason || (o.Header != nil) != tc.mutual {
			t.Errorf("%q: %+v", tc.header, o)
		}
	}
	// Lockout wraps the whole chain and still names the user a locked-out attempt tried.
	l := NewLockout(chain, LockoutConfig{MaxFailures: 1})
	defer l.Close()
	l.Authenticate(req(basic("alice", "wrong")), ip)
	if o := l.Authenticate(req(basic("alice", "pw-alice")), ip); o.Reason != policy.ReasonLockedOut || o.User != "alice" || o.RetryAfter <= 0 {
		t.Fatalf("locked out: %+v", o)
	}
}

// logRecorder sends every log message to a channel.
type logRecorder struct{ msgs chan string }

func (h logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.msgs <- r.Level.String() + " " + r.Message
	return nil
}
func (h logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logRecorder) WithGroup(string) slog.Handler      { return h }

func TestLockoutLogsStartAndEnd(t *testing.T) {
	a, _ := newAuth(t, testConfig{}, "alice")
	rec := logRecorder{msgs: make(chan string, 4)}
	l := NewLockout(a.basic, LockoutConfig{MaxFailures: 2, Lockout: 50 * time.Millisecond, Logger: slog.New(rec)})
	defer l.Close()
	r := &http.Request{Header: http.Header{"Proxy-Authorization": {basic("alice", "bad")}}}
	l.Authenticate(r, ip)
	select {
	case m := <-rec.msgs:
		t.Fatalf("logged after one failure: %s", m)
	default:
	}
	l.Authenticate(r, ip)
	want := []string{"WARN client address locked out after repeated failed logins", "WARN client address lockout ended"}
	for _, w := range want {
		select {
		case m := <-rec.msgs:
			if m != w {
				t.Fatalf("log %q, want %q", m, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %q within 5s", w)
		}
	}
}
