package server

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scpgate/scpgate/gateway/proxyauth"
	"github.com/scpgate/scpgate/internal/yamlpos"
	"github.com/scpgate/scpgate/sim/testca"
)

// checkDir is a folder with a gateway.yaml and what it names.
type checkDir struct {
	t   *testing.T
	dir string
}

func newCheckDir(t *testing.T) *checkDir {
	t.Helper()
	d := &checkDir{t, t.TempDir()}
	policy, err := os.ReadFile("../../endpoints.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d.write("endpoints.yaml", string(policy))
	hash, err := proxyauth.HashPassword("s3cret", 4)
	if err != nil {
		t.Fatal(err)
	}
	d.write("users.htpasswd", "scp:"+hash+"\n")
	ca, err := testca.New("check test root")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("gw.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := testca.WriteCertFiles(d.dir, "gw", cert); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(d.dir, "log"), 0o755)
	return d
}

func (d *checkDir) write(name, content string) string {
	d.t.Helper()
	p := filepath.Join(d.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		d.t.Fatal(err)
	}
	return p
}

const checkConfig = `listen: [127.0.0.1:3128]
tls_listen: [127.0.0.1:3129]
tls:
  cert_file: gw.crt
  key_file: gw.key
admin: 127.0.0.1:9090
policy: endpoints.yaml
auth:
  htpasswd: users.htpasswd
audit:
  path: log/audit.log
`

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		config string            // replaces checkConfig when set
		edit   func(d *checkDir) // breaks something
		want   []string          // each problem, "FILE" is the folder
	}{
		{"all good", "", nil, nil},
		{"missing policy", "", func(d *checkDir) { os.Remove(filepath.Join(d.dir, "endpoints.yaml")) },
			[]string{"FILE/gateway.yaml:7:9: policy: FILE/endpoints.yaml: no such file or directory (correct the path"}},
		{"broken policy", "", func(d *checkDir) { d.write("endpoints.yaml", "version: 1\ngroups:\n  g:\n    hosts: [a.example.com\n") },
			[]string{"FILE/endpoints.yaml:5:1: did not find expected ',' or ']'"}},
		{"missing htpasswd", "", func(d *checkDir) { os.Remove(filepath.Join(d.dir, "users.htpasswd")) },
			[]string{"FILE/gateway.yaml:9:13: auth.htpasswd: open FILE/users.htpasswd: no such file or directory (create it with `scpgate passwd -file FILE/users.htpasswd USER`)"}},
		{"bad htpasswd line", "", func(d *checkDir) { d.write("users.htpasswd", "scp:{SHA}abc\n") },
			[]string{"FILE/users.htpasswd:1:5: user \"scp\" uses SHA-1"}},
		{"missing certificate and key", "", func(d *checkDir) {
			os.Remove(filepath.Join(d.dir, "gw.crt"))
			os.Remove(filepath.Join(d.dir, "gw.key"))
		}, []string{
			"FILE/gateway.yaml:4:14: tls.cert_file: open FILE/gw.crt: no such file or directory (put the PEM file there, or correct the path)",
			"FILE/gateway.yaml:5:13: tls.key_file: open FILE/gw.key: no such file or directory (put the PEM file there, or correct the path)",
		}},
		{"key of another certificate", "", func(d *checkDir) {
			ca, _ := testca.New("other")
			c, _ := ca.Issue("gw.test")
			testca.WriteCertFiles(filepath.Join(d.dir, "log"), "gw", c)
			data, _ := os.ReadFile(filepath.Join(d.dir, "log", "gw.key"))
			d.write("gw.key", string(data))
		}, []string{"FILE/gateway.yaml:4:14: tls.cert_file: FILE/gw.crt and FILE/gw.key are not a certificate and its key"}},
		{"audit folder missing", "", func(d *checkDir) { os.Remove(filepath.Join(d.dir, "log")) },
			[]string{"FILE/gateway.yaml:11:9: audit.path: the folder FILE/log does not exist"}},
		{"incomplete ACME settings", strings.Replace(checkConfig, "  cert_file: gw.crt\n  key_file: gw.key\n", "  acme:\n    domains: [gw.test]\n", 1), nil,
			[]string{
				"FILE/gateway.yaml:4:3: tls.acme: directory_url is empty",
				"FILE/gateway.yaml:4:3: tls.acme: email is empty",
				"FILE/gateway.yaml:4:3: tls.acme: storage_dir is empty",
			}},
		// A sub-key that is there but wrong is pointed at; one left out, at "acme:".
		{"wrong ACME settings", strings.Replace(checkConfig, "  cert_file: gw.crt\n  key_file: gw.key\n",
			"  acme:\n    directory_url: http://acme.test/dir\n    trusted_roots_file: roots.pem\n    email: not an address\n    domains: [gw.test, \"*.gw.test\"]\n", 1), nil,
			[]string{
				`FILE/gateway.yaml:5:20: tls.acme: directory_url "http://acme.test/dir" must be an https:// URL`,
				`FILE/gateway.yaml:6:25: tls.acme: trusted_roots_file: open FILE/roots.pem: no such file or directory`,
				`FILE/gateway.yaml:7:12: tls.acme: email "not an address" is not a plain address`,
				`FILE/gateway.yaml:8:14: tls.acme: domain "*.gw.test": wildcards need the DNS-01 challenge`,
				"FILE/gateway.yaml:4:3: tls.acme: storage_dir is empty",
			}},
		{"config problems stop there", strings.Replace(checkConfig, "listen:", "listne:", 1), nil,
			[]string{`FILE/gateway.yaml:1:1: unknown key "listne" (did you mean "listen"?)`}},
		{"everything at once", "", func(d *checkDir) {
			os.Remove(filepath.Join(d.dir, "users.htpasswd"))
			os.Remove(filepath.Join(d.dir, "gw.crt"))
			os.Remove(filepath.Join(d.dir, "log"))
			d.write("endpoints.yaml", "version: 1\nfoo: 1\n")
		}, []string{
			`FILE/endpoints.yaml:2:1: unknown key "foo" at top level`,
			"FILE/gateway.yaml:9:13: auth.htpasswd: open FILE/users.htpasswd",
			"FILE/gateway.yaml:4:14: tls.cert_file: open FILE/gw.crt",
			"FILE/gateway.yaml:11:9: audit.path: the folder FILE/log does not exist",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newCheckDir(t)
			cfg := checkConfig
			if tt.config != "" {
				cfg = tt.config
			}
			path := d.write("gateway.yaml", cfg)
			if tt.edit != nil {
				tt.edit(d)
			}
			err := Check(path)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected problems:\n%v", err)
				}
				return
			}
			var list yamlpos.List
			if !errors.As(err, &list) {
				t.Fatalf("%v is not a yamlpos.List", err)
			}
			if len(list) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(list), len(tt.want), err)
			}
			for i, w := range tt.want {
				w = strings.ReplaceAll(w, "FILE", d.dir)
				if !strings.HasPrefix(list[i].Error(), w) {
					t.Errorf("problem %d:\n got %s\nwant %s...", i, list[i], w)
				}
			}
		})
	}
}

func TestPACProxy(t *testing.T) {
	host := func() (string, error) { return "gw.corp.example", nil }
	noHost := func() (string, error) { return "", errors.New("no name") }
	tests := []struct {
		bound []string
		name  func() (string, error)
		want  string
	}{
		{[]string{"10.1.2.3:3128", "10.1.2.4:3128"}, host, "10.1.2.3:3128"},
		{[]string{"0.0.0.0:3128"}, host, "gw.corp.example:3128"},
		{[]string{"[::]:8080"}, host, "gw.corp.example:8080"},
		{[]string{"0.0.0.0:3128"}, noHost, ""},
		{nil, host, ""},
	}
	for _, tt := range tests {
		if got := pacProxy(tt.bound, tt.name); got != tt.want {
			t.Errorf("pacProxy(%v) = %q, want %q", tt.bound, got, tt.want)
		}
	}
}
