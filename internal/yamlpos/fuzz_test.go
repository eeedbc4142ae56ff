package yamlpos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzSyntax: Syntax never panics, and a reported position lies inside the input.
func FuzzSyntax(f *testing.F) {
	paths, _ := filepath.Glob("testdata/syntax/*.yaml")
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("a: [1, {b: c}]\n"))
	// A bad byte met while scanning ahead, past the reader's first 512-byte chunk: it hung.
	f.Add([]byte("a: " + strings.Repeat("x", 500) + "\nsni:     \x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e := Syntax(data)
		if e == nil {
			return
		}
		// YAML breaks lines at \r\n, \r, \n, NEL, LS and PS.
		text := strings.NewReplacer("\r\n", "\n", "\r", "\n", "\u0085", "\n", "\u2028", "\n", "\u2029", "\n").Replace(string(data))
		lines := strings.Count(text, "\n") + 1
		if e.Line < 1 || e.Line > lines+1 || e.Col < 1 || e.Msg == "" {
			t.Fatalf("%q: error outside the input (%d lines): %v", data, lines, e)
		}
		var c testConfig
		_, _ = Decode("f.yaml", data, &c) // must not panic either
	})
}
