package yamlpos

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type inlined struct {
	Idle time.Duration `yaml:"idle"`
	Hook func()        `yaml:"-"`
}

type testConfig struct {
	Listen   []string `yaml:"listen"`
	Admin    string   `yaml:"admin"`
	Watch    *bool    `yaml:"watch"`
	Timeouts struct {
		inlined `yaml:",inline"`
		Drain   time.Duration `yaml:"drain"`
	} `yaml:"timeouts"`
	Limits struct {
		MaxConnections int `yaml:"max_connections"`
	} `yaml:"limits"`
	TLS *struct {
		CertFile string `yaml:"cert_file"`
	} `yaml:"tls"`
	hidden string //nolint:unused // an unexported field is never a key
}

func TestDecode(t *testing.T) {
	src := "listen: [127.0.0.1:3128]\nadmin: 127.0.0.1:9090\nwatch: false\ntimeouts:\n  idle: 10m\ntls:\n  cert_file: a.pem\n"
	var c testConfig
	pos, err := Decode("gw.yaml", []byte(src), &c)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listen) != 1 || c.Admin != "127.0.0.1:9090" || c.Watch == nil || *c.Watch || c.Timeouts.Idle != 10*time.Minute || c.TLS == nil || c.TLS.CertFile != "a.pem" {
		t.Fatalf("%+v", c)
	}
	for key, want := range map[string]string{
		"tls.cert_file":   "gw.yaml:7:14: tls.cert_file: gone",
		"listen[0]":       "gw.yaml:1:10: listen[0]: gone",
		"timeouts.drain":  "gw.yaml:4:1: timeouts.drain: gone",  // not in the file: its section
		"limits.anything": "gw.yaml:1:1: limits.anything: gone", // neither: the top
	} {
		if got := pos.Errorf(key, "gone").Error(); got != want {
			t.Errorf("Errorf(%q) = %q, want %q", key, got, want)
		}
	}
	if _, err := Decode("gw.yaml", nil, &c); err != nil {
		t.Fatalf("empty file: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
	}{
		{"unknown key with suggestion", "listen: [a:1]\nadmin: b:2\n\n\n\n\nlistne: [c:3]\n",
			[]string{`gateway.yaml:7:1: unknown key "listne" (did you mean "listen"?)`}},
		{"nested unknown key", "timeouts:\n  idle: 10m\n  dran: 5s\n",
			[]string{`gateway.yaml:3:3: unknown key "dran" in timeouts (did you mean "drain"?)`}},
		{"unknown key, no suggestion", "frobnicate: 1\n",
			[]string{`gateway.yaml:1:1: unknown key "frobnicate" (known: listen, admin, watch, timeouts, limits, tls)`}},
		{"wrong types, every one", "listen: 127.0.0.1:3128\nwatch: maybe\ntimeouts:\n  idle: ten minutes\nlimits:\n  max_connections: many\n",
			[]string{
				`gateway.yaml:1:9: listen: want a list of strings, got the string "127.0.0.1:3128"`,
				`gateway.yaml:2:8: watch: want true or false, got the string "maybe"`,
				`gateway.yaml:4:9: timeouts.idle: want a duration such as 30s, 5m or 1h, got the string "ten minutes"`,
				`gateway.yaml:6:20: limits.max_connections: want a whole number, got the string "many"`,
			}},
		{"section not a mapping", "timeouts: 5s\n", []string{`gateway.yaml:1:11: timeouts: want a mapping of keys, got the string "5s"`}},
		{"top not a mapping", "- a\n", []string{`gateway.yaml:1:1: the file: want a mapping of keys, got a list`}},
		{"duplicate key", "admin: a\nadmin: b\n", []string{`gateway.yaml:2:1: duplicate key "admin" (first at line 1)`}},
		{"syntax", "listen: [a\nadmin: b\n", []string{`gateway.yaml:2:6: did not find expected ',' or ']' (in the flow list [...] that starts at 1:9)`}},
		{"tab", "timeouts:\n\tidle: 5s\n", []string{`gateway.yaml:2:1: tabs are not allowed for indentation`}},
		{"two documents", "admin: a\n---\nadmin: b\n", []string{`gateway.yaml:2:1: only one YAML document is allowed`}},
		{"alias", "admin: &a x\nlisten: [*a]\n", []string{`gateway.yaml:2:10: listen[0]: YAML aliases are not supported here`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c testConfig
			_, err := Decode("gateway.yaml", []byte(tt.src), &c)
			var list List
			if !errors.As(err, &list) {
				t.Fatalf("error %v is not a List", err)
			}
			if len(list) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(list), len(tt.want), err)
			}
			for i, w := range tt.want {
				if got := list[i].Error(); !strings.HasPrefix(got, w) {
					t.Errorf("error %d:\n got %s\nwant %s", i, got, w)
				}
			}
		})
	}
}
