// Package downloader is SMS_DMP_DOWNLOADER's online update check: follow the fwlink on
// go.microsoft.com to the connected service, which redirects to the signed manifest on
// download.microsoft.com; verify the manifest against the configured key; record which updates
// apply to the installed version; download each applicable payload (package fetch); and log
// every step with the wording of ConfigMgr's dmpdownloader.log.
package downloader

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/scpgate/scpgate/internal/atomicfile"
	"github.com/scpgate/scpgate/manifest"
	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/fetch"
	"github.com/scpgate/scpgate/scpclient/state"
)

// Component is the ConfigMgr component name.
const Component = "SMS_DMP_DOWNLOADER"

// LogFileName is the component's log.
const LogFileName = "dmpdownloader.log"

// SyncPackage is the all-zero package id the synchronization state messages use.
const SyncPackage = "00000000-0000-0000-0000-000000000000"

// Sync state messages (START_PROCESS .. MANIFEST_DOWNLOADED).
const (
	msgStartProcess = iota
	msgStartVerifyManifest
	msgStartVerifyManifestFileTrusted
	msgVerifiedManifest
	msgManifestDownloaded
)

// Options configure a Downloader.
type Options struct {
	Client           fetch.Doer
	Key              ed25519.PublicKey
	Store            *state.Store
	Log              *cmtrace.Log
	Fwlink           string // the configured fwlink, without the SCP's query
	InstalledVersion manifest.Version
	HierarchyID      string
	Ring             string
	Hotfixes         bool
	PayloadDir       string
	OutboxDir        string
	Interval         time.Duration
	Fetch            fetch.Options
	Now              func() time.Time
}

// Downloader runs update checks.
type Downloader struct{ o Options }

// New returns a Downloader.
func New(o Options) *Downloader {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Downloader{o: o}
}

// Result summarises a cycle.
type Result struct {
	Applicable []manifest.Update
	Placed     []string // paths of payloads now in place (downloaded or already there)
	Failed     map[string]error
}

// FwlinkURL is the fwlink with the SCP's query appended after its own (LinkId first, as the
// SCP sends it): site version, hierarchy id and ring.
func (d *Downloader) FwlinkURL() string {
	u, err := url.Parse(d.o.Fwlink)
	if err != nil {
		return d.o.Fwlink
	}
	ring := d.o.Ring
	if ring == "" {
		ring = "General"
	}
	extra := "Version=" + url.QueryEscape(d.o.InstalledVersion.String()) +
		"&HierarchyId=" + url.QueryEscape(d.o.HierarchyID) + "&Ring=" + url.QueryEscape(ring)
	if u.RawQuery != "" {
		extra = u.RawQuery + "&" + extra
	}
	u.RawQuery = extra
	return u.String()
}

// Cycle runs one update check. The error says what failed; per-update failures are also in the
// state file (327679).
func (d *Downloader) Cycle(ctx context.Context) (Result, error) {
	lg, st := d.o.Log, d.o.Store
	start := d.o.Now()
	last := st.Snapshot().Downloader.LastCheck
	if last.IsZero() || start.Sub(last) >= d.o.Interval {
		lg.Info("Hasn't synced recently.")
	} else {
		lg.Infof("Synced at %s; checking for updates now as requested.", last.UTC().Format(time.RFC3339))
	}
	res, err := d.cycle(ctx)
	now := d.o.Now()
	result := "success"
	if err != nil {
		result = err.Error()
		lg.Warning("Retry in the next polling cycle")
	}
	_ = st.Change(func(f *state.File) {
		f.Downloader.LastCheck = now.UTC()
		f.Downloader.LastResult = result
	})
	return res, err
}

func (d *Downloader) stateMsg(n int) {
	d.o.Log.Infof("Generating state message: %d for package %s", n, SyncPackage)
}

func (d *Downloader) cycle(ctx context.Context) (Result, error) {
	lg := d.o.Log
	res := Result{Failed: map[string]error{}}
	d.stateMsg(msgStartProcess)
	fw := d.FwlinkURL()
	lg.Info("Easysetup fwlink to download the manifest: " + fw)
	serviceURL, err := d.redirect(ctx, fw)
	if err != nil {
		return res, d.fail("Failed to resolve the fwlink", err)
	}
	su, _ := url.Parse(serviceURL)
	lg.Info("Redirected to URL " + (&url.URL{Scheme: su.Scheme, Host: su.Host, Path: strings.TrimSuffix(su.Path, "/Manifest")}).String())
	lg.Info("The flighting request url is " + serviceURL)
	d.stateMsg(msgStartVerifyManifest)

	lg.Info("Download manifest.cab")
	manifestURL, err := d.redirect(ctx, serviceURL)
	if err != nil {
		return res, d.fail("Failed to get the manifest location from the connected service", err)
	}
	lg.Info("Redirected to URL " + manifestURL)
	body, _, err := fetch.Get(ctx, d.o.Client, manifestURL, manifest.MaxSize, func(u string) { lg.Info("Redirected to URL " + u) })
	if err != nil {
		return res, d.fail("Failed to download the manifest", err)
	}
	lg.Infof("manifest.cab (http response) size is %d", len(body))
	d.stateMsg(msgStartVerifyManifestFileTrusted)

	manifestPath := filepath.Join(d.o.PayloadDir, manifest.FileName)
	m, err := manifest.Verify(body, d.o.Key)
	if err != nil {
		lg.Errorf("File '%s' is not signed and trusted: %v (trusted key %s, manifest_key_file)", manifestPath, err, manifest.KeyIDOf(d.o.Key))
		return res, fmt.Errorf("manifest from %s: %w (trusted key %s)", manifestURL, err, manifest.KeyIDOf(d.o.Key))
	}
	if err := os.MkdirAll(d.o.PayloadDir, 0o755); err != nil {
		return res, err
	}
	if err := atomicfile.WriteFile(manifestPath, body, 0o644); err != nil {
		return res, err
	}
	lg.Infof("File '%s' is signed and trusted.", manifestPath)
	d.stateMsg(msgVerifiedManifest)
	if err := os.MkdirAll(d.o.OutboxDir, 0o755); err != nil {
		return res, err
	}
	if err := atomicfile.WriteFile(filepath.Join(d.o.OutboxDir, manifest.FileName), body, 0o644); err != nil {
		return res, err
	}
	lg.Info("Manifest.cab was successfully moved to the connector outbox")
	d.stateMsg(msgManifestDownloaded)

	res.Applicable = m.Applicable(d.o.InstalledVersion, d.o.Hotfixes)
	applies := map[string]bool{}
	for _, u := range res.Applicable {
		applies[strings.ToLower(u.GUID)] = true
	}
	prev := d.o.Store.Snapshot().Downloader.Updates
	for _, u := range m.Updates {
		g := strings.ToLower(u.GUID)
		if applies[g] {
			continue
		}
		why := fmt.Sprintf("not applicable to %s", d.o.InstalledVersion)
		if u.Kind == manifest.KindHotfix && !d.o.Hotfixes {
			why = "hotfix; include_hotfixes is false"
		}
		if p, ok := prev[g]; !ok || p.State != state.ApplicabilityNotApplicable || p.Detail != why {
			_ = d.o.Store.SetUpdate(state.Update{GUID: u.GUID, Name: u.Name, Kind: u.Kind, Version: u.Version,
				State: state.ApplicabilityNotApplicable, Detail: why}, d.o.Now())
		}
	}

	lg.Info("Get new Easy Setup Package IDs")
	for _, u := range res.Applicable {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		path, err := d.one(ctx, u, prev[strings.ToLower(u.GUID)])
		if err != nil {
			res.Failed[u.GUID] = err
			continue
		}
		res.Placed = append(res.Placed, path)
	}
	if n := len(res.Failed); n > 0 {
		var errs []error
		for g, e := range res.Failed {
			errs = append(errs, fmt.Errorf("%s: %w", g, e))
		}
		return res, fmt.Errorf("%d of %d payloads failed: %w", n, len(res.Applicable), errors.Join(errs...))
	}
	return res, nil
}

// one downloads (or confirms) a single applicable payload.
func (d *Downloader) one(ctx context.Context, u manifest.Update, prev *state.Update) (string, error) {
	lg := d.o.Log
	rec := state.Update{GUID: u.GUID, Name: u.Name, Kind: u.Kind, Version: u.Version}
	if prev == nil || prev.State != state.DownloadSuccess {
		lg.Info("Found a new available update")
	}
	lg.Infof("EasySetupDownloadSinglePackage downloading %s", u.GUID)
	lg.Info("Checking IsPayloadLocal with HashAlgorithm = SHA256")
	lg.Infof("expected hash = %s", u.SHA256)
	dest := fetch.Dest(d.o.PayloadDir, u)
	if fetch.IsLocal(dest, u.SHA256) {
		lg.Infof("Content for %s exists locally with the expected hash. No download needed.", u.GUID)
	} else {
		lg.Infof("Content for %s does not exist locally. Download it from internet", u.GUID)
		rec.State = state.DownloadInProgress
		_ = d.o.Store.SetUpdate(rec, d.o.Now())
		opts := d.o.Fetch
		opts.Started = func(offset int64, resumed bool) {
			if resumed {
				lg.Infof("Resume downloading %s from byte %d", u.PayloadURL, offset)
			} else {
				lg.Infof("Download large file from %s", u.PayloadURL)
			}
		}
		var err error
		dest, err = fetch.Payload(ctx, d.o.Client, u, d.o.PayloadDir, opts)
		if err != nil {
			if errors.Is(err, fetch.ErrHashMismatch) {
				lg.Errorf("Payload %s failed hash verification: %v", u.GUID, err)
			}
			lg.Warningf("Failed to download easy setup payload with exception: %v", err)
			rec.State, rec.Detail = state.DownloadFailed, err.Error()
			_ = d.o.Store.SetUpdate(rec, d.o.Now())
			return "", err
		}
		lg.Infof("Verify the payload hash value: %s has the expected SHA256 and is placed at %s", u.GUID, dest)
	}
	rec.State, rec.Path = state.DownloadSuccess, dest
	if err := d.o.Store.SetUpdate(rec, d.o.Now()); err != nil {
		return "", err
	}
	lg.Infof("EasySetupDownloadSinglePackage finishes downloading %s.", u.GUID)
	return dest, nil
}

// fail logs a failed step in ConfigMgr's words and returns err with the step named.
func (d *Downloader) fail(step string, err error) error {
	d.o.Log.Errorf("%s with exception: %v", step, err)
	return fmt.Errorf("%s: %w", strings.ToLower(step[:1])+step[1:], err)
}

// redirect GETs u and returns the Location of its redirect answer.
func (d *Downloader) redirect(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	res, err := d.o.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 300 || res.StatusCode > 399 {
		return "", fmt.Errorf("GET %s: %s, want a redirect", u, res.Status)
	}
	loc, err := res.Location()
	if err != nil {
		return "", fmt.Errorf("GET %s: %s without a usable Location: %v", u, res.Status, err)
	}
	if loc.Scheme != "https" {
		return "", fmt.Errorf("GET %s: redirect to %s, which is not https", u, loc)
	}
	return loc.String(), nil
}
