package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The run itself is tested against the real gateway in integration/validate_test.go; these
// cover the command's own errors and exit codes.
func TestValidateUsageErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "v.yaml")
	if err := os.WriteFile(cfg, []byte("proxy: http://127.0.0.1:1\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "full")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"validate"}, "proxy: required"},
		{[]string{"validate", "-proxy", "socks5://x:1"}, "want http://host:port"},
		{[]string{"validate", "-proxy", "http://127.0.0.1:1", "-format", "html"}, "give -out FOLDER"},
		{[]string{"validate", "-proxy", "http://127.0.0.1:1", "-format", "pdf", "-out", dir}, `unknown output format "pdf"`},
		{[]string{"validate", "-proxy", "http://127.0.0.1:1", "-timeout", "soon"}, "timeout: want a positive duration"},
		{[]string{"validate", "-proxy", "http://127.0.0.1:1", "-sample", "nope"}, "want KEY=VALUE"},
		{[]string{"validate", "-proxy", "http://127.0.0.1:1", "-groups", "nope"}, `group "nope" is not in policy`},
		{[]string{"validate", "-proxy", "http://127.0.0.1:1", "-evidence", full}, "is not empty"},
		{[]string{"validate", "-proxy", "http://127.0.0.1:1", "-audit", filepath.Join(dir, "missing.log")}, "audit file"},
		{[]string{"validate", "-config", cfg}, "field bogus not found"},
		{[]string{"validate", "verify"}, "give one evidence folder"},
		{[]string{"validate", "-nope"}, "Usage: scpgate validate"},
		{[]string{"validate", "extra"}, `unexpected argument "extra"`},
		{[]string{"validate", "verify", filepath.Join(dir, "nothing")}, "MANIFEST.sha256"},
	}
	for _, tt := range tests {
		code, _, errs := runCmd(t, tt.args...)
		if code != exitCannotRun || !strings.Contains(errs, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d with %q", tt.args, code, errs, exitCannotRun, tt.want)
		}
	}
}

// A gateway that cannot be reached is a failed run (11412, exit 2), not a usage error.
func TestValidateProxyDown(t *testing.T) {
	code, out, errs := runCmd(t, "validate", "-proxy", "http://127.0.0.1:1", "-groups", "usage-data", "-timeout", "20s")
	if code != 2 || !strings.Contains(out, "11412 error") || !strings.Contains(out, "not reachable") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}
