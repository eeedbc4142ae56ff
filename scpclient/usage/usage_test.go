package usage

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/state"
)

func testConfig(level string) *config.Config {
	return &config.Config{SiteCode: "XYZ", SiteRole: config.RoleCAS, HierarchyID: "6F2C2F5B-1D2E-4B51-9C3A-7D1E2F3A4B5C",
		InstalledVersion: "5.00.9135.1000", Mode: config.ModeOnline, UsageLevel: level,
		CheckInterval: 24 * time.Hour, UploadInterval: 7 * 24 * time.Hour,
		Proxy: config.Proxy{URL: "https://127.0.0.1:3129", User: "alice"}}
}

func TestLevelsHoldDifferentTablesAllHashed(t *testing.T) {
	st := state.File{Downloader: state.Downloader{Updates: map[string]*state.Update{
		"abc": {GUID: "8a4f5c3e-1111-2222-3333-444455556666", Kind: "update", Version: "5.00.9140.1000", State: state.DownloadSuccess},
	}}}
	seen := map[string]int{}
	for _, level := range []string{config.LevelBasic, config.LevelEnhanced, config.LevelFull} {
		p, err := Collect(testConfig(level), st, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		data, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", level, err)
		}
		tables := map[string]bool{}
		for _, r := range back.Rows {
			tables[r.Table] = true
			if r.HierarchyIDHash != HierarchyHash("6f2c2f5b-1d2e-4b51-9c3a-7d1e2f3a4b5c") {
				t.Fatalf("%s: row %s without the hashed hierarchy id", level, r.Table)
			}
		}
		seen[level] = len(tables)
		for _, clear := range []string{"XYZ", "6F2C2F5B", "6f2c2f5b", "8a4f5c3e", "alice", "127.0.0.1"} {
			if bytes.Contains(data, []byte(clear)) {
				t.Errorf("%s package holds %q in clear", level, clear)
			}
		}
	}
	if !(seen[config.LevelBasic] < seen[config.LevelEnhanced] && seen[config.LevelEnhanced] < seen[config.LevelFull]) {
		t.Fatalf("tables per level %v, want basic < enhanced < full", seen)
	}
}

func TestParseRejects(t *testing.T) {
	p, _ := Collect(testConfig(config.LevelBasic), state.File{}, time.Now())
	good, _ := p.Marshal()
	for name, mutate := range map[string]func(string) string{
		"format":      func(s string) string { return strings.Replace(s, Format, "other/1", 1) },
		"extra field": func(s string) string { return strings.Replace(s, `"level"`, `"x": 1, "level"`, 1) },
		"wrong table": func(s string) string { return strings.Replace(s, `"TEL_Settings"`, `"TEL_Runtime"`, 1) },
		"trailing":    func(s string) string { return s + "{}" },
	} {
		if _, err := Parse([]byte(mutate(string(good)))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCSV(t *testing.T) {
	p, _ := Collect(testConfig(config.LevelEnhanced), state.File{}, time.Now())
	var b bytes.Buffer
	if err := p.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "table,hierarchyIdHash,field,value\n") || !strings.Contains(b.String(), "TEL_Proxy,") {
		t.Fatalf("csv:\n%s", b.String())
	}
}

func FuzzParse(f *testing.F) {
	p, _ := Collect(testConfig(config.LevelFull), state.File{}, time.Now())
	good, _ := p.Marshal()
	f.Add(good)
	f.Add([]byte(`{"format":"scpclient-usage/1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("re-encoded package does not parse: %v", err)
		}
	})
}
