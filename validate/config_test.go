package validate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFileConfig(t *testing.T) {
	good := `proxy: http://127.0.0.1:3128
credentials_file: creds
ca_bundle: ca.pem
groups: [updates-and-servicing]
samples:
  "*.manage.microsoft.com": [sccm.manage.microsoft.com]
issuers:
  "*": [Microsoft RSA Root Certificate Authority 2017]
concurrency: 4
check_timeout: 10s
timeout: 1m
audit: [audit.log]
formats: [table, json]
`
	fc, err := ParseFileConfig("v.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if fc.Proxy != "http://127.0.0.1:3128" || fc.Concurrency != 4 || fc.Samples["*.manage.microsoft.com"][0] != "sccm.manage.microsoft.com" || len(fc.Formats) != 2 {
		t.Errorf("parsed %+v", fc)
	}
	bad := []struct{ text, want string }{
		{"", "v.yaml: empty configuration file"},
		{"proxy: http://x:1\nproxyy: y\n", "field proxyy not found"},
		{"timeout: soon\n", "v.yaml: timeout: want a positive duration"},
		{"check_timeout: -1s\n", "check_timeout: want a positive duration"},
		{"concurrency: 1000\n", "concurrency: want 1 to 256"},
		{"proxy: socks5://x:1\n", "want http://host:port or https://host:port"},
		{"proxy: http://user:pw@x:1\n", "credentials go in a file"},
		{"dns_server: localhost\n", "dns_server: want IP:port"},
		{"proxy: http://x:1\n---\nproxy: http://y:1\n", "only one YAML document"},
		{"groups: 3\n", "cannot unmarshal"},
	}
	for _, tt := range bad {
		if _, err := ParseFileConfig("v.yaml", []byte(tt.text)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.text, err, tt.want)
		}
	}
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "creds"), []byte("scp:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	shipped := []byte("version: 1\ngroups:\n  g:\n    enabled: true\n    hosts: [a.example.com]\n")
	fc := &FileConfig{Proxy: "http://127.0.0.1:1", CredentialsFile: "creds", Timeout: "3s", DNSServer: "127.0.0.1:53", Audit: []string{"a.log"}}
	cfg, err := fc.Build(dir, getenv, shipped, "builtin")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "scp" || cfg.Password != "s3cret" || cfg.Timeout != 3*time.Second || cfg.Policy.File != "builtin" || cfg.Resolve == nil {
		t.Errorf("built %+v", cfg)
	}
	if af, ok := cfg.Audit.(AuditFiles); !ok || af[0] != filepath.Join(dir, "a.log") {
		t.Errorf("audit %v", cfg.Audit)
	}
	// Environment credentials need both variables.
	env[EnvUser] = "scp"
	if _, err := (&FileConfig{Proxy: "http://127.0.0.1:1"}).Build(dir, getenv, shipped, "builtin"); err == nil || !strings.Contains(err.Error(), EnvPassword) {
		t.Errorf("missing password: %v", err)
	}
	env[EnvPassword] = "pw"
	cfg, err = (&FileConfig{Proxy: "http://127.0.0.1:1"}).Build(dir, getenv, shipped, "builtin")
	if err != nil || cfg.User != "scp" || cfg.Password != "pw" {
		t.Errorf("env credentials: %+v %v", cfg, err)
	}
	for _, tt := range []struct {
		fc   FileConfig
		want string
	}{
		{FileConfig{}, "proxy: required"},
		{FileConfig{Proxy: "http://x:1", Policy: "missing.yaml"}, "missing.yaml"},
		{FileConfig{Proxy: "http://x:1", CABundle: "creds"}, "no PEM certificate"},
		{FileConfig{Proxy: "http://x:1", CredentialsFile: "nope"}, "credentials file"},
	} {
		if _, err := tt.fc.Build(dir, func(string) string { return "" }, shipped, "builtin"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: got %v, want %q", tt.fc, err, tt.want)
		}
	}
}

func FuzzParseFileConfig(f *testing.F) {
	f.Add([]byte("proxy: http://127.0.0.1:3128\ntimeout: 1m\n"))
	f.Add([]byte("samples:\n  \"*.a.b\": [x.a.b]\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("a: &x 1\nb: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fc, err := ParseFileConfig("f.yaml", data)
		if err != nil {
			if fc != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		// Whatever parsed passes its own checks again.
		if err := fc.Check("again"); err != nil {
			t.Fatalf("parsed config fails Check: %v", err)
		}
	})
}
