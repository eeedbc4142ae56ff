package progress

import (
	"os"
	"path/filepath"
	"testing"
)

// Not a terminal (a file, a pipe, nil): no bar, the logs carry plain lines.
func TestNoBarWithoutTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, out := range []*os.File{f, w, nil} {
		if ForTerminal(out) != nil {
			t.Fatalf("a progress bar for %v, which is not a terminal", out)
		}
	}
}
