package server

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scpgate/scpgate/internal/yamlpos"

	"github.com/scpgate/scpgate/policy"
)

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"defaults", "", ""},
		{"unknown key", "listen: [127.0.0.1:3128]\nlisen: x\n", `2:1: unknown key "lisen" (did you mean "listen"?)`},
		{"idle too short", "timeouts: {idle: 30s}\n", "below the minimum"},
		{"bad listen", "listen: [localhost:3128]\n", "not IP:port"},
		{"bad range", "allow_ranges: [10.0.0.0/33]\n", "allow_ranges"},
		{"bad dns", "dns: {servers: [dns.example]}\n", "dns.servers"},
		{"small headers", "limits: {max_header_bytes: 10}\n", "max_header_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml), "")
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// Every problem of a gateway.yaml is reported at path:line:col: where the key or value is.
func TestLoadConfigPositions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	src := `# a gateway
listen:
  - 127.0.0.1:3128
  - localhost:3129
admin: 127.0.0.1:9090
timeouts:
  idle: 30s
  listne: 5s
dns:
  servers: [192.0.2.53:53, dns.example]
allow_ranges: [10.0.0.0/33]
limits:
  max_header_bytes: 10
  burst: many
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	var list yamlpos.List
	if !errors.As(err, &list) {
		t.Fatalf("%v is not a yamlpos.List", err)
	}
	// Type and key errors come first (the values are not validated until they decode).
	want := []string{
		path + `:8:3: unknown key "listne" in timeouts (known: read_header, dial, dns, idle, lifetime, response_header, drain)`,
		path + `:14:10: limits.burst: want a whole number, got the string "many"`,
	}
	if len(list) != len(want) {
		t.Fatalf("got %d errors:\n%v", len(list), err)
	}
	for i, w := range want {
		if list[i].Error() != w {
			t.Errorf("error %d:\n got %s\nwant %s", i, list[i], w)
		}
	}
	// Fixed those, the values are checked, each at its place.
	src = strings.Replace(strings.Replace(src, "  listne: 5s\n", "", 1), "  burst: many\n", "", 1)
	os.WriteFile(path, []byte(src), 0o644)
	_, err = LoadConfig(path)
	if !errors.As(err, &list) {
		t.Fatalf("%v is not a yamlpos.List", err)
	}
	want = []string{
		path + `:4:5: listen[1]: "localhost:3129" is not IP:port`,
		path + `:7:9: timeouts.idle: 30s is below the minimum`,
		path + `:9:28: dns.servers[1]: "dns.example" is not IP:port`,
		path + `:10:16: allow_ranges[0]: "10.0.0.0/33" is not a CIDR or address`,
		path + `:12:21: limits.max_header_bytes: 10 is too small`,
	}
	if len(list) != len(want) {
		t.Fatalf("got %d errors:\n%v", len(list), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(list[i].Error(), w) {
			t.Errorf("error %d:\n got %s\nwant %s...", i, list[i], w)
		}
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := LoadConfig("../../examples/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Load(cfg.Policy); err != nil {
		t.Fatalf("the example's policy: %v", err)
	}
}
