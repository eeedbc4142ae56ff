package state

import (
	"path/filepath"
	"testing"
	"time"
)

func TestStoreWritesThroughAndReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.SetUpdate(Update{GUID: "ABC", Name: "u", Version: "5.00.9140.1000", State: DownloadInProgress}, now); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUpdate(Update{GUID: "abc", Name: "u", Version: "5.00.9140.1000", State: DownloadSuccess}, now); err != nil {
		t.Fatal(err)
	}
	f, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	us := f.SortedUpdates()
	if len(us) != 1 || us[0].State != DownloadSuccess || us[0].StateName != "DOWNLOAD_SUCCESS" || !us[0].Changed.Equal(now) {
		t.Fatalf("updates %+v", us)
	}
}

func TestNames(t *testing.T) {
	for code, want := range map[int]string{262145: "DOWNLOAD_IN_PROGRESS", 262146: "DOWNLOAD_SUCCESS", 327679: "DOWNLOAD_FAILED", 393214: "APPLICABILITY_NA", 7: "STATE_7"} {
		if got := Name(code); got != want {
			t.Errorf("Name(%d) = %q, want %q", code, got, want)
		}
	}
}
