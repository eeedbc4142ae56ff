package audit

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func sample(i int) Record {
	return Record{
		Time:       time.Date(2026, 11, 22, 10, 0, 0, i, time.UTC),
		ConnID:     fmt.Sprintf("c%06d", i),
		Client:     "192.0.2.7:51234",
		User:       "svc-scp",
		Method:     "CONNECT",
		Host:       "download.microsoft.com",
		Port:       443,
		Address:    "203.0.113.9:443",
		Group:      "updates-and-servicing",
		Pattern:    "download.microsoft.com",
		Mode:       "enforce",
		Decision:   DecisionAllow,
		Status:     200,
		SNI:        "download.microsoft.com",
		BytesUp:    int64(i) * 3,
		BytesDown:  int64(i) * 1000,
		DurationMS: 12.5,
		Event:      EventClose,
	}
}

// newTest starts a Log whose sync points are driven by the returned channel.
func newTest(t *testing.T, cfg Config, out io.Writer) (*Log, chan time.Time) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	tick := make(chan time.Time)
	l, err := newLog(cfg, out, tick)
	if err != nil {
		t.Fatal(err)
	}
	go l.run()
	t.Cleanup(func() { l.Close() })
	return l, tick
}

// tickAndWait delivers one tick and returns once the writer has finished handling it: the second
// send on the unbuffered channel completes only when the writer is back in its select loop.
func tickAndWait(tick chan time.Time) {
	tick <- time.Time{}
	tick <- time.Time{}
}

func countLines(t *testing.T, paths ...string) (n int, ids map[string]bool) {
	t.Helper()
	ids = map[string]bool{}
	for _, p := range paths {
		recs, err := ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, r := range recs {
			if ids[r.ConnID] {
				t.Fatalf("duplicate record %s", r.ConnID)
			}
			ids[r.ConnID] = true
		}
		n += len(recs)
	}
	return n, ids
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := newTest(t, Config{Path: path}, nil)
	var want []Record
	for i := range 10 {
		r := sample(i)
		if i == 3 { // omitempty fields absent, hostile strings stay on one line
			r.User, r.Address, r.SNI, r.Group, r.Pattern, r.Mode = "", "", "", "", "", ""
			r.Host = "evil\n{\"decision\":\"allow\"}\u2028<x>"
			r.Decision, r.Reason, r.Status, r.Event = DecisionDeny, "not_listed", 403, EventDecision
		}
		want = append(want, r)
		l.Write(r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := bytes.Count(raw, []byte("\n")); got != 10 {
		t.Fatalf("got %d lines, want 10:\n%s", got, raw)
	}
	if bytes.Contains(raw, []byte(`"user":""`)) {
		t.Errorf("empty optional field written: %s", raw)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("mode %v, want at most 0640", perm)
	}
	s := l.Stats()
	if s.Records != 10 || s.Bytes != uint64(len(raw)) || s.Dropped != 0 || s.WriteErrors != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestZeroTimeFilledAndUTC(t *testing.T) {
	var out bytes.Buffer
	l, _ := newTest(t, Config{}, &out)
	before := time.Now()
	l.Write(Record{ConnID: "a", Event: EventClose})
	l.Write(Record{ConnID: "b", Event: EventClose, Time: time.Date(2026, 1, 1, 12, 0, 0, 0, time.FixedZone("X", 3600))})
	l.Close()
	text := out.String()
	recs, err := readAll("out", &out)
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].Time.Before(before.Add(-time.Second)) || recs[0].Time.Location() != time.UTC {
		t.Errorf("zero time not filled with now in UTC: %v", recs[0].Time)
	}
	if !strings.Contains(text, `"time":"2026-01-01T11:00:00Z"`) {
		t.Errorf("time not written in UTC: %s", text)
	}
}

func TestAppendsToExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	for i := range 2 {
		l, _ := newTest(t, Config{Path: path}, nil)
		l.Write(sample(i))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := countLines(t, path); n != 2 {
		t.Fatalf("got %d records, want 2", n)
	}
}

func TestConcurrentWritersWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := newTest(t, Config{Path: path, QueueSize: 16, MaxBlock: time.Minute}, nil)
	const writers, each = 16, 300
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := sample(w*each + i)
				r.Reason = strings.Repeat("x", (w*each+i)%700) // lines straddle buffer flushes
				l.Write(r)
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	n, ids := countLines(t, path) // ReadFile fails on any torn or interleaved line
	if n != writers*each || len(ids) != writers*each {
		t.Fatalf("got %d lines (%d distinct), want %d", n, len(ids), writers*each)
	}
	if s := l.Stats(); s.Dropped != 0 || s.Records != writers*each {
		t.Errorf("stats %+v", s)
	}
}

func TestRotateBySizeKeepsMaxBackups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	const maxBytes = 2000
	l, _ := newTest(t, Config{Path: path, MaxBytes: maxBytes, MaxBackups: 3}, nil)
	line, _ := encodedLen(sample(0))
	for i := range 100 {
		l.Write(sample(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		p := fmt.Sprintf("%s.%d", path, i)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
		// Rotation happens after the record that reaches MaxBytes: never a split record.
		if st.Size() > maxBytes+int64(line) {
			t.Errorf("%s is %d bytes, limit %d", p, st.Size(), maxBytes)
		}
	}
	if _, err := os.Stat(path + ".4"); !os.IsNotExist(err) {
		t.Errorf("path.4 exists (err %v); MaxBackups is 3", err)
	}
	n, ids := countLines(t, path, path+".1", path+".2", path+".3")
	// The newest records survive, in order across files.
	if !ids["c000099"] || n >= 100 {
		t.Errorf("kept %d records; newest present: %v", n, ids["c000099"])
	}
	if s := l.Stats(); s.Rotations < 4 {
		t.Errorf("rotations %d, want several", s.Rotations)
	}
}

// encodedLen is the length of r as one audit line.
func encodedLen(r Record) (int, error) {
	var b bytes.Buffer
	l, err := newLog(Config{Logger: slog.New(slog.DiscardHandler)}, &b, nil)
	if err != nil {
		return 0, err
	}
	go l.run()
	l.Write(r)
	err = l.Close()
	return b.Len(), err
}

func TestRotateUnderConcurrentWritesLosesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	const rotations = 25
	l, _ := newTest(t, Config{Path: path, MaxBackups: rotations + 1, QueueSize: 8, MaxBlock: time.Minute}, nil)
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				l.Write(sample(w*each + i))
			}
		})
	}
	wg.Go(func() {
		for range rotations {
			if err := l.Rotate(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	paths := []string{path}
	for i := 1; i <= rotations; i++ {
		paths = append(paths, fmt.Sprintf("%s.%d", path, i))
	}
	if _, err := os.Stat(fmt.Sprintf("%s.%d", path, rotations+1)); !os.IsNotExist(err) {
		t.Fatalf("more rotations than requested: %v", err)
	}
	n, ids := countLines(t, paths...)
	if n != writers*each || len(ids) != writers*each {
		t.Fatalf("got %d records (%d distinct) across files, want %d", n, len(ids), writers*each)
	}
	if s := l.Stats(); s.Rotations != rotations || s.Dropped != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := newTest(t, Config{Path: path}, nil) // no tick ever arrives
	l.Write(sample(1))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n, _ := countLines(t, path); n != 1 {
		t.Fatalf("got %d records after Close, want 1", n)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	l.Write(sample(2))
	if s := l.Stats(); s.Dropped != 1 {
		t.Errorf("write after close: dropped %d, want 1", s.Dropped)
	}
	if err := l.Rotate(); err != ErrClosed {
		t.Errorf("Rotate after close: %v", err)
	}
}

func TestPeriodicSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, tick := newTest(t, Config{Path: path}, nil)
	l.Write(sample(1))
	if n, _ := countLines(t, path); n != 0 {
		t.Fatalf("record reached the file before a sync point (%d)", n)
	}
	tickAndWait(tick)
	if n, _ := countLines(t, path); n != 1 {
		t.Fatalf("after a tick: %d records, want 1", n)
	}
	if s := l.Stats(); s.Syncs == 0 { // tickAndWait delivers two ticks
		t.Errorf("syncs %d", s.Syncs)
	}
	l.Write(sample(2))
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if n, _ := countLines(t, path); n != 2 {
		t.Fatalf("after Sync: %d records, want 2", n)
	}
}

func TestReopenAfterExternalRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, _ := newTest(t, Config{Path: path}, nil)
	l.Write(sample(1))
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	l.Write(sample(2)) // still the old file: nobody told us yet
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Write(sample(3))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, old := countLines(t, path+".old")
	_, cur := countLines(t, path)
	if !old["c000001"] || !old["c000002"] || len(old) != 2 || !cur["c000003"] || len(cur) != 1 {
		t.Fatalf("old %v, new %v", old, cur)
	}
}

func TestTickNoticesMovedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, tick := newTest(t, Config{Path: path}, nil)
	l.Write(sample(1))
	tickAndWait(tick)
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	tickAndWait(tick)
	l.Write(sample(2))
	l.Close()
	_, cur := countLines(t, path)
	if !cur["c000002"] || len(cur) != 1 {
		t.Fatalf("new file %v", cur)
	}
	if s := l.Stats(); s.Reopens != 1 {
		t.Errorf("reopens %d", s.Reopens)
	}
}

func TestCopyTruncateResetsSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, tick := newTest(t, Config{Path: path, MaxBytes: 1 << 20}, nil)
	l.Write(sample(1))
	tickAndWait(tick)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	tickAndWait(tick)
	l.Write(sample(2))
	l.Close()
	raw, _ := os.ReadFile(path)
	if n, _ := countLines(t, path); n != 1 || raw[0] != '{' {
		t.Fatalf("after truncate: %q", raw)
	}
}

// blockingWriter stands for a stalled stdout reader.
type blockingWriter struct {
	entered, release chan struct{}
	mu               sync.Mutex
	buf              bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func TestFullQueueDropsAndCounts(t *testing.T) {
	// entered has room for one signal: the writer goroutine may reach Write before the test
	// waits for it, and a non-blocking send on an unbuffered channel would then be lost.
	w := &blockingWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	l, _ := newTest(t, Config{QueueSize: 1, MaxBlock: -1}, w)
	l.Write(sample(1))
	syncErr := make(chan error, 1)
	go func() { syncErr <- l.Sync() }()
	<-w.entered        // the writer goroutine is stuck in stdout
	l.Write(sample(2)) // fills the queue
	l.Write(sample(3)) // dropped at once: Write must not wait
	if s := l.Stats(); s.Dropped != 1 {
		t.Fatalf("dropped %d, want 1", s.Dropped)
	}
	close(w.release)
	if err := <-syncErr; err != nil {
		t.Fatal(err)
	}
	l.Close()
	recs, err := readAll("stdout", &w.buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].ConnID != "c000001" || recs[1].ConnID != "c000002" {
		t.Fatalf("got %+v", recs)
	}
}

// failingWriter accepts n bytes, then fails; it stands for a full disk.
type failingWriter struct {
	n   int
	buf bytes.Buffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n <= 0 {
		return 0, io.ErrShortWrite
	}
	k := min(w.n, len(p))
	w.n -= k
	w.buf.Write(p[:k])
	if k < len(p) {
		return k, io.ErrShortWrite
	}
	return k, nil
}

func TestWriteErrorCountsDropsAndKeepsLinesParseable(t *testing.T) {
	size, _ := encodedLen(sample(1))
	w := &failingWriter{n: size + 10} // one whole record, then ten bytes of the next
	l, _ := newTest(t, Config{}, w)
	l.Write(sample(1))
	l.Write(sample(2))
	l.Write(sample(3))
	if err := l.Sync(); err == nil {
		t.Fatal("Sync: want the write error")
	}
	s := l.Stats()
	if s.Records != 1 || s.Dropped != 2 || s.WriteErrors != 1 {
		t.Fatalf("stats %+v", s)
	}
	w.n = 1 << 20 // the disk has room again
	l.Write(sample(4))
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	lines := strings.Split(strings.TrimSuffix(w.buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines %q", lines)
	}
	if _, err := DecodeLine([]byte(lines[1])); err == nil {
		t.Errorf("torn line decoded")
	}
	if r, err := DecodeLine([]byte(lines[2])); err != nil || r.ConnID != "c000004" {
		t.Errorf("record after the torn line: %+v %v", r, err)
	}
}

func TestBadPath(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{filepath.Join(dir, "missing", "audit.log"), dir} {
		_, err := New(Config{Path: p, Logger: quiet()})
		if err == nil {
			t.Fatalf("%s: no error", p)
		}
		if !strings.Contains(err.Error(), p) || !strings.HasPrefix(err.Error(), "audit: ") {
			t.Errorf("%s: unclear error %q", p, err)
		}
	}
	for _, c := range []Config{{MaxBytes: -1}, {MaxBackups: -1}, {SyncInterval: -1}, {QueueSize: -1}} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestStdoutNeitherRotatesNorSyncs(t *testing.T) {
	var out bytes.Buffer
	l, tick := newTest(t, Config{Path: "-", MaxBytes: 10}, &out)
	l.Write(sample(1))
	tickAndWait(tick)
	if err := l.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Write(sample(2))
	l.Close()
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Fatalf("%d lines", n)
	}
	if s := l.Stats(); s.Rotations != 0 || s.Reopens != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestReadFileErrorsNameLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	os.WriteFile(path, []byte("{\"conn_id\":\"a\"}\n\nnot json\n"), 0o600)
	_, err := ReadFile(path)
	if err == nil || !strings.Contains(err.Error(), path+":3:") {
		t.Fatalf("err %v", err)
	}
}

func BenchmarkWrite(b *testing.B) {
	l, err := New(Config{Path: filepath.Join(b.TempDir(), "audit.log"), Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	r := sample(1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Write(r)
		}
	})
}
