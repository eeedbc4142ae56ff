package validate

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		t.Fatal(err)
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	appendLine(t, path, `{"conn_id":"old","decision":"deny","reason":"no_rule"}`+"\n")
	tl := newTail(AuditFiles{path})
	ctx := context.Background()
	// Records from before the start are not read.
	if got, err := tl.Lookup(ctx, []string{"old"}); err != nil || len(got) != 0 {
		t.Fatalf("old record: %v %v", got, err)
	}
	// A half-written line waits for its end.
	appendLine(t, path, `{"conn_id":"a","decision":"deny","reason":"no_rule"}`+"\n"+`{"conn_id":"b","decis`)
	got, err := tl.Lookup(ctx, []string{"a", "b"})
	if err != nil || len(got) != 1 || got["a"].Reason != "no_rule" || got["a"].Line != `{"conn_id":"a","decision":"deny","reason":"no_rule"}` {
		t.Fatalf("first read: %+v %v", got, err)
	}
	appendLine(t, path, `ion":"allow","address":"127.0.0.9:443"}`+"\n")
	got, _ = tl.Lookup(ctx, []string{"a", "b"})
	if len(got) != 2 || got["b"].Address != "127.0.0.9:443" {
		t.Fatalf("after the line ended: %+v", got)
	}
	// Rotated: the file starts again, and is read from its start.
	if err := os.WriteFile(path, []byte(`{"conn_id":"c","decision":"allow"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, _ = tl.Lookup(ctx, []string{"a", "c"})
	if len(got) != 2 || !got["c"].Found {
		t.Fatalf("after rotation: %+v", got)
	}
}

func TestCollectWaitsForRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	appendLine(t, path, "")
	tl := newTail(AuditFiles{path})
	done := make(chan map[string]GatewayRecord)
	go func() {
		got, _ := collect(context.Background(), tl, []string{"x"}, 10*time.Second)
		done <- got
	}()
	appendLine(t, path, `{"conn_id":"x","decision":"allow"}`+"\n")
	select {
	case got := <-done:
		if !got["x"].Found {
			t.Fatalf("got %+v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("collect did not return once the record was written")
	}
	// A record that never comes: collect gives up after its wait. The context never ends, so
	// only the wait can end the call (a regression hangs until go test's -timeout).
	got, err := collect(context.Background(), tl, []string{"never"}, 300*time.Millisecond)
	if err != nil || len(got) != 0 {
		t.Errorf("missing record: %v %v", got, err)
	}
}
