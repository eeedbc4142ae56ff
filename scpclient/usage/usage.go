// Package usage collects the site's diagnostic and usage data at the configured level and
// defines the package file that carries it (the project's own JSON format, documented in
// docs/scpclient.md; not a Microsoft CAB).
//
// The three levels hold different tables: basic (what setup, upgrade and applicability need:
// site type, version, time zone, mode, level, update download progress), enhanced (basic plus
// component settings and the proxy summary) and full (enhanced plus per-update compliance
// details and runtime information). Every name and id is SHA-256 hashed, and the hashed
// hierarchy id is on every row, as ConfigMgr documents for its own usage data.
package usage

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scpgate/scpgate/manifest"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/state"
)

// Format identifies a usage package file.
const Format = "scpclient-usage/1"

// FileExt is the extension of usage package files.
const FileExt = ".scpusage.json"

// MaxSize bounds a package file (the receiver takes at most 32 MiB).
const MaxSize = 16 << 20

// Package is one usage data package.
type Package struct {
	Format string `json:"format"`
	// ID is random; it is the upload's idempotency key, so a retried upload counts once.
	ID string `json:"id"`
	// HierarchyIDHash is the SHA-256 (hex) of the lower-case hierarchy id.
	HierarchyIDHash string `json:"hierarchyIdHash"`
	// SiteVersion is in clear: the service connection tool reads it to pick the updates.
	SiteVersion string    `json:"siteVersion"`
	Level       string    `json:"level"`
	Collected   time.Time `json:"collected"`
	Rows        []Row     `json:"rows"`
}

// Row is one record of one table.
type Row struct {
	Table           string            `json:"table"`
	HierarchyIDHash string            `json:"hierarchyIdHash"`
	Fields          map[string]string `json:"fields"`
}

// Hash is the one-way SHA-256 hex of s, as names and ids appear in usage data.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// HierarchyHash hashes a hierarchy id case-insensitively.
func HierarchyHash(id string) string { return Hash(strings.ToLower(id)) }

// Tables lists the tables each level holds.
func Tables(level string) []string {
	basic := []string{"TEL_Sites", "TEL_Settings", "TEL_UpdateDownloads"}
	enhanced := append(slices.Clone(basic), "TEL_ComponentSettings", "TEL_Proxy")
	switch level {
	case config.LevelBasic:
		return basic
	case config.LevelEnhanced:
		return enhanced
	case config.LevelFull:
		return append(enhanced, "TEL_UpdateCompliance", "TEL_Runtime")
	}
	return nil
}

// Collect builds a package from the configuration and the state at now.
func Collect(cfg *config.Config, st state.File, now time.Time) (*Package, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	hh := HierarchyHash(cfg.HierarchyID)
	p := &Package{Format: Format, ID: hex.EncodeToString(id), HierarchyIDHash: hh, SiteVersion: cfg.Version().String(),
		Level: cfg.UsageLevel, Collected: now.UTC().Truncate(time.Millisecond)}
	add := func(table string, kv ...string) {
		f := make(map[string]string, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			f[kv[i]] = kv[i+1]
		}
		p.Rows = append(p.Rows, Row{Table: table, HierarchyIDHash: hh, Fields: f})
	}
	want := map[string]bool{}
	for _, t := range Tables(cfg.UsageLevel) {
		want[t] = true
	}
	_, off := now.Zone()
	add("TEL_Sites", "siteCodeHash", Hash(strings.ToUpper(cfg.SiteCode)), "siteType", cfg.SiteRole,
		"version", cfg.Version().String(), "timeZoneBiasMinutes", strconv.Itoa(-off/60))
	add("TEL_Settings", "usageLevel", cfg.UsageLevel, "mode", cfg.Mode, "intuneSubscription", strconv.FormatBool(cfg.IntuneSubscription))
	for _, u := range st.SortedUpdates() {
		add("TEL_UpdateDownloads", "updateIdHash", Hash(strings.ToLower(u.GUID)), "state", strconv.Itoa(u.State))
	}
	if want["TEL_ComponentSettings"] {
		add("TEL_ComponentSettings", "component", "SMS_DMP_DOWNLOADER", "pollingIntervalSeconds", strconv.Itoa(int(cfg.CheckInterval.Seconds())),
			"lastResultSuccess", strconv.FormatBool(st.Downloader.LastResult == "success"))
		add("TEL_ComponentSettings", "component", "SMS_DMP_UPLOADER", "pollingIntervalSeconds", strconv.Itoa(int(cfg.UploadInterval.Seconds())))
		add("TEL_Proxy", "proxyEnabled", strconv.FormatBool(cfg.Proxy.URL != ""), "authenticatedProxy", strconv.FormatBool(cfg.Proxy.User != ""),
			"tlsToProxy", strconv.FormatBool(strings.HasPrefix(cfg.Proxy.URL, "https://")))
	}
	if want["TEL_UpdateCompliance"] {
		for _, u := range st.SortedUpdates() {
			add("TEL_UpdateCompliance", "updateIdHash", Hash(strings.ToLower(u.GUID)), "kind", u.Kind, "version", u.Version,
				"state", strconv.Itoa(u.State), "stateName", u.StateName, "changed", u.Changed.UTC().Format(time.RFC3339))
		}
		add("TEL_Runtime", "goVersion", runtime.Version(), "os", runtime.GOOS, "arch", runtime.GOARCH, "cpus", strconv.Itoa(runtime.NumCPU()))
	}
	return p, nil
}

// Marshal encodes the package.
func (p *Package) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(p, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ErrInvalid is returned (wrapped) by Parse.
var ErrInvalid = errors.New("not a valid usage data package")

// Parse decodes and checks a package file strictly.
func Parse(data []byte) (*Package, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, MaxSize)
	}
	var p Package
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrInvalid)
	}
	switch {
	case p.Format != Format:
		return nil, fmt.Errorf("%w: format %q, want %q", ErrInvalid, p.Format, Format)
	case len(p.ID) != 32 || !isHex(p.ID):
		return nil, fmt.Errorf("%w: id %q", ErrInvalid, p.ID)
	case len(p.HierarchyIDHash) != 64 || !isHex(p.HierarchyIDHash):
		return nil, fmt.Errorf("%w: hierarchyIdHash", ErrInvalid)
	case Tables(p.Level) == nil:
		return nil, fmt.Errorf("%w: level %q", ErrInvalid, p.Level)
	case p.Collected.IsZero():
		return nil, fmt.Errorf("%w: collected time missing", ErrInvalid)
	}
	if _, err := manifest.ParseVersion(p.SiteVersion); err != nil {
		return nil, fmt.Errorf("%w: siteVersion: %v", ErrInvalid, err)
	}
	allowed := map[string]bool{}
	for _, t := range Tables(p.Level) {
		allowed[t] = true
	}
	for i, r := range p.Rows {
		if r.HierarchyIDHash != p.HierarchyIDHash {
			return nil, fmt.Errorf("%w: rows[%d]: hierarchyIdHash differs from the package's", ErrInvalid, i)
		}
		if !allowed[r.Table] {
			return nil, fmt.Errorf("%w: rows[%d]: table %q is not part of level %s", ErrInvalid, i, r.Table, p.Level)
		}
	}
	return &p, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// WriteCSV writes the package as CSV (table, hierarchyIdHash, field, value), for review before
// it leaves the site (the tool's -export).
func (p *Package) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"table", "hierarchyIdHash", "field", "value"})
	for _, r := range p.Rows {
		keys := make([]string, 0, len(r.Fields))
		for k := range r.Fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			_ = cw.Write([]string{r.Table, r.HierarchyIDHash, k, r.Fields[k]})
		}
	}
	cw.Flush()
	return cw.Error()
}
