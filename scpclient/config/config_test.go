package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func base(dir string) string {
	return `site_code: XYZ
site_role: cas
hierarchy_id: 6f2c2f5b-1d2e-4b51-9c3a-7d1e2f3a4b5c
installed_version: 5.00.9135.1000
manifest_key_file: key.pem
data_dir: data
`
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		extra string
		want  string // substring of the error; "" means valid
	}{
		{"defaults", "", ""},
		{"secondary site", "site_role: secondary\n", RuleTopTier},
		{"child primary", "site_role: primary\n", "top-tier site"},
		{"offline with intune", "mode: offline\nintune_subscription: true\n", RuleIntuneOnline},
		{"offline", "mode: offline\n", ""},
		{"intune online", "intune_subscription: true\n", ""},
		{"unknown key", "moed: online\n", `unknown key "moed" (did you mean "mode"?)`},
		{"bad level", "usage_level: none\n", "usage_level"},
		{"full", "usage_level: full\n", ""},
		{"bad version", "installed_version: 2503\n", "installed_version"},
		{"proxy creds in url", "proxy:\n  url: http://u:p@127.0.0.1:3128\n", "must not hold credentials"},
		{"proxy socks", "proxy:\n  url: socks5://127.0.0.1:1080\n", "proxy.url"},
		{"proxy https", "proxy:\n  url: https://127.0.0.1:3129\n  user: alice\n  password_file: pw\n", ""},
		{"user without proxy", "proxy:\n  user: alice\n", "proxy.url is empty"},
		{"located", "site_role: secondary\n", "site_role: \"secondary\": the service connection point"},
		{"tiny interval", "check_interval: 1ms\n", "check_interval"},
		{"transfer idle timeout", "transfer_idle_timeout: 10m\n", ""},
		{"tiny transfer idle timeout", "transfer_idle_timeout: 100ms\n", "transfer_idle_timeout: 100ms: must be at least 1s"},
		{"negative transfer idle timeout", "transfer_idle_timeout: -1m\n", "transfer_idle_timeout"},
		{"bad ring", "ring: a&b\n", "ring"},
		{"connectivity off", "connectivity_check:\n  interval: 0s\n", ""},
		{"connectivity weekly", "connectivity_check:\n  interval: 168h\n  groups: [core]\n  samples:\n    \"*.manage.microsoft.com\": [a.manage.microsoft.com]\n", ""},
		{"connectivity too often", "connectivity_check:\n  interval: 5s\n", "connectivity_check.interval"},
		{"connectivity negative", "connectivity_check:\n  interval: -1h\n", "connectivity_check.interval"},
		{"connectivity no policy", "connectivity_check:\n  policy: nope.yaml\n", "connectivity_check.policy"},
		{"connectivity unknown key", "connectivity_check:\n  intervall: 1h\n", "intervall"},
		{"two documents", "---\nsite_code: ABC\n", "only one YAML document is allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := base(dir)
			if tt.name == "two documents" {
				text += tt.extra
			} else {
				// Later keys replace earlier ones only through the decoder's duplicate check, so
				// drop the base key first.
				for _, line := range strings.Split(tt.extra, "\n") {
					if k, _, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
						var kept []string
						for _, b := range strings.Split(text, "\n") {
							if !strings.HasPrefix(b, k+":") {
								kept = append(kept, b)
							}
						}
						text = strings.Join(kept, "\n")
					}
				}
				text += tt.extra
			}
			c, err := Parse([]byte(text), dir)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q (config %+v)", err, tt.want, c)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(base(dir)), dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeOnline || c.UsageLevel != LevelEnhanced || c.CheckInterval != 24*time.Hour ||
		c.UploadInterval != 7*24*time.Hour || !c.Hotfixes() || c.Fwlink != DefaultFwlink ||
		c.TransferIdleTimeout != 2*time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
	if c.DataDir != filepath.Join(dir, "data") || c.PayloadDir != filepath.Join(dir, "data", PayloadFolderName) || c.LogDir != filepath.Join(dir, "data", "Logs") {
		t.Fatalf("folders: %s %s %s", c.DataDir, c.PayloadDir, c.LogDir)
	}
	if cc := c.ConnectivityCheck; cc.Every() != DefaultConnectivityInterval || cc.Timeout != DefaultConnectivityTimeout || cc.Policy != "" {
		t.Fatalf("connectivity_check defaults: %+v", cc)
	}
	off, err := Parse([]byte(base(dir)+"connectivity_check:\n  interval: 0s\n  policy: key.pem\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if off.ConnectivityCheck.Every() != 0 || off.ConnectivityCheck.Policy != filepath.Join(dir, "key.pem") {
		t.Fatalf("connectivity_check: %+v", off.ConnectivityCheck)
	}
}

func TestReadPassword(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadPassword("alice", pw, ""); err != nil || got != "s3cret" {
		t.Fatalf("file: %q %v", got, err)
	}
	t.Setenv("SCPCLIENT_TEST_PW", "from-env")
	if got, err := ReadPassword("alice", "", "SCPCLIENT_TEST_PW"); err != nil || got != "from-env" {
		t.Fatalf("env: %q %v", got, err)
	}
	if _, err := ReadPassword("alice", "", "SCPCLIENT_TEST_UNSET"); err == nil || !strings.Contains(err.Error(), "SCPCLIENT_TEST_UNSET") {
		t.Fatalf("unset env: %v", err)
	}
	if got, err := ReadPassword("", "", ""); err != nil || got != "" {
		t.Fatalf("no user: %q %v", got, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base("")))
	f.Add([]byte("site_role: [\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, dir)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}

// The documented example uses every key correctly; only its files (under /etc) are missing here.
func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile("../../examples/scpclient.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(data, t.TempDir())
	if err == nil {
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.Contains(line, "no such file or directory") {
			t.Errorf("examples/scpclient.yaml: %s", line)
		}
	}
}
