package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/policy"
)

// refusal is an answer given before any upstream byte moved.
type refusal struct {
	reason policy.Reason
	// detail follows the reason's message (a target's parse error). Never internal error text.
	detail string
	// retryAfter tells a 429's client when to come back (at least one second).
	retryAfter time.Duration
}

// refuse answers the request with rf and audits it. Every refusal of a request goes through
// here: CONNECT and plain HTTP, the rate limit, authentication challenges, and the upstream
// failures goproxy reports (see forwardWriter). RefuseConn is the same answer for a connection
// refused before its request was read.
func (g *Gateway) refuse(w http.ResponseWriter, ex *exchange, rf refusal) {
	status, body := g.refusalHead(w.Header(), ex, rf)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
	g.auditRefusal(ex, rf.reason, status)
}

// RefuseConn answers c, which the connection limits turned away before reading its request,
// with reason, and audits it. The limit listener calls it with a write deadline set.
func (g *Gateway) RefuseConn(c net.Conn, reason policy.Reason) error {
	ex := g.exchangeFor(c.RemoteAddr().String())
	h := http.Header{}
	status, body := g.refusalHead(h, ex, refusal{reason: reason})
	resp := &http.Response{
		StatusCode: status, ProtoMajor: 1, ProtoMinor: 1, Header: h, Close: true,
		ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body)),
	}
	err := resp.Write(c)
	g.auditRefusal(ex, reason, status)
	return err
}

// refusalHead sets the refusal's headers on h and returns its status and body. The body is
// short and fixed, and names the connection id so that a user's error message can be matched
// with the audit line.
func (g *Gateway) refusalHead(h http.Header, ex *exchange, rf refusal) (int, string) {
	ex.noteTarget()
	status := rf.reason.Status()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Scpgate-Reason", string(rf.reason))
	h.Set("X-Scpgate-Conn", ex.rec.ConnID)
	h.Set("Cache-Control", "no-store")
	h.Set("Connection", "close")
	switch status {
	case http.StatusProxyAuthRequired:
		if g.opts.Auth != nil {
			for _, c := range g.opts.Auth.Challenges() {
				h.Add("Proxy-Authenticate", c)
			}
		}
	case http.StatusTooManyRequests:
		h.Set("Retry-After", retryAfterSeconds(rf.retryAfter))
	}
	msg := rf.reason.Message(ex.targetString())
	if rf.detail != "" {
		msg += ": " + rf.detail
	}
	return status, "scpgate: " + msg + " (" + string(rf.reason) + ") [conn " + ex.rec.ConnID + "]\n"
}

func (g *Gateway) auditRefusal(ex *exchange, reason policy.Reason, status int) {
	ex.rec.Decision = audit.DecisionDeny
	ex.rec.Reason = string(reason)
	ex.rec.Event = audit.EventDecision
	g.finish(ex, status)
}

// retryAfterSeconds is d rounded up to whole seconds, at least one.
func retryAfterSeconds(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(secs, 1), 10)
}
