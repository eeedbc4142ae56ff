// Package tlslisten provides the certificate and the listener for the gateway's TLS proxy
// listener: clients use https:// proxy URLs, so proxy credentials never cross the wire in clear.
//
// The certificate comes from certmagic, either from static PEM files (reloaded when they change
// on disk, and on Reload, e.g. SIGHUP) or from an internal ACME CA (obtained before New returns,
// renewed by certmagic in the background, shared with other gateway instances through a common
// certmagic storage directory).
//
// certmagic is never allowed to fall back to its package defaults where those would reach out:
// every certmagic.Config here has its own cache, an explicit storage, an explicit single issuer
// (the configured ACME directory, or none at all for static files), and HTTP clients that ignore
// HTTP(S)_PROXY from the environment.
package tlslisten

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Config selects where the listener's certificate comes from: exactly one of the static files
// (CertFile and KeyFile) or ACME.
type Config struct {
	// Static: PEM files (the key in PKCS#1, PKCS#8 or SEC 1 form), reloaded when they change on
	// disk. The files' directories are watched, not the files, because editors and certificate
	// tooling replace files by rename, which a watch on the old inode would miss.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ACME: certificates from an internal ACME CA.
	ACME *ACMEConfig `yaml:"acme"`
	// Logger receives the package's and certmagic's log lines. Nil discards them.
	Logger *slog.Logger `yaml:"-"`
	// OnReload, if set, is called with the outcome of every reload of the static files: nil
	// (the new certificate is being served) or the error (the previous one still is). The
	// watcher calls it when changed files were loaded, or failed to load twice a second apart
	// (a key and certificate replaced one after the other are briefly mismatched); Reload calls
	// it every time. It runs on the caller's goroutine and must return quickly. Meant for
	// metrics, and for tests that wait for a reload.
	OnReload func(err error) `yaml:"-"`
}

// ACMEConfig obtains the listener's certificate from an internal ACME CA.
//
// Challenges: with neither Disable flag set, certmagic offers both HTTP-01 and TLS-ALPN-01 and
// the CA picks one. For each, certmagic starts a short-lived listener of its own for the duration
// of the challenge, on ListenHost and port 80 (HTTP-01) or 443 (TLS-ALPN-01), or the Alt ports.
// The proxy listener itself does not answer TLS-ALPN-01 (it only negotiates http/1.1), so if it
// runs on the CA's TLS-ALPN port, disable TLS-ALPN-01. DNS-01 is not supported, hence no
// wildcard names.
type ACMEConfig struct {
	// DirectoryURL is the CA's ACME directory, e.g. https://127.0.0.1:14000/dir. It is the only
	// CA ever contacted: there is no fallback or staging CA.
	DirectoryURL string `yaml:"directory_url"`
	// TrustedRootsFile is the PEM file of the CA that signs the ACME server's own HTTPS endpoint
	// (certmagic: ACMEIssuer.TrustedRoots). Empty uses the system roots.
	TrustedRootsFile string `yaml:"trusted_roots_file"`
	// Email is the ACME account contact. Required: with no email, certmagic would prompt for
	// one on standard input.
	Email string `yaml:"email"`
	// Domains are the names (or IP addresses, if the CA supports them) the listener serves.
	// certmagic obtains one certificate per name; a handshake without a matching SNI (no SNI, or
	// an IP-literal target, which TLS clients do not send as SNI) gets Domains[0]'s.
	Domains []string `yaml:"domains"`
	// StorageDir is certmagic's file storage (accounts, keys, certificates, locks). Gateway
	// instances that share it share one certificate: the first obtains it under a storage lock,
	// the others load it.
	StorageDir string `yaml:"storage_dir"`
	// DisableHTTPChallenge and DisableTLSALPNChallenge turn off HTTP-01 or TLS-ALPN-01; at least
	// one must stay enabled.
	// The gateway's proxy listener does not answer TLS-ALPN-01, so the file cannot enable it.
	DisableHTTPChallenge    bool `yaml:"-"`
	DisableTLSALPNChallenge bool `yaml:"-"`
	// ListenHost is the address certmagic's challenge listeners bind (empty: all interfaces).
	ListenHost string `yaml:"challenge_host"`
	// AltHTTPPort and AltTLSALPNPort replace ports 80 and 443 for the challenge listeners
	// (optional; for tests, or when the CA's traffic is forwarded).
	AltHTTPPort    int `yaml:"challenge_http_port"`
	AltTLSALPNPort int `yaml:"-"`
}

// Validate reports whether c names exactly one usable certificate source, with every problem
// found rather than the first.
func (c Config) Validate() error {
	static := c.CertFile != "" || c.KeyFile != ""
	switch {
	case static && c.ACME != nil:
		return errors.New("tlslisten: both static files (cert_file/key_file) and acme are set; configure exactly one")
	case !static && c.ACME == nil:
		return errors.New("tlslisten: no certificate source: set cert_file and key_file, or acme")
	case static:
		var errs []error
		if c.CertFile == "" {
			errs = append(errs, errors.New("tlslisten: key_file is set but cert_file is empty"))
		} else if err := checkReadable("cert_file", c.CertFile); err != nil {
			errs = append(errs, err)
		}
		if c.KeyFile == "" {
			errs = append(errs, errors.New("tlslisten: cert_file is set but key_file is empty"))
		} else if err := checkReadable("key_file", c.KeyFile); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	default:
		return c.ACME.validate()
	}
}

func (a *ACMEConfig) validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("tlslisten: acme: "+format, args...))
	}
	if a.DirectoryURL == "" {
		add("directory_url is empty")
	} else if u, err := url.Parse(a.DirectoryURL); err != nil {
		add("directory_url %q: %v", a.DirectoryURL, err)
	} else if u.Scheme != "https" || u.Host == "" {
		// RFC 8555 §6.1: ACME is HTTPS only.
		add("directory_url %q must be an https:// URL", a.DirectoryURL)
	}
	if a.TrustedRootsFile != "" {
		if _, err := loadPool(a.TrustedRootsFile); err != nil {
			errs = append(errs, err)
		}
	}
	if a.Email == "" {
		add("email is empty (certmagic would prompt for one on standard input)")
	} else if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email {
		add("email %q is not a plain address like ops@example.org", a.Email)
	}
	if len(a.Domains) == 0 {
		add("domains is empty: name at least one the certificate must carry")
	}
	seen := make(map[string]bool, len(a.Domains))
	for _, d := range a.Domains {
		n := strings.ToLower(strings.TrimSpace(d))
		switch {
		case n == "":
			add("domains has an empty entry")
		case strings.Contains(n, "*"):
			add("domain %q: wildcards need the DNS-01 challenge, which is not supported", d)
		case strings.ContainsAny(n, "/:") && net.ParseIP(n) == nil:
			add("domain %q: give a bare name or IP address, without scheme or port", d)
		case !certmagic.SubjectQualifiesForCert(n):
			add("domain %q does not qualify for a certificate", d)
		case seen[n]:
			add("domain %q is listed twice", d)
		}
		seen[n] = true
	}
	if a.StorageDir == "" {
		// certmagic's default is a directory under $HOME: hidden state that instances would
		// not share.
		add("storage_dir is empty")
	} else if fi, err := os.Stat(a.StorageDir); err == nil && !fi.IsDir() {
		add("storage_dir %s is not a directory", a.StorageDir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		add("storage_dir: %v", err)
	}
	if a.DisableHTTPChallenge && a.DisableTLSALPNChallenge {
		add("both challenge types are disabled; enable HTTP-01 or TLS-ALPN-01")
	}
	for _, p := range []struct {
		name string
		port int
	}{{"alt_http_port", a.AltHTTPPort}, {"alt_tls_alpn_port", a.AltTLSALPNPort}} {
		if p.port < 0 || p.port > 65535 {
			add("%s %d is out of range", p.name, p.port)
		}
	}
	return errors.Join(errs...)
}

func checkReadable(what, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("tlslisten: %s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("tlslisten: %s: %w", what, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("tlslisten: %s %s is a directory", what, path)
	}
	return nil
}

// loadPool reads a PEM bundle that must hold at least one certificate.
func loadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlslisten: acme: trusted_roots_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tlslisten: acme: trusted_roots_file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// noProxy is the HTTP clients' proxy function: the ACME CA and OCSP responders are dialled
// directly. certmagic treats a nil proxy function as "use the environment", so nil won't do.
func noProxy(*http.Request) (*url.URL, error) { return nil, nil }

// Manager owns the certmagic cache and, for static files, the directory watcher. Its methods
// are safe for concurrent use.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	cache *certmagic.Cache
	// magic is read by the cache's maintenance goroutine (started by certmagic.NewCache,
	// before magic exists), hence atomic.
	magic atomic.Pointer[certmagic.Config]
	// defaultName is the name whose certificate a handshake gets when its SNI matches nothing.
	defaultName atomic.Pointer[string]

	static *staticSource // nil in ACME mode

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and prepares the certificate: static files are loaded now (an error if they
// are unreadable, mismatched or not PEM) and then watched; with ACME, a certificate for every
// domain is loaded from storage or obtained from the CA before New returns, bounded by ctx.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, log: log}
	zl := newZapLogger(log.With("component", "certmagic"), cfg.ACME == nil)
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			if c := m.magic.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("tlslisten: certmagic config not ready")
		},
		Logger: zl,
	})
	var err error
	if cfg.ACME != nil {
		err = m.startACME(ctx, zl)
	} else {
		err = m.startStatic(ctx, zl)
	}
	if err != nil {
		m.cache.Stop()
		return nil, err
	}
	return m, nil
}

func (m *Manager) startACME(ctx context.Context, zl *zap.Logger) error {
	a := m.cfg.ACME
	var roots *x509.CertPool
	if a.TrustedRootsFile != "" {
		var err error
		if roots, err = loadPool(a.TrustedRootsFile); err != nil {
			return err
		}
	}
	domains := make([]string, len(a.Domains))
	for i, d := range a.Domains {
		domains[i] = strings.ToLower(strings.TrimSpace(d))
	}
	magic := certmagic.New(m.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: a.StorageDir},
		// Stapling stays on (an internal CA may run a responder), without the environment's proxy.
		OCSP:   certmagic.OCSPConfig{HTTPProxy: noProxy},
		Logger: zl,
	})
	issuer := certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		// TestCA (where certmagic retries a failed order) stays empty: certmagic fills it in
		// only when CA is Let's Encrypt's own, so retries go to this CA and nowhere else.
		// Setting it to CA would also work but turns off ARI "replaces" on renewals.
		CA:    a.DirectoryURL,
		Email: a.Email,
		// Configuring an internal CA is accepting its terms; certmagic would otherwise ask on
		// standard input.
		Agreed:                  true,
		DisableHTTPChallenge:    a.DisableHTTPChallenge,
		DisableTLSALPNChallenge: a.DisableTLSALPNChallenge,
		ListenHost:              a.ListenHost,
		AltHTTPPort:             a.AltHTTPPort,
		AltTLSALPNPort:          a.AltTLSALPNPort,
		TrustedRoots:            roots,
		Logger:                  zl,
		HTTPProxy:               noProxy,
	})
	magic.Issuers = []certmagic.Issuer{issuer}
	m.magic.Store(magic)
	m.defaultName.Store(&domains[0])

	if err := magic.ManageSync(ctx, domains); err != nil {
		return fmt.Errorf("tlslisten: acme: certificate for %s from %s: %w", strings.Join(domains, ", "), a.DirectoryURL, err)
	}
	m.log.Info("tls certificate ready", "source", "acme", "ca", a.DirectoryURL, "domains", domains)
	return nil
}

// TLSConfig returns a new tls.Config for the proxy listener: TLS 1.2 or newer, HTTP/1.1 only
// (a forward proxy does not speak HTTP/2 to its clients), certificates from certmagic.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: m.getCertificate,
	}
}

// getCertificate asks certmagic for the certificate matching the ClientHello and, if none
// matches, for the default name's. Clients connecting to an IP literal send no SNI, and a
// client that asked for a name the certificate lacks is better served the certificate (and a
// clear name-mismatch error on its side) than a bare handshake alert.
func (m *Manager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	magic := m.magic.Load()
	cert, err := magic.GetCertificate(hello)
	if err == nil && cert != nil && len(cert.Certificate) > 0 {
		return cert, nil
	}
	name := m.defaultName.Load()
	if name == nil || *name == "" || strings.EqualFold(hello.ServerName, *name) {
		return cert, err
	}
	alt := *hello
	alt.ServerName = *name
	return magic.GetCertificate(&alt)
}

// Listen listens on addr (TCP) and wraps the listener in TLS with TLSConfig.
func (m *Manager) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tlslisten: %w", err)
	}
	return tls.NewListener(ln, m.TLSConfig()), nil
}

// Reload re-reads the static certificate files now, whether or not they changed (SIGHUP). On
// error the previous certificate stays in use. With ACME it does nothing: certmagic renews in
// the background and picks up certificates that other instances renewed in the shared storage.
func (m *Manager) Reload() error {
	if m.static == nil {
		return nil
	}
	return m.static.reload(context.Background())
}

// Files are the static certificate and key files, for the process's file watcher (nil with
// ACME); call FilesChanged when they may have changed.
func (m *Manager) Files() []string {
	if m.static == nil {
		return nil
	}
	return []string{m.static.certFile, m.static.keyFile}
}

// FilesChanged loads the static files if their contents changed and reports the outcome to
// OnReload. A pair that fails to load is reported only if it still fails a second later (tools
// replace the key and the certificate one after the other). With ACME it does nothing.
func (m *Manager) FilesChanged() {
	if m.static != nil {
		m.static.filesChanged()
	}
}

// Close stops the pending file re-check and certmagic's maintenance goroutine and waits for them. Open
// connections are not touched; certificates already cached keep being served to handshakes
// that still arrive.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		if m.static != nil {
			m.closeErr = m.static.close()
		}
		m.cache.Stop()
	})
	return m.closeErr
}
