package procstat

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	tail := " S 1 2 3 4 5 6 7 8 9 10 %s %s 0 0 20 0 1 0 100 2000 300"
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr string
	}{
		{"plain", "42 (squid)" + sprintf(tail, "150", "50"), 2 * time.Second, ""},
		{"name with spaces and parens", "7 (a) b (c)" + sprintf(tail, "1", "2"), 30 * time.Millisecond, ""},
		{"no parens", "42 squid S 1", 0, "no command name"},
		{"short", "42 (x) S 1 2", 0, "fields after"},
		{"not a number", "42 (x)" + sprintf(tail, "x", "1"), 0, "not a tick count"},
		{"negative", "42 (x)" + sprintf(tail, "-1", "1"), 0, "not a tick count"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStatCPU(tc.stat)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseStatCPU = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func sprintf(format string, a ...string) string {
	for _, s := range a {
		format = strings.Replace(format, "%s", s, 1)
	}
	return format
}

func TestParseStatusRSS(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		want    int64
		wantErr bool
	}{
		{"present", "Name:\tx\nVmPeak:\t 100 kB\nVmRSS:\t    2048 kB\nThreads: 3\n", 2048 << 10, false},
		{"missing", "Name:\tx\n", 0, true},
		{"bad unit", "VmRSS:\t5 MB\n", 0, true},
		{"bad number", "VmRSS:\tlots kB\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStatusRSS(tc.status)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParseStatusRSS = %d, %v; want %d, err %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestReadSelf(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	before, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.RSSBytes <= 0 || before.FDs < 1 {
		t.Fatalf("implausible sample of this process: %+v", before)
	}
	_ = f.Close()
	after, err := CountFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after != before.FDs-1 {
		t.Fatalf("fds after closing one: %d, before %d", after, before.FDs)
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add("42 (squid) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1 0 100 2000 300")
	f.Add("7 (a) b) S")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseStatCPU(s)
		if err == nil && d < 0 {
			t.Fatalf("negative CPU time %v from %q", d, s)
		}
	})
}

func FuzzParseStatusRSS(f *testing.F) {
	f.Add("VmRSS:\t    2048 kB\n")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseStatusRSS(s)
		if err == nil && n < 0 {
			t.Fatalf("negative RSS %d from %q", n, s)
		}
	})
}
