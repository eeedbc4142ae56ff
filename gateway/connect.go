package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/scpgate/scpgate/gateway/sni"
	"github.com/scpgate/scpgate/policy"
)

// connectEstablished is the answer to an allowed CONNECT. It carries no headers so that a client
// that pipelined its first TLS bytes reads exactly this line and then the server's bytes.
const connectEstablished = "HTTP/1.1 200 Connection established\r\n\r\n"

func (g *Gateway) handleConnect(w http.ResponseWriter, r *http.Request, ex *exchange) {
	// CONNECT must use authority-form (RFC 9110 §9.3.6): "host:port" and nothing else.
	if r.URL == nil || r.URL.Host == "" || r.URL.Path != "" || r.URL.Scheme != "" || r.URL.RawQuery != "" {
		g.refuse(w, ex, http.StatusBadRequest, policy.ReasonBadRequest, "CONNECT needs a host:port target")
		return
	}
	host, port, d, ok := g.decideTarget(w, ex, r.URL.Host, 0, http.MethodConnect, "")
	if !ok {
		return
	}

	upstream, vetted, err := g.dialVetted(r.Context(), host, port)
	if vetted.IsValid() {
		ex.rec.Address = vetted.String()
	}
	if err != nil {
		g.refuseUpstream(w, ex, err)
		return
	}

	t := newTunnel(upstream, g.opts.Timeouts.Idle, g.opts.Timeouts.Lifetime)
	if !g.track(t) {
		_ = upstream.Close()
		g.refuse(w, ex, http.StatusServiceUnavailable, policy.ReasonDraining, "the gateway is shutting down; retry on another instance")
		return
	}
	defer g.untrack(t)

	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = upstream.Close()
		g.log.Error("hijack failed", "conn_id", ex.rec.ConnID, "err", err)
		ex.rec.Event = "close"
		g.finish(ex, http.StatusInternalServerError)
		return
	}
	if _, err := client.Write([]byte(connectEstablished)); err != nil {
		_ = client.Close()
		_ = upstream.Close()
		ex.rec.Event = "close"
		g.finish(ex, http.StatusOK)
		return
	}
	// The client may have sent its first bytes (a TLS ClientHello) together with the CONNECT
	// head; the HTTP server read them into its buffer. They belong to the tunnel.
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ = brw.Reader.Peek(n)
	}
	g.opts.Observer.TunnelOpened()
	// The gauge drops before the close record is written, so whoever waits for the record
	// sees the tunnel counted as closed.
	closed := func() {
		g.opts.Observer.TunnelClosed()
		g.finish(ex, http.StatusOK)
	}
	ex.rec.Event = "close"
	ex.rec.Status = http.StatusOK

	// IP-literal destinations cannot carry a server name (RFC 6066), so only names are checked.
	if d.SNI == policy.SNIMatch && !host.IsAddr() {
		first, serverName, err := g.readClientHello(client, early)
		ex.rec.SNI = serverName
		if err != nil || serverName != host.Name {
			if d.Mode == policy.ModeReport {
				ex.rec.Decision, ex.rec.Reason = "would_deny", string(policy.ReasonSNIMismatch)
			} else {
				// Nothing was sent upstream: the TCP connection is closed unused.
				g.log.Info("tunnel cut: SNI does not match CONNECT host", "conn_id", ex.rec.ConnID, "host", host.Name, "sni", serverName, "err", err)
				ex.rec.Decision, ex.rec.Reason = "deny", string(policy.ReasonSNIMismatch)
				// bytes_up stays 0: the ClientHello never went upstream.
				t.close()
				_ = client.Close()
				closed()
				return
			}
		}
		early = first
	}
	up, down := t.run(client, early)
	ex.rec.BytesUp, ex.rec.BytesDown = up, down
	closed()
}

// readClientHello reads the client's ClientHello (behind any early bytes) without consuming
// anything after it, and returns every byte read, to be forwarded intact if the name matches.
func (g *Gateway) readClientHello(client net.Conn, early []byte) ([]byte, string, error) {
	_ = client.SetReadDeadline(time.Now().Add(g.opts.Timeouts.ReadHeader))
	defer client.SetReadDeadline(time.Time{})
	buffered := bytes.NewReader(early)
	raw, hello, err := sni.ReadClientHello(io.MultiReader(buffered, client), 0)
	// Early bytes beyond the ClientHello (TLS 1.3 early data) still belong to the tunnel.
	first := append(raw, early[len(early)-buffered.Len():]...)
	return first, hello.ServerName, err
}

// decideTarget parses the request's target and asks the policy; it answers the request itself
// (400 or the denial's status) and returns false when the request goes no further.
func (g *Gateway) decideTarget(w http.ResponseWriter, ex *exchange, authority string, defaultPort uint16, method, path string) (policy.Host, uint16, policy.Decision, bool) {
	host, port, err := splitTarget(authority, defaultPort)
	if err != nil {
		ex.rec.Host = authority
		g.refuse(w, ex, http.StatusBadRequest, policy.ReasonInvalidHost, "invalid target: "+err.Error())
		return policy.Host{}, 0, policy.Decision{}, false
	}
	ex.rec.Host, ex.rec.Port = host.String(), port
	d := g.policy.Load().Decide(g.request(ex, host, port, method, path))
	ex.applyDecision(d)
	if !d.Allow {
		g.refuse(w, ex, statusFor(d.Reason), d.Reason, denialMessage(host, port, d))
		return policy.Host{}, 0, d, false
	}
	return host, port, d, true
}

// refuseUpstream answers a failure to reach an allowed destination.
func (g *Gateway) refuseUpstream(w http.ResponseWriter, ex *exchange, err error) {
	var ue *upstreamError
	if !errors.As(err, &ue) {
		ue = &upstreamError{reason: policy.ReasonUpstreamRefused, msg: "the destination could not be reached", err: err}
	}
	g.log.Info("upstream failure", "conn_id", ex.rec.ConnID, "host", ex.rec.Host, "port", ex.rec.Port, "reason", ue.reason, "err", ue.err)
	g.refuse(w, ex, statusFor(ue.reason), ue.reason, ue.msg)
}

func denialMessage(host policy.Host, port uint16, d policy.Decision) string {
	target := net.JoinHostPort(host.String(), strconv.Itoa(int(port)))
	switch d.Reason {
	case policy.ReasonNoRule:
		return target + " is not on the allow-list"
	case policy.ReasonPortNotAllowed:
		return target + ": port " + strconv.Itoa(int(port)) + " is not allowed for this host"
	case policy.ReasonDeniedPattern:
		return target + " is explicitly denied"
	case policy.ReasonIPLiteral:
		return target + ": IP addresses are not allowed as destinations; use the host name"
	case policy.ReasonMethodNotAllowed:
		return target + ": this method is not allowed for this host"
	case policy.ReasonAuthRequired:
		return "proxy authentication required"
	case policy.ReasonUserNotAllowed:
		return target + " is not allowed for this user"
	case policy.ReasonPathNotAllowed:
		return target + ": this path is not allowed for this host"
	default:
		return target + " is not allowed"
	}
}
