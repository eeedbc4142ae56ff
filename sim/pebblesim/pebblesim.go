// Package pebblesim runs Let's Encrypt's Pebble ACME test CA in-process, on loopback, for tests
// and the demo: the gateway's TLS listener can then obtain its certificate over real ACME without
// any network beyond 127.0.0.1.
//
// Pebble reads its switches from the environment when its parts are built, so a caller must set
// Env() first (tests: SetEnv(t), which uses t.Setenv and so is undone after the test). Start
// refuses to run without PEBBLE_VA_ALWAYS_VALID: without it Pebble's validation authority would
// resolve the requested names through DNS and connect to them, which is traffic off this
// machine.
//
// Known leak: Pebble's validation authority starts one goroutine per Start that ranges over an
// unexported channel nobody can close (LeakedGoroutine names its top function for
// goleak.IgnoreTopFunction). It holds no socket or file.
package pebblesim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"

	"github.com/scpgate/scpgate/sim/testca"
)

// LeakedGoroutine is the top function of the goroutine Pebble's VA leaves behind (see the
// package comment); pass it to goleak.IgnoreTopFunction.
const LeakedGoroutine = "github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"

// Env is the environment Pebble must see when Start builds it:
//   - PEBBLE_VA_ALWAYS_VALID: every challenge is valid without being fetched (no DNS, no dial).
//   - PEBBLE_VA_NOSLEEP: no random 0–5 s pause before each validation.
//   - PEBBLE_WFE_NONCEREJECT=0: Pebble otherwise rejects 5% of good nonces to exercise client
//     retries; that only makes test timings noisy.
//   - PEBBLE_AUTHZREUSE=0: every order gets fresh authorizations, so runs are deterministic.
func Env() map[string]string {
	return map[string]string{
		"PEBBLE_VA_ALWAYS_VALID": "1",
		"PEBBLE_VA_NOSLEEP":      "1",
		"PEBBLE_WFE_NONCEREJECT": "0",
		"PEBBLE_AUTHZREUSE":      "0",
	}
}

// Setenver is what SetEnv needs; *testing.T and *testing.B satisfy it.
type Setenver interface{ Setenv(key, value string) }

// SetEnv sets Env() through t (t.Setenv restores the old values when the test ends).
func SetEnv(t Setenver) {
	for k, v := range Env() {
		t.Setenv(k, v)
	}
}

// Option configures Start.
type Option func(*options)

type options struct {
	logger *slog.Logger
}

// WithLogger sends Pebble's own log lines to l at debug level (default: discarded; Pebble logs
// every request).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// Pebble is a running in-process Pebble: the ACME API and the management API (roots,
// intermediates) each on their own 127.0.0.1 port, both over HTTPS with a certificate from a
// throwaway CA (TLSRootsPEM).
type Pebble struct {
	ca        *ca.CAImpl
	rootsPEM  []byte
	acmeURL   string
	mgmtURL   string
	acmeSrv   *http.Server
	mgmtSrv   *http.Server
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Start builds Pebble (ECDSA keys, one intermediate, 90-day certificates) and serves it on two
// ephemeral loopback ports. ctx bounds start-up only; Close stops the servers.
func Start(ctx context.Context, opts ...Option) (*Pebble, error) {
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch os.Getenv("PEBBLE_VA_ALWAYS_VALID") {
	case "1", "true", "True", "TRUE":
	default:
		return nil, errors.New("pebblesim: PEBBLE_VA_ALWAYS_VALID is not set; call pebblesim.SetEnv(t) " +
			"first (without it Pebble would resolve and dial the names it validates)")
	}

	// The ACME endpoint's own HTTPS certificate comes from a CA of its own, distinct from
	// Pebble's issuing root, so a test can tell "trusts the ACME server" from "trusts the
	// certificates it issues" (certmagic: TrustedRoots vs. the client's RootCAs).
	endpointCA, err := testca.New("pebblesim ACME endpoint CA")
	if err != nil {
		return nil, fmt.Errorf("pebblesim: %w", err)
	}
	endpointCert, err := endpointCA.Issue("127.0.0.1", "localhost")
	if err != nil {
		return nil, fmt.Errorf("pebblesim: %w", err)
	}

	plog := slog.NewLogLogger(o.logger.Handler(), slog.LevelDebug)
	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "pebblesim default profile"}}
	// ECDSA: Pebble's default RSA-2048 key generation costs seconds under -race.
	authority := ca.New(plog, store, "", "ecdsa", 0, 1, profiles)
	// A loopback resolver that answers nothing: with PEBBLE_VA_ALWAYS_VALID no lookup should
	// happen, and if one ever did it must not leave the machine.
	validator := va.New(plog, 80, 443, false, "127.0.0.1:1", store)
	front := wfe.New(plog, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	p := &Pebble{ca: authority, rootsPEM: endpointCA.CertPEM()}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{endpointCert}}
	errLog := slog.NewLogLogger(o.logger.Handler(), slog.LevelDebug)

	acmeLn, err := listenTLS(ctx, tlsCfg)
	if err != nil {
		return nil, err
	}
	mgmtLn, err := listenTLS(ctx, tlsCfg)
	if err != nil {
		_ = acmeLn.Close()
		return nil, err
	}
	p.acmeURL = "https://" + acmeLn.Addr().String()
	p.mgmtURL = "https://" + mgmtLn.Addr().String()
	p.acmeSrv = &http.Server{Handler: front.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	p.mgmtSrv = &http.Server{Handler: front.ManagementHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{p.acmeSrv, acmeLn}, {p.mgmtSrv, mgmtLn}} {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				o.logger.Error("pebblesim: serve", "err", err)
			}
		}()
	}
	return p, nil
}

func listenTLS(ctx context.Context, cfg *tls.Config) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("pebblesim: listen: %w", err)
	}
	return tls.NewListener(ln, cfg), nil
}

// DirectoryURL is the ACME directory, e.g. https://127.0.0.1:40123/dir.
func (p *Pebble) DirectoryURL() string { return p.acmeURL + wfe.DirectoryPath }

// ManagementURL is the base of Pebble's management API (GET /roots/0, /intermediates/0).
func (p *Pebble) ManagementURL() string { return p.mgmtURL }

// TLSRootsPEM is the CA that signed both HTTPS endpoints' certificate: an ACME client's
// trusted roots (certmagic ACMEIssuer.TrustedRoots). A fresh copy.
func (p *Pebble) TLSRootsPEM() []byte { return append([]byte(nil), p.rootsPEM...) }

// IssuerRootPEM is the root that Pebble's issued certificates chain to: what a client of a
// server with a Pebble certificate must trust. Read from the CA directly (the same bytes the
// management API serves at /roots/0).
func (p *Pebble) IssuerRootPEM() ([]byte, error) {
	root := p.ca.GetRootCert(0)
	if root == nil {
		return nil, errors.New("pebblesim: Pebble has no root certificate")
	}
	return root.PEM(), nil
}

// Close stops both servers, closing open connections, and waits for their goroutines. It is
// safe to call more than once.
func (p *Pebble) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = errors.Join(p.acmeSrv.Close(), p.mgmtSrv.Close())
		p.wg.Wait()
	})
	return p.closeErr
}
