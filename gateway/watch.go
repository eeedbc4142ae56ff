package gateway

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchFiles calls onChange after any of paths may have changed, until ctx is done.
//
// It watches the directories, not the files: editors, config management and Kubernetes config
// maps replace a file by rename (or swap a symlink), which a watch on the old inode never sees.
// Events are coalesced for debounce so that a write-then-rename burst causes one reload; onChange
// itself compares content, so a spurious call is harmless.
func watchFiles(ctx context.Context, paths []string, debounce time.Duration, onChange func(), log *slog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	dirs := map[string]bool{}
	for _, p := range paths {
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
