package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The product binary must not link the simulated world: no simulator, no test CA playing
// Microsoft's roots. They live under sim/ and are linked by cmd/scpsim only.
func TestProductLinksNoSimulator(t *testing.T) {
	// scpclient, the service connection point, ships too: it must not link the simulators either.
	for _, cmd := range []string{"scpgate", "scpclient"} {
		out, err := exec.Command("go", "list", "-deps", "github.com/scpgate/scpgate/cmd/"+cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps: %v\n%s", err, out)
		}
		pkgs := strings.Fields(string(out))
		if len(pkgs) < 10 {
			t.Fatalf("go list -deps listed only %d packages; the check would prove nothing", len(pkgs))
		}
		for _, p := range pkgs {
			if strings.HasPrefix(p, "github.com/scpgate/scpgate/sim/") || strings.HasPrefix(p, "github.com/scpgate/scpgate/integration") {
				t.Errorf("cmd/%s links %s; simulators belong to cmd/scpsim only", cmd, p)
			}
		}
	}
}
