package admin

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/scpgate/scpgate/gateway/audit"
)

func TestAuditRoute(t *testing.T) {
	recent := audit.NewRecent(8)
	recent.Write(audit.Record{ConnID: "c1", Decision: "deny", Reason: "no_rule", Event: "decision"})
	recent.Write(audit.Record{ConnID: "c2", Decision: "allow", Address: "127.0.0.9:443", Event: "close"})
	srv := httptest.NewServer(New(Options{Audit: recent.Find, Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	none := httptest.NewServer(New(Options{Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(none.Close)
	get := func(s *httptest.Server, q string) (int, string) {
		resp, body := (&fixture{srv: s}).do(t, http.MethodGet, PathAudit+q)
		return resp.StatusCode, body
	}
	status, body := get(srv, "?conn=c2&conn=nope&conn=c1")
	var got struct{ Records []audit.Record }
	if status != 200 || json.Unmarshal([]byte(body), &got) != nil || len(got.Records) != 2 ||
		got.Records[0].ConnID != "c2" || got.Records[0].Address != "127.0.0.9:443" || got.Records[1].Reason != "no_rule" {
		t.Fatalf("status %d body %s", status, body)
	}
	if status, body := get(srv, ""); status != 400 || !strings.Contains(body, "conn=ID") {
		t.Errorf("no ids: %d %s", status, body)
	}
	many := strings.Repeat("&conn=x", MaxAuditIDs+1)
	if status, _ := get(srv, "?"+many[1:]); status != 400 {
		t.Errorf("too many ids: %d", status)
	}
	if status, _ := get(none, "?conn=c1"); status != 404 {
		t.Errorf("without records: %d", status)
	}
}
