package uploader

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/state"
	"github.com/scpgate/scpgate/scpclient/usage"
)

func newUploader(t *testing.T, now *time.Time) (*Uploader, *state.Store, Spool) {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{SiteCode: "XYZ", SiteRole: config.RoleCAS, HierarchyID: "6f2c2f5b-1d2e-4b51-9c3a-7d1e2f3a4b5c",
		InstalledVersion: "5.00.9135.1000", Mode: config.ModeOnline, UsageLevel: config.LevelBasic,
		UploadInterval: 7 * 24 * time.Hour, DataDir: dir}
	st, err := state.Open(filepath.Join(dir, state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	lg, err := cmtrace.Open(filepath.Join(dir, LogFileName), Component)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lg.Close() })
	u := New(Options{Config: cfg, Store: st, Log: lg, Now: func() time.Time { return *now }})
	return u, st, Spool{Dir: SpoolDir(dir)}
}

func TestCollectOncePerInterval(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	u, _, spool := newUploader(t, &now)
	for i, tc := range []struct {
		advance time.Duration
		want    int // spooled files afterwards
	}{{0, 1}, {24 * time.Hour, 1}, {7 * 24 * time.Hour, 2}} {
		now = now.Add(tc.advance)
		if _, err := u.Collect(false); err != nil {
			t.Fatal(err)
		}
		if files, _ := spool.List(); len(files) != tc.want {
			t.Fatalf("step %d: %d spooled, want %d", i, len(files), tc.want)
		}
	}
}

// A crash after the package reached the spool but before the state recorded it: the restarted
// uploader adopts the spooled package instead of collecting a second one.
func TestSpooledButUnrecordedIsAdopted(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	u, st, spool := newUploader(t, &now)
	p, err := usage.Collect(u.o.Config, state.File{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spool.Put(p); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	path, err := u.Collect(false)
	if err != nil || path != "" {
		t.Fatalf("Collect = %q, %v; want no new package", path, err)
	}
	if files, _ := spool.List(); len(files) != 1 {
		t.Fatalf("%d spooled, want the one package", len(files))
	}
	if got := st.Snapshot().Uploader.LastCollect; !got.Equal(p.Collected) {
		t.Fatalf("LastCollect %v, want the spooled package's %v", got, p.Collected)
	}
}

func TestSpoolPutIsComplete(t *testing.T) {
	now := time.Now()
	u, _, spool := newUploader(t, &now)
	path, err := u.Collect(true)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := usage.Parse(data); err != nil {
		t.Fatalf("spooled file: %v", err)
	}
	ents, _ := os.ReadDir(spool.Dir)
	for _, e := range ents {
		if e.Name() != filepath.Base(path) {
			t.Fatalf("stray file in the spool: %s", e.Name())
		}
	}
}
