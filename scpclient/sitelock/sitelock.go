// Package sitelock keeps a second service connection point for the same hierarchy from running
// on the same data folder: one SCP per hierarchy, as Configuration Manager allows. The lock is an
// operating-system file lock (released by the kernel when the holder dies, even by SIGKILL) on a
// file that names the holder's pid and host, so the refusal can say who holds it.
package sitelock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrHeld is returned (wrapped) when another process holds the lock.
var ErrHeld = errors.New("another service connection point holds the lock")

// Lock is a held lock; Release gives it up.
type Lock struct {
	f    *os.File
	path string
}

// FileName is the lock file's name for a hierarchy id.
func FileName(hierarchyID string) string {
	return "scp-" + strings.ToLower(hierarchyID) + ".lock"
}

// Acquire takes the lock for hierarchyID in dataDir or explains who holds it.
func Acquire(dataDir, hierarchyID string) (*Lock, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	path := filepath.Join(dataDir, FileName(hierarchyID))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := lockFile(f); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close()
		return nil, fmt.Errorf("%w for hierarchy %s in %s (%s): only one service connection point per hierarchy may use a data folder; stop it first",
			ErrHeld, hierarchyID, dataDir, describe(holder))
	}
	host, _ := os.Hostname()
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt(fmt.Appendf(nil, "pid=%d host=%s\n", os.Getpid(), host), 0)
		_ = f.Sync()
	}
	return &Lock{f: f, path: path}, nil
}

func describe(holder []byte) string {
	s := strings.TrimSpace(string(holder))
	if s == "" {
		return "holder unknown"
	}
	return "held by " + s
}

// Release unlocks and closes the lock file. The file stays (removing it would race with a
// process that has just opened it).
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing drops the lock
	l.f = nil
	return err
}
