package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/policy"
)

// exchange is one proxied request (or one connection refused before its request was read): what
// the audit line will say about it.
type exchange struct {
	start    time.Time
	rec      audit.Record
	clientIP netip.Addr
	// target is the request's raw target and defaultPort the port it implies when it names
	// none; a refusal before the target was parsed still records it (noteTarget).
	target      string
	defaultPort uint16
	// authHeader holds response headers the authenticator asked for (Negotiate's mutual auth).
	authHeader http.Header
}

func (g *Gateway) newExchange(r *http.Request) *exchange {
	ex := g.exchangeFor(r.RemoteAddr)
	ex.rec.Method = r.Method
	if r.URL != nil {
		ex.target = r.URL.Host
	}
	if r.Method == http.MethodConnect {
		if ex.target == "" {
			ex.target = r.Host
		}
	} else {
		ex.defaultPort = 80
	}
	return ex
}

// exchangeFor starts the record of a connection from remote ("ip:port", the one form of the
// Client field everywhere).
func (g *Gateway) exchangeFor(remote string) *exchange {
	now := time.Now()
	ex := &exchange{start: now, rec: audit.Record{
		Time:   now.UTC(),
		ConnID: g.idPrefix + "-" + strconv.FormatUint(g.connSeq.Add(1), 10),
		Client: remote,
	}}
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		ex.clientIP = ap.Addr().Unmap()
	}
	return ex
}

// noteTarget records the target of a request refused before it was parsed: as parsed, or raw in
// its own field when it does not parse.
func (ex *exchange) noteTarget() {
	if ex.rec.Host != "" || ex.rec.Target != "" || ex.target == "" {
		return
	}
	host, port, err := splitTarget(ex.target, ex.defaultPort)
	if err != nil {
		ex.rec.Target = ex.target
		return
	}
	ex.rec.Host, ex.rec.Port = host.String(), port
}

// targetString is "host:port" once the target is known, else "".
func (ex *exchange) targetString() string {
	if ex.rec.Host == "" {
		return ""
	}
	return net.JoinHostPort(ex.rec.Host, strconv.Itoa(int(ex.rec.Port)))
}

func (ex *exchange) applyDecision(d policy.Decision) {
	ex.rec.Group = d.Group
	ex.rec.Pattern = d.Pattern
	ex.rec.Mode = string(d.Mode)
	ex.rec.Reason = string(d.Reason)
	switch {
	case d.Allow && d.WouldDeny:
		ex.rec.Decision = audit.DecisionWouldDeny
	case d.Allow:
		ex.rec.Decision = audit.DecisionAllow
	default:
		ex.rec.Decision = audit.DecisionDeny
	}
}

func (g *Gateway) finish(ex *exchange, status int) {
	ex.rec.Status = status
	ex.rec.DurationMS = float64(time.Since(ex.start).Microseconds()) / 1000
	g.opts.Audit.Write(ex.rec)
}
