package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/gateway/sni"
	"github.com/scpgate/scpgate/policy"
)

// established is the answer to an allowed CONNECT: the status line, the connection id (the
// audit record's, so a client can match the two) and any header the authenticator asked for.
// No body: a client that pipelined its first TLS bytes reads this head, then the server's bytes.
func established(connID string, authHeader http.Header) []byte {
	b := make([]byte, 0, 96)
	b = append(b, "HTTP/1.1 200 Connection established\r\nX-Scpgate-Conn: "...)
	b = append(b, connID...)
	b = append(b, "\r\n"...)
	for k, vs := range authHeader {
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}

func (g *Gateway) handleConnect(w http.ResponseWriter, r *http.Request, ex *exchange) {
	// CONNECT must use authority-form (RFC 9110 §9.3.6): "host:port" and nothing else.
	if r.URL == nil || r.URL.Host == "" || r.URL.Path != "" || r.URL.Scheme != "" || r.URL.RawQuery != "" {
		g.refuse(w, ex, refusal{reason: policy.ReasonBadRequest, detail: "CONNECT needs a host:port target"})
		return
	}
	host, port, d, ok := g.decideTarget(w, ex, http.MethodConnect, "")
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

	t := newTunnel(upstream, g.pipes, &g.bufs, g.opts.Timeouts.Idle, g.opts.Timeouts.Lifetime)
	if !g.track(t) {
		_ = upstream.Close()
		g.refuse(w, ex, refusal{reason: policy.ReasonDraining})
		return
	}

	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		g.untrack(t)
		_ = upstream.Close()
		g.log.Error("hijack failed", "conn_id", ex.rec.ConnID, "err", err)
		ex.rec.Event = audit.EventClose
		g.finish(ex, http.StatusInternalServerError)
		return
	}
	if _, err := client.Write(established(ex.rec.ConnID, ex.authHeader)); err != nil {
		g.untrack(t)
		_ = client.Close()
		_ = upstream.Close()
		ex.rec.Event = audit.EventClose
		g.finish(ex, http.StatusOK)
		return
	}
	// The client may have sent its first bytes (a TLS ClientHello) together with the CONNECT
	// head; the HTTP server read them into its buffer. They belong to the tunnel. Copied, so
	// the tunnel keeps nothing of the server's.
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		peeked, _ := brw.Reader.Peek(n)
		early = bytes.Clone(peeked)
	}
	g.opts.Observer.TunnelOpened()
	ex.rec.Event = audit.EventClose
	ex.rec.Status = http.StatusOK
	// The tunnel runs on goroutines of its own and the handler returns: the HTTP server's
	// per-connection state (its goroutine, buffers, the request) is released at once instead
	// of living as long as the tunnel.
	// The gauge drops before the close record is written, so whoever waits for the record
	// sees the tunnel counted as closed; untrack comes last, so a drain waits for the record.
	ended := func(up, down int64) {
		ex.rec.BytesUp, ex.rec.BytesDown = up, down
		g.opts.Observer.TunnelClosed()
		g.finish(ex, http.StatusOK)
		g.untrack(t)
	}
	// IP-literal destinations cannot carry a server name (RFC 6066), so only names are checked.
	if d.SNI == policy.SNIMatch && !host.IsAddr() {
		// Waiting for the ClientHello takes a goroutine of the tunnel's own.
		go g.checkSNI(t, client, early, ex, d.Mode, host.Name, ended)
		return
	}
	t.start(client, early, ended)
}

// checkSNI reads the client's ClientHello and starts the relay if its server name is the
// CONNECT host (or the group only reports); otherwise it cuts the tunnel.
func (g *Gateway) checkSNI(t *tunnel, client net.Conn, early []byte, ex *exchange, mode policy.Mode, hostName string, ended func(up, down int64)) {
	first, serverName, err := g.readClientHello(client, early)
	ex.rec.SNI = serverName
	if err != nil || serverName != hostName {
		if mode != policy.ModeReport {
			// Nothing was sent upstream: the TCP connection is closed unused.
			args := []any{"conn_id", ex.rec.ConnID, "host", hostName, "sni", serverName}
			if err != nil {
				args = append(args, "err", err)
			}
			g.log.Info("tunnel cut: SNI does not match CONNECT host", args...)
			ex.rec.Decision, ex.rec.Reason = audit.DecisionDeny, string(policy.ReasonSNIMismatch)
			// bytes_up stays 0: the ClientHello never went upstream.
			t.close()
			_ = client.Close()
			ended(0, 0)
			return
		}
		ex.rec.Decision, ex.rec.Reason = audit.DecisionWouldDeny, string(policy.ReasonSNIMismatch)
	}
	t.start(client, first, ended)
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
func (g *Gateway) decideTarget(w http.ResponseWriter, ex *exchange, method, path string) (policy.Host, uint16, policy.Decision, bool) {
	host, port, err := splitTarget(ex.target, ex.defaultPort)
	if err != nil {
		ex.rec.Target = ex.target // as it came: it does not parse (noteTarget need not try again)
		g.refuse(w, ex, refusal{reason: policy.ReasonInvalidHost, detail: err.Error()})
		return policy.Host{}, 0, policy.Decision{}, false
	}
	ex.rec.Host, ex.rec.Port = host.String(), port
	d := g.policy.Load().Decide(g.request(ex, host, port, method, path))
	ex.applyDecision(d)
	if !d.Allow {
		if d.Reason == policy.ReasonAuthRequired {
			g.opts.Observer.AuthResult("required")
		}
		g.refuse(w, ex, refusal{reason: d.Reason})
		return policy.Host{}, 0, d, false
	}
	return host, port, d, true
}

// refuseUpstream answers a failure to reach an allowed destination.
func (g *Gateway) refuseUpstream(w http.ResponseWriter, ex *exchange, err error) {
	ue := asUpstreamError(err)
	g.log.Info("upstream failure", "conn_id", ex.rec.ConnID, "host", ex.rec.Host, "port", ex.rec.Port, "reason", ue.reason, "err", ue.err)
	g.refuse(w, ex, refusal{reason: ue.reason})
}

// asUpstreamError gives any dial or transport failure its reason.
func asUpstreamError(err error) *upstreamError {
	var ue *upstreamError
	if errors.As(err, &ue) {
		return ue
	}
	if isTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return &upstreamError{reason: policy.ReasonUpstreamTimeout, err: err}
	}
	return &upstreamError{reason: policy.ReasonUpstreamRefused, err: err}
}
