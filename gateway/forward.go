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

	"github.com/scpgate/scpgate/gateway/audit"
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
				return nil, &upstreamError{reason: policy.ReasonInvalidHost, err: err}
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

// upstreamFailureHeader marks the response goproxy's response hook makes of an upstream failure.
// forwardWriter turns it into the gateway's refusal; the hook removes it (and every other
// X-Scpgate- header) from real upstream responses, so an origin cannot forge a refusal.
const upstreamFailureHeader = "X-Scpgate-Upstream-Failure"

func (g *Gateway) newForwarder() *goproxy.ProxyHttpServer {
	px := goproxy.NewProxyHttpServer()
	px.Tr = g.tr
	px.ConnectDial = nil
	px.Logger = slog.NewLogLogger(g.log.Handler(), slog.LevelDebug)
	px.Verbose = false
	px.KeepAcceptEncoding = true // the transport does not decompress, so the client's choice stands
	// goproxy writes the transport's error text to the client with status 500 when a response is
	// nil; this hook hands the failure to the refusal path instead.
	px.OnResponse().DoFunc(func(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
		// A 101 would make goproxy hijack the client connection and relay raw bytes: a tunnel
		// outside the CONNECT path (no idle timeout, no audit), and a panic on our writer,
		// which cannot hijack. Plain HTTP forwarding carries plain HTTP only.
		if resp != nil && resp.StatusCode == http.StatusSwitchingProtocols {
			_ = resp.Body.Close()
			ctx.Error = &upstreamError{reason: policy.ReasonUpstreamRefused, err: errors.New("upstream answered 101 Switching Protocols; only plain HTTP is forwarded")}
			resp = nil
		}
		if resp != nil {
			for k := range resp.Header {
				if strings.HasPrefix(k, "X-Scpgate-") {
					delete(resp.Header, k)
				}
			}
			return resp
		}
		ue := asUpstreamError(ctx.Error)
		g.log.Info("upstream failure", "host", ctx.Req.URL.Host, "reason", ue.reason, "err", ue.err)
		return &http.Response{
			StatusCode: ue.reason.Status(), ProtoMajor: 1, ProtoMinor: 1, Request: ctx.Req,
			Header: http.Header{upstreamFailureHeader: {string(ue.reason)}}, Body: http.NoBody,
		}
	})
	return px
}

// handleForward proxies one absolute-form plain HTTP request, only where the policy allows the
// method on that host and port.
func (g *Gateway) handleForward(w http.ResponseWriter, r *http.Request, ex *exchange) {
	if !r.URL.IsAbs() || r.URL.Host == "" {
		g.refuse(w, ex, refusal{reason: policy.ReasonBadRequest, detail: "this is a forward proxy: send absolute-form requests or CONNECT"})
		return
	}
	if !strings.EqualFold(r.URL.Scheme, "http") {
		g.refuse(w, ex, refusal{reason: policy.ReasonBadRequest, detail: "only http:// URLs are forwarded; use CONNECT for TLS"})
		return
	}
	if _, _, _, ok := g.decideTarget(w, ex, r.Method, canonicalPath(r.URL)); !ok {
		return
	}

	// Credentials for the gateway are never the origin's business.
	r.Header.Del("Proxy-Authorization")
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		ex.rec.Address = info.Conn.RemoteAddr().String()
	}}
	fw := &forwardWriter{ResponseWriter: w, g: g, ex: ex}
	r = r.WithContext(httptrace.WithClientTrace(r.Context(), trace))
	// Only a real body is wrapped: a wrapped http.NoBody would make the transport probe it.
	var up *countingBody
	if r.Body != nil && r.Body != http.NoBody {
		up = &countingBody{ReadCloser: r.Body}
		r.Body = up
	}
	for k, vs := range ex.authHeader {
		w.Header()[k] = vs
	}
	g.forward.ServeHTTP(fw, r)
	if fw.refused {
		return // the refusal was audited
	}
	if up != nil {
		ex.rec.BytesUp = up.n
	}
	ex.rec.BytesDown = fw.n
	ex.rec.Event = audit.EventClose
	g.finish(ex, fw.status)
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

// forwardWriter is the client side of a forwarded request: it counts what goes down, and turns
// the response goproxy made of an upstream failure into the gateway's refusal.
type forwardWriter struct {
	http.ResponseWriter
	g       *Gateway
	ex      *exchange
	status  int
	n       int64
	refused bool
}

func (c *forwardWriter) WriteHeader(code int) {
	if c.status != 0 {
		return
	}
	c.status = code
	h := c.ResponseWriter.Header()
	if reason := h.Get(upstreamFailureHeader); reason != "" {
		h.Del(upstreamFailureHeader)
		c.refused = true
		c.g.refuse(c.ResponseWriter, c.ex, refusal{reason: policy.Reason(reason)})
		return
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *forwardWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if c.refused {
		return len(p), nil // goproxy copying the failure's empty body
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush on the real writer.
func (c *forwardWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}
