package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

type pos struct {
	line, col int
	msg       string // substring
}

func checkErrors(t *testing.T, src string, want []pos) {
	t.Helper()
	p, err := Parse("e.yaml", []byte(src))
	if err == nil {
		t.Fatalf("Parse succeeded: %+v", p)
	}
	if p != nil {
		t.Fatalf("Parse returned a policy with an error")
	}
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error is %T, want ErrorList: %v", err, err)
	}
	if len(list) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(list), len(want), err)
	}
	for i, w := range want {
		e := list[i]
		if e.File != "e.yaml" || e.Line != w.line || e.Col != w.col || !strings.Contains(e.Msg, w.msg) {
			t.Errorf("error %d = %q, want e.yaml:%d:%d: ...%s...", i, e.Error(), w.line, w.col, w.msg)
		}
	}
}

func TestParseErrorPositions(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []pos
	}{
		{"unknown top-level key", "version: 1\nfoo: bar\n",
			[]pos{{2, 1, `unknown key "foo" at top level`}}},
		{"unknown group key", "version: 1\ngroups:\n  g:\n    enabled: true\n    prots: [443]\n",
			[]pos{{5, 5, `unknown key "prots" in group "g"`}}},
		{"bad pattern", "version: 1\ngroups:\n  g:\n    hosts:\n      - go.microsoft.com\n      - \"*.com\"\n",
			[]pos{{6, 9, "two literal labels"}}},
		{"bad pattern flow", "version: 1\ngroups:\n  g:\n    hosts: [a.example.com, \"foo*.com\"]\n",
			[]pos{{4, 28, "two literal labels"}}},
		{"non-punycode", "version: 1\ngroups:\n  g:\n    hosts:\n      - bücher.example\n",
			[]pos{{5, 9, "write it as punycode: xn--bcher-kva.example"}}},
		{"bad port", "version: 1\ngroups:\n  g:\n    ports: [443, 0, 70000]\n",
			[]pos{{4, 18, "port 0 out of range"}, {4, 21, "port 70000 out of range"}}},
		{"port wrong type", "version: 1\ngroups:\n  g:\n    ports: [\"443\"]\n",
			[]pos{{4, 13, "want a port number"}}},
		{"bad CIDR", "version: 1\ngroups:\n  g:\n    addresses:\n      - 203.0.113.0/33\n      - 203.0.113.5/24\n      - \"::ffff:1.2.3.4/128\"\n",
			[]pos{{5, 9, "invalid CIDR"}, {6, 9, "host bits set (did you mean 203.0.113.0/24?)"}, {7, 9, "IPv4-mapped"}}},
		{"bad mode and sni and method", "version: 1\nmode: strict\ngroups:\n  g:\n    sni: maybe\n    methods: [CONNECT, TRACE]\n    mode: Report\n",
			[]pos{{2, 7, `unknown mode "strict"`}, {5, 10, `unknown sni mode "maybe"`}, {6, 24, `unknown method "TRACE"`}, {7, 11, `unknown mode "Report"`}}},
		{"wrong types", "version: 1\ngroups:\n  g:\n    enabled: yes\n    hosts: go.microsoft.com\n    description: [a]\n",
			[]pos{{4, 14, "want true or false"}, {5, 12, "want a list"}, {6, 18, "want a string"}}},
		{"duplicate group", "version: 1\ngroups:\n  g:\n    enabled: true\n  g:\n    enabled: false\n",
			[]pos{{5, 3, `duplicate group name "g" (first at line 3)`}}},
		{"duplicate host", "version: 1\ngroups:\n  g:\n    hosts: [go.microsoft.com, Go.Microsoft.Com.]\n",
			[]pos{{4, 31, `duplicate host "go.microsoft.com"`}}},
		{"duplicate key", "version: 1\ngroups:\n  g:\n    enabled: true\n    enabled: false\n",
			[]pos{{5, 5, `duplicate key "enabled"`}}},
		{"missing version", "groups: {}\n", []pos{{1, 1, `missing "version: 1"`}}},
		{"bad version", "version: 2\n", []pos{{1, 10, "version: want 1"}}},
		{"empty file", "", []pos{{1, 1, "empty policy file"}}},
		{"comment only", "# nothing\n", []pos{{1, 1, "empty policy file"}}},
		{"not a mapping", "- a\n- b\n", []pos{{1, 1, "top level: want a mapping"}}},
		{"yaml syntax", "version: 1\ngroups:\n  g: [\n", []pos{{4, 1, "did not find expected node content"}}},
		{"unclosed flow list", "version: 1\ngroups:\n  g:\n    enabled: true\n    hosts: [a.example.com, b.example.com\n    ports: [443]\n",
			[]pos{{6, 10, "did not find expected ',' or ']' (in the flow list [...] that starts at 5:12)"}}},
		{"tab", "version: 1\ngroups:\n  g:\n\tenabled: true\n", []pos{{4, 1, "tabs are not allowed for indentation"}}},
		{"unknown key with suggestion", "version: 1\ngroups:\n  g:\n    enabeld: true\n", []pos{{4, 5, `unknown key "enabeld" in group "g" (did you mean "enabled"?)`}}},
		{"two documents", "version: 1\n---\nversion: 1\n", []pos{{2, 1, "only one YAML document"}}},
		{"alias", "version: 1\ngroups:\n  g:\n    hosts: &h [a.example.com]\n  h:\n    hosts: *h\n",
			[]pos{{6, 12, "aliases are not supported"}}},
		{"bad doc URL", "version: 1\ngroups:\n  g:\n    doc: learn.microsoft.com\n", []pos{{4, 10, "want an http(s) URL"}}},
		{"bad group name", "version: 1\ngroups:\n  \"bad name\":\n    enabled: true\n", []pos{{3, 3, `group "bad name"`}}},
		{"IP in hosts", "version: 1\ngroups:\n  g:\n    hosts: [10.0.0.1]\n", []pos{{4, 13, "list it under addresses as 10.0.0.1/32"}}},
		{"bad deny", "version: 1\ndeny: [\"*\", ok.example.com, ok.example.com]\n",
			[]pos{{2, 8, "deny: pattern"}, {2, 29, "deny: duplicate pattern"}}},
		{"empty ports", "version: 1\ngroups:\n  g:\n    ports: []\n", []pos{{4, 12, "at least one port"}}},
		{"users", "version: 1\ngroups:\n  g:\n    users: [alice, alice, \"\"]\n",
			[]pos{{4, 20, `duplicate user "alice"`}, {4, 27, "invalid user name"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkErrors(t, tt.src, tt.want) })
	}
}

// A file with several problems reports all of them, in file order.
func TestParseReportsEveryError(t *testing.T) {
	src := `version: 1
mode: enforce
colour: blue
deny: ["*.com"]
groups:
  updates-and-servicing:
    enabled: true
    ports: [443, 65536]
    hosts:
      - go.microsoft.com
      - "*"
      - ok.example.com
      - münchen.example
  usage-data:
    enabled: maybe
    addresses: [10.0.0.0/8, 10.1.2.3/8, not-a-cidr]
    sni: off
    unknown: 1
`
	want := []pos{
		{3, 1, `unknown key "colour"`},
		{4, 8, "two literal labels"},
		{8, 18, "port 65536"},
		{11, 9, "two literal labels"},
		{13, 9, "write it as punycode: xn--mnchen-3ya.example"},
		{15, 14, "want true or false"},
		{16, 29, "host bits set"},
		{16, 41, "invalid CIDR"},
		{18, 5, `unknown key "unknown"`},
	}
	checkErrors(t, src, want)

	_, err := Parse("e.yaml", []byte(src))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) || !strings.HasPrefix(lines[0], "e.yaml:3:1: ") {
		t.Errorf("ErrorList.Error() = %q", err.Error())
	}
	var pe *PosError
	if !errors.As(err, &pe) || pe.Line != 3 {
		t.Errorf("errors.As(*PosError) = %v", pe)
	}
}

func TestParseDefaults(t *testing.T) {
	src := []byte(`version: 1
mode: report
deny: [Evil.Example.COM.]
groups:
  plain:
    hosts: [Go.Microsoft.com.]
  full:
    description: everything set
    doc: https://learn.microsoft.com/x
    enabled: true
    ports: [80, 0x1bb]
    methods: [get, HEAD]
    sni: off
    mode: enforce
    users: [alice, bob]
    anonymous: true
    addresses: [203.0.113.0/24, 192.0.2.1, "2001:db8::/32"]
    hosts: ["*.manage.microsoft.com"]
  nulls:
    hosts:
    users:
    addresses:
`)
	p, err := Parse("p.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	if p.Version != hex.EncodeToString(sum[:]) || p.File != "p.yaml" || p.Mode != ModeReport {
		t.Errorf("policy header: version=%s file=%s mode=%s", p.Version, p.File, p.Mode)
	}
	if !reflect.DeepEqual(p.Deny, []string{"evil.example.com"}) {
		t.Errorf("Deny = %q", p.Deny)
	}
	if len(p.Groups) != 3 || p.Groups[0].Name != "plain" || p.Groups[1].Name != "full" || p.Groups[2].Name != "nulls" {
		t.Fatalf("groups out of file order: %+v", p.Groups)
	}
	plain := p.Group("plain")
	wantPlain := &Group{Name: "plain", Enabled: false, Hosts: []string{"go.microsoft.com"}, Ports: []uint16{443},
		Mode: ModeReport, SNI: SNIMatch, Methods: []string{"CONNECT"}}
	if !reflect.DeepEqual(plain, wantPlain) {
		t.Errorf("plain = %+v\nwant %+v", plain, wantPlain)
	}
	full := p.Group("full")
	wantFull := &Group{Name: "full", Description: "everything set", Doc: "https://learn.microsoft.com/x", Enabled: true,
		Hosts: []string{"*.manage.microsoft.com"}, Ports: []uint16{80, 443},
		Addresses: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8::/32")},
		Users:     []string{"alice", "bob"}, Anonymous: true, Mode: ModeEnforce, SNI: SNIOff, Methods: []string{"GET", "HEAD"}}
	if !reflect.DeepEqual(full, wantFull) {
		t.Errorf("full = %+v\nwant %+v", full, wantFull)
	}
	if p.Group("missing") != nil {
		t.Error("Group(missing) != nil")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(path, []byte("version: 1\nbogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 || list[0].File != path || list[0].Line != 2 {
		t.Fatalf("Load error = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v", err)
	}
	big := make([]byte, MaxFileSize+1)
	if _, err := Parse("big.yaml", big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Parse(big) = %v", err)
	}
}
