package gateway

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchFiles calls onChange after any of paths may have changed, until ctx is done.
//
// It watches the directories, not the files: editors, config management and Kubernetes config
// maps replace a file by rename (or swap a symlink), which a watch on the old inode never sees.
// Events are coalesced for debounce so that a write-then-rename burst causes one reload; onChange
// itself compares content, so a spurious call is harmless. Events on other files in those
// directories (an audit log next to the policy, editor swap files) are ignored unless they are
// what a watched path resolves to, or that changed (a swapped symlink: Kubernetes' "..data"):
// otherwise each of them would re-read the files, and a policy that failed to load would be
// counted and logged as failing again on every audit write.
func watchFiles(ctx context.Context, paths []string, debounce time.Duration, onChange func(), log *slog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	watched := map[string]bool{}
	dirs := map[string]bool{}
	for _, p := range paths {
		watched[filepath.Clean(p)] = true
		d := filepath.Dir(p)
		if dirs[d] {
			continue
		}
		dirs[d] = true
		if err := w.Add(d); err != nil {
			_ = w.Close()
			return err
		}
	}
	targets := resolveAll(paths)
	go func() {
		defer w.Close()
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Op == fsnotify.Chmod {
					continue
				}
				name, now := filepath.Clean(ev.Name), resolveAll(paths)
				if !watched[name] && !slices.Contains(targets, name) && !slices.Contains(now, name) && slices.Equal(now, targets) {
					continue
				}
				targets = now
				timer.Reset(debounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("file watcher error; SIGHUP still reloads", "err", err)
			case <-timer.C:
				onChange()
			}
		}
	}()
	return nil
}

// resolveAll returns what each path resolves to through symlinks, cleaned ("" when it cannot be
// resolved, for example between the removal and the re-creation of a file).
func resolveAll(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i], _ = filepath.EvalSymlinks(p)
	}
	return out
}
