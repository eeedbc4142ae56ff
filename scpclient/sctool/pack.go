// Package sctool is the service connection tool of offline mode (ServiceConnectionTool.exe's
// verbs): -prepare writes the usage data to a file on the SCP, -connect uploads usage files and
// downloads update packs on a machine with internet access, -import places a pack's verified
// payloads on the SCP, -export writes the usage data as CSV for review. Prepare, import and
// export never build an HTTP client, so they cannot open a connection.
//
// The files are the project's own formats (docs/scpclient.md), not Microsoft CABs: a usage file
// is a usage.Package (".scpusage.json"); an update pack is a folder per hierarchy holding the
// signed manifest exactly as the cloud served it, an index (pack.json) and the payloads.
package sctool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/scpgate/scpgate/manifest"
)

// PackFormat identifies an update pack index.
const PackFormat = "scpclient-updatepack/1"

// PackIndexName is the index file in a pack folder.
const PackIndexName = "pack.json"

// LogFileName is the tool's log; it is overwritten on every run.
const LogFileName = "ServiceConnectionTool.log"

// Component is the tool's name in its log lines.
const Component = "ServiceConnectionTool"

// Pack is the index of one hierarchy's update pack. It is not signed: import takes every size
// and hash from the signed manifest beside it, and the hierarchy binding only routes packs.
type Pack struct {
	Format          string       `json:"format"`
	HierarchyIDHash string       `json:"hierarchyIdHash"`
	SiteVersion     string       `json:"siteVersion"`
	Selection       string       `json:"selection"`
	Created         time.Time    `json:"created"`
	Manifest        string       `json:"manifest"` // file name of the signed manifest
	UsagePackages   []string     `json:"usagePackages"`
	Updates         []PackUpdate `json:"updates"`
}

// PackUpdate is one payload in a pack.
type PackUpdate struct {
	GUID    string `json:"guid"`
	Kind    string `json:"kind"`
	Version string `json:"version"`
	File    string `json:"file"` // relative to the pack folder, forward slashes
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
}

// PackDirName is the pack folder of a hierarchy: the first 16 hex digits of its id's hash.
func PackDirName(hierarchyIDHash string) string {
	if len(hierarchyIDHash) < 16 {
		return hierarchyIDHash
	}
	return "hierarchy-" + hierarchyIDHash[:16]
}

// ErrBadPack is returned (wrapped) for a pack that does not parse or does not verify.
var ErrBadPack = errors.New("update pack does not verify")

// ParsePack reads a pack index strictly.
func ParsePack(data []byte) (*Pack, error) {
	var p Pack
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadPack, PackIndexName, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: %s: data after the JSON object", ErrBadPack, PackIndexName)
	}
	if p.Format != PackFormat {
		return nil, fmt.Errorf("%w: %s: format %q, want %q", ErrBadPack, PackIndexName, p.Format, PackFormat)
	}
	if len(p.HierarchyIDHash) != 64 {
		return nil, fmt.Errorf("%w: %s: hierarchyIdHash", ErrBadPack, PackIndexName)
	}
	if p.Manifest != manifest.FileName {
		return nil, fmt.Errorf("%w: %s: manifest %q, want %q", ErrBadPack, PackIndexName, p.Manifest, manifest.FileName)
	}
	for i, u := range p.Updates {
		// A file must stay inside the pack folder.
		clean := filepath.ToSlash(filepath.Clean(filepath.FromSlash(u.File)))
		if u.File == "" || clean != u.File || strings.HasPrefix(clean, "../") || clean == ".." || filepath.IsAbs(filepath.FromSlash(u.File)) || strings.Contains(u.File, `\`) {
			return nil, fmt.Errorf("%w: %s: updates[%d]: file %q must be a relative path inside the pack", ErrBadPack, PackIndexName, i, u.File)
		}
	}
	return &p, nil
}

func jsonIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// readPack reads the index of the pack folder dir.
func readPack(dir string) (*Pack, error) {
	data, err := os.ReadFile(filepath.Join(dir, PackIndexName))
	if err != nil {
		return nil, err
	}
	return ParsePack(data)
}
