package testca

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := New("scpgate test root")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func verify(ca *CA, leaf *x509.Certificate, name string, at time.Time) error {
	_, err := leaf.Verify(x509.VerifyOptions{
		DNSName:     name,
		Roots:       ca.Pool(),
		CurrentTime: at,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func TestRoot(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	root := ca.Certificate()
	if !root.IsCA || root.Subject.CommonName != "scpgate test root" {
		t.Fatalf("root: IsCA=%v CN=%q", root.IsCA, root.Subject.CommonName)
	}
	if got := root.NotAfter.Sub(root.NotBefore); got < 9*365*24*time.Hour {
		t.Fatalf("root validity %s, want ~10 years", got)
	}
	block, _ := pem.Decode(ca.CertPEM())
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatal("CertPEM is not a PEM certificate")
	}
	if _, err := New(""); err == nil {
		t.Fatal("New(\"\") succeeded")
	}
}

func TestIssueVerify(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	other := newCA(t)
	cert, err := ca.Issue("go.microsoft.com", "*.manage.microsoft.com", "127.0.0.10", "::1")
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf == nil || len(cert.Certificate) != 1 {
		t.Fatalf("chain: leaf=%v len=%d", cert.Leaf != nil, len(cert.Certificate))
	}
	now := time.Now()
	tests := []struct {
		name  string
		ca    *CA
		host  string
		valid bool
	}{
		{"exact name", ca, "go.microsoft.com", true},
		{"wildcard", ca, "sccm.manage.microsoft.com", true},
		{"wildcard is one label", ca, "a.b.manage.microsoft.com", false},
		{"wildcard apex", ca, "manage.microsoft.com", false},
		{"other name", ca, "download.microsoft.com", false},
		{"IPv4 SAN", ca, "127.0.0.10", true},
		{"IPv6 SAN", ca, "::1", true},
		{"other IP", ca, "127.0.0.11", false},
		{"untrusted root", other, "go.microsoft.com", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := verify(tc.ca, cert.Leaf, tc.host, now)
			if (err == nil) != tc.valid {
				t.Fatalf("verify %q: err=%v, want valid=%v", tc.host, err, tc.valid)
			}
		})
	}
}

func TestIssueWithValidity(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	now := time.Now()
	expired, err := ca.IssueWithValidity(now.Add(-48*time.Hour), now.Add(-time.Hour), "download.microsoft.com")
	if err != nil {
		t.Fatal(err)
	}
	var inv x509.CertificateInvalidError
	if err := verify(ca, expired.Leaf, "download.microsoft.com", now); !errors.As(err, &inv) || inv.Reason != x509.Expired {
		t.Fatalf("expired leaf: err=%v, want x509.Expired", err)
	}
	if _, err := ca.IssueWithValidity(now, now, "x.example"); err == nil {
		t.Fatal("empty validity window accepted")
	}
}

func TestIssueRejects(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	for _, names := range [][]string{
		nil,
		{""},
		{"a..b"},
		{"bad name.example"},
		{"[::1]"},
		{"fe80::1%eth0"},
		{"trailing.dot."},
		{"ünicode.example"},
	} {
		if _, err := ca.Issue(names...); err == nil {
			t.Errorf("Issue(%q) succeeded", names)
		}
	}
}

func TestWriteFiles(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	dir := t.TempDir()
	caFile, err := ca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatal("ca.pem does not parse")
	}

	cert, err := ca.Issue("sccm.manage.microsoft.com")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := WriteCertFiles(dir, "server", cert)
	if err != nil {
		t.Fatal(err)
	}
	if certFile != filepath.Join(dir, "server.crt") || keyFile != filepath.Join(dir, "server.key") {
		t.Fatalf("paths %s %s", certFile, keyFile)
	}
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v, want 0600", st.Mode().Perm())
	}
	loaded, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(ca, loaded.Leaf, "sccm.manage.microsoft.com", time.Now()); err != nil {
		t.Fatal(err)
	}
	// No temporary files are left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("dir holds %d entries, want 3 (ca.pem, server.crt, server.key)", len(entries))
	}

	for _, base := range []string{"", ".", "..", "a/b"} {
		if _, _, err := WriteCertFiles(dir, base, cert); err == nil {
			t.Errorf("WriteCertFiles base %q succeeded", base)
		}
	}
	if _, _, err := WriteCertFiles(dir, "x", tls.Certificate{}); err == nil {
		t.Error("WriteCertFiles with empty certificate succeeded")
	}
}
