// Package gateway is scpgate's forwarding proxy: deny by default, CONNECT tunnels only to the
// host:port pairs the policy allows, resolved and vetted by the gateway itself.
//
// CONNECT is handled here rather than by goproxy, because goproxy's hijack discards bytes the
// client sent right behind its CONNECT head and its tunnels have no idle timeout. Plain HTTP
// forwarding (only for groups that allow it, e.g. certificate revocation on port 80) goes
// through goproxy with a transport that dials only vetted addresses.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/gateway/fdguard"
	"github.com/scpgate/scpgate/gateway/limits"
	"github.com/scpgate/scpgate/gateway/netguard"
	"github.com/scpgate/scpgate/gateway/proxyauth"
	"github.com/scpgate/scpgate/gateway/splice"
	"github.com/scpgate/scpgate/policy"
)

// Resolver is the gateway's only source of addresses for names.
type Resolver interface {
	LookupNetIP(ctx context.Context, host string) ([]netip.Addr, error)
}

// cacheResolver is a Resolver that can answer from its cache alone (resolver.Resolver does):
// a cached name then costs no context or timer for the DNS timeout.
type cacheResolver interface {
	LookupCached(host string) ([]netip.Addr, bool)
}

// AuditSink receives one record per decision and per finished connection.
type AuditSink interface {
	Write(audit.Record)
}

// Observer is told about tunnels, authentication and resource exhaustion (the metrics package
// implements it).
type Observer interface {
	TunnelOpened()
	TunnelClosed()
	AuthResult(result string) // "ok", "failed", "required", "locked_out"
	// OutOfResources counts an operation that failed for lack of file descriptors: "accept",
	// "dial" or "pipe".
	OutOfResources(where string)
}

type noopObserver struct{}

func (noopObserver) TunnelOpened()         {}
func (noopObserver) TunnelClosed()         {}
func (noopObserver) AuthResult(string)     {}
func (noopObserver) OutOfResources(string) {}

// DialFunc dials a vetted address. Tests replace it to prove a dial never happens.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Options are everything a Gateway needs. New fills in a default for every zero field, one by
// one (a partly filled Timeouts gets the default for each field it leaves out).
type Options struct {
	Policy   *policy.Policy
	Resolver Resolver
	Guard    *netguard.Guard
	Audit    AuditSink
	Logger   *slog.Logger
	Timeouts Timeouts
	Limits   Limits
	// Dial replaces the default dialer (which re-checks every address with Guard).
	Dial DialFunc
	// Auth, if set, turns on proxy authentication: a 407 carries its challenges.
	Auth proxyauth.Authenticator
	// RateLimit, if set, bounds requests per client address.
	RateLimit *limits.RateLimiter
	// Observer is told about tunnels and authentication results.
	Observer Observer
	// FDs tracks running out of file descriptors (dial and pipe failures here, accept failures
	// in the process's listeners); nil: the gateway makes its own, counting to Observer.
	FDs *fdguard.Guard
}

// Gateway is a forwarding proxy. It is an http.Handler; Serve runs it on a listener.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	policy  atomic.Pointer[policy.Policy]
	forward *goproxy.ProxyHttpServer
	tr      *http.Transport
	dial    DialFunc

	idPrefix string
	connSeq  atomic.Uint64

	mu       sync.Mutex
	tunnels  map[*tunnel]struct{}
	tunnelWG sync.WaitGroup
	draining atomic.Bool

	// pipes lends splice pipes to tunnels while their bytes move; bufs lends copy buffers to the
	// tunnels that cannot splice (TLS clients).
	pipes *splice.Pool
	bufs  sync.Pool
	// fds notices running out of file descriptors: one WARN per episode, a count per failure.
	fds *fdguard.Guard
	// cache is opts.Resolver when it answers from its cache alone, else nil.
	cache cacheResolver

	// wait pauses a request (failed-login slowdown); tests replace it to observe the pauses.
	wait func(ctx context.Context, d time.Duration)
}

// New builds a Gateway. It does not listen; call Serve.
func New(opts Options) (*Gateway, error) {
	if opts.Policy == nil {
		return nil, errors.New("gateway: a policy is required")
	}
	if opts.Resolver == nil {
		return nil, errors.New("gateway: a resolver is required")
	}
	if opts.Guard == nil {
		opts.Guard = netguard.New(nil)
	}
	if opts.Audit == nil {
		opts.Audit = discardAudit{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Observer == nil {
		opts.Observer = noopObserver{}
	}
	opts.Timeouts = opts.Timeouts.withDefaults()
	opts.Limits = opts.Limits.withDefaults()
	var prefix [4]byte
	_, _ = rand.Read(prefix[:])
	g := &Gateway{
		opts:     opts,
		log:      opts.Logger,
		idPrefix: hex.EncodeToString(prefix[:]),
		tunnels:  make(map[*tunnel]struct{}),
		wait:     sleepCtx,
		fds:      opts.FDs,
	}
	if g.fds == nil {
		g.fds = fdguard.New(opts.Logger, opts.Observer.OutOfResources)
	}
	g.pipes = splice.NewPool(0, 0, func(err error) { g.fds.Hit("pipe", err) })
	g.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	g.policy.Store(opts.Policy)
	g.cache, _ = opts.Resolver.(cacheResolver)
	g.dial = opts.Dial
	if g.dial == nil {
		d := &net.Dialer{
			Timeout: opts.Timeouts.Dial,
			// Keep-alive probes after 15 s idle (Go's default), with the system's interval and
			// count: two setsockopt calls per dial instead of four.
			KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: -1, Count: -1},
			// Defence in depth: whatever address the socket is about to connect to is vetted
			// again, so no code path can reach an address the guard refuses.
			ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
				ap, err := netip.ParseAddrPort(address)
				if err != nil {
					return fmt.Errorf("refusing to dial %q: %w", address, err)
				}
				return opts.Guard.Check(ap)
			},
		}
		// Not Dialer.DialTCP: its zero local address is still bound before connect, which
		// takes ephemeral ports exclusively and runs out of them under load (make bench).
		g.dial = d.DialContext
	}
	g.tr = g.newTransport()
	g.forward = g.newForwarder()
	return g, nil
}

// Policy returns the policy in force.
func (g *Gateway) Policy() *policy.Policy { return g.policy.Load() }

// SetPolicy swaps the policy atomically: new requests see it, open tunnels are not touched,
// and pooled upstream HTTP connections are dropped so no request rides on a connection that the
// old policy opened.
func (g *Gateway) SetPolicy(p *policy.Policy) {
	g.policy.Store(p)
	g.tr.CloseIdleConnections()
}

// Serve accepts proxy connections on ln until ctx is cancelled, then stops accepting and
// returns; use Shutdown to drain open tunnels. A connection whose first request is a CONNECT is
// served by the front (front.go); any other goes to a net/http server.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	handoff := newHandoffListener(ln.Addr())
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: g.opts.Timeouts.ReadHeader,
		MaxHeaderBytes:    g.opts.Limits.MaxHeaderBytes,
		// Keep-alive connections between requests are closed after this; tunnels are hijacked
		// and governed by the tunnel idle timeout instead.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	srvDone := make(chan struct{})
	go func() { _ = srv.Serve(handoff); close(srvDone) }()
	f := &front{g: g, handoff: handoff, log: g.log, reading: make(map[net.Conn]struct{})}
	errc := make(chan error, 1)
	go func() { errc <- f.serve(ln) }()

	var err error
	select {
	case err = <-errc:
		_ = ln.Close()
	case <-ctx.Done():
		_ = ln.Close()
		<-errc
	}
	// Stop accepting at once; requests mid-flight get a short grace, tunnels are Shutdown's job.
	f.stop(handoffGrace)
	sctx, cancel := context.WithTimeout(context.Background(), handoffGrace)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		_ = srv.Close()
	}
	<-srvDone
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Shutdown waits for open tunnels to finish until ctx is done, then closes the rest. New
// requests that still arrive get 503.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.draining.Store(true)
	done := make(chan struct{})
	go func() { g.tunnelWG.Wait(); close(done) }()
	select {
	case <-done:
		g.tr.CloseIdleConnections()
		return nil
	case <-ctx.Done():
	}
	g.closeTunnels()
	<-done
	g.tr.CloseIdleConnections()
	return ctx.Err()
}

// StartDraining makes new requests get 503 while open tunnels go on (SIGTERM, before the
// listeners close, so load balancers see /readyz fail first).
func (g *Gateway) StartDraining() { g.draining.Store(true) }

// Draining reports whether the gateway has started shutting down.
func (g *Gateway) Draining() bool { return g.draining.Load() }

// Close closes every open tunnel and pooled upstream connection at once.
func (g *Gateway) Close() error {
	g.draining.Store(true)
	g.closeTunnels()
	g.tunnelWG.Wait()
	g.tr.CloseIdleConnections()
	g.pipes.Close()
	return nil
}

// OpenTunnels reports how many tunnels are open now.
func (g *Gateway) OpenTunnels() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.tunnels)
}

func (g *Gateway) closeTunnels() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for t := range g.tunnels {
		t.close()
	}
}

func (g *Gateway) track(t *tunnel) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.draining.Load() {
		return false
	}
	g.tunnels[t] = struct{}{}
	g.tunnelWG.Add(1)
	return true
}

func (g *Gateway) untrack(t *tunnel) {
	g.mu.Lock()
	delete(g.tunnels, t)
	g.mu.Unlock()
	g.tunnelWG.Done()
}

// ServeHTTP is the request path, top to bottom: draining, rate limit, authentication, then
// CONNECT (parse, decide, resolve and vet, dial, SNI, splice) or plain HTTP forwarding. Every
// refusal on the way goes through refuse.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex := g.newExchange(r)
	if g.draining.Load() {
		g.refuse(w, ex, refusal{reason: policy.ReasonDraining})
		return
	}
	if rl := g.opts.RateLimit; rl != nil {
		if ok, retry := rl.Allow(ex.clientIP); !ok {
			g.refuse(w, ex, refusal{reason: policy.ReasonRateLimited, retryAfter: retry})
			return
		}
	}
	if !g.authenticate(w, r, ex) {
		return
	}
	if r.Method == http.MethodConnect {
		g.handleConnect(w, r, ex)
		return
	}
	g.handleForward(w, r, ex)
}

// authenticate asks the authenticator when authentication is on. A request without credentials
// goes on as anonymous: the policy answers auth_required (407) unless the group is anonymous.
// Wrong credentials are 407 at once; a locked-out address is 429 with Retry-After. It returns
// false when it has answered the request.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request, ex *exchange) bool {
	a := g.opts.Auth
	if a == nil {
		return true
	}
	o := a.Authenticate(r, ex.clientIP)
	ex.rec.User = o.User // verified, or the name that was tried (never a password)
	switch {
	case o.OK:
		g.opts.Observer.AuthResult("ok")
		ex.authHeader = o.Header
		return true
	case o.Reason == policy.ReasonAuthRequired:
		return true
	case o.Reason == policy.ReasonLockedOut:
		g.opts.Observer.AuthResult("locked_out")
		g.refuse(w, ex, refusal{reason: policy.ReasonLockedOut, retryAfter: o.RetryAfter})
	default:
		g.opts.Observer.AuthResult("failed")
		// Repeated failures are slowed before the lockout: a password guesser gets fewer tries
		// per connection slot, a user with a typo hardly notices.
		if d := failureDelay(o.Failures); d > 0 {
			g.wait(r.Context(), d)
		}
		g.refuse(w, ex, refusal{reason: policy.ReasonAuthFailed})
	}
	return false
}

// failureDelay is how long the n-th failed login in a window waits for its 407: nothing for the
// first, then 250 ms more for each, at most 2 s.
func failureDelay(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	return min(time.Duration(n-1)*250*time.Millisecond, 2*time.Second)
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// request is the policy question for this exchange; path is "" for CONNECT.
func (g *Gateway) request(ex *exchange, host policy.Host, port uint16, method, path string) policy.Request {
	return policy.Request{Host: host, Port: port, Method: method, Path: path, User: ex.rec.User, AuthEnabled: g.opts.Auth != nil}
}

type discardAudit struct{}

func (discardAudit) Write(audit.Record) {}
