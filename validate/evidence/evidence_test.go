package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scpgate/scpgate/validate"
)

var policyText = []byte("version: 1\ngroups: {}\n")

func report() *validate.Report {
	sum := sha256.Sum256(policyText)
	return &validate.Report{
		SchemaVersion: 1, Started: time.Unix(0, 0).UTC(), Finished: time.Unix(1, 0).UTC(),
		Policy:  validate.PolicyRef{File: "endpoints.yaml", Version: hex.EncodeToString(sum[:])},
		Outcome: validate.Outcome{Message: 11410, Failed: []string{}},
		Results: []validate.Result{
			{Check: validate.Check{ID: "a"}, Gateway: &validate.GatewayRecord{Found: true, ConnID: "c1", Line: `{"conn_id":"c1","decision":"allow"}` + "\n"}},
			{Check: validate.Check{ID: "b"}, Gateway: &validate.GatewayRecord{Found: false, ConnID: "c2"}},
			{Check: validate.Check{ID: "c"}, Gateway: &validate.GatewayRecord{Found: true, ConnID: "c3", Line: `{"conn_id":"c3","decision":"deny"}`}},
		},
	}
}

func TestWriteVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ev")
	digest, err := Write(dir, Bundle{Report: report(), Policy: policyText, GatewayPolicy: []byte(`{"version":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	man, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
	if s := sha256.Sum256(man); hex.EncodeToString(s[:]) != digest {
		t.Error("returned digest is not the manifest's sha256")
	}
	n, err := Verify(dir)
	if err != nil || n != 5 {
		t.Fatalf("fresh bundle: %d files, %v", n, err)
	}
	audit, _ := os.ReadFile(filepath.Join(dir, AuditFile))
	if string(audit) != `{"conn_id":"c1","decision":"allow"}`+"\n"+`{"conn_id":"c3","decision":"deny"}`+"\n" {
		t.Errorf("audit lines %q", audit)
	}
	// A second bundle never overwrites the first.
	if _, err := Write(dir, Bundle{Report: report(), Policy: policyText}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("overwrite: %v", err)
	}
}

func TestVerifyDetectsChanges(t *testing.T) {
	tests := []struct {
		name   string
		change func(dir string) error
		want   string
	}{
		{"one byte of the results", func(dir string) error { return flipByte(filepath.Join(dir, ResultsFile)) }, "results.json: sha256"},
		{"one byte of the policy", func(dir string) error { return flipByte(filepath.Join(dir, PolicyFile)) }, "policy.yaml: sha256"},
		{"an audit line removed", func(dir string) error { return os.WriteFile(filepath.Join(dir, AuditFile), nil, 0o644) }, "audit-matched.jsonl: sha256"},
		{"a file added", func(dir string) error { return os.WriteFile(filepath.Join(dir, "extra.txt"), []byte("x"), 0o644) }, "extra.txt: not in the manifest"},
		{"a file removed", func(dir string) error { return os.Remove(filepath.Join(dir, PolicyVersionFile)) }, "policy-version.txt: missing"},
		{"manifest garbled", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, ManifestFile), []byte("nonsense\n"), 0o644)
		}, "MANIFEST.sha256 line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ev")
			if _, err := Write(dir, Bundle{Report: report(), Policy: policyText}); err != nil {
				t.Fatal(err)
			}
			if err := tt.change(dir); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(dir)
			var ve VerifyError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want a VerifyError with %q", err, tt.want)
			}
		})
	}
}

func TestWriteRefusesForeignPolicy(t *testing.T) {
	_, err := Write(filepath.Join(t.TempDir(), "ev"), Bundle{Report: report(), Policy: []byte("version: 1\n")})
	if err == nil || !strings.Contains(err.Error(), "not the one the checks were derived from") {
		t.Errorf("got %v", err)
	}
}

func flipByte(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b[len(b)/2] ^= 0x01
	return os.WriteFile(path, b, 0o644)
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(strings.Repeat("a", 64) + "  results.json\n"))
	f.Add([]byte(strings.Repeat("a", 64) + "  ../etc/passwd\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		for name, sum := range m {
			if name != filepath.Base(name) || strings.ContainsAny(name, `/\`) || name == ".." || len(sum) != 64 {
				t.Fatalf("accepted %q %q", name, sum)
			}
		}
	})
}
