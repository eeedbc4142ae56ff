// Package evidence writes and verifies the auditor's bundle of a validation run: the JSON
// results, the gateway audit lines matched to the probes, the policy file and its version hash,
// the gateway's /v1/policy answer, and a manifest of SHA-256 hashes of every file in the
// bundle (sha256sum format), so anyone can check that nothing was edited afterwards.
package evidence

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/scpgate/scpgate/internal/atomicfile"
	"github.com/scpgate/scpgate/validate"
	"github.com/scpgate/scpgate/validate/render"
)

// File names inside a bundle.
const (
	ManifestFile      = "MANIFEST.sha256"
	ResultsFile       = "results.json"
	AuditFile         = "audit-matched.jsonl"
	PolicyFile        = "policy.yaml"
	PolicyVersionFile = "policy-version.txt"
	GatewayPolicyFile = "gateway-policy.json"
)

// Bundle is what goes into the evidence folder.
type Bundle struct {
	Report *validate.Report
	// Policy is the policy file's content, exactly as read (its SHA-256 is the version).
	Policy []byte
	// GatewayPolicy is the gateway's /v1/policy answer (nil: not fetched).
	GatewayPolicy []byte
}

// Write creates dir (it must not exist, or be empty) and writes the bundle, the manifest last.
// It returns the manifest's SHA-256: recorded elsewhere (a ticket, a mail), it also proves the
// manifest itself was not rewritten.
func Write(dir string, b Bundle) (string, error) {
	if b.Report == nil {
		return "", errors.New("evidence: no report")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("evidence: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("evidence: %w", err)
	}
	if len(entries) > 0 {
		return "", fmt.Errorf("evidence: %s is not empty: give a new folder (a bundle is never overwritten)", dir)
	}
	var results bytes.Buffer
	if err := render.JSON(&results, b.Report); err != nil {
		return "", err
	}
	sum := sha256.Sum256(b.Policy)
	version := hex.EncodeToString(sum[:])
	if b.Report.Policy.Version != "" && b.Report.Policy.Version != version {
		return "", fmt.Errorf("evidence: the policy content (sha256 %s) is not the one the checks were derived from (%s)", version, b.Report.Policy.Version)
	}
	files := map[string][]byte{
		ResultsFile:       results.Bytes(),
		AuditFile:         auditLines(b.Report),
		PolicyFile:        b.Policy,
		PolicyVersionFile: []byte(fmt.Sprintf("sha256 %s  %s\nsource %s\n", version, PolicyFile, b.Report.Policy.File)),
	}
	if b.GatewayPolicy != nil {
		files[GatewayPolicyFile] = b.GatewayPolicy
	}
	var manifest strings.Builder
	for _, name := range sortedKeys(files) {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), files[name], 0o644); err != nil {
			return "", fmt.Errorf("evidence: %w", err)
		}
		s := sha256.Sum256(files[name])
		fmt.Fprintf(&manifest, "%s  %s\n", hex.EncodeToString(s[:]), name)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest.String()), 0o644); err != nil {
		return "", fmt.Errorf("evidence: %w", err)
	}
	ms := sha256.Sum256([]byte(manifest.String()))
	return hex.EncodeToString(ms[:]), nil
}

// auditLines are the raw gateway audit lines matched to the probes, in result order.
func auditLines(rep *validate.Report) []byte {
	var b bytes.Buffer
	for _, r := range rep.Results {
		if r.Gateway != nil && r.Gateway.Found && r.Gateway.Line != "" {
			b.WriteString(strings.TrimRight(r.Gateway.Line, "\r\n"))
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ParseManifest reads a sha256sum-style manifest: "<64 hex>  <name>" per line. Names must be
// plain file names (no directories, no "..").
func ParseManifest(data []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 || name == "" {
			return nil, fmt.Errorf("%s line %d: want \"<sha256>  <file>\"", ManifestFile, n)
		}
		if _, err := hex.DecodeString(sum); err != nil || strings.ToLower(sum) != sum {
			return nil, fmt.Errorf("%s line %d: %q is not a lowercase hex SHA-256", ManifestFile, n, sum)
		}
		if name != filepath.Base(name) || strings.ContainsAny(name, `/\`) || name == "." || name == ".." || name == ManifestFile {
			return nil, fmt.Errorf("%s line %d: %q is not a file name of the bundle", ManifestFile, n, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s line %d: %s listed twice", ManifestFile, n, name)
		}
		out[name] = sum
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestFile, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is empty", ManifestFile)
	}
	return out, nil
}

// Problem is one reason a bundle does not verify.
type Problem struct {
	File string
	Msg  string
}

// VerifyError lists every problem found.
type VerifyError []Problem

func (e VerifyError) Error() string {
	s := make([]string, len(e))
	for i, p := range e {
		s[i] = p.File + ": " + p.Msg
	}
	return "evidence does not verify:\n  " + strings.Join(s, "\n  ")
}

// Verify checks a bundle: every listed file has its hash, no file is missing or added, the
// required files are there, and the policy's hash is the version the results name. It returns
// the number of files verified; the error is a VerifyError when the bundle was changed.
func Verify(dir string) (int, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return 0, fmt.Errorf("evidence: %w", err)
	}
	want, err := ParseManifest(data)
	if err != nil {
		return 0, VerifyError{{File: ManifestFile, Msg: err.Error()}}
	}
	var probs VerifyError
	for _, req := range []string{ResultsFile, AuditFile, PolicyFile, PolicyVersionFile} {
		if _, ok := want[req]; !ok {
			probs = append(probs, Problem{File: req, Msg: "not in the manifest"})
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("evidence: %w", err)
	}
	for _, e := range entries {
		if _, ok := want[e.Name()]; !ok && e.Name() != ManifestFile {
			probs = append(probs, Problem{File: e.Name(), Msg: "not in the manifest (added after the bundle was written)"})
		}
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		got, err := fileSHA256(filepath.Join(dir, n))
		switch {
		case errors.Is(err, os.ErrNotExist):
			probs = append(probs, Problem{File: n, Msg: "missing"})
		case err != nil:
			probs = append(probs, Problem{File: n, Msg: err.Error()})
		case got != want[n]:
			probs = append(probs, Problem{File: n, Msg: fmt.Sprintf("sha256 %s, manifest says %s: changed", got, want[n])})
		}
	}
	if len(probs) == 0 {
		probs = append(probs, crossCheck(dir, want)...)
	}
	if len(probs) > 0 {
		return 0, probs
	}
	return len(names), nil
}

// crossCheck ties the files to each other: the policy's hash is the version in
// policy-version.txt and in the results.
func crossCheck(dir string, want map[string]string) []Problem {
	var probs []Problem
	pv, _ := os.ReadFile(filepath.Join(dir, PolicyVersionFile))
	if !bytes.HasPrefix(pv, []byte("sha256 "+want[PolicyFile]+" ")) {
		probs = append(probs, Problem{File: PolicyVersionFile, Msg: "does not name the policy file's sha256"})
	}
	raw, _ := os.ReadFile(filepath.Join(dir, ResultsFile))
	var res struct {
		Policy struct {
			Version string `json:"version"`
		} `json:"policy"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		probs = append(probs, Problem{File: ResultsFile, Msg: "not JSON: " + err.Error()})
	} else if res.Policy.Version != want[PolicyFile] {
		probs = append(probs, Problem{File: ResultsFile, Msg: "names policy version " + res.Policy.Version + ", not the bundled policy's sha256"})
	}
	return probs
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
