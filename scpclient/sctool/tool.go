package sctool

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/scpgate/scpgate/internal/atomicfile"
	"github.com/scpgate/scpgate/manifest"
	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/fetch"
	"github.com/scpgate/scpgate/scpclient/state"
	"github.com/scpgate/scpgate/scpclient/uploader"
	"github.com/scpgate/scpgate/scpclient/usage"
)

// Selections of -connect.
const (
	SelectDefault     = "default"     // the newest update that applies to the site version, no hotfixes
	SelectAll         = "all"         // -downloadall: every update and hotfix
	SelectHotfix      = "hotfix"      // -downloadhotfix: every hotfix
	SelectSiteVersion = "siteversion" // -downloadsiteversion: updates and hotfixes newer than the site version
)

// ErrNeedsOffline is returned when a verb that runs on the SCP finds it in online mode.
var ErrNeedsOffline = errors.New("the service connection tool needs the service connection point in offline mode (mode: offline)")

// Prepare writes the site's usage data to dest (on the SCP, no network).
func Prepare(cfg *config.Config, dest string, lg *cmtrace.Log) (*usage.Package, error) {
	if cfg.Mode != config.ModeOffline {
		return nil, ErrNeedsOffline
	}
	st, err := state.Read(filepath.Join(cfg.DataDir, state.FileName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	lg.Infof("Prepare: collecting usage data at level %s for site version %s", cfg.UsageLevel, cfg.InstalledVersion)
	p, err := usage.Collect(cfg, st, time.Now())
	if err != nil {
		return nil, err
	}
	data, err := p.Marshal()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(dest, data, 0o600); err != nil {
		return nil, err
	}
	lg.Infof("Usage data package %s (%d rows, %d bytes) was written to %s", p.ID, len(p.Rows), len(data), dest)
	return p, nil
}

// Export writes the site's usage data as CSV to dest (no network).
func Export(cfg *config.Config, dest string, lg *cmtrace.Log) error {
	st, err := state.Read(filepath.Join(cfg.DataDir, state.FileName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	p, err := usage.Collect(cfg, st, time.Now())
	if err != nil {
		return err
	}
	var b strings.Builder
	if err := p.WriteCSV(&b); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(dest, []byte(b.String()), 0o600); err != nil {
		return err
	}
	lg.Infof("Usage data at level %s (%d rows) was exported to %s", cfg.UsageLevel, len(p.Rows), dest)
	return nil
}

// ConnectOptions configure Connect.
type ConnectOptions struct {
	Client    fetch.Doer
	Key       ed25519.PublicKey
	Fwlink    string // without the query
	UsageURL  string // "" means uploader.DefaultURL
	Selection string
	Src       string // a usage file or a folder of them
	Dest      string // the update pack folder
	Log       *cmtrace.Log
	Progress  func(name string, total, already int64) io.WriteCloser
}

// Connect uploads every usage file in Src and downloads, per hierarchy, the selected updates
// into a pack folder under Dest.
func Connect(ctx context.Context, o ConnectOptions) ([]*Pack, error) {
	lg := o.Log
	files, err := usageFiles(o.Src)
	if err != nil {
		return nil, err
	}
	if o.UsageURL == "" {
		o.UsageURL = uploader.DefaultURL
	}
	var pkgs []*usage.Package
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		p, err := usage.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		lg.Infof("Uploading usage data %s (hierarchy %s…, site version %s)", f, p.HierarchyIDHash[:16], p.SiteVersion)
		r, err := uploader.Upload(ctx, o.Client, o.UsageURL, p.ID, data, o.Progress)
		if err != nil {
			lg.Errorf("Failed to upload usage data %s: %v", f, err)
			return nil, fmt.Errorf("upload %s: %w", f, err)
		}
		lg.Infof("Usage data package %s was acknowledged (duplicate=%t)", p.ID, r.Duplicate)
		pkgs = append(pkgs, p)
	}
	var packs []*Pack
	for _, p := range pkgs {
		pk, err := connectOne(ctx, o, p)
		if err != nil {
			return nil, err
		}
		packs = append(packs, pk)
	}
	return packs, nil
}

func usageFiles(src string) ([]string, error) {
	st, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("-usagedatasrc: %w", err)
	}
	if !st.IsDir() {
		return []string{src}, nil
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), usage.FileExt) {
			out = append(out, filepath.Join(src, e.Name()))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-usagedatasrc %s: no usage data files (*%s) in the folder", src, usage.FileExt)
	}
	slices.Sort(out)
	return out, nil
}

// Select picks the updates of m for a site at version v.
func Select(m manifest.Manifest, v manifest.Version, selection string) []manifest.Update {
	var out []manifest.Update
	switch selection {
	case SelectAll:
		out = slices.Clone(m.Updates)
	case SelectHotfix:
		for _, u := range m.Updates {
			if u.Kind == manifest.KindHotfix {
				out = append(out, u)
			}
		}
	case SelectSiteVersion:
		for _, u := range m.Updates {
			if uv, err := manifest.ParseVersion(u.Version); err == nil && uv.Compare(v) > 0 {
				out = append(out, u)
			}
		}
	default:
		apps := m.Applicable(v, false)
		if len(apps) > 0 {
			out = apps[len(apps)-1:]
		}
	}
	return out
}

func connectOne(ctx context.Context, o ConnectOptions, p *usage.Package) (*Pack, error) {
	lg := o.Log
	v, _ := manifest.ParseVersion(p.SiteVersion) // Parse checked it
	u, err := url.Parse(o.Fwlink)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("Version", v.String())
	u.RawQuery = q.Encode()
	lg.Info("Easysetup fwlink to download the manifest: " + u.String())
	body, final, err := fetch.Get(ctx, o.Client, u.String(), manifest.MaxSize, nil)
	if err != nil {
		lg.Errorf("DownloadManifestCab exception: %v", err)
		return nil, err
	}
	lg.Info("Redirected to URL " + final)
	m, err := manifest.Verify(body, o.Key)
	if err != nil {
		lg.Errorf("The manifest from %s is not signed and trusted: %v", final, err)
		return nil, fmt.Errorf("manifest from %s: %w (trusted key %s)", final, err, manifest.KeyIDOf(o.Key))
	}
	dir := filepath.Join(o.Dest, PackDirName(p.HierarchyIDHash))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, manifest.FileName), body, 0o644); err != nil {
		return nil, err
	}
	pack := &Pack{Format: PackFormat, HierarchyIDHash: p.HierarchyIDHash, SiteVersion: v.String(), Selection: o.Selection,
		Created: time.Now().UTC(), Manifest: manifest.FileName, UsagePackages: []string{p.ID}}
	if old, err := readPack(dir); err == nil && old.HierarchyIDHash == p.HierarchyIDHash {
		pack.UsagePackages = append(old.UsagePackages, p.ID)
	}
	for _, up := range Select(m, v, o.Selection) {
		lg.Infof("Downloading %s %s (%s) from %s", up.Kind, up.Version, up.GUID, up.PayloadURL)
		path, err := fetch.Payload(ctx, o.Client, up, dir, fetch.Options{Progress: o.Progress})
		if err != nil {
			lg.Errorf("Failed to download payload %s: %v", up.GUID, err)
			return nil, err
		}
		lg.Infof("Hash check passed for %s (SHA256 %s)", path, up.SHA256)
		rel, _ := filepath.Rel(dir, path)
		pack.Updates = append(pack.Updates, PackUpdate{GUID: up.GUID, Kind: up.Kind, Version: up.Version,
			File: filepath.ToSlash(rel), Size: up.Size, SHA256: up.SHA256})
	}
	data, err := jsonIndent(pack)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, PackIndexName), data, 0o644); err != nil {
		return nil, err
	}
	lg.Infof("Update pack for hierarchy %s… (site version %s, %d updates) is ready in %s", p.HierarchyIDHash[:16], v, len(pack.Updates), dir)
	return pack, nil
}

// Import places the verified payloads of this hierarchy's pack from src (a folder of packs, or
// one pack folder) under the payload folder and records them as downloaded (262146).
func Import(cfg *config.Config, key ed25519.PublicKey, st *state.Store, src string, lg *cmtrace.Log) ([]string, error) {
	if cfg.Mode != config.ModeOffline {
		return nil, ErrNeedsOffline
	}
	want := usage.HierarchyHash(cfg.HierarchyID)
	dir := src
	if _, err := os.Stat(filepath.Join(src, PackIndexName)); err != nil {
		dir = filepath.Join(src, PackDirName(want))
	}
	pack, err := readPack(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("-updatepacksrc %s: no update pack for hierarchy %s (expected the folder %s)", src, cfg.HierarchyID, PackDirName(want))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if pack.HierarchyIDHash != want {
		lg.Errorf("The update pack in %s belongs to another hierarchy", dir)
		return nil, fmt.Errorf("%w: %s belongs to another hierarchy (hash %s…), not to %s", ErrBadPack, dir, pack.HierarchyIDHash[:16], cfg.HierarchyID)
	}
	body, err := os.ReadFile(filepath.Join(dir, pack.Manifest))
	if err != nil {
		return nil, err
	}
	m, err := manifest.Verify(body, key)
	if err != nil {
		lg.Errorf("File '%s' is not signed and trusted: %v", filepath.Join(dir, pack.Manifest), err)
		return nil, fmt.Errorf("%w: %s: %v (trusted key %s)", ErrBadPack, filepath.Join(dir, pack.Manifest), err, manifest.KeyIDOf(key))
	}
	lg.Infof("File '%s' is signed and trusted.", filepath.Join(dir, pack.Manifest))
	byGUID := map[string]manifest.Update{}
	for _, u := range m.Updates {
		byGUID[strings.ToLower(u.GUID)] = u
	}
	// Verify everything before placing anything, so a bad pack changes nothing.
	type item struct {
		src string
		u   manifest.Update
	}
	var items []item
	for _, pu := range pack.Updates {
		u, ok := byGUID[strings.ToLower(pu.GUID)]
		if !ok {
			return nil, fmt.Errorf("%w: %s lists %s, which the signed manifest does not", ErrBadPack, dir, pu.GUID)
		}
		p := filepath.Join(dir, filepath.FromSlash(pu.File))
		lg.Info("Checking IsPayloadLocal with HashAlgorithm = SHA256")
		if !fetch.IsLocal(p, u.SHA256) {
			lg.Errorf("Payload %s in the pack does not have the signed manifest's SHA256 %s", pu.GUID, u.SHA256)
			return nil, fmt.Errorf("%w: %s: %s does not hash to the signed manifest's %s", ErrBadPack, dir, p, u.SHA256)
		}
		items = append(items, item{p, u})
	}
	var placed []string
	for _, it := range items {
		path, err := fetch.Place(it.src, cfg.PayloadDir, it.u)
		if err != nil {
			return placed, err
		}
		if err := st.SetUpdate(state.Update{GUID: it.u.GUID, Name: it.u.Name, Kind: it.u.Kind, Version: it.u.Version,
			State: state.DownloadSuccess, Path: path}, time.Now()); err != nil {
			return placed, err
		}
		lg.Infof("Imported %s %s (%s) to %s", it.u.Kind, it.u.Version, it.u.GUID, path)
		placed = append(placed, path)
	}
	lg.Infof("Import finished: %d updates from %s", len(placed), dir)
	return placed, nil
}
