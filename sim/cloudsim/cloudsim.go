// Package cloudsim is the simulated Microsoft cloud for integration tests and the demo: one
// HTTPS server on port 443 of a loopback address that answers for every endpoint name the
// service connection point uses (the groups of endpoints.yaml), with certificates from a testca.CA.
//
// It serves the update-check chain (go.microsoft.com fwlink → sccm.manage.microsoft.com
// connected service → signed manifest on download.microsoft.com), payloads with range support
// on configmgrbits.cdn.manage.microsoft.com and configmgrbits.azureedge.net, a usage-data
// receiver that stores each package once per idempotency key, a banner on GET / for every other
// name, and injectable faults (see Fault).
//
// The real endpoints listen on 443 and the gateway never rewrites ports, so neither does the
// cloud: the port override in Config.Addr exists only for this package's own unit tests on
// machines where binding 443 is not allowed. A DNS server (integration/dnssim) maps Hosts() to
// Addr(). The cloud binds loopback addresses only and never connects anywhere.
package cloudsim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/scpgate/scpgate/manifest"
	"github.com/scpgate/scpgate/sim/testca"
)

const (
	// DefaultMaxUploadSize bounds one usage-data package.
	DefaultMaxUploadSize = 32 << 20
	// maxRecords bounds Requests() so a long demo does not grow without limit; the oldest go.
	maxRecords = 10000
	// shutdownTimeout is how long Close lets in-flight requests finish before cutting them.
	shutdownTimeout = 5 * time.Second
	// listenAttempts is how many random loopback addresses Start tries when one is in use.
	listenAttempts = 32
)

// Config configures a Cloud. The zero value is usable.
type Config struct {
	// Addr is where to listen: "" picks a random 127.A.B.C:443 (A ≠ 0, retried on
	// EADDRINUSE), "127.0.0.10" means port 443 of that address, "127.0.0.10:443" is explicit.
	// Only loopback addresses are accepted. A port other than 443 (":0" for a random address
	// and an ephemeral port) is for this package's unit tests only: the real endpoints are on
	// 443 and the gateway never rewrites ports.
	Addr string
	// CA signs the server certificates; nil creates a private one (see CA()).
	CA *testca.CA
	// SigningKey is the "Microsoft" manifest key; nil generates one (see PublicKey()).
	SigningKey ed25519.PrivateKey
	// KeyID is recorded in the manifest envelope; "" uses manifest.KeyIDOf.
	KeyID string
	// Releases are the updates to publish; nil publishes DefaultReleases(), an empty non-nil
	// slice publishes none.
	Releases []Release
	// ExtraHosts are served in addition to DefaultHosts(), with the GET / banner.
	ExtraHosts []string
	// MaxUploadSize bounds a usage-data body; 0 means DefaultMaxUploadSize.
	MaxUploadSize int64
	// Logger receives the cloud's logs; nil discards them.
	Logger *slog.Logger
}

// Upload is a usage-data package the cloud acknowledged.
type Upload struct {
	IdempotencyKey string
	Size           int64
	SHA256         string // hex of Data
	Data           []byte
	Received       time.Time // first receipt
	RemoteAddr     string    // of the first receipt
	Acks           int       // how many times it was acknowledged (retries included)
}

// Receipt is the JSON body of a 202 answer to a usage-data upload.
type Receipt struct {
	IdempotencyKey string    `json:"idempotencyKey"`
	SHA256         string    `json:"sha256"`
	Size           int64     `json:"size"`
	Received       time.Time `json:"received"`
	Duplicate      bool      `json:"duplicate"`
}

// RequestRecord is what the cloud saw of one request.
type RequestRecord struct {
	Time       time.Time
	RemoteAddr string
	SNI        string
	Host       string // normalised Host header (raw if it did not normalise)
	// Method is empty for a TLS handshake that a wrongcert fault answered (no request follows).
	Method   string
	Path     string
	RawQuery string
	Range    string
	// Status is what the handler answered; 0 means no answer (the client left during a slow
	// fault). With a reset fault the client may have seen none of it.
	Status int
	// BodyBytes is how many body bytes were handed to the connection.
	BodyBytes int64
	// Fault is the kind of the fault applied, if any.
	Fault string
}

// Cloud is the simulated cloud. Its methods are safe for concurrent use.
type Cloud struct {
	log       *slog.Logger
	ca        *testca.CA
	key       ed25519.PrivateKey
	pub       ed25519.PublicKey
	keyID     string
	hosts     []string // sorted
	hostSet   map[string]bool
	cert      tls.Certificate
	wrongCert tls.Certificate
	tlsConfig *tls.Config
	maxUpload int64

	bindIP     netip.Addr // invalid: random
	bindPort   uint16
	manifest   manifest.Manifest
	signed     []byte
	signedETag string
	signedPath string
	payloads   map[string]*payload // by lower-case GUID

	mu        sync.Mutex
	faults    []faultEntry
	faultSeq  uint64
	requests  []RequestRecord
	uploads   []Upload
	uploadIdx map[string]int

	lmu        sync.Mutex // lifecycle
	started    bool
	closed     bool
	srv        *http.Server
	addr       netip.AddrPort
	cancelBase context.CancelFunc
	stopWatch  func() bool
	serveDone  chan struct{}
	inflight   sync.WaitGroup
	closeOnce  sync.Once
}

// New prepares a cloud: certificates, payloads and the signed manifest. It does not listen.
func New(cfg Config) (*Cloud, error) {
	c := &Cloud{
		log:       cfg.Logger,
		ca:        cfg.CA,
		key:       cfg.SigningKey,
		keyID:     cfg.KeyID,
		maxUpload: cfg.MaxUploadSize,
		hostSet:   map[string]bool{},
		payloads:  map[string]*payload{},
		uploadIdx: map[string]int{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.maxUpload == 0 {
		c.maxUpload = DefaultMaxUploadSize
	}
	if c.maxUpload < 0 {
		return nil, errors.New("cloudsim: negative MaxUploadSize")
	}
	var err error
	if c.bindIP, c.bindPort, err = parseAddr(cfg.Addr); err != nil {
		return nil, err
	}
	if c.ca == nil {
		if c.ca, err = testca.New("scpgate cloudsim root"); err != nil {
			return nil, err
		}
	}
	if c.key == nil {
		if _, c.key, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return nil, fmt.Errorf("cloudsim: generate manifest key: %w", err)
		}
	}
	if len(c.key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("cloudsim: SigningKey has %d bytes, want %d", len(c.key), ed25519.PrivateKeySize)
	}
	c.pub = c.key.Public().(ed25519.PublicKey)
	if c.keyID == "" {
		c.keyID = manifest.KeyIDOf(c.pub)
	}

	hosts, err := normalizeHosts(append(DefaultHosts(), cfg.ExtraHosts...))
	if err != nil {
		return nil, err
	}
	for _, h := range hosts {
		if !c.hostSet[h] {
			c.hostSet[h] = true
			c.hosts = append(c.hosts, h)
		}
	}
	slices.Sort(c.hosts)
	// One leaf for every name keeps the handshake simple; Microsoft's own certificates also
	// carry long SAN lists.
	if c.cert, err = c.ca.Issue(c.hosts...); err != nil {
		return nil, err
	}
	if c.wrongCert, err = c.ca.Issue(WrongCertName); err != nil {
		return nil, err
	}

	if err := c.publish(cfg.Releases); err != nil {
		return nil, err
	}

	c.tlsConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// HTTP/1.1 only: the reset fault needs to hijack the connection, which HTTP/2 does not
		// allow. Through the gateway the protocol is opaque anyway.
		NextProtos:     []string{"http/1.1"},
		GetCertificate: c.getCertificate,
		// Without resumption every connection runs GetCertificate, so a wrongcert fault cannot
		// be sidestepped by a client's session cache.
		SessionTicketsDisabled: true,
	}
	tls12 := c.tlsConfig.Clone()
	tls12.MaxVersion = tls.VersionTLS12
	c.tlsConfig.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		// configmgrbits.azureedge.net is documented as TLS 1.2 only; imitate it so clients and
		// validation reports meet that case.
		if n, _ := normalizeHost(h.ServerName); n == HostAzureEdge {
			return tls12, nil
		}
		return nil, nil
	}
	return c, nil
}

// publish builds the payloads and the signed manifest.
func (c *Cloud) publish(releases []Release) error {
	if releases == nil {
		releases = DefaultReleases()
	}
	m := manifest.Manifest{SchemaVersion: manifest.CurrentSchemaVersion, Updates: []manifest.Update{}}
	for _, r := range releases {
		p, err := buildPayload(r)
		if err != nil {
			return err
		}
		c.payloads[strings.ToLower(r.GUID)] = p
		m.Updates = append(m.Updates, p.update)
		if p.update.Published.After(m.Generated) {
			m.Generated = p.update.Published
		}
	}
	// Generated follows the newest release so the manifest bytes (and its ETag) depend only on
	// the releases and the key, not on when the cloud started.
	if m.Generated.IsZero() {
		m.Generated = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	signed, err := manifest.Sign(m, c.key, c.keyID)
	if err != nil {
		return fmt.Errorf("cloudsim: releases: %w", err)
	}
	sum := sha256.Sum256(signed)
	c.manifest = m
	c.signed = signed
	c.signedETag = `"` + hex.EncodeToString(sum[:16]) + `"`
	c.signedPath = "/download/" + hex.EncodeToString(sum[:8]) + "/" + manifest.FileName
	return nil
}

// parseAddr reads Config.Addr; an invalid returned address means "pick a random one".
func parseAddr(s string) (netip.Addr, uint16, error) {
	if s == "" {
		return netip.Addr{}, 443, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		s = netip.AddrPortFrom(a, 443).String()
	} else if strings.HasPrefix(s, ":") {
		ap, err := netip.ParseAddrPort("127.0.0.1" + s)
		if err != nil {
			return netip.Addr{}, 0, fmt.Errorf("cloudsim: Addr %q: %w", s, err)
		}
		return netip.Addr{}, ap.Port(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("cloudsim: Addr %q: want an IP address with optional port: %w", s, err)
	}
	ip := ap.Addr().Unmap()
	if !ip.IsLoopback() || ip.Zone() != "" {
		return netip.Addr{}, 0, fmt.Errorf("cloudsim: Addr %q is not a loopback address; the simulated cloud never leaves the machine", s)
	}
	return ip, ap.Port(), nil
}

// Start listens and serves in the background. The cloud closes when ctx is done or Close is
// called, whichever comes first.
func (c *Cloud) Start(ctx context.Context) error {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	if c.started || c.closed {
		return errors.New("cloudsim: Start called twice or after Close")
	}
	ln, err := c.listen(ctx)
	if err != nil {
		return err
	}
	c.started = true
	c.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	c.addr = netip.AddrPortFrom(c.addr.Addr().Unmap(), c.addr.Port())
	baseCtx, cancel := context.WithCancel(context.Background())
	c.cancelBase = cancel
	c.srv = &http.Server{
		Handler:           http.HandlerFunc(c.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		// Generous whole-request limits: a 32 MiB upload or a 64 MiB payload through a slow
		// gateway must finish, but nothing may hang forever.
		ReadTimeout:    5 * time.Minute,
		WriteTimeout:   10 * time.Minute,
		IdleTimeout:    5 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		// A non-nil empty map turns HTTP/2 off (see the TLS config).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
		// Close cancels this, which releases requests stalled by a slow fault.
		BaseContext: func(net.Listener) context.Context { return baseCtx },
	}
	c.serveDone = make(chan struct{})
	srv, tlsLn := c.srv, tls.NewListener(ln, c.tlsConfig)
	go func() {
		defer close(c.serveDone)
		if err := srv.Serve(tlsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("cloudsim: serve", "err", err)
		}
	}()
	c.stopWatch = context.AfterFunc(ctx, func() { _ = c.Close() })
	c.log.Info("cloudsim: listening", "addr", c.addr.String(), "hosts", len(c.hosts), "key_id", c.keyID)
	return nil
}

func (c *Cloud) listen(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	if c.bindIP.IsValid() {
		ln, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(c.bindIP, c.bindPort).String())
		if err != nil {
			return nil, fmt.Errorf("cloudsim: listen: %w", err)
		}
		return ln, nil
	}
	var last error
	for range listenAttempts {
		// 127.0.0.0/16 is left alone: 127.0.0.1 and 127.0.0.53 host real services.
		ip := netip.AddrFrom4([4]byte{127, byte(1 + mrand.IntN(254)), byte(mrand.IntN(256)), byte(1 + mrand.IntN(254))})
		ln, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(ip, c.bindPort).String())
		if err == nil {
			return ln, nil
		}
		last = err
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, fmt.Errorf("cloudsim: listen on a random loopback address, port %d: %w", c.bindPort, last)
}

// Close stops accepting, lets in-flight requests finish (up to a few seconds, stalled ones are
// released at once), and waits for every goroutine the cloud started. It is idempotent.
func (c *Cloud) Close() error {
	c.closeOnce.Do(func() {
		c.lmu.Lock()
		c.closed = true
		srv := c.srv
		c.lmu.Unlock()
		if srv == nil {
			return
		}
		c.stopWatch()
		c.cancelBase()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			c.log.Warn("cloudsim: graceful shutdown timed out; closing connections", "err", err)
			_ = srv.Close()
		}
		<-c.serveDone
		// Hijacked (reset) connections are not tracked by Shutdown; their handlers are.
		c.inflight.Wait()
		c.log.Info("cloudsim: closed", "addr", c.addr.String())
	})
	return nil
}

// Addr is the address the cloud listens on (zero before Start).
func (c *Cloud) Addr() netip.AddrPort {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	return c.addr
}

// Hosts returns every name the cloud serves, sorted; DNS should map each to Addr().
func (c *Cloud) Hosts() []string { return slices.Clone(c.hosts) }

// CA returns the CA that signs the cloud's certificates.
func (c *Cloud) CA() *testca.CA { return c.ca }

// PublicKey is the manifest verification key (the SCP client's "Microsoft" key).
func (c *Cloud) PublicKey() ed25519.PublicKey { return bytes.Clone(c.pub) }

// KeyID is the key id written into the manifest envelope.
func (c *Cloud) KeyID() string { return c.keyID }

// SignedManifest returns the bytes served as the manifest (for offline-mode tests).
func (c *Cloud) SignedManifest() []byte { return bytes.Clone(c.signed) }

// ManifestURL is where the connected service redirects to.
func (c *Cloud) ManifestURL() string { return "https://" + HostDownload + c.signedPath }

// Updates returns the published manifest entries.
func (c *Cloud) Updates() []manifest.Update {
	out := make([]manifest.Update, len(c.manifest.Updates))
	for i, u := range c.manifest.Updates {
		u.ApplicableFrom = slices.Clone(u.ApplicableFrom)
		out[i] = u
	}
	return out
}

// Uploads returns every acknowledged usage-data package, once per idempotency key, in order of
// first receipt. The data are copies.
func (c *Cloud) Uploads() []Upload {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Upload, len(c.uploads))
	for i, u := range c.uploads {
		u.Data = bytes.Clone(u.Data)
		out[i] = u
	}
	return out
}

// Requests returns the most recent requests (up to 10,000), oldest first.
func (c *Cloud) Requests() []RequestRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.requests)
}

func (c *Cloud) record(r RequestRecord) {
	c.mu.Lock()
	if len(c.requests) >= maxRecords {
		c.requests = slices.Delete(c.requests, 0, len(c.requests)-maxRecords+1)
	}
	c.requests = append(c.requests, r)
	c.mu.Unlock()
	c.log.Debug("cloudsim: request", "host", r.Host, "sni", r.SNI, "method", r.Method, "path", r.Path,
		"range", r.Range, "status", r.Status, "bytes", r.BodyBytes, "fault", r.Fault, "remote", r.RemoteAddr)
}

func (c *Cloud) serves(host string) bool { return c.hostSet[host] }

// getCertificate serves the all-names certificate, or the wrong one under a wrongcert fault.
// An unknown or missing SNI also gets the all-names certificate; the client's name check fails
// on its own.
func (c *Cloud) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	sni, _ := normalizeHost(hello.ServerName)
	if _, ok := c.takeFault(sni, "", true); ok {
		remote := ""
		if hello.Conn != nil {
			remote = hello.Conn.RemoteAddr().String()
		}
		c.record(RequestRecord{Time: time.Now(), RemoteAddr: remote, SNI: sni, Host: sni, Fault: FaultWrongCert})
		return &c.wrongCert, nil
	}
	return &c.cert, nil
}
