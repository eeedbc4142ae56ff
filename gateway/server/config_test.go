package server

import (
	"strings"
	"testing"

	"github.com/scpgate/scpgate/policy"
)

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"defaults", "", ""},
		{"unknown key", "listen: [127.0.0.1:3128]\nlisen: x\n", "field lisen not found"},
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

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := LoadConfig("../../examples/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Load(cfg.Policy); err != nil {
		t.Fatalf("the example's policy: %v", err)
	}
}
