package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/scpgate/scpgate/policy"
)

// newTransport is the upstream side of plain HTTP forwarding. Every goproxy default is replaced:
// no proxy from the environment, certificate verification on, timeouts, no transparent gzip
// (bytes pass through as the origin sent them), and a dialer that dials only vetted addresses.
func (g *Gateway) newTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := splitTarget(addr, 0)
			if err != nil {
				return nil, &upstreamError{reason: policy.ReasonInvalidHost, msg: "invalid destination", err: err}
			}
			conn, _, err := g.dialVetted(ctx, host, port)
			return conn, err
		},
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: g.opts.Timeouts.ResponseHeader,
		DisableCompression:    true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     false,
	}
}

type forwardStateKey struct{}

// forwardState carries what goproxy's callbacks learn back to the audit record.
type forwardState struct {
	ex       *exchange
	upstream *upstreamError
}

func (g *Gateway) newForwarder() *goproxy.ProxyHttpServer {
	px := goproxy.NewProxyHttpServer()
	px.Tr = g.tr
	px.ConnectDial = nil
	px.Logger = slog.NewLogLogger(g.log.Handler(), slog.LevelDebug)
	px.Verbose = false
	px.KeepAcceptEncoding = true // the transport does not decompress, so the client's choice stands
	// goproxy writes the transport's error text to the client with status 500 when a response is
	// nil; answer with our own status and a fixed message instead.
	px.OnResponse().DoFunc(func(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
		// A 101 would make goproxy hijack the client connection and relay raw bytes: a tunnel
		// outside the CONNECT path (no idle timeout, no audit), and a panic on our writer,
		// which cannot hijack. Plain HTTP forwarding carries plain HTTP only.
		if resp != nil && resp.StatusCode == http.StatusSwitchingProtocols {
			_ = resp.Body.Close()
			ctx.Error = &upstreamError{reason: policy.ReasonUpstreamRefused, msg: "the destination tried to switch protocols; only plain HTTP is forwarded", err: errors.New("upstream answered 101 Switching Protocols")}
			resp = nil
		}
		if resp != nil {
			return resp
		}
		st, _ := ctx.Req.Context().Value(forwardStateKey{}).(*forwardState)
		var ue *upstreamError
		if !errors.As(ctx.Error, &ue) {
			reason := policy.ReasonUpstreamRefused
			msg := "the destination could not be reached"
			if isTimeout(ctx.Error) || errors.Is(ctx.Error, context.DeadlineExceeded) {
				reason, msg = policy.ReasonUpstreamTimeout, "the destination did not answer in time"
			}
			ue = &upstreamError{reason: reason, msg: msg, err: ctx.Error}
		}
		if st != nil {
			st.upstream = ue
		}
		g.log.Info("upstream failure", "host", ctx.Req.URL.Host, "reason", ue.reason, "err", ue.err)
		out := goproxy.NewResponse(ctx.Req, "text/plain; charset=utf-8", statusFor(ue.reason), "scpgate: "+ue.msg+" ("+string(ue.reason)+")\n")
		out.Header.Set("X-Scpgate-Reason", string(ue.reason))
		return out
	})
	return px
}

// handleForward proxies one absolute-form plain HTTP request, only where the policy allows the
// method on that host and port.
func (g *Gateway) handleForward(w http.ResponseWriter, r *http.Request, ex *exchange) {
	if !r.URL.IsAbs() || r.URL.Host == "" {
		g.refuse(w, ex, http.StatusBadRequest, policy.ReasonBadRequest, "this is a forward proxy: send absolute-form requests or CONNECT")
		return
	}
	if !strings.EqualFold(r.URL.Scheme, "http") {
		g.refuse(w, ex, http.StatusBadRequest, policy.ReasonBadRequest, "only http:// URLs are forwarded; use CONNECT for TLS")
		return
	}
	if _, _, _, ok := g.decideTarget(w, ex, r.URL.Host, 80, r.Method, canonicalPath(r.URL)); !ok {
		return
	}

	// Credentials for the gateway are never the origin's business.
	r.Header.Del("Proxy-Authorization")
	st := &forwardState{ex: ex}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		ex.rec.Address = info.Conn.RemoteAddr().String()
	}}
	ctx := context.WithValue(httptrace.WithClientTrace(r.Context(), trace), forwardStateKey{}, st)
	cw := &countingWriter{ResponseWriter: w}
	r = r.WithContext(ctx)
	// Only a real body is wrapped: a wrapped http.NoBody would make the transport probe it.
	var up *countingBody
	if r.Body != nil && r.Body != http.NoBody {
		up = &countingBody{ReadCloser: r.Body}
		r.Body = up
	}
	g.forward.ServeHTTP(cw, r)

	if up != nil {
		ex.rec.BytesUp = up.n
	}
	ex.rec.BytesDown = cw.n
	ex.rec.Event = "close"
	if st.upstream != nil {
		ex.rec.Reason = string(st.upstream.reason)
	}
	g.finish(ex, cw.status)
}

// canonicalPath is the request path as the policy's path limits see it: the escaped path only if
// it is already canonical. Dot segments, empty segments and encoded dots, slashes or backslashes
// would let "/pkiops/../other" pass a "/pkiops/" prefix and then be normalised by the origin, so
// such a path is "" and matches no path limit.
func canonicalPath(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	lower := strings.ToLower(p)
	if strings.Contains(p, "\\") || strings.Contains(lower, "%2e") || strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
		return ""
	}
	clean := path.Clean(p)
	if clean != p && clean+"/" != p {
		return ""
	}
	return p
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush on the real writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}
