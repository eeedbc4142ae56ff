package cmtrace

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		line      string
		msg, comp string
		bias      int
		thread    int
		ok        bool
	}{
		{"Manifest.cab was successfully moved to the connector outbox~~  $$<SMS_DMP_DOWNLOADER><10-05-2024 14:02:11.512+420><thread=7568 (0x1D90)>",
			"Manifest.cab was successfully moved to the connector outbox", "SMS_DMP_DOWNLOADER", 420, 7568, true},
		{"…forcibly closed by the remote host.~~  $$<Configuration Manager Setup><08-22-2016 04:15:01.917+420><thread=2868 (0xB34)>",
			"…forcibly closed by the remote host.", "Configuration Manager Setup", 420, 2868, true},
		{"x~~  $$<C><01-02-2026 03:04:05.006-60><thread=1 (0x1)>\n", "x", "C", -60, 1, true},
		{"a ~~  $$<b> inside~~  $$<C><01-02-2026 03:04:05.006+0><thread=10 (0xA)>", "a ~~  $$<b> inside", "C", 0, 10, true},
		{"no marker", "", "", 0, 0, false},
		{"x~~  $$<C><13-02-2026 03:04:05.006+0><thread=1 (0x1)>", "", "", 0, 0, false},
		{"x~~  $$<C><01-02-2026 03:04:05.006+0><thread=10 (0xB)>", "", "", 0, 0, false},
		{"x~~  $$<C><01-02-2026 03:04:05.006><thread=1 (0x1)>", "", "", 0, 0, false},
		{"x~~  $$<C><01-02-2026 03:04:05.006+0><thread=1 (0x1)>junk", "", "", 0, 0, false},
	}
	for _, tt := range tests {
		e, err := ParseLine(tt.line)
		if (err == nil) != tt.ok {
			t.Errorf("ParseLine(%q): err %v, want ok=%v", tt.line, err, tt.ok)
			continue
		}
		if tt.ok && (e.Message != tt.msg || e.Component != tt.comp || e.Bias != tt.bias || e.Thread != tt.thread) {
			t.Errorf("ParseLine(%q) = %+v", tt.line, e)
		}
	}
}

func TestWriteParsesAndKeepsWallClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dmpdownloader.log")
	pdt := time.FixedZone("PDT", -7*3600)
	at := time.Date(2024, 10, 5, 14, 2, 11, 512e6, pdt)
	l, err := Open(path, "SMS_DMP_DOWNLOADER", WithClock(func() time.Time { return at }), WithThread(7568))
	if err != nil {
		t.Fatal(err)
	}
	l.Info("Manifest.cab was successfully moved to the connector outbox")
	l.Warning("Retry in the next polling cycle")
	l.Error("two\nlines")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	want := "Manifest.cab was successfully moved to the connector outbox~~  $$<SMS_DMP_DOWNLOADER><10-05-2024 14:02:11.512+420><thread=7568 (0x1D90)>\n" +
		"WARNING: Retry in the next polling cycle~~  $$<SMS_DMP_DOWNLOADER><10-05-2024 14:02:11.512+420><thread=7568 (0x1D90)>\n" +
		"ERROR: two~~lines~~  $$<SMS_DMP_DOWNLOADER><10-05-2024 14:02:11.512+420><thread=7568 (0x1D90)>\n"
	if string(data) != want {
		t.Fatalf("log:\n%s\nwant:\n%s", data, want)
	}
	e, err := ParseLine(strings.SplitAfter(string(data), "\n")[0])
	if err != nil || !e.Time.Equal(at) {
		t.Fatalf("parsed %+v %v, want time %v", e, err, at)
	}
}

func TestRolloverAt250000Bytes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dmpuploader.log")
	l, err := Open(path, "SMS_DMP_UPLOADER")
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("u", 900)
	total := 0
	for i := 0; total < 2*DefaultMaxSize; i++ {
		l.Info(fmt.Sprintf("%06d %s", i, msg))
		total += 1000
	}
	_ = l.Close()
	hist := filepath.Join(dir, "dmpuploader"+HistorySuffix)
	for _, p := range []string{path, hist} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > DefaultMaxSize {
			t.Errorf("%s is %d bytes, want at most %d", p, st.Size(), DefaultMaxSize)
		}
		f, _ := os.Open(p)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if _, err := ParseLine(sc.Text()); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
		}
		f.Close()
	}
}

func TestTruncateStartsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ServiceConnectionTool.log")
	for range 2 {
		l, err := Open(path, "ServiceConnectionTool", Truncate())
		if err != nil {
			t.Fatal(err)
		}
		l.Info("one run")
		_ = l.Close()
	}
	data, _ := os.ReadFile(path)
	if strings.Count(string(data), "\n") != 1 {
		t.Fatalf("want one line after two runs, got:\n%s", data)
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add("Manifest.cab was successfully moved to the connector outbox~~  $$<SMS_DMP_DOWNLOADER><10-05-2024 14:02:11.512+420><thread=7568 (0x1D90)>")
	f.Add("x~~  $$<C><01-02-2026 03:04:05.006-60><thread=1 (0x1)>")
	f.Fuzz(func(t *testing.T, line string) {
		e, err := ParseLine(line)
		if err != nil {
			return
		}
		// A parsed entry formats back to a line that parses to the same entry.
		again, err := ParseLine(Format(e))
		if err != nil {
			t.Fatalf("Format(%+v) does not parse: %v", e, err)
		}
		if again.Component != e.Component || again.Thread != e.Thread || again.Bias != e.Bias || !again.Time.Equal(e.Time) {
			t.Fatalf("round trip %+v -> %+v", e, again)
		}
	})
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.log")
	lg, err := Open(good, "SMS_SERVICE_CONNECTOR")
	if err != nil {
		t.Fatal(err)
	}
	lg.Info("one")
	lg.Error("two")
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := ReadFile(good)
	if err != nil || len(entries) != 2 || entries[0].Message != "one" || entries[1].Message != "ERROR: two" ||
		entries[1].Component != "SMS_SERVICE_CONNECTOR" {
		t.Fatalf("ReadFile: %+v, %v", entries, err)
	}
	bad := filepath.Join(dir, "bad.log")
	data, _ := os.ReadFile(good)
	if err := os.WriteFile(bad, append(data, "not a trace line\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(bad); err == nil || !strings.Contains(err.Error(), "bad.log:3:") {
		t.Fatalf("ReadFile of a bad line: %v, want it to name bad.log:3", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing.log")); err == nil {
		t.Fatal("ReadFile of a missing file succeeded")
	}
}
