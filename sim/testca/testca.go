// Package testca is a small in-memory certificate authority for the test world: it plays the
// public roots that Microsoft's endpoints chain to, so the simulated cloud, the gateway's TLS
// listener and the SCP client can all do real certificate verification without the internet.
//
// Nothing here is meant for production: keys live in memory, there is no revocation, and the
// root is valid for ten years so that long-running demos never trip over it.
package testca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/scpgate/scpgate/internal/atomicfile"
)

const (
	// rootValidity is long so that a demo left running never outlives its root.
	rootValidity = 10 * 365 * 24 * time.Hour
	// LeafValidity matches what public CAs issue today (90 days), so expiry reports look real.
	LeafValidity = 90 * 24 * time.Hour
	// backdate absorbs clock skew between processes and containers in the test world.
	backdate = time.Hour
)

// CA is a root certificate and its key. It is safe for concurrent use: every method only reads
// the immutable root.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

// New creates a self-signed ECDSA P-256 root valid for ten years.
func New(commonName string) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("testca: empty common name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testca: generate root key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"scpgate test world"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(rootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testca: create root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testca: parse root: %w", err)
	}
	return &CA{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// Certificate returns the root certificate. Callers must not modify it.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// CertPEM returns the root certificate in PEM form (a fresh copy).
func (c *CA) CertPEM() []byte { return append([]byte(nil), c.certPEM...) }

// Pool returns a new pool that trusts only this root, so a test cannot accidentally lean on the
// system roots.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// Issue returns a server certificate for the given DNS names and/or IP addresses, valid from an
// hour ago for LeafValidity.
func (c *CA) Issue(names ...string) (tls.Certificate, error) {
	now := time.Now()
	return c.IssueWithValidity(now.Add(-backdate), now.Add(LeafValidity), names...)
}

// IssueWithValidity is Issue with an explicit validity window, for expiry tests (an already
// expired or not-yet-valid certificate is allowed on purpose).
//
// Each name that parses as an IP address becomes an IP SAN; every other name must be a DNS name
// (a leading "*." wildcard is allowed). The first name is also the subject common name, for
// tools that still display it. The chain holds the leaf only: verifiers ignore a root sent by
// the server, and real servers do not send one.
func (c *CA) IssueWithValidity(notBefore, notAfter time.Time, names ...string) (tls.Certificate, error) {
	if len(names) == 0 {
		return tls.Certificate{}, errors.New("testca: no names to issue for")
	}
	if !notAfter.After(notBefore) {
		return tls.Certificate{}, fmt.Errorf("testca: notAfter %s is not after notBefore %s", notAfter, notBefore)
	}
	var dnsNames []string
	var ips []netip.Addr
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil {
			if a.Zone() != "" {
				return tls.Certificate{}, fmt.Errorf("testca: IP %q has a zone", n)
			}
			ips = append(ips, a.Unmap())
			continue
		}
		if err := checkDNSName(n); err != nil {
			return tls.Certificate{}, err
		}
		dnsNames = append(dnsNames, n)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testca: generate leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
	}
	for _, a := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testca: create leaf: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testca: parse leaf: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// WriteFiles writes the root certificate to dir/ca.pem atomically and returns its path.
func (c *CA) WriteFiles(dir string) (caFile string, err error) {
	caFile = filepath.Join(dir, "ca.pem")
	if err := atomicfile.WriteFile(caFile, c.certPEM, 0o644); err != nil {
		return "", err
	}
	return caFile, nil
}

// WriteCertFiles writes cert's chain to dir/base.crt and its key (PKCS#8) to dir/base.key,
// each atomically; the key file is readable by its owner only.
func WriteCertFiles(dir, base string, cert tls.Certificate) (certFile, keyFile string, err error) {
	if base == "" || base != filepath.Base(base) || base == "." || base == ".." {
		return "", "", fmt.Errorf("testca: bad base name %q", base)
	}
	if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return "", "", errors.New("testca: certificate has no chain or no key")
	}
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", "", fmt.Errorf("testca: marshal key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certFile = filepath.Join(dir, base+".crt")
	keyFile = filepath.Join(dir, base+".key")
	// Key first: a reader that sees the new certificate must also find its key.
	if err := atomicfile.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := atomicfile.WriteFile(certFile, chain, 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("testca: serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil // never zero (RFC 5280 wants a positive serial)
}

// checkDNSName accepts the LDH names (plus "_" and one leading "*." wildcard) that certificates
// carry, so a typo fails here instead of as a puzzling verification error later.
func checkDNSName(n string) error {
	s := n
	if len(s) > 2 && s[:2] == "*." {
		s = s[2:]
	}
	if s == "" || len(s) > 253 {
		return fmt.Errorf("testca: bad DNS name %q", n)
	}
	label := 0
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b == '.':
			if label == 0 {
				return fmt.Errorf("testca: bad DNS name %q: empty label", n)
			}
			label = 0
			continue
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '-', b == '_':
		default:
			return fmt.Errorf("testca: bad DNS name %q: byte %q", n, b)
		}
		label++
		if label > 63 {
			return fmt.Errorf("testca: bad DNS name %q: label too long", n)
		}
	}
	if label == 0 {
		return fmt.Errorf("testca: bad DNS name %q: empty label", n)
	}
	return nil
}
