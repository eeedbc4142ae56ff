// Package progress shows a progress bar for downloads and uploads when standard output is a
// terminal, and nothing otherwise (the component logs carry the plain lines).
package progress

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Factory makes a writer that advances a bar as bytes pass; it matches fetch.Options.Progress.
type Factory func(name string, total, already int64) io.WriteCloser

// ForTerminal returns a Factory drawing on f when f is a terminal, or nil.
func ForTerminal(f *os.File) Factory {
	if f == nil || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return func(name string, total, already int64) io.WriteCloser {
		bar := progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(f),
			progressbar.OptionSetDescription(name),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100_000_000), // 100 ms
			progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(f, "\n") }),
		)
		_ = bar.Set64(already)
		return barWriter{bar}
	}
}

type barWriter struct{ b *progressbar.ProgressBar }

func (w barWriter) Write(p []byte) (int, error) { return w.b.Write(p) }
func (w barWriter) Close() error                { return w.b.Exit() }
