package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scpgate/scpgate/gateway/admin"
	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/gateway/limits"
	"github.com/scpgate/scpgate/gateway/metrics"
	"github.com/scpgate/scpgate/gateway/netguard"
	"github.com/scpgate/scpgate/gateway/proxyauth"
	"github.com/scpgate/scpgate/gateway/resolver"
	"github.com/scpgate/scpgate/gateway/tlslisten"
	"github.com/scpgate/scpgate/policy"
)

// Server is a whole gateway process built from a Config: proxy listeners (plain and TLS), the
// admin listener, policy and htpasswd files with hot reload, resolver, limits, metrics and the
// audit log. cmd/scpgate runs one; integration tests run one in-process.
type Server struct {
	cfg     Config
	log     *slog.Logger
	gw      *Gateway
	audit   *audit.Log
	metrics *metrics.Metrics
	auth    *proxyauth.Authenticator // nil: authentication off
	tls     *tlslisten.Manager       // nil: no TLS listener

	plain, tlsLns []net.Listener
	adminLn       net.Listener

	watcher     *fileWatcher // nil: watch: false
	reloadMu    sync.Mutex
	loadedAt    atomic.Int64 // unix nanoseconds of the policy in force
	htpasswdSum [sha256.Size]byte
	onReload    []func(error)
}

// ServerOption adjusts a Server at construction.
type ServerOption func(*serverOptions)

type serverOptions struct {
	observers []func(audit.Record)
	onReload  []func(error)
}

// WithAuditObserver calls f with every audit record after it was handed to the audit log, in
// the goroutine that produced it; f must be quick. Tests wait on records with it.
func WithAuditObserver(f func(audit.Record)) ServerOption {
	return func(o *serverOptions) { o.observers = append(o.observers, f) }
}

// WithReloadObserver calls f after every reload attempt with its outcome (nil: the files in
// force are the ones on disk).
func WithReloadObserver(f func(error)) ServerOption {
	return func(o *serverOptions) { o.onReload = append(o.onReload, f) }
}

// auditFanout writes to the audit log first, then to metrics and each observer.
type auditFanout struct {
	log       AuditSink
	metrics   *metrics.Metrics
	observers []func(audit.Record)
}

func (a auditFanout) Write(r audit.Record) {
	a.log.Write(r)
	a.metrics.Observe(r)
	for _, f := range a.observers {
		f(r)
	}
}

// NewServer loads the policy (and htpasswd), obtains the TLS certificate, opens the audit log
// and binds every listener. Nothing is served until Run. ctx bounds the start-up (ACME).
func NewServer(ctx context.Context, cfg Config, logger *slog.Logger, options ...ServerOption) (s *Server, err error) {
	var so serverOptions
	for _, o := range options {
		o(&so)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pol, err := policy.Load(cfg.Resolve(cfg.Policy))
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	allow, err := cfg.AllowPrefixes()
	if err != nil {
		return nil, err
	}
	res, err := resolver.New(resolver.Config{Servers: cfg.DNS.Servers, Timeout: cfg.DNS.Timeout, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	s = &Server{cfg: cfg, log: logger, metrics: metrics.New(), onReload: so.onReload}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	if cfg.Auth.Htpasswd != "" {
		store, sum, err := loadHtpasswd(cfg.Resolve(cfg.Auth.Htpasswd))
		if err != nil {
			return nil, err
		}
		s.htpasswdSum = sum
		s.auth = proxyauth.NewAuthenticator(proxyauth.Config{
			Store:         store,
			MaxFailures:   cfg.Auth.MaxFailures,
			FailureWindow: cfg.Auth.FailureWindow,
			Lockout:       cfg.Auth.Lockout,
		})
	}
	if len(cfg.TLSListen) > 0 {
		if s.tls, err = tlslisten.New(ctx, s.tlsConfig()); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	s.audit, err = audit.New(audit.Config{
		Path:         cfg.Resolve(cfg.Audit.Path),
		SyncInterval: cfg.Audit.SyncInterval,
		MaxBytes:     cfg.Audit.MaxBytes,
		MaxBackups:   cfg.Audit.MaxBackups,
		Logger:       logger,
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	fanout := auditFanout{log: s.audit, metrics: s.metrics, observers: so.observers}

	conns := limits.NewConnLimiter(cfg.Limits.MaxConnections, cfg.Limits.MaxConnectionsPerClient)
	onReject := func(client netip.Addr, reason string) {
		s.metrics.Rejected(reason)
		fanout.Write(audit.Record{
			Time: time.Now().UTC(), Client: client.String(), Decision: audit.DecisionDeny,
			Reason: reason, Status: http.StatusTooManyRequests, Event: audit.EventDecision,
		})
	}
	var self []netip.AddrPort
	bind := func(addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		self = append(self, ln.Addr().(*net.TCPAddr).AddrPort())
		return limits.LimitListener(ln, conns, onReject), nil
	}
	for _, addr := range cfg.Listen {
		ln, err := bind(addr)
		if err != nil {
			return nil, err
		}
		s.plain = append(s.plain, ln)
	}
	for _, addr := range cfg.TLSListen {
		ln, err := bind(addr)
		if err != nil {
			return nil, err
		}
		s.tlsLns = append(s.tlsLns, tls.NewListener(ln, s.tls.TLSConfig()))
	}
	if cfg.Admin != "" {
		if s.adminLn, err = net.Listen("tcp", cfg.Admin); err != nil {
			return nil, fmt.Errorf("admin listen %s: %w", cfg.Admin, err)
		}
		self = append(self, s.adminLn.Addr().(*net.TCPAddr).AddrPort())
	}

	var rate *limits.RateLimiter
	if cfg.Limits.RequestsPerSecond > 0 {
		rate = limits.NewRateLimiter(cfg.Limits.RequestsPerSecond, cfg.Limits.Burst, 65536, time.Now)
	}
	s.gw, err = New(Options{
		Policy:    pol,
		Resolver:  res,
		Guard:     netguard.New(allow).WithListeners(self...),
		Audit:     fanout,
		Logger:    logger,
		Timeouts:  cfg.Timeouts,
		Limits:    cfg.Limits,
		Auth:      s.auth,
		RateLimit: rate,
		Observer:  s.metrics,
	})
	if err != nil {
		return nil, err
	}
	if cfg.WatchFiles() {
		files := []string{cfg.Resolve(cfg.Policy)}
		if s.auth != nil {
			files = append(files, cfg.Resolve(cfg.Auth.Htpasswd))
		}
		// Watching starts now, not in Run: an edit made once NewServer returned is not missed.
		if s.watcher, err = newFileWatcher(files, 200*time.Millisecond, logger); err != nil {
			logger.Warn("cannot watch the policy files; SIGHUP still reloads", "err", err)
			s.watcher, err = nil, nil
		}
	}
	now := time.Now()
	s.loadedAt.Store(now.UnixNano())
	s.metrics.PolicyLoaded(pol.Version, now)
	return s, nil
}

func (s *Server) tlsConfig() tlslisten.Config {
	c := tlslisten.Config{
		CertFile: s.cfg.Resolve(s.cfg.TLS.CertFile),
		KeyFile:  s.cfg.Resolve(s.cfg.TLS.KeyFile),
		Logger:   s.log,
		OnReload: func(err error) {
			if err != nil {
				s.log.Error("TLS certificate reload failed; the previous certificate is still served", "err", err)
			}
		},
	}
	if a := s.cfg.TLS.ACME; a != nil {
		c.CertFile, c.KeyFile = "", ""
		c.ACME = &tlslisten.ACMEConfig{
			DirectoryURL:     a.DirectoryURL,
			TrustedRootsFile: s.cfg.Resolve(a.TrustedRootsFile),
			Email:            a.Email,
			Domains:          a.Domains,
			StorageDir:       s.cfg.Resolve(a.StorageDir),
			// The proxy listener does not answer TLS-ALPN-01 challenges.
			DisableTLSALPNChallenge: true,
			ListenHost:              a.ChallengeHost,
			AltHTTPPort:             a.ChallengeHTTPPort,
		}
	}
	return c
}

func loadHtpasswd(path string) (*proxyauth.Store, [sha256.Size]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, [sha256.Size]byte{}, fmt.Errorf("auth: %w", err)
	}
	store, err := proxyauth.ParseHtpasswd(path, data)
	if err != nil {
		return nil, [sha256.Size]byte{}, fmt.Errorf("auth: %w", err)
	}
	return store, sha256.Sum256(data), nil
}

// Addresses are the bound listener addresses (useful with port 0).
type Addresses struct {
	Proxy []string `json:"proxy"`
	TLS   []string `json:"tls,omitempty"`
	Admin string   `json:"admin,omitempty"`
}

// Addrs reports where the server listens.
func (s *Server) Addrs() Addresses {
	var a Addresses
	for _, ln := range s.plain {
		a.Proxy = append(a.Proxy, ln.Addr().String())
	}
	for _, ln := range s.tlsLns {
		a.TLS = append(a.TLS, ln.Addr().String())
	}
	if s.adminLn != nil {
		a.Admin = s.adminLn.Addr().String()
	}
	return a
}

// Gateway exposes the handler, for inspection.
func (s *Server) Gateway() *Gateway { return s.gw }

// Metrics exposes the metrics, for inspection.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Reload reads the policy and htpasswd files again (and the static TLS certificate). Each is
// swapped in only if it is entirely valid; on error the one in force stays and the error says
// why, with file:line:col for the policy. Open tunnels are never touched.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	var errs []error
	pol, err := policy.Load(s.cfg.Resolve(s.cfg.Policy))
	switch {
	case err != nil:
		s.metrics.PolicyLoadFailed()
		errs = append(errs, fmt.Errorf("policy: %w", err))
	case pol.Version != s.gw.Policy().Version:
		s.gw.SetPolicy(pol)
		now := time.Now()
		s.loadedAt.Store(now.UnixNano())
		s.metrics.PolicyLoaded(pol.Version, now)
		s.log.Info("policy reloaded", "file", pol.File, "version", pol.Version)
	}
	if s.auth != nil {
		store, sum, err := loadHtpasswd(s.cfg.Resolve(s.cfg.Auth.Htpasswd))
		switch {
		case err != nil:
			errs = append(errs, err)
		case !bytes.Equal(sum[:], s.htpasswdSum[:]):
			// Swap drops the verified-credential cache: a removed user or a changed password
			// takes effect at once.
			s.auth.Swap(store)
			s.htpasswdSum = sum
			s.log.Info("users reloaded", "file", s.cfg.Auth.Htpasswd, "users", store.Len())
		}
	}
	err = errors.Join(errs...)
	for _, f := range s.onReload {
		f(err)
	}
	return err
}

// ReloadTLS re-reads static certificate files now (SIGHUP); ACME certificates renew themselves.
func (s *Server) ReloadTLS() error {
	if s.tls == nil {
		return nil
	}
	return s.tls.Reload()
}

// RotateAudit rotates the audit file (SIGUSR1).
func (s *Server) RotateAudit() error { return s.audit.Rotate() }

// ReopenAudit reopens the audit file after an outside rotation (logrotate "create"; SIGUSR2).
func (s *Server) ReopenAudit() error { return s.audit.Reopen() }

// Run serves every listener until ctx is cancelled. Then /readyz turns 503 at once, the
// listeners stop accepting, open tunnels may finish for timeouts.drain, and everything closes.
func (s *Server) Run(ctx context.Context) error {
	addrs := s.Addrs()
	s.log.Info("scpgate serving", "proxy", addrs.Proxy, "tls", addrs.TLS, "admin", addrs.Admin,
		"policy", s.gw.Policy().File, "version", s.gw.Policy().Version, "auth", s.auth != nil)
	watchDone := make(chan struct{})
	if s.watcher != nil {
		go func() {
			defer close(watchDone)
			s.watcher.run(ctx, func() {
				if err := s.Reload(); err != nil {
					s.log.Error("reload failed; the previous files stay in force", "err", err)
				}
			})
		}()
	} else {
		close(watchDone)
	}

	var adminSrv *http.Server
	adminDone := make(chan struct{})
	if s.adminLn != nil {
		adminSrv = &http.Server{
			Handler: admin.New(admin.Options{
				Metrics:     s.metrics,
				Policy:      s.gw.Policy,
				LoadedAt:    func() time.Time { return time.Unix(0, s.loadedAt.Load()) },
				Ready:       func() bool { return !s.gw.Draining() },
				AuthEnabled: func() bool { return s.auth != nil },
				Logger:      s.log,
			}),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		go func() { _ = adminSrv.Serve(s.adminLn); close(adminDone) }()
	} else {
		close(adminDone)
	}

	// Readiness goes first: a load balancer must stop sending before the listeners close.
	stopWatch := context.AfterFunc(ctx, func() {
		s.gw.StartDraining()
		s.metrics.SetDraining(true)
	})
	defer stopWatch()

	var wg sync.WaitGroup
	lns := append(append([]net.Listener(nil), s.plain...), s.tlsLns...)
	errs := make([]error, len(lns))
	for i, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.gw.Serve(ctx, ln)
		}()
	}
	wg.Wait()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeouts.Drain)
	defer cancel()
	if err := s.gw.Shutdown(dctx); err != nil {
		s.log.Warn("drain deadline reached; open tunnels were closed", "drain", s.cfg.Timeouts.Drain)
	}
	if adminSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = adminSrv.Shutdown(sctx)
		cancel()
	}
	<-adminDone
	<-watchDone
	s.closeAll()
	return errors.Join(errs...)
}

// closeAll releases what NewServer acquired; it is safe on a partly built Server.
func (s *Server) closeAll() {
	for _, ln := range append(append([]net.Listener(nil), s.plain...), s.tlsLns...) {
		_ = ln.Close()
	}
	if s.adminLn != nil {
		_ = s.adminLn.Close()
	}
	if s.watcher != nil {
		s.watcher.close()
	}
	if s.tls != nil {
		_ = s.tls.Close()
	}
	if s.audit != nil {
		if err := s.audit.Close(); err != nil {
			s.log.Error("closing the audit log", "err", err)
		}
	}
}
