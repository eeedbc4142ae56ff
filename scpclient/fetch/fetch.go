// Package fetch downloads one update payload the way the SCP must: resumable (HTTP Range with
// If-Range, so a changed file restarts from zero), streamed to a temporary file beside its
// destination, verified against the SHA-256 from the signed manifest, and only then renamed into
// place. A payload that fails verification is deleted, never placed; an interrupted one stays as
// a hidden ".partial" file (with its validator in ".partial.json") for the next attempt.
package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/scpgate/scpgate/internal/atomicfile"
	"github.com/scpgate/scpgate/manifest"
)

// Doer sends one request (proxyclient.Client).
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Options adjust Payload.
type Options struct {
	// Progress, if set, is called once per transfer and receives the bytes as they arrive.
	Progress func(name string, total, already int64) io.WriteCloser
	// IdleTimeout aborts a transfer that receives nothing for this long; 0 means 2 minutes.
	IdleTimeout time.Duration
	// Started, if set, is called when a transfer begins (offset > 0 means a resume).
	Started func(offset int64, resumed bool)
}

// ErrHashMismatch is returned (wrapped) when a completed download does not hash to the
// manifest's SHA-256; the bytes are discarded.
var ErrHashMismatch = errors.New("payload hash does not match the signed manifest")

const bufSize = 256 << 10

// FileName is the payload's file name: the last element of its URL.
func FileName(u manifest.Update) string {
	if pu, err := url.Parse(u.PayloadURL); err == nil {
		if b := path.Base(pu.Path); b != "." && b != "/" && !strings.ContainsAny(b, `\:`) {
			return b
		}
	}
	return u.GUID + ".bin"
}

// Dest is where a payload is placed: <dir>/<GUID>/<file name>.
func Dest(dir string, u manifest.Update) string {
	return filepath.Join(dir, u.GUID, FileName(u))
}

// IsLocal reports whether path exists and hashes to sha256hex.
func IsLocal(path, sha256hex string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, bufSize)); err != nil {
		return false
	}
	return hex.EncodeToString(h.Sum(nil)) == sha256hex
}

// partialMeta is the validator a resume must present in If-Range.
type partialMeta struct {
	URL          string `json:"url"`
	Size         int64  `json:"size"`
	SHA256       string `json:"sha256"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
}

func (m partialMeta) validator() string {
	if m.ETag != "" && !strings.HasPrefix(m.ETag, "W/") {
		return m.ETag
	}
	return m.LastModified
}

// Payload downloads u into Dest(dir, u) and returns that path. If the file is already there with
// the right hash it is not downloaded again.
func Payload(ctx context.Context, c Doer, u manifest.Update, dir string, o Options) (string, error) {
	dest := Dest(dir, u)
	if IsLocal(dest, u.SHA256) {
		return dest, nil
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return "", err
	}
	// A file in place with the wrong hash is not the payload: take it away first.
	if err := os.Remove(dest); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	part := filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".partial")
	metaPath := part + ".json"
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Minute
	}

	// A crash between the last fsync and the rename leaves a complete partial file: verify it
	// and place it without downloading again.
	if IsLocal(part, u.SHA256) {
		if err := os.Rename(part, dest); err != nil {
			return "", err
		}
		atomicfile.SyncDir(filepath.Dir(dest))
		_ = os.Remove(metaPath)
		return dest, nil
	}
	meta := partialMeta{URL: u.PayloadURL, Size: u.Size, SHA256: u.SHA256}
	var offset int64
	if st, err := os.Stat(part); err == nil {
		var old partialMeta
		b, rerr := os.ReadFile(metaPath)
		if rerr == nil && json.Unmarshal(b, &old) == nil && old.URL == meta.URL && old.Size == meta.Size &&
			old.SHA256 == meta.SHA256 && old.validator() != "" && st.Size() > 0 && st.Size() < u.Size {
			meta, offset = old, st.Size()
		}
	}
	h := sha256.New()
	if offset > 0 {
		if err := hashPrefix(h, part, offset); err != nil {
			offset = 0
		}
	}
	if offset == 0 {
		h.Reset()
		_ = os.Remove(part)
		_ = os.Remove(metaPath)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.PayloadURL, nil)
	if err != nil {
		return "", err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
		req.Header.Set("If-Range", meta.validator())
	}
	res, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	flags := os.O_WRONLY | os.O_CREATE
	switch {
	case res.StatusCode == http.StatusPartialContent && offset > 0:
		if start, ok := rangeStart(res.Header.Get("Content-Range")); !ok || start != offset {
			return "", fmt.Errorf("GET %s: 206 with Content-Range %q, want the range from %d", u.PayloadURL, res.Header.Get("Content-Range"), offset)
		}
		flags |= os.O_APPEND
	case res.StatusCode == http.StatusOK:
		// A full answer: no range asked, or the validator changed (If-Range), so start over.
		offset = 0
		h.Reset()
		flags |= os.O_TRUNC
	default:
		snippet, _ := io.ReadAll(io.LimitReader(res.Body, 256))
		return "", fmt.Errorf("GET %s: %s: %s", u.PayloadURL, res.Status, strings.TrimSpace(string(snippet)))
	}
	if o.Started != nil {
		o.Started(offset, offset > 0)
	}
	meta.ETag, meta.LastModified = res.Header.Get("ETag"), res.Header.Get("Last-Modified")
	mb, _ := json.Marshal(meta)
	if err := atomicfile.WriteFile(metaPath, mb, 0o644); err != nil {
		return "", err
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return "", err
	}
	fileOK := false
	defer func() {
		if !fileOK {
			_ = f.Close()
		}
	}()

	var w io.Writer = io.MultiWriter(f, h)
	if o.Progress != nil {
		pw := o.Progress(u.GUID, u.Size, offset)
		defer pw.Close()
		w = io.MultiWriter(f, h, pw)
	}
	idle := time.AfterFunc(o.IdleTimeout, func() {
		cancel(fmt.Errorf("no data for %s", o.IdleTimeout))
	})
	defer idle.Stop()
	body := &idleReader{r: io.LimitReader(res.Body, u.Size-offset+1), t: idle, d: o.IdleTimeout}
	n, err := io.CopyBuffer(w, body, make([]byte, bufSize))
	if err != nil {
		// net/http may already return the cause itself; say it once.
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(err, cause) {
			err = fmt.Errorf("%w (%v)", err, cause)
		}
		_ = f.Sync()
		return "", fmt.Errorf("GET %s: after %d bytes: %w", u.PayloadURL, offset+n, err)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	fileOK = true
	if err := f.Close(); err != nil {
		return "", err
	}
	if got := offset + n; got != u.Size {
		if got > u.Size {
			discard(part, metaPath)
			return "", fmt.Errorf("GET %s: more than the manifest's %d bytes; discarded", u.PayloadURL, u.Size)
		}
		return "", fmt.Errorf("GET %s: connection ended after %d of %d bytes", u.PayloadURL, got, u.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != u.SHA256 {
		discard(part, metaPath)
		return "", fmt.Errorf("%w: %s expected %s, got %s; the download was discarded", ErrHashMismatch, u.GUID, u.SHA256, sum)
	}
	if err := os.Rename(part, dest); err != nil {
		return "", err
	}
	atomicfile.SyncDir(filepath.Dir(dest))
	_ = os.Remove(metaPath)
	return dest, nil
}

// Place copies a payload file from src (an update pack) into Dest(dir, u), verifying its
// SHA-256 on the way; a mismatch places nothing.
func Place(src, dir string, u manifest.Update) (string, error) {
	dest := Dest(dir, u)
	if IsLocal(dest, u.SHA256) {
		return dest, nil
	}
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".import-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(tmp, h), io.LimitReader(in, u.Size+1), make([]byte, bufSize))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != u.Size || sum != u.SHA256 {
		return "", fmt.Errorf("%w: %s: %s has %d bytes with SHA-256 %s, the manifest says %d bytes with %s",
			ErrHashMismatch, u.GUID, src, n, sum, u.Size, u.SHA256)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return "", err
	}
	atomicfile.SyncDir(filepath.Dir(dest))
	return dest, nil
}

func discard(part, meta string) {
	_ = os.Remove(part)
	_ = os.Remove(meta)
}

func hashPrefix(h io.Writer, path string, n int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	got, err := io.CopyBuffer(h, io.LimitReader(f, n), make([]byte, bufSize))
	if err == nil && got != n {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// rangeStart reads the first byte position of "bytes START-END/TOTAL".
func rangeStart(cr string) (int64, bool) {
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, false
	}
	s, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// idleReader pushes the idle deadline forward on every read that returns data.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.Reset(r.d)
	}
	return n, err
}
