// Package state is the SCP client's state file: the per-update states with Configuration
// Manager's CM_UpdatePackages.State codes, the last and next update check, and the uploader's
// progress. Every change rewrites the whole file atomically (temp, fsync, rename), so a reader
// or a crash sees the previous state or the new one, never half of each.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/scpgate/scpgate/internal/atomicfile"
)

// Update states (CM_UpdatePackages.State) the SCP client records.
const (
	Unknown                    = 0
	DownloadInProgress         = 262145
	DownloadSuccess            = 262146
	DownloadFailed             = 327679
	ApplicabilityNotApplicable = 393214
)

var names = map[int]string{
	Unknown:                    "UNKNOWN",
	2:                          "ENABLED",
	65537:                      "CONTENT_REPLICATING",
	65538:                      "CONTENT_REPLICATION_SUCCESS",
	131071:                     "CONTENT_REPLICATION_FAILED",
	196612:                     "INSTALL_SUCCESS",
	262143:                     "INSTALL_FAILED",
	DownloadInProgress:         "DOWNLOAD_IN_PROGRESS",
	DownloadSuccess:            "DOWNLOAD_SUCCESS",
	DownloadFailed:             "DOWNLOAD_FAILED",
	327681:                     "APPLICABILITY_CHECKING",
	327682:                     "APPLICABILITY_SUCCESS",
	393213:                     "APPLICABILITY_HIDE",
	ApplicabilityNotApplicable: "APPLICABILITY_NA",
	393215:                     "APPLICABILITY_FAILED",
}

// Name is the ConfigMgr name of a state code ("DOWNLOAD_SUCCESS"), or "STATE_<n>".
func Name(code int) string {
	if n, ok := names[code]; ok {
		return n
	}
	return fmt.Sprintf("STATE_%d", code)
}

// FileName is the state file's name in the data folder.
const FileName = "scpclient-state.json"

// Update is one update's record.
type Update struct {
	GUID      string    `json:"guid"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Version   string    `json:"version"`
	State     int       `json:"state"`
	StateName string    `json:"stateName"`
	Changed   time.Time `json:"changed"`
	// Detail says why a failed or not-applicable state was recorded.
	Detail string `json:"detail,omitempty"`
	// Path is where the verified payload was placed.
	Path string `json:"path,omitempty"`
}

// Downloader is SMS_DMP_DOWNLOADER's part.
type Downloader struct {
	LastCheck  time.Time `json:"lastCheck"`
	NextCheck  time.Time `json:"nextCheck"`
	LastResult string    `json:"lastResult"`
	// ModeInForce is the mode the downloader last started with.
	ModeInForce string             `json:"modeInForce,omitempty"`
	Updates     map[string]*Update `json:"updates"`
}

// Uploader is SMS_DMP_UPLOADER's part.
type Uploader struct {
	LastCollect time.Time `json:"lastCollect"`
	LastUpload  time.Time `json:"lastUpload"`
	NextUpload  time.Time `json:"nextUpload"`
	LastResult  string    `json:"lastResult"`
	Delivered   int       `json:"delivered"`
}

// Connectivity is the last endpoint connectivity check (SMS_SERVICE_CONNECTOR) and the next one.
type Connectivity struct {
	LastRun time.Time `json:"lastRun"`
	// Message is the status message id of the last outcome (11410, 11411, 11412; 0: none).
	Message int       `json:"message"`
	Outcome string    `json:"outcome"`
	NextRun time.Time `json:"nextRun"`
}

// File is the whole state file.
type File struct {
	Downloader   Downloader   `json:"downloader"`
	Uploader     Uploader     `json:"uploader"`
	Connectivity Connectivity `json:"connectivity"`
}

// SortedUpdates returns the updates ordered by version, then GUID.
func (f File) SortedUpdates() []Update {
	out := make([]Update, 0, len(f.Downloader.Updates))
	for _, u := range f.Downloader.Updates {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b Update) int {
		if c := strings.Compare(a.Version, b.Version); c != 0 {
			return c
		}
		return strings.Compare(a.GUID, b.GUID)
	})
	return out
}

// Store holds the state of one process and writes every change through. Safe for concurrent
// use by the components.
type Store struct {
	mu   sync.Mutex
	path string
	f    File
}

// Open reads path, or starts empty if it does not exist.
func Open(path string) (*Store, error) {
	f, err := Read(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return &Store{path: path, f: f}, nil
}

// Read reads a state file (for `scpclient status` in another process).
func Read(path string) (File, error) {
	var f File
	data, err := os.ReadFile(path)
	if err != nil {
		f.Downloader.Updates = map[string]*Update{}
		return f, err
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return File{Downloader: Downloader{Updates: map[string]*Update{}}}, fmt.Errorf("state file %s: %w (delete it to start over)", path, err)
	}
	if f.Downloader.Updates == nil {
		f.Downloader.Updates = map[string]*Update{}
	}
	return f, nil
}

// Change applies fn to the state and writes the file; on a write error the in-memory state is
// rolled back.
func (s *Store) Change(fn func(*File)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := json.Marshal(s.f)
	if err != nil {
		return err
	}
	fn(&s.f)
	data, err := json.MarshalIndent(s.f, "", "  ")
	if err == nil {
		err = atomicfile.WriteFile(s.path, append(data, '\n'), 0o644)
	}
	if err != nil {
		var back File
		_ = json.Unmarshal(old, &back)
		s.f = back
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// SetUpdate records u's state (keyed by lower-case GUID) with the time and name filled in.
func (s *Store) SetUpdate(u Update, now time.Time) error {
	u.GUID = strings.ToLower(u.GUID)
	u.StateName, u.Changed = Name(u.State), now.UTC()
	return s.Change(func(f *File) {
		if f.Downloader.Updates == nil {
			f.Downloader.Updates = map[string]*Update{}
		}
		f.Downloader.Updates[u.GUID] = &u
	})
}

// Snapshot returns a deep copy of the state.
func (s *Store) Snapshot() File {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.f
	c.Downloader.Updates = make(map[string]*Update, len(s.f.Downloader.Updates))
	for k, u := range s.f.Downloader.Updates {
		v := *u
		c.Downloader.Updates[k] = &v
	}
	return c
}
