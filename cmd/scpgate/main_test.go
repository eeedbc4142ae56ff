package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb strings.Builder
	code := run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestLint(t *testing.T) {
	code, out, errs := runCmd(t, "policy", "lint", "../../endpoints.yaml")
	if code != 0 || !strings.Contains(out, "ok (") {
		t.Fatalf("lint of the shipped policy: code %d out %q err %q", code, out, errs)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`version: 1
groups:
  g:
    enabled: true
    hosts:
      - "*.com"
      - bücher.example
    portz: [443]
`), 0o644)
	code, _, errs = runCmd(t, "policy", "lint", bad)
	if code != 1 {
		t.Fatalf("lint of a bad file: code %d", code)
	}
	for _, want := range []string{bad + ":6:", bad + ":7:", bad + ":8:", "3 error(s)"} {
		if !strings.Contains(errs, want) {
			t.Errorf("lint output lacks %q:\n%s", want, errs)
		}
	}
}

func TestExplain(t *testing.T) {
	tests := []struct {
		target string
		code   int
		want   []string
	}{
		{"go.microsoft.com:443", 0, []string{"updates-and-servicing", "go.microsoft.com"}},
		{"configmgrbits.cdn.manage.microsoft.com:443", 0, []string{"*.manage.microsoft.com"}},
		{"manage.microsoft.com:443", 1, []string{"no_rule"}},
		{"go.microsoft.com:22", 1, []string{"port_not_allowed"}},
		{"127.0.0.1:443", 1, []string{"ip_literal"}},
		{"GO.Microsoft.COM.:443", 0, []string{"go.microsoft.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			code, out, errs := runCmd(t, "policy", "explain", "-policy", "../../endpoints.yaml", tt.target)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out, errs)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestExplainJSON(t *testing.T) {
	code, out, _ := runCmd(t, "policy", "explain", "-policy", "../../endpoints.yaml", "-json", "manage.microsoft.com:443")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var got struct {
		Target  string `json:"target"`
		Allow   bool   `json:"allow"`
		Reason  string `json:"reason"`
		Matches []struct {
			Group   string `json:"group"`
			Enabled bool   `json:"enabled"`
		} `json:"matches"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.Allow || got.Reason != "no_rule" || got.Target != "manage.microsoft.com:443" {
		t.Fatalf("%+v", got)
	}
	// The apex is listed only by the disabled intune-hybrid group: explain must say so.
	found := false
	for _, m := range got.Matches {
		if m.Group == "intune-hybrid" && !m.Enabled {
			found = true
		}
	}
	if !found {
		t.Fatalf("explain does not show the disabled group that lists the apex: %s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"policy"}, {"policy", "explain"}, {"policy", "explain", "bad_host:443"}, {"policy", "explain", "-policy", "missing.yaml", "a.example:443"}, {"serve"}} {
		if code, _, _ := runCmd(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestServeBadConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "gw.yaml")
	os.WriteFile(cfg, []byte("listen: [127.0.0.1:0]\npolicy: missing.yaml\n"), 0o644)
	code, _, errs := runCmd(t, "serve", "-config", cfg)
	if code != 1 || !strings.Contains(errs, "missing.yaml") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

func TestPasswd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users.htpasswd")
	for _, user := range []string{"scp", "admin", "scp"} {
		var out, errb strings.Builder
		code := run([]string{"passwd", "-file", file, "-cost", "4", user}, strings.NewReader("s3cret pass\n"), &out, &errb)
		if code != 0 {
			t.Fatalf("passwd %s: %d %s", user, code, errb.String())
		}
	}
	data, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "scp:$2") || !strings.HasPrefix(lines[1], "admin:$2") {
		t.Fatalf("htpasswd file:\n%s", data)
	}
	var errb strings.Builder
	if code := run([]string{"passwd", "-file", file, "x"}, strings.NewReader("\n"), io.Discard, &errb); code != 1 {
		t.Fatalf("empty password accepted: %d", code)
	}
}
