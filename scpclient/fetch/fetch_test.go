package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scpgate/scpgate/manifest"
)

const guid = "2d7523f1-d03f-4fc8-9a36-06c1ec6e7d29"

// origin serves content with an ETag derived from it and records the Range headers it saw.
type origin struct {
	mu     sync.Mutex
	data   []byte
	ranges []string
	status []int
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	data := o.data
	o.ranges = append(o.ranges, r.Header.Get("Range"))
	o.mu.Unlock()
	sum := sha256.Sum256(data)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	http.ServeContent(&statusRecorder{ResponseWriter: w, o: o}, r, "x", time.Time{}, bytes.NewReader(data))
}

// seen returns the Range headers and statuses so far.
func (o *origin) seen() ([]string, []int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.ranges...), append([]int(nil), o.status...)
}

// statusRecorder records the status before the client can see it.
type statusRecorder struct {
	http.ResponseWriter
	o *origin
}

func (s *statusRecorder) WriteHeader(c int) {
	s.o.mu.Lock()
	s.o.status = append(s.o.status, c)
	s.o.mu.Unlock()
	s.ResponseWriter.WriteHeader(c)
}

func update(url string, data []byte) manifest.Update {
	sum := sha256.Sum256(data)
	return manifest.Update{GUID: guid, PayloadURL: url + "/release/5.00.9140.1000/" + guid + "/" + guid + ".cab",
		Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

// partialFile leaves the first n bytes of data as an interrupted download with validator etag.
func partialFile(t *testing.T, dir string, u manifest.Update, data []byte, n int, etag string) {
	t.Helper()
	dest := Dest(dir, u)
	part := filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".partial")
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(part, data[:n], 0o644); err != nil {
		t.Fatal(err)
	}
	meta := `{"url":"` + u.PayloadURL + `","size":` + itoa(u.Size) + `,"sha256":"` + u.SHA256 + `","etag":"` + strings.ReplaceAll(etag, `"`, `\"`) + `"}`
	if err := os.WriteFile(part+".json", []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func etagOf(data []byte) string {
	sum := sha256.Sum256(data)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}

func TestResume(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 40000)
	tests := []struct {
		name      string
		etag      string
		wantRange string
		wantCode  int
	}{
		{"same validator resumes", etagOf(data), "bytes=1000-", http.StatusPartialContent},
		{"changed validator restarts from zero", `"stale"`, "bytes=1000-", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &origin{data: data}
			srv := httptest.NewServer(o)
			defer srv.Close()
			dir := t.TempDir()
			u := update(srv.URL, data)
			partialFile(t, dir, u, data, 1000, tt.etag)
			if tt.wantCode == http.StatusOK {
				// The partial bytes must not survive a restart: make them wrong.
				partialFile(t, dir, u, bytes.Repeat([]byte{'x'}, len(data)), 1000, tt.etag)
			}
			path, err := Payload(context.Background(), srv.Client(), u, dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !IsLocal(path, u.SHA256) {
				t.Fatal("placed file does not verify")
			}
			ranges, status := o.seen()
			if len(ranges) != 1 || ranges[0] != tt.wantRange || status[0] != tt.wantCode {
				t.Fatalf("requests: ranges %q statuses %v", ranges, status)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, guid, ".*")); len(left) != 0 {
				t.Fatalf("temporary files left: %v", left)
			}
		})
	}
}

func TestHashMismatchPlacesNothing(t *testing.T) {
	data := []byte(strings.Repeat("payload ", 1000))
	o := &origin{data: data}
	srv := httptest.NewServer(o)
	defer srv.Close()
	dir := t.TempDir()
	u := update(srv.URL, data)
	u.SHA256 = strings.Repeat("0", 64)
	_, err := Payload(context.Background(), srv.Client(), u, dir, Options{})
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("err %v, want ErrHashMismatch", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, guid)); len(ents) != 0 {
		t.Fatalf("left in the payload folder: %v", ents)
	}
}

// TestStalledTransferIsAbandoned: a server that stops sending mid-body without closing is given
// up on after IdleTimeout, the error says so once, and what arrived stays for the resume.
func TestStalledTransferIsAbandoned(t *testing.T) {
	data := []byte(strings.Repeat("payload ", 4096))
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", itoa(int64(len(data))))
		w.Header().Set("ETag", etagOf(data))
		_, _ = w.Write(data[:1000])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	dir := t.TempDir()
	u := update(srv.URL, data)
	_, err := Payload(context.Background(), srv.Client(), u, dir, Options{IdleTimeout: time.Second})
	if err == nil || strings.Count(err.Error(), "no data for 1s") != 1 || !strings.Contains(err.Error(), "after 1000 bytes") {
		t.Fatalf("err %v, want one \"no data for 1s\" after 1000 bytes", err)
	}
	part, perr := os.ReadFile(filepath.Join(dir, guid, "."+guid+".cab.partial"))
	if perr != nil || !bytes.Equal(part, data[:1000]) {
		t.Fatalf("partial file: %d bytes, %v; want the 1000 received", len(part), perr)
	}
}

func TestAlreadyLocalIsNotDownloaded(t *testing.T) {
	data := []byte("small payload")
	o := &origin{data: data}
	srv := httptest.NewServer(o)
	defer srv.Close()
	dir := t.TempDir()
	u := update(srv.URL, data)
	for range 2 {
		if _, err := Payload(context.Background(), srv.Client(), u, dir, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	if ranges, _ := o.seen(); len(ranges) != 1 {
		t.Fatalf("%d requests, want 1", len(ranges))
	}
}

func TestPlaceVerifies(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(t.TempDir(), "p.cab")
	data := []byte("pack payload")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	u := update("https://configmgrbits.cdn.manage.microsoft.com", data)
	if _, err := Place(src, dir, u); err != nil {
		t.Fatal(err)
	}
	bad := u
	bad.GUID = "61f62ec5-34a7-4119-9ed5-2a666beaf13d"
	bad.SHA256 = strings.Repeat("1", 64)
	if _, err := Place(src, dir, bad); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("err %v, want ErrHashMismatch", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, bad.GUID)); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}

func FuzzRangeStart(f *testing.F) {
	f.Add("bytes 1000-1999/2000")
	f.Add("bytes */2000")
	f.Fuzz(func(t *testing.T, cr string) {
		n, ok := rangeStart(cr)
		if ok && (n < 0 || !strings.HasPrefix(cr, "bytes ")) {
			t.Fatalf("rangeStart(%q) = %d, true", cr, n)
		}
	})
}

// A complete download that was not yet renamed (a crash in between) is verified and placed
// without another request.
func TestCompletePartialIsPlacedWithoutRequest(t *testing.T) {
	data := []byte(strings.Repeat("complete ", 500))
	o := &origin{data: data}
	srv := httptest.NewServer(o)
	defer srv.Close()
	dir := t.TempDir()
	u := update(srv.URL, data)
	partialFile(t, dir, u, data, len(data), etagOf(data))
	path, err := Payload(context.Background(), srv.Client(), u, dir, Options{})
	if err != nil || !IsLocal(path, u.SHA256) {
		t.Fatalf("Payload: %q %v", path, err)
	}
	if ranges, _ := o.seen(); len(ranges) != 0 {
		t.Fatalf("%d requests, want none", len(ranges))
	}
}
