// Package filewatch reports changes to a few files: the policy, the htpasswd file and the TLS
// listener's static certificate and key, all through one watcher in the gateway process.
package filewatch

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher reports changes to a few files.
//
// It watches the directories, not the files: editors, config management and Kubernetes config
// maps replace a file by rename (or swap a symlink), which a watch on the old inode never sees.
// Events are coalesced for debounce so that a write-then-rename burst causes one reload; the
// callback itself compares content, so a spurious call is harmless. Events on other files in those
// directories (an audit log next to the policy, editor swap files) are ignored unless they are
// what a watched path resolves to, or that changed (a swapped symlink: Kubernetes' "..data"):
// otherwise each of them would re-read the files, and a policy that failed to load would be
// counted and logged as failing again on every audit write.
//
// The watch starts when the Watcher is made: a change between then and Run is queued by the
// kernel and reported by Run, so no edit made after start-up is missed.
type Watcher struct {
	w        *fsnotify.Watcher
	paths    []string
	watched  map[string]bool
	debounce time.Duration
	log      *slog.Logger
}

// New watches the directories of paths; debounce is the quiet time after the last event before
// a change is reported.
func New(paths []string, debounce time.Duration, log *slog.Logger) (*Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	fw := &Watcher{w: w, paths: paths, watched: map[string]bool{}, debounce: debounce, log: log}
	dirs := map[string]bool{}
	for _, p := range paths {
		fw.watched[filepath.Clean(p)] = true
		d := filepath.Dir(p)
		if dirs[d] {
			continue
		}
		dirs[d] = true
		if err := w.Add(d); err != nil {
			_ = w.Close()
			return nil, err
		}
	}
	return fw, nil
}

// Run calls onChange after any watched file may have changed, until ctx is done; then it
// releases the watch and returns.
func (fw *Watcher) Run(ctx context.Context, onChange func()) {
	defer fw.Close()
	targets := resolveAll(fw.paths)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-fw.w.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			name, now := filepath.Clean(ev.Name), resolveAll(fw.paths)
			if !fw.watched[name] && !slices.Contains(targets, name) && !slices.Contains(now, name) && slices.Equal(now, targets) {
				continue
			}
			targets = now
			timer.Reset(fw.debounce)
		case err, ok := <-fw.w.Errors:
			if !ok {
				return
			}
			fw.log.Warn("file watcher error; SIGHUP still reloads", "err", err)
		case <-timer.C:
			onChange()
		}
	}
}

// Close releases the watch; it is safe to call more than once.
func (fw *Watcher) Close() { _ = fw.w.Close() }

// resolveAll returns what each path resolves to through symlinks, cleaned ("" when it cannot be
// resolved, for example between the removal and the re-creation of a file).
func resolveAll(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i], _ = filepath.EvalSymlinks(p)
	}
	return out
}
