// Package agent wires one service connection point from its configuration: the site lock, the
// state file, the component logs, the HTTP client through the gateway, and the two components
// SMS_DMP_DOWNLOADER and SMS_DMP_UPLOADER, which `scpclient run` supervises and restarts one at
// a time.
package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/scpgate/scpgate/manifest"
	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/downloader"
	"github.com/scpgate/scpgate/scpclient/fetch"
	"github.com/scpgate/scpgate/scpclient/progress"
	"github.com/scpgate/scpgate/scpclient/proxyclient"
	"github.com/scpgate/scpgate/scpclient/sitelock"
	"github.com/scpgate/scpgate/scpclient/state"
)

// ErrOffline is what the dialer of an offline site returns: offline mode opens no connection.
var ErrOffline = errors.New("offline mode: the service connection point opens no network connection")

// Options adjust Open.
type Options struct {
	// Dial replaces the TCP dialer of online mode (tests).
	Dial proxyclient.DialFunc
	// Progress draws transfer progress (nil: none).
	Progress progress.Factory
	// Now replaces time.Now.
	Now func() time.Time
	// Mirror receives every component log message too (a console), if set.
	Mirror *os.File
}

// Site is an opened service connection point: it holds the site lock until Close.
type Site struct {
	cfgPath string
	Store   *state.Store
	opts    Options
	lock    *sitelock.Lock
	cfg     *config.Config

	mu   sync.Mutex
	mode string // in force; "" until SetMode
}

// Open takes the site lock for cfg's hierarchy in its data folder and opens the state file.
func Open(cfg *config.Config, o Options) (*Site, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	lock, err := sitelock.Acquire(cfg.DataDir, cfg.HierarchyID)
	if err != nil {
		return nil, err
	}
	st, err := state.Open(filepath.Join(cfg.DataDir, state.FileName))
	if err != nil {
		_ = lock.Release()
		return nil, err
	}
	return &Site{cfgPath: cfg.Path(), Store: st, opts: o, lock: lock, cfg: cfg}, nil
}

// Close releases the site lock.
func (s *Site) Close() error { return s.lock.Release() }

// Config is the configuration the site was opened with.
func (s *Site) Config() *config.Config { return s.cfg }

// OpenLog opens a component log in the configured log folder.
func (s *Site) OpenLog(cfg *config.Config, file, component string) (*cmtrace.Log, error) {
	var opts []cmtrace.Option
	if s.opts.Mirror != nil {
		opts = append(opts, cmtrace.WithMirror(s.opts.Mirror))
	}
	return cmtrace.Open(filepath.Join(cfg.LogDir, file), component, opts...)
}

// Client builds the HTTP client through the configured proxy. While the mode in force (see
// SetMode; cfg.Mode until then) is offline its dialer refuses every connection, so nothing can
// reach the network even by mistake.
func (s *Site) Client(cfg *config.Config) (*proxyclient.Client, error) {
	return NewClient(cfg, s.dialer(cfg))
}

// dialer is the site's TCP dialer: it refuses every connection while the mode in force is
// offline. Every component that opens a connection (the HTTP client, the connectivity check)
// dials through it.
func (s *Site) dialer(cfg *config.Config) proxyclient.DialFunc {
	base := s.opts.Dial
	if base == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		base = d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if s.Mode(cfg) == config.ModeOffline {
			return nil, ErrOffline
		}
		return base(ctx, network, addr)
	}
}

// SetMode records the mode in force (the downloader's, from its last start).
func (s *Site) SetMode(m string) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

// Mode is the mode in force, or cfg's when none was set.
func (s *Site) Mode(cfg *config.Config) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode != "" {
		return s.mode
	}
	return cfg.Mode
}

// NewClient builds the HTTP client a configuration describes (also used by the offline tool's
// -connect on the connected machine).
func NewClient(cfg *config.Config, dial proxyclient.DialFunc) (*proxyclient.Client, error) {
	pool, err := LoadPool(cfg.TrustedCAFile, cfg.Proxy.CAFile)
	if err != nil {
		return nil, err
	}
	pw, err := cfg.ProxyPassword()
	if err != nil {
		return nil, err
	}
	where := "the scpclient configuration"
	if cfg.Path() != "" {
		where = cfg.Path()
	}
	hint := fmt.Sprintf("proxy.user and proxy.password_file (or the environment variable %s) in %s", cfg.Proxy.PasswordEnv, where)
	return proxyclient.New(proxyclient.Options{ProxyURL: cfg.Proxy.URL, User: cfg.Proxy.User, Password: pw,
		RootCAs: pool, CredentialHint: hint, Dial: dial})
}

// LoadPool reads PEM CA bundles into one pool; with no file it returns nil (system roots).
func LoadPool(files ...string) (*x509.CertPool, error) {
	var pool *x509.CertPool
	for _, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		if pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", f)
		}
	}
	return pool, nil
}

// LoadKey reads the manifest verification key.
func LoadKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest_key_file: %w", err)
	}
	k, err := manifest.LoadPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("manifest_key_file %s: %w", path, err)
	}
	return k, nil
}

// Downloader builds the update checker for cfg (online mode).
func (s *Site) Downloader(cfg *config.Config, lg *cmtrace.Log) (*downloader.Downloader, error) {
	key, err := LoadKey(cfg.ManifestKeyFile)
	if err != nil {
		return nil, err
	}
	c, err := s.Client(cfg)
	if err != nil {
		return nil, err
	}
	return downloader.New(downloader.Options{
		Client: c, Key: key, Store: s.Store, Log: lg,
		Fwlink: cfg.Fwlink, InstalledVersion: cfg.Version(), HierarchyID: cfg.HierarchyID, Ring: cfg.Ring,
		Hotfixes: cfg.Hotfixes(), PayloadDir: cfg.PayloadDir,
		OutboxDir: filepath.Join(cfg.DataDir, "outbox", "hman.box", "CFD"),
		Interval:  cfg.CheckInterval, Now: s.opts.Now,
		Fetch: fetch.Options{Progress: s.opts.Progress, IdleTimeout: cfg.TransferIdleTimeout},
	}), nil
}

// Backoff is the wait before retry attempt n (1-based) of a failed cycle: base doubled per
// attempt, never more than max, with jitter so that many sites do not retry in step.
func Backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	// Full jitter in the upper half: at least d/2, at most d.
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// Retry runs fn until it succeeds, ctx ends, or attempts runs out (0: until ctx ends), waiting
// Backoff between tries and never past the interval.
func Retry(ctx context.Context, base, interval time.Duration, attempts int, fn func(context.Context) error) error {
	var err error
	for n := 1; attempts == 0 || n <= attempts; n++ {
		if err = fn(ctx); err == nil {
			return nil
		}
		if attempts != 0 && n == attempts {
			break
		}
		t := time.NewTimer(Backoff(base, interval, n))
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
	return err
}
