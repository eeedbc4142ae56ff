package filewatch

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatchFiles: replacing a watched file by rename (as editors do) triggers one change, and
// writes to another file in the same directory (an audit log) trigger nothing.
func TestWatchFiles(t *testing.T) {
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "endpoints.yaml")
	if err := os.WriteFile(policyPath, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	changes := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fw, err := New([]string{policyPath}, 20*time.Millisecond, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { fw.Run(ctx, func() { changes <- struct{}{} }); close(done) }()
	defer func() { cancel(); <-done }()

	// Noise first: an unrelated file written many times. Then a real change. The first change
	// reported must come after the real change, and exactly one must come.
	noise := filepath.Join(dir, "audit.log")
	for i := range 20 {
		if err := os.WriteFile(noise, []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-changes:
		t.Fatal("writes to an unrelated file in the directory triggered a reload")
	default:
	}
	tmp := filepath.Join(dir, ".endpoints.yaml.tmp")
	if err := os.WriteFile(tmp, []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, policyPath); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	case <-time.After(10 * time.Second):
		t.Fatal("replacing the policy by rename was not noticed")
	}
}
