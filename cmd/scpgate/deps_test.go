package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The product binary must not link the simulated world: no simulator, no test CA playing
// Microsoft's roots. They live under sim/ and are linked by cmd/scpsim only.
func TestProductLinksNoSimulator(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/scpgate/scpgate/cmd/scpgate").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 10 {
		t.Fatalf("go list -deps listed only %d packages; the check would prove nothing", len(pkgs))
	}
	for _, p := range pkgs {
		if strings.HasPrefix(p, "github.com/scpgate/scpgate/sim/") || strings.HasPrefix(p, "github.com/scpgate/scpgate/integration") {
			t.Errorf("cmd/scpgate links %s; simulators belong to cmd/scpsim only", p)
		}
	}
}
