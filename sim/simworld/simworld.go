// Package simworld starts the whole simulated internet of the integration tests and the demo in
// one call: a local CA (the "Microsoft" roots), the simulated Microsoft cloud on port 443 of a
// loopback address (integration/cloudsim) and an authoritative DNS server (integration/dnssim)
// whose zone maps every cloud host name to that address.
//
// The zone imitates what a recursive resolver returns for the real names: download.microsoft.com
// and configmgrbits.cdn.manage.microsoft.com are CNAME chains through CDN names (see CNAMEChains)
// that end at the cloud, and each answer carries the whole chain, as a recursive resolver's
// answer does. The cloud's certificate covers the names a client asks for (the CONNECT host), so
// the chain matters only to DNS.
//
// The zone also holds trap names (see Traps) that the demo and the tests use to show denials:
// a listed name that resolves to a private address, one that resolves to the cloud metadata
// address, and one that does not exist. No test or demo ever dials the trap addresses: the
// gateway refuses a destination on the DNS answer, before dialing, and the tests that use them
// go through a gateway whose dialer fails the test if it is called. Nothing in the world
// listens on or connects to a non-loopback address.
//
// Start writes three files into Options.Dir: ca.pem (the root to trust), manifest-key.pem (the
// "Microsoft" manifest verification key, PEM "PUBLIC KEY") and world.json (Info), each
// atomically, so another process that sees a file sees all of it.
package simworld

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/scpgate/scpgate/internal/atomicfile"
	"github.com/scpgate/scpgate/manifest"
	"github.com/scpgate/scpgate/sim/cloudsim"
	"github.com/scpgate/scpgate/sim/dnssim"
	"github.com/scpgate/scpgate/sim/testca"
)

// File names written into Options.Dir.
const (
	CAFileName        = "ca.pem"
	PublicKeyFileName = "manifest-key.pem"
	InfoFileName      = "world.json"
)

// Trap names: listed by the shipped policy (they match *.manage.microsoft.com) but answered in a
// way the gateway must refuse before it dials.
const (
	// TrapPrivate resolves to TrapPrivateAddr (RFC 1918): 403 private_address.
	TrapPrivate = "internal.manage.microsoft.com"
	// TrapMetadata resolves to TrapMetadataAddr (link-local cloud metadata): 403 private_address.
	TrapMetadata = "metadata.manage.microsoft.com"
	// TrapNXDOMAIN does not exist: 502 dns_failure.
	TrapNXDOMAIN = "nxdomain.manage.microsoft.com"
)

// Trap addresses. They are only ever DNS answers; nothing in the test world dials them.
const (
	TrapPrivateAddr  = "10.20.30.40"
	TrapMetadataAddr = "169.254.169.254"
)

// FwlinkURL starts the update check the way the service connection point does: the fwlink
// redirects to the connected service, which redirects to the signed manifest.
const FwlinkURL = "https://" + cloudsim.HostFwlink + "/fwlink/?LinkId=2008245&Version=" + cloudsim.DefaultInstalledVersion

// ErrNotLoopback is returned (wrapped) by Start when an address in Options is not a loopback
// IP address: the test world never leaves the machine.
var ErrNotLoopback = errors.New("simworld: address is not a loopback IP address")

// CNAMEChains returns the aliases the zone gives real names, each name mapped to its chain of
// targets in order; the last target has the A record (the cloud's address). The CDN names are
// modelled on the real ones (Akamai edgekey/akamaiedge for download.microsoft.com, Azure Front
// Door for the configmgrbits CDN); they are not served by the cloud and only matter to DNS.
func CNAMEChains() map[string][]string {
	return map[string][]string{
		cloudsim.HostDownload: {"download.microsoft.com.edgekey.net", "e3673.dscg.akamaiedge.net"},
		cloudsim.HostCDN:      {"configmgrbits.afd.azureedge.net", "star-azureedge-prod.trafficmanager.net"},
	}
}

// Options configure Start.
type Options struct {
	// Dir is where ca.pem, manifest-key.pem and world.json are written; it is created if
	// missing. Required.
	Dir string
	// DNSAddr is the DNS server's UDP and TCP address; "" means "127.0.0.1:0". Loopback only.
	DNSAddr string
	// CloudAddr is the cloud's address: "" picks a random 127.x.y.z:443; "127.0.0.10" or
	// "127.0.0.10:443" choose one. Loopback only, port 443 only: the gateway never rewrites
	// ports, so a cloud elsewhere could not be reached through it.
	CloudAddr string
	// Logger receives the world's logs; nil discards them.
	Logger *slog.Logger
}

// Trap describes a name with special DNS behaviour, for Info.
type Trap struct {
	Name string `json:"name"`
	// Answer is the A record, or "NXDOMAIN".
	Answer string `json:"answer"`
	// Expect is what a gateway running the shipped policy answers a CONNECT to Name:443.
	Expect string `json:"expect"`
}

// Info describes a running world. It is what world.json holds and what `scpgate cloudsim`
// prints when the world is ready.
type Info struct {
	DNS           string `json:"dns"`   // UDP and TCP, "127.0.0.1:PORT"
	Cloud         string `json:"cloud"` // "127.x.y.z:443"
	CAFile        string `json:"ca_file"`
	PublicKeyFile string `json:"public_key_file"`
	KeyID         string `json:"key_id"`
	FwlinkURL     string `json:"fwlink_url"`
	ManifestURL   string `json:"manifest_url"`
	// InstalledVersion is the site version the published releases are arranged around.
	InstalledVersion string `json:"installed_version"`
	// Hosts are the names the cloud serves (its certificate covers them), sorted.
	Hosts []string `json:"hosts"`
	// CNAMEs maps a name to its chain of CNAME targets; the last one has the A record.
	CNAMEs map[string][]string `json:"cnames"`
	// Traps are names whose answers the gateway must refuse before dialing.
	Traps []Trap `json:"traps"`
}

// World is a running test world. Its fields are read-only; DNS and Cloud may be used to inject
// faults (dnssim.Server.SetFlip, cloudsim.Cloud.AddFault, ...).
type World struct {
	DNS           *dnssim.Server
	Cloud         *cloudsim.Cloud
	CA            *testca.CA
	CAFile        string
	PublicKeyFile string
	InfoFile      string

	log  *slog.Logger
	info Info
}

// Start creates the CA, starts the cloud and the DNS server, fills the zone and writes the
// files. The world closes when ctx is done or Close is called; call Close in either case to
// wait for it to finish.
func Start(ctx context.Context, o Options) (w *World, err error) {
	if o.Dir == "" {
		return nil, errors.New("simworld: Options.Dir is required")
	}
	if o.DNSAddr == "" {
		o.DNSAddr = "127.0.0.1:0"
	}
	if err := checkDNSAddr(o.DNSAddr); err != nil {
		return nil, err
	}
	if err := checkCloudAddr(o.CloudAddr); err != nil {
		return nil, err
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Absolute paths in Info, so another process can use them from any working directory.
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("simworld: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("simworld: %w", err)
	}

	ca, err := testca.New("scpgate simworld Microsoft root")
	if err != nil {
		return nil, err
	}
	cloud, err := cloudsim.New(cloudsim.Config{Addr: o.CloudAddr, CA: ca, Logger: logger})
	if err != nil {
		return nil, err
	}
	w = &World{DNS: dnssim.New(logger), Cloud: cloud, CA: ca, log: logger.With("component", "simworld")}
	defer func() {
		if err != nil {
			_ = w.close()
			w = nil
		}
	}()
	if err := cloud.Start(ctx); err != nil {
		return nil, err
	}
	cloudAddr := cloud.Addr()
	w.fillZone(cloudAddr.Addr())
	if err := w.DNS.Start(ctx, o.DNSAddr); err != nil {
		return nil, err
	}

	if w.CAFile, err = ca.WriteFiles(dir); err != nil {
		return nil, err
	}
	pub, err := manifest.MarshalPublicKey(cloud.PublicKey())
	if err != nil {
		return nil, err
	}
	w.PublicKeyFile = filepath.Join(dir, PublicKeyFileName)
	if err := atomicfile.WriteFile(w.PublicKeyFile, pub, 0o644); err != nil {
		return nil, err
	}

	w.info = Info{
		DNS:              w.DNS.Addr(),
		Cloud:            cloudAddr.String(),
		CAFile:           w.CAFile,
		PublicKeyFile:    w.PublicKeyFile,
		KeyID:            cloud.KeyID(),
		FwlinkURL:        FwlinkURL,
		ManifestURL:      cloud.ManifestURL(),
		InstalledVersion: cloudsim.DefaultInstalledVersion,
		Hosts:            cloud.Hosts(),
		CNAMEs:           CNAMEChains(),
		Traps: []Trap{
			{Name: TrapPrivate, Answer: TrapPrivateAddr, Expect: "403 private_address"},
			{Name: TrapMetadata, Answer: TrapMetadataAddr, Expect: "403 private_address"},
			{Name: TrapNXDOMAIN, Answer: "NXDOMAIN", Expect: "502 dns_failure"},
		},
	}
	data, err := json.MarshalIndent(w.info, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("simworld: %w", err)
	}
	infoFile := filepath.Join(dir, InfoFileName)
	if err := atomicfile.WriteFile(infoFile, append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	// Set only once written, so close removes world.json only if this world wrote it.
	w.InfoFile = infoFile
	w.log.Info("world ready", "dns", w.info.DNS, "cloud", w.info.Cloud, "dir", dir)
	return w, nil
}

// fillZone maps every cloud host to addr, through the CNAME chains for the names that have one,
// and adds the traps. It runs before the DNS server starts, so no query sees a half-filled zone.
func (w *World) fillZone(addr netip.Addr) {
	chains := CNAMEChains()
	for _, h := range w.Cloud.Hosts() {
		chain, ok := chains[h]
		if !ok {
			w.DNS.SetA(h, addr)
			continue
		}
		prev := h
		for _, target := range chain {
			w.DNS.SetCNAME(prev, target)
			prev = target
		}
		w.DNS.SetA(prev, addr)
	}
	w.DNS.SetA(TrapPrivate, netip.MustParseAddr(TrapPrivateAddr))
	w.DNS.SetA(TrapMetadata, netip.MustParseAddr(TrapMetadataAddr))
	// Unknown names are NXDOMAIN anyway; saying it keeps the trap from silently changing if
	// the zone ever gains a wildcard.
	w.DNS.SetNXDOMAIN(TrapNXDOMAIN)
}

// Info describes the running world (a copy).
func (w *World) Info() Info {
	in := w.info
	in.Hosts = slices.Clone(in.Hosts)
	in.Traps = slices.Clone(in.Traps)
	in.CNAMEs = make(map[string][]string, len(w.info.CNAMEs))
	for k, v := range w.info.CNAMEs {
		in.CNAMEs[k] = slices.Clone(v)
	}
	return in
}

// Close stops the cloud and the DNS server, waits for their goroutines and removes world.json
// (a world.json left behind would describe servers that are gone). ca.pem and manifest-key.pem
// stay. It is safe to call more than once.
func (w *World) Close() error {
	return w.close()
}

func (w *World) close() error {
	errs := []error{w.Cloud.Close(), w.DNS.Close()}
	if w.InfoFile != "" {
		if err := os.Remove(w.InfoFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("simworld: %w", err))
		}
	}
	w.log.Info("world closed")
	return errors.Join(errs...)
}

// ReadInfo reads a world.json written by Start.
func ReadInfo(path string) (Info, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Info{}, fmt.Errorf("simworld: %w", err)
	}
	var in Info
	if err := json.Unmarshal(data, &in); err != nil {
		return Info{}, fmt.Errorf("simworld: %s: %w", path, err)
	}
	return in, nil
}

// checkDNSAddr accepts a loopback "IP:port" only; names are refused because resolving them
// would need DNS, and a non-loopback address would expose the fake zone beyond the machine.
func checkDNSAddr(s string) error {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return fmt.Errorf("simworld: DNS address %q: want IP:port: %w", s, err)
	}
	if !ap.Addr().Unmap().IsLoopback() || ap.Addr().Zone() != "" {
		return fmt.Errorf("simworld: DNS address %q: %w", s, ErrNotLoopback)
	}
	return nil
}

// checkCloudAddr accepts "", a loopback IP or a loopback IP:443.
func checkCloudAddr(s string) error {
	if s == "" {
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return fmt.Errorf("simworld: cloud address %q: want a loopback IP, optionally with :443", s)
		}
		if ap.Port() != 443 {
			return fmt.Errorf("simworld: cloud address %q: the port must be 443 (the gateway never rewrites ports)", s)
		}
		a = ap.Addr()
	}
	if !a.Unmap().IsLoopback() || a.Zone() != "" {
		return fmt.Errorf("simworld: cloud address %q: %w", s, ErrNotLoopback)
	}
	return nil
}
