// Package uploader is SMS_DMP_UPLOADER: it collects a usage data package when one is due, writes
// it to a spool folder first (temp, fsync, rename), uploads every spooled package through the
// gateway with the package id as idempotency key, and deletes a package only after the receiver
// acknowledged it. Killing the process at any moment loses nothing (the package is on disk
// before it is sent) and duplicates nothing (a resend carries the same key, which the receiver
// counts once).
package uploader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/scpgate/scpgate/internal/atomicfile"
	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/fetch"
	"github.com/scpgate/scpgate/scpclient/state"
	"github.com/scpgate/scpgate/scpclient/usage"
)

// Component is the ConfigMgr component name.
const Component = "SMS_DMP_UPLOADER"

// LogFileName is the component's log.
const LogFileName = "dmpuploader.log"

// DefaultURL is the connected service's usage data receiver.
const DefaultURL = "https://sccm.manage.microsoft.com/SCCMConnectedService.svc/UsageData"

// Upload failure status message ids of ConfigMgr.
const (
	StatusUploadFailed    = 9605 // DMP_UPLOADER_UPLOAD_FAILED
	StatusUploadException = 9607 // DMP_UPLOADER_UPLOAD_EXCEPTION
)

// Spool is the folder of packages waiting for an acknowledgement.
type Spool struct{ Dir string }

// Put writes p durably into the spool and returns its path.
func (s Spool) Put(p *usage.Package) (string, error) {
	data, err := p.Marshal()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s-%s%s", p.Collected.UTC().Format("20060102T150405.000Z"), p.ID, usage.FileExt)
	path := filepath.Join(s.Dir, name)
	return path, atomicfile.WriteFile(path, data, 0o600)
}

// List returns the spooled package files, oldest first.
func (s Spool) List() ([]string, error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), usage.FileExt) && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(s.Dir, e.Name()))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Options configure an Uploader.
type Options struct {
	Config *config.Config
	Client fetch.Doer // nil in offline mode
	Store  *state.Store
	Log    *cmtrace.Log
	URL    string // "" means DefaultURL
	Now    func() time.Time
	// Mode is the mode in force (set by the downloader's last start); nil means Config.Mode.
	Mode func() string
	// Progress, if set, shows each upload's bytes (a terminal progress bar).
	Progress func(name string, total, already int64) io.WriteCloser
}

// Uploader runs upload cycles.
type Uploader struct {
	o     Options
	spool Spool
}

// New returns an Uploader spooling into <data_dir>/spool/usage.
func New(o Options) *Uploader {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Uploader{o: o, spool: Spool{Dir: SpoolDir(o.Config.DataDir)}}
}

// SpoolDir is the spool folder under a data folder.
func SpoolDir(dataDir string) string { return filepath.Join(dataDir, "spool", "usage") }

// Collect writes a new package to the spool if one is due (or force) and returns its path ("" if
// none was due). A package that was spooled but not yet recorded (a crash in between) counts as
// the collection, so a restart does not collect twice.
func (u *Uploader) Collect(force bool) (string, error) {
	now := u.o.Now()
	snap := u.o.Store.Snapshot()
	last := snap.Uploader.LastCollect
	files, err := u.spool.List()
	if err != nil {
		return "", err
	}
	for _, f := range files {
		if p, err := readPackage(f); err == nil && p.Collected.After(last) {
			last = p.Collected
			_ = u.o.Store.Change(func(s *state.File) { s.Uploader.LastCollect = p.Collected })
		}
	}
	if !force && !last.IsZero() && now.Sub(last) < u.o.Config.UploadInterval {
		return "", nil
	}
	u.o.Log.Infof("Collecting usage data at level %s", u.o.Config.UsageLevel)
	p, err := usage.Collect(u.o.Config, snap, now)
	if err != nil {
		return "", err
	}
	path, err := u.spool.Put(p)
	if err != nil {
		return "", err
	}
	if err := u.o.Store.Change(func(s *state.File) {
		s.Uploader.LastCollect = p.Collected
		s.Uploader.NextUpload = p.Collected.Add(u.o.Config.UploadInterval)
	}); err != nil {
		return "", err
	}
	u.o.Log.Infof("Usage data package %s (%d rows) was written to the spool: %s", p.ID, len(p.Rows), path)
	return path, nil
}

// Cycle collects if due and uploads every spooled package (online mode). It stops at the first
// failure: the rest stay spooled for the next cycle.
func (u *Uploader) Cycle(ctx context.Context, force bool) error {
	mode := u.o.Config.Mode
	if u.o.Mode != nil {
		mode = u.o.Mode()
	}
	if mode == config.ModeOffline || u.o.Client == nil {
		u.o.Log.Info("The service connection point is in offline mode; usage data is exported with the service connection tool (-prepare).")
		return nil
	}
	if _, err := u.Collect(force); err != nil {
		u.o.Log.Errorf("Failed to collect usage data: %v", err)
		return err
	}
	files, err := u.spool.List()
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := u.uploadFile(ctx, f); err != nil {
			_ = u.o.Store.Change(func(s *state.File) { s.Uploader.LastResult = err.Error() })
			return err
		}
	}
	return nil
}

func readPackage(path string) (*usage.Package, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return usage.Parse(data)
}

func (u *Uploader) uploadFile(ctx context.Context, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	p, err := usage.Parse(data)
	if err != nil {
		// A file that is not a package would block the spool forever: set it aside.
		bad := path + ".invalid"
		_ = os.Rename(path, bad)
		u.o.Log.Errorf("Spooled file %s is not a usage data package (%v); moved to %s", path, err, bad)
		return nil
	}
	u.o.Log.Infof("Uploading usage data package %s (%d bytes) to %s", p.ID, len(data), u.o.URL)
	r, err := Upload(ctx, u.o.Client, u.o.URL, p.ID, data, u.o.Progress)
	if err != nil {
		u.o.Log.Errorf("Status message %d (DMP_UPLOADER_UPLOAD_FAILED): failed to upload usage data package %s: %v. It stays in the spool and is retried in the next cycle.",
			StatusUploadFailed, p.ID, err)
		return err
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	atomicfile.SyncDir(filepath.Dir(path))
	now := u.o.Now()
	_ = u.o.Store.Change(func(s *state.File) {
		s.Uploader.LastUpload = now.UTC()
		s.Uploader.Delivered++
		s.Uploader.LastResult = "success"
	})
	u.o.Log.Infof("Usage data package %s was acknowledged by the receiver (duplicate=%t) and removed from the spool", p.ID, r.Duplicate)
	return nil
}

// Receipt is the receiver's acknowledgement.
type Receipt struct {
	IdempotencyKey string `json:"idempotencyKey"`
	SHA256         string `json:"sha256"`
	Size           int64  `json:"size"`
	Duplicate      bool   `json:"duplicate"`
}

// Upload POSTs one package with its idempotency key and checks the acknowledgement: only a 2xx
// receipt for this key and these bytes counts. progress may be nil.
func Upload(ctx context.Context, c fetch.Doer, url, key string, data []byte, progress func(string, int64, int64) io.WriteCloser) (Receipt, error) {
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	var body io.Reader = bytes.NewReader(data)
	if progress != nil {
		pw := progress("usage data "+key, int64(len(data)), 0)
		defer pw.Close()
		body = io.TeeReader(body, pw)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return Receipt{}, err
	}
	req.ContentLength = int64(len(data))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Content-SHA256", want)
	res, err := c.Do(req)
	if err != nil {
		return Receipt{}, err
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return Receipt{}, fmt.Errorf("POST %s: %s: %s", url, res.Status, strings.TrimSpace(string(answer)))
	}
	var r Receipt
	if err := json.Unmarshal(answer, &r); err != nil {
		return Receipt{}, fmt.Errorf("POST %s: %s with an unreadable receipt: %v", url, res.Status, err)
	}
	if r.IdempotencyKey != key || r.SHA256 != want {
		return Receipt{}, fmt.Errorf("POST %s: receipt for key %q sha256 %s, want %q %s", url, r.IdempotencyKey, r.SHA256, key, want)
	}
	return r, nil
}
