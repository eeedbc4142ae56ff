package tlslisten

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// confirm is how long FilesChanged waits before it believes a pair that failed to load.
// Certificate tooling replaces the key and the certificate one after the other, each with its
// own fsync, which can take longer than settle; reading in between pairs a new key with the old
// certificate. A failure is logged and reported only if the same contents fail again after
// confirm (or at once for Reload).
const confirm = time.Second

// staticSource serves a certificate from PEM files and follows changes to them.
type staticSource struct {
	m                 *Manager
	certFile, keyFile string

	mu sync.Mutex // serialises loads and guards the fields below
	// hash is the certmagic cache key of the certificate being served.
	hash string
	// served is the digest of the file contents being served; bad is that of the last
	// contents whose failure was reported (hasBad says whether there is one). Unrelated events
	// in the directory, or a broken pair left in place, then neither reload nor log again.
	served, bad [sha256.Size]byte
	hasBad      bool

	// suspect is the digest of contents that failed once and are being given confirm to
	// settle; recheck is the pending second look (nil when none). closed stops new ones.
	suspect    [sha256.Size]byte
	hasSuspect bool
	recheck    *time.Timer
	closed     bool
}

func (m *Manager) startStatic(ctx context.Context, zl *zap.Logger) error {
	magic := certmagic.New(m.cache, certmagic.Config{
		// Nothing here obtains, renews or staples, so nothing needs storage or an issuer; these
		// stand-ins keep certmagic from falling back to $HOME storage and a Let's Encrypt issuer.
		Storage: noStorage{},
		Issuers: []certmagic.Issuer{noIssuer{}},
		// Stapling would need storage and, for certificates that name a responder, the network.
		OCSP:       certmagic.OCSPConfig{DisableStapling: true, HTTPProxy: noProxy},
		DisableARI: true,
		Logger:     zl,
	})
	m.magic.Store(magic)

	s := &staticSource{m: m, certFile: m.cfg.CertFile, keyFile: m.cfg.KeyFile}
	if _, _, err := s.load(ctx, true); err != nil {
		return err
	}
	m.static = s
	return nil
}

// filesChanged loads the files if their contents changed. A pair that fails to load is looked
// at again after confirm and reported only if the same contents fail again: tooling replaces
// the key and the certificate one after the other.
func (s *staticSource) filesChanged() {
	sum, changed, err := s.load(context.Background(), false)
	s.mu.Lock()
	if s.recheck != nil {
		s.recheck.Stop()
		s.recheck = nil
	}
	switch {
	case err == nil:
		s.hasSuspect = false
		s.mu.Unlock()
		if changed {
			s.report(nil)
		}
	case !s.hasSuspect || sum != s.suspect:
		s.suspect, s.hasSuspect = sum, true
		if !s.closed {
			s.recheck = time.AfterFunc(confirm, s.filesChanged)
		}
		s.mu.Unlock()
	default:
		s.hasSuspect = false
		s.bad, s.hasBad = sum, true
		s.mu.Unlock()
		s.report(err)
	}
}

// reload loads the files now, whether or not they changed, and reports the outcome.
func (s *staticSource) reload(ctx context.Context) error {
	sum, _, err := s.load(ctx, true)
	if err != nil {
		s.markBad(sum)
	}
	s.report(err)
	return err
}

// report logs a failure and passes the outcome of a load to OnReload.
func (s *staticSource) report(err error) {
	if err != nil {
		s.m.log.Error("tls certificate reload failed; still serving the previous certificate",
			"cert_file", s.certFile, "key_file", s.keyFile, "err", err)
	}
	if s.m.cfg.OnReload != nil {
		s.m.cfg.OnReload(err)
	}
}

func (s *staticSource) markBad(sum [sha256.Size]byte) {
	s.mu.Lock()
	s.bad, s.hasBad = sum, true
	s.mu.Unlock()
}

// load reads and checks the pair and, if it is new (or force), caches it in certmagic and
// drops the certificate it replaces. It returns the digest of what it read (zero if a file
// could not be read) and whether the served certificate changed. On error the served
// certificate is unchanged.
func (s *staticSource) load(ctx context.Context, force bool) (sum [sha256.Size]byte, changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	certPEM, err := os.ReadFile(s.certFile)
	if err != nil {
		return sum, false, fmt.Errorf("tlslisten: cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(s.keyFile)
	if err != nil {
		return sum, false, fmt.Errorf("tlslisten: key_file: %w", err)
	}
	sum = digest(certPEM, keyPEM)
	if !force && s.hash != "" && (sum == s.served || (s.hasBad && sum == s.bad)) {
		return sum, false, nil
	}

	// X509KeyPair checks that the key matches the certificate, which certmagic does too, but
	// its error names the problem more plainly.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return sum, false, fmt.Errorf("tlslisten: %s and %s: %w", s.certFile, s.keyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return sum, false, fmt.Errorf("tlslisten: %s: %w", s.certFile, err)
		}
	}
	magic := s.m.magic.Load()
	hash, err := magic.CacheUnmanagedCertificatePEMBytes(ctx, certPEM, keyPEM, nil)
	if err != nil {
		return sum, false, fmt.Errorf("tlslisten: %s and %s: %w", s.certFile, s.keyFile, err)
	}
	// The new certificate is cached before the old one goes, so no handshake finds neither.
	if s.hash != "" && s.hash != hash {
		s.m.cache.Remove([]string{s.hash})
	}
	s.hash, s.served, s.hasBad = hash, sum, false
	name := primaryName(leaf)
	s.m.defaultName.Store(&name)

	s.m.log.Info("tls certificate loaded", "source", "static", "cert_file", s.certFile,
		"subject", leaf.Subject.String(), "dns_names", leaf.DNSNames, "ip_addresses", leaf.IPAddresses,
		"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
	if time.Now().After(leaf.NotAfter) {
		// Served anyway: refusing it would take the listener down, and clients already
		// report an expired certificate clearly.
		s.m.log.Warn("tls certificate has expired", "cert_file", s.certFile, "not_after", leaf.NotAfter)
	}
	return sum, true, nil
}

func (s *staticSource) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.recheck != nil {
		s.recheck.Stop()
	}
	return nil
}

// digest identifies a (certificate, key) pair of file contents.
func digest(certPEM, keyPEM []byte) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(certPEM)))
	h.Write(n[:])
	h.Write(certPEM)
	h.Write(keyPEM)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// primaryName is the name a handshake without a matching SNI is served: the first DNS name,
// else the first IP address, else the subject common name.
func primaryName(leaf *x509.Certificate) string {
	switch {
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0]
	case len(leaf.IPAddresses) > 0:
		return leaf.IPAddresses[0].String()
	default:
		return leaf.Subject.CommonName
	}
}

var errNoStorage = errors.New("tlslisten: static certificates have no certmagic storage")

// noStorage is certmagic storage that holds nothing and accepts nothing.
type noStorage struct{}

func (noStorage) Lock(context.Context, string) error   { return errNoStorage }
func (noStorage) Unlock(context.Context, string) error { return errNoStorage }
func (noStorage) Store(context.Context, string, []byte) error {
	return errNoStorage
}
func (noStorage) Load(_ context.Context, key string) ([]byte, error) {
	return nil, fmt.Errorf("%w: %s", fs.ErrNotExist, key)
}
func (noStorage) Delete(_ context.Context, key string) error {
	return fmt.Errorf("%w: %s", fs.ErrNotExist, key)
}
func (noStorage) Exists(context.Context, string) bool { return false }
func (noStorage) List(_ context.Context, prefix string, _ bool) ([]string, error) {
	return nil, fmt.Errorf("%w: %s", fs.ErrNotExist, prefix)
}
func (noStorage) Stat(_ context.Context, key string) (certmagic.KeyInfo, error) {
	return certmagic.KeyInfo{}, fmt.Errorf("%w: %s", fs.ErrNotExist, key)
}
func (noStorage) String() string { return "tlslisten.noStorage" }

// noIssuer refuses to issue: static certificates are never obtained or renewed.
type noIssuer struct{}

func (noIssuer) Issue(context.Context, *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	return nil, errors.New("tlslisten: static certificates are not issued; replace the files instead")
}
func (noIssuer) IssuerKey() string { return "scpgate-static" }
