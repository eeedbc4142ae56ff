package gateway

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"

	"github.com/scpgate/scpgate/gateway/fdguard"
	"github.com/scpgate/scpgate/gateway/netguard"
	"github.com/scpgate/scpgate/policy"
)

// upstreamError is a failure to reach the destination: the reason the client is told, and the
// cause, which only the log sees.
type upstreamError struct {
	reason policy.Reason
	err    error
}

func (e *upstreamError) Error() string { return string(e.reason) + ": " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// dialVetted resolves host (once), vets every address, and dials the vetted addresses in
// order until one answers. It never dials by name, so a DNS answer that changes after the check
// (rebinding) cannot redirect the connection.
func (g *Gateway) dialVetted(ctx context.Context, host policy.Host, port uint16) (net.Conn, netip.AddrPort, error) {
	addrs, err := g.resolve(ctx, host)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	targets := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, port)
		// One refused address refuses the destination: a name that mixes public and internal
		// answers is exactly what a rebinding attack looks like.
		if err := g.opts.Guard.Check(ap); err != nil {
			return nil, ap, &upstreamError{reason: policy.ReasonPrivateAddress, err: err}
		}
		targets = append(targets, ap)
	}
	dctx, cancel := context.WithTimeout(ctx, g.opts.Timeouts.Dial)
	defer cancel()
	var lastErr error
	for _, ap := range targets {
		conn, err := g.dial(dctx, "tcp", ap.String())
		if err == nil {
			g.fds.Clear()
			return conn, ap, nil
		}
		if fdguard.IsExhausted(err) {
			g.fds.Hit("dial", err)
			return nil, ap, &upstreamError{reason: policy.ReasonOutOfResources, err: err}
		}
		lastErr = err
		if dctx.Err() != nil {
			break
		}
	}
	return nil, targets[len(targets)-1], classifyDialError(lastErr)
}

func (g *Gateway) resolve(ctx context.Context, host policy.Host) ([]netip.Addr, error) {
	if host.IsAddr() {
		return []netip.Addr{host.Addr}, nil
	}
	if g.cache != nil {
		if addrs, ok := g.cache.LookupCached(host.Name); ok {
			return addrs, nil
		}
	}
	rctx, cancel := context.WithTimeout(ctx, g.opts.Timeouts.DNS)
	defer cancel()
	addrs, err := g.opts.Resolver.LookupNetIP(rctx, host.Name)
	if err != nil {
		return nil, &upstreamError{reason: policy.ReasonDNSFailure, err: err}
	}
	if len(addrs) == 0 {
		return nil, &upstreamError{reason: policy.ReasonDNSFailure, err: errors.New("empty answer")}
	}
	return addrs, nil
}

func classifyDialError(err error) error {
	var de *netguard.DeniedError
	switch {
	case errors.As(err, &de):
		return &upstreamError{reason: policy.ReasonPrivateAddress, err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return &upstreamError{reason: policy.ReasonUpstreamTimeout, err: err}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &upstreamError{reason: policy.ReasonUpstreamRefused, err: err}
	default:
		return &upstreamError{reason: policy.ReasonUpstreamRefused, err: err}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// splitTarget parses a request's authority; plain HTTP may leave the port out (defaultPort).
func splitTarget(authority string, defaultPort uint16) (policy.Host, uint16, error) {
	if defaultPort != 0 {
		if _, _, err := net.SplitHostPort(authority); err != nil {
			host, err := policy.ParseHost(strings.TrimSuffix(strings.TrimPrefix(authority, "["), "]"))
			return host, defaultPort, err
		}
	}
	return policy.ParseHostPort(authority)
}
