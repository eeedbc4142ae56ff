// Package server is the gateway process: it reads the configuration, loads the policy and the
// users, obtains the TLS certificate, opens the audit log, binds the listeners, and wires the
// request handler (package gateway) to them; then it serves, reloads on file changes and
// SIGHUP, and drains on shutdown. cmd/scpgate runs one; integration tests run one in-process.
package server

import (
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
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/scpgate/scpgate/gateway"
	"github.com/scpgate/scpgate/gateway/admin"
	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/gateway/fdguard"
	"github.com/scpgate/scpgate/gateway/filewatch"
	"github.com/scpgate/scpgate/gateway/limits"
	"github.com/scpgate/scpgate/gateway/metrics"
	"github.com/scpgate/scpgate/gateway/netguard"
	"github.com/scpgate/scpgate/gateway/proxyauth"
	"github.com/scpgate/scpgate/gateway/resolver"
	"github.com/scpgate/scpgate/gateway/tlslisten"
	"github.com/scpgate/scpgate/policy"
)

// Server is a whole gateway process built from a Config.
type Server struct {
	cfg     Config
	log     *slog.Logger
	opts    options
	metrics *metrics.Metrics

	policy   *policy.Policy // as loaded by New; the handler holds the one in force
	resolver *resolver.Resolver
	basic    *proxyauth.Basic   // nil: authentication off
	lockout  *proxyauth.Lockout // wraps basic
	tls      *tlslisten.Manager // nil: no TLS listener
	audit    *audit.Log
	recent   *audit.Recent // the last records, for the admin listener's /v1/audit
	fanout   auditFanout
	gw       *gateway.Gateway
	fds      *fdguard.Guard // out-of-descriptor episodes: listeners, dials and pipes

	plain, tlsLns []net.Listener
	adminLn       net.Listener
	self          []netip.AddrPort // every bound listener: the gateway never dials them

	watcher     *filewatch.Watcher // nil: watch: false
	reloadMu    sync.Mutex
	loadedAt    atomic.Int64 // unix nanoseconds of the policy in force
	htpasswdSum [sha256.Size]byte
}

// recentRecords is how many audit records the admin listener can look up by connection id.
const recentRecords = 4096

// Option adjusts a Server at construction.
type Option func(*options)

type options struct {
	observers []func(audit.Record)
	onReload  []func(error)
}

// WithAuditObserver calls f with every audit record after it was handed to the audit log, in
// the goroutine that produced it; f must be quick. Tests wait on records with it.
func WithAuditObserver(f func(audit.Record)) Option {
	return func(o *options) { o.observers = append(o.observers, f) }
}

// WithReloadObserver calls f after every reload attempt with its outcome (nil: the files in
// force are the ones on disk).
func WithReloadObserver(f func(error)) Option {
	return func(o *options) { o.onReload = append(o.onReload, f) }
}

// auditFanout writes to the audit log first, then to metrics and each observer.
type auditFanout struct {
	log       gateway.AuditSink
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

// New builds the process: each step below acquires one part, and a failure releases what the
// earlier steps acquired and says which file or address is at fault and what to do. Nothing is
// served until Run. ctx bounds the start-up (ACME).
func New(ctx context.Context, cfg Config, logger *slog.Logger, opts ...Option) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: logger, metrics: metrics.New()}
	for _, o := range opts {
		o(&s.opts)
	}
	steps := []func(context.Context) error{
		s.loadPolicy,
		s.newResolver,
		s.loadUsers,
		s.startTLS,
		s.openAudit,
		s.bindListeners,
		s.newGateway,
		s.watchFiles,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			s.closeAll()
			return nil, err
		}
	}
	now := time.Now()
	s.loadedAt.Store(now.UnixNano())
	s.metrics.PolicyLoaded(s.policy.Version, now)
	return s, nil
}

func (s *Server) loadPolicy(context.Context) error {
	pol, err := policy.Load(s.cfg.Policy)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	s.policy = pol
	return nil
}

func (s *Server) newResolver(context.Context) error {
	rc := s.cfg.DNS
	rc.Logger = s.log
	res, err := resolver.New(rc)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	s.resolver = res
	return nil
}

func (s *Server) loadUsers(context.Context) error {
	if s.cfg.Auth.Htpasswd == "" {
		return nil
	}
	store, sum, err := loadHtpasswd(s.cfg.Auth.Htpasswd)
	if err != nil {
		return err
	}
	s.htpasswdSum = sum
	s.basic = proxyauth.NewBasic(proxyauth.BasicConfig{Store: store})
	lc := s.cfg.Auth.Lockout
	lc.Logger = s.log
	s.lockout = proxyauth.NewLockout(s.basic, lc)
	return nil
}

func (s *Server) startTLS(ctx context.Context) error {
	if len(s.cfg.TLSListen) == 0 {
		return nil
	}
	tc := s.cfg.TLS
	tc.Logger = s.log
	tc.OnReload = func(err error) {
		if err != nil {
			s.log.Error("TLS certificate reload failed; the previous certificate is still served", "err", err)
		}
	}
	if tc.ACME != nil {
		a := *tc.ACME
		a.DisableTLSALPNChallenge = true // the proxy listener does not answer TLS-ALPN-01
		tc.ACME = &a
	}
	m, err := tlslisten.New(ctx, tc)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	s.tls = m
	return nil
}

func (s *Server) openAudit(context.Context) error {
	ac := s.cfg.Audit
	ac.Logger = s.log
	a, err := audit.New(ac)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	s.audit = a
	s.recent = audit.NewRecent(recentRecords)
	observers := append([]func(audit.Record){s.recent.Write}, s.opts.observers...)
	s.fanout = auditFanout{log: a, metrics: s.metrics, observers: observers}
	return nil
}

// bindListeners binds every listener before the handler exists: the handler's address guard
// must know them, so that no client can make the gateway dial itself.
func (s *Server) bindListeners(context.Context) error {
	conns := limits.NewConnLimiter(s.cfg.Limits.MaxConnections, s.cfg.Limits.MaxConnectionsPerClient)
	// Accept only starts in Run, once s.gw exists.
	refuse := func(c net.Conn, reason policy.Reason) error {
		s.metrics.Rejected(string(reason))
		return s.gw.RefuseConn(c, reason)
	}
	// Out of descriptors, the one client the reserve descriptor lets in gets 503.
	s.fds = fdguard.New(s.log, s.metrics.OutOfResources)
	outOfFDs := func(c net.Conn) {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_ = s.gw.RefuseConn(c, policy.ReasonOutOfResources)
	}
	bind := func(key, addr string, listen func(string) (net.Listener, error)) (net.Listener, error) {
		ln, err := listen(addr)
		if err != nil {
			return nil, listenError(key, addr, err)
		}
		s.self = append(s.self, ln.Addr().(*net.TCPAddr).AddrPort())
		return ln, nil
	}
	bindProxy := func(key, addr string) (net.Listener, error) {
		ln, err := bind(key, addr, listenProxy)
		if err != nil {
			return nil, err
		}
		guarded, err := s.fds.Listener(ln, outOfFDs)
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("%s %s: %w", key, addr, err)
		}
		return limits.LimitListener(guarded, conns, refuse), nil
	}
	for _, addr := range s.cfg.Listen {
		ln, err := bindProxy("listen", addr)
		if err != nil {
			return err
		}
		s.plain = append(s.plain, ln)
	}
	for _, addr := range s.cfg.TLSListen {
		ln, err := bindProxy("tls_listen", addr)
		if err != nil {
			return err
		}
		s.tlsLns = append(s.tlsLns, tls.NewListener(ln, s.tls.TLSConfig()))
	}
	if s.cfg.Admin != "" {
		ln, err := bind("admin", s.cfg.Admin, func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) })
		if err != nil {
			return err
		}
		s.adminLn = ln
	}
	return nil
}

// listenError says which configured address could not be bound and what to do about it.
func listenError(key, addr string, err error) error {
	hint := "check the address in the configuration"
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		hint = "another program (or another scpgate) is listening there: stop it or choose another port"
	case errors.Is(err, syscall.EACCES):
		hint = "ports below 1024 need root or CAP_NET_BIND_SERVICE"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = "no interface of this machine has that address"
	}
	return fmt.Errorf("%s %s: cannot listen: %w (%s)", key, addr, err, hint)
}

func (s *Server) newGateway(context.Context) error {
	allow, err := s.cfg.AllowPrefixes()
	if err != nil {
		return err
	}
	var rate *limits.RateLimiter
	if l := s.cfg.Limits; l.RequestsPerSecond > 0 {
		rate = limits.NewRateLimiter(l.RequestsPerSecond, l.Burst, 65536, time.Now)
	}
	opts := gateway.Options{
		Policy:    s.policy,
		Resolver:  s.resolver,
		Guard:     netguard.New(allow).WithListeners(s.self...),
		Audit:     s.fanout,
		Logger:    s.log,
		Timeouts:  s.cfg.Timeouts.Timeouts,
		Limits:    s.cfg.Limits,
		RateLimit: rate,
		Observer:  s.metrics,
		FDs:       s.fds,
	}
	if s.lockout != nil {
		opts.Auth = s.lockout
	}
	s.gw, err = gateway.New(opts)
	return err
}

// watchFiles starts the one watcher of the policy, htpasswd and static TLS files. Watching
// starts now, not in Run: an edit made once New returned is not missed.
func (s *Server) watchFiles(context.Context) error {
	if !s.cfg.WatchFiles() {
		return nil
	}
	files := []string{s.cfg.Policy}
	if s.basic != nil {
		files = append(files, s.cfg.Auth.Htpasswd)
	}
	if s.tls != nil {
		files = append(files, s.tls.Files()...)
	}
	w, err := filewatch.New(files, 200*time.Millisecond, s.log)
	if err != nil {
		s.log.Warn("cannot watch the configured files; SIGHUP still reloads", "err", err)
		return nil
	}
	s.watcher = w
	return nil
}

func loadHtpasswd(path string) (*proxyauth.Store, [sha256.Size]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, [sha256.Size]byte{}, fmt.Errorf("auth.htpasswd: %w (create it with `scpgate passwd -file %s USER`)", err, path)
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
func (s *Server) Gateway() *gateway.Gateway { return s.gw }

// Metrics exposes the metrics, for inspection.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Reload reads the policy and htpasswd files again. Each is swapped in only if it is entirely
// valid; on error the one in force stays and the error says why, with file:line:col for the
// policy. Every successful policy load is logged ("policy reloaded", with its version or
// "unchanged") and counted. Open tunnels are never touched. The static TLS files are
// ReloadTLS's.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	var errs []error
	pol, err := policy.Load(s.cfg.Policy)
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
	default:
		s.metrics.PolicyLoaded(pol.Version, time.Unix(0, s.loadedAt.Load()))
		s.log.Info("policy reloaded", "file", pol.File, "version", "unchanged")
	}
	if s.basic != nil {
		store, sum, err := loadHtpasswd(s.cfg.Auth.Htpasswd)
		switch {
		case err != nil:
			errs = append(errs, err)
		case sum != s.htpasswdSum:
			// Swap drops the verified-credential cache: a removed user or a changed password
			// takes effect at once. Lockouts are kept: a reload must not reset an attacker.
			s.basic.Swap(store)
			s.htpasswdSum = sum
			s.log.Info("users reloaded", "file", s.cfg.Auth.Htpasswd, "users", store.Len())
		}
	}
	err = errors.Join(errs...)
	for _, f := range s.opts.onReload {
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
		"policy", s.gw.Policy().File, "version", s.gw.Policy().Version, "auth", s.basic != nil)
	watchDone := make(chan struct{})
	if s.watcher != nil {
		go func() {
			defer close(watchDone)
			s.watcher.Run(ctx, func() {
				if err := s.Reload(); err != nil {
					s.log.Error("reload failed; the previous files stay in force", "err", err)
				}
				if s.tls != nil {
					s.tls.FilesChanged()
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
				AuthEnabled: func() bool { return s.basic != nil },
				Audit:       s.recent.Find,
				Logger:      s.log,
				PACProxy:    pacProxy(addrs.Proxy, os.Hostname),
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
		s.log.Info("shutting down: not ready, no new connections; open tunnels may finish", "drain", s.cfg.Timeouts.Drain, "open_tunnels", s.gw.OpenTunnels())
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

// pacProxy is the address /proxy.pac names: the first plain listener as bound, with this
// machine's name in place of an unspecified IP (0.0.0.0 or ::), which a client cannot dial.
// "" when there is no plain listener: the PAC's reader then gives ?proxy=.
func pacProxy(bound []string, hostname func() (string, error)) string {
	if len(bound) == 0 {
		return ""
	}
	ap, err := netip.ParseAddrPort(bound[0])
	if err != nil {
		return ""
	}
	if !ap.Addr().IsUnspecified() {
		return bound[0]
	}
	name, err := hostname()
	if err != nil || name == "" {
		return ""
	}
	return net.JoinHostPort(name, strconv.Itoa(int(ap.Port())))
}

// closeAll releases what New acquired; it is safe on a partly built Server.
func (s *Server) closeAll() {
	for _, ln := range append(append([]net.Listener(nil), s.plain...), s.tlsLns...) {
		_ = ln.Close()
	}
	if s.adminLn != nil {
		_ = s.adminLn.Close()
	}
	if s.watcher != nil {
		s.watcher.Close()
	}
	if s.lockout != nil {
		s.lockout.Close()
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
