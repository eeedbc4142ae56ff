package sctool

import (
	"strings"
	"testing"
)

const goodPack = `{"format":"scpclient-updatepack/1","hierarchyIdHash":"` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `",
"siteVersion":"5.00.9135.1000","selection":"default","created":"2026-01-01T00:00:00Z","manifest":"ConfigMgr.Update.Manifest.json",
"usagePackages":["x"],"updates":[{"guid":"d8426602-cfde-4854-9761-60ce34c5c362","kind":"update","version":"5.00.9140.1000",
"file":"d8426602-cfde-4854-9761-60ce34c5c362/d8426602-cfde-4854-9761-60ce34c5c362.cab","size":1,"sha256":"ab"}]}`

func TestParsePack(t *testing.T) {
	if _, err := ParsePack([]byte(goodPack)); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(string) string{
		"escape with ..": func(s string) string { return strings.Replace(s, `"file":"d84`, `"file":"../../etc/d84`, 1) },
		"absolute path":  func(s string) string { return strings.Replace(s, `"file":"d84`, `"file":"/etc/d84`, 1) },
		"backslash": func(s string) string {
			return strings.Replace(s, `/d8426602-cfde-4854-9761-60ce34c5c362.cab`, `\\x.cab`, 1)
		},
		"unknown field":     func(s string) string { return strings.Replace(s, `"selection"`, `"signed":true,"selection"`, 1) },
		"other manifest":    func(s string) string { return strings.Replace(s, `ConfigMgr.Update.Manifest.json`, `other.json`, 1) },
		"wrong format":      func(s string) string { return strings.Replace(s, PackFormat, "x/1", 1) },
		"short hierarchy":   func(s string) string { return strings.Replace(s, "0123456789abcdef0123", "", 1) },
		"trailing document": func(s string) string { return s + "{}" },
	} {
		if _, err := ParsePack([]byte(mutate(goodPack))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParsePack(f *testing.F) {
	f.Add([]byte(goodPack))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePack(data)
		if err != nil {
			return
		}
		for _, u := range p.Updates {
			if strings.HasPrefix(u.File, "/") || strings.HasPrefix(u.File, "../") || u.File == ".." {
				t.Fatalf("accepted a file outside the pack: %q", u.File)
			}
		}
	})
}
