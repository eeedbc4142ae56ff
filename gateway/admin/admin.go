// Package admin is the handler of the admin listener (loopback by default): Prometheus metrics,
// liveness and readiness probes, read-only views of the policy in force, and a proxy
// auto-config (PAC) file made from it.
//
// Everything here is read-only and cheap, but the explain endpoint does reveal the policy, so the
// listener belongs on loopback or a management network; the handler itself does no
// authentication.
package admin

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/gateway/metrics"
	"github.com/scpgate/scpgate/policy"
	"github.com/scpgate/scpgate/policy/pac"
)

// Options configures the handler. Every field may be nil: see each for what nil means.
type Options struct {
	Metrics     *metrics.Metrics      // nil: /metrics answers 404
	Policy      func() *policy.Policy // the policy in force; nil or returning nil: policy routes answer 503
	LoadedAt    func() time.Time      // when it was loaded; nil or zero: "loaded_at" is null
	Ready       func() bool           // false while starting or draining; nil: always ready
	AuthEnabled func() bool           // proxy authentication is on (explain's default); nil: off
	// PACProxy is the plain HTTP proxy listener as clients reach it ("gw.corp.example:3128"),
	// named in /proxy.pac; "" makes /proxy.pac require ?proxy=HOST:PORT.
	PACProxy string
	// Audit finds the recent audit records of connection ids (/v1/audit); nil: 404.
	Audit  func(ids []string) []audit.Record
	Logger *slog.Logger // nil: slog.Default()
}

// Routes.
const (
	PathMetrics = "/metrics"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathExplain = "/v1/explain"
	PathPolicy  = "/v1/policy"
	PathPAC     = "/proxy.pac"
	PathAudit   = "/v1/audit"
)

// MaxAuditIDs bounds the connection ids of one /v1/audit request.
const MaxAuditIDs = 256

type handler struct {
	o       Options
	log     *slog.Logger
	metrics http.Handler
}

// New returns the admin handler. It answers GET and HEAD only.
func New(o Options) http.Handler {
	h := &handler{o: o, log: o.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	if o.Metrics != nil {
		reg := o.Metrics.Registry()
		h.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(h.log.With("component", "admin").Handler(), slog.LevelError),
			// A failing collector (say, the process collector on a platform without /proc)
			// must not blank the whole scrape: serve what could be gathered, log the error, and
			// count it in promhttp_metric_handler_errors_total on the same registry.
			ErrorHandling: promhttp.ContinueOnError,
			Registry:      reg,
		})
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	// Probes and scrapes must always see the current state, never a cached copy.
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")

	var route func(http.ResponseWriter, *http.Request)
	switch r.URL.Path {
	case PathMetrics:
		route = h.serveMetrics
	case PathHealthz:
		route = h.serveHealthz
	case PathReadyz:
		route = h.serveReadyz
	case PathExplain:
		route = h.serveExplain
	case PathPolicy:
		route = h.servePolicy
	case PathPAC:
		route = h.servePAC
	case PathAudit:
		route = h.serveAudit
	default:
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	route(w, r)
}

func (h *handler) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if h.metrics == nil {
		writeError(w, http.StatusNotFound, "metrics are not enabled")
		return
	}
	h.metrics.ServeHTTP(w, r)
}

// serveHealthz says only that the process is alive and serving HTTP.
func (h *handler) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok")
}

// serveReadyz says whether a load balancer should send new connections here. Draining (read back
// from the metrics) is reported as such, so an operator can tell shutdown from a failed start.
func (h *handler) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	switch {
	case h.o.Metrics != nil && h.o.Metrics.Draining():
		writeText(w, http.StatusServiceUnavailable, "draining")
	case h.o.Ready != nil && !h.o.Ready():
		writeText(w, http.StatusServiceUnavailable, "not ready")
	default:
		writeText(w, http.StatusOK, "ready")
	}
}

// servePAC answers /proxy.pac[?proxy=HOST:PORT][&all=1] with a proxy auto-config file for the
// policy in force (package pac): the enabled groups' hosts through the gateway, the rest DIRECT,
// or everything through the gateway with all=1.
func (h *handler) servePAC(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed query: "+err.Error())
		return
	}
	proxy := h.o.PACProxy
	if v := q.Get("proxy"); v != "" {
		proxy = v
	}
	if proxy == "" {
		writeError(w, http.StatusBadRequest, "no proxy address is configured: add ?proxy=HOST:PORT")
		return
	}
	all := false
	switch v := q.Get("all"); v {
	case "", "0", "false":
	case "1", "true":
		all = true
	default:
		writeError(w, http.StatusBadRequest, "all must be 1 or 0")
		return
	}
	p := h.policy()
	if p == nil {
		writeError(w, http.StatusServiceUnavailable, "no policy is loaded")
		return
	}
	out, err := pac.Generate(p, pac.Options{Proxy: proxy, All: all})
	if err != nil {
		writeError(w, http.StatusBadRequest, "proxy must be HOST:PORT")
		return
	}
	w.Header().Set("Content-Type", "application/x-ns-proxy-autoconfig")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

func (h *handler) policy() *policy.Policy {
	if h.o.Policy == nil {
		return nil
	}
	return h.o.Policy()
}

// serveExplain answers /v1/explain?host=&port=&user=&method= with the verbose decision the policy
// in force would take for that request.
func (h *handler) serveExplain(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed query: "+err.Error())
		return
	}
	params := map[string]string{}
	for _, k := range []string{"host", "port", "user", "method"} {
		switch v := q[k]; len(v) {
		case 0:
		case 1:
			params[k] = v[0]
		default:
			// Refuse rather than pick one: the caller would not know which was explained.
			writeError(w, http.StatusBadRequest, k+" is given more than once")
			return
		}
	}

	rawHost := params["host"]
	if rawHost == "" {
		writeError(w, http.StatusBadRequest, "missing host")
		return
	}
	// Accept an IPv6 literal in brackets, as in a CONNECT target, like the CLI does.
	hostPart := rawHost
	if len(hostPart) >= 2 && hostPart[0] == '[' && hostPart[len(hostPart)-1] == ']' {
		hostPart = hostPart[1 : len(hostPart)-1]
	}
	host, err := policy.ParseHost(hostPart)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rawPort := params["port"]
	if rawPort == "" {
		writeError(w, http.StatusBadRequest, "missing port")
		return
	}
	port, err := policy.ParsePort(rawPort)
	if err != nil {
		writeError(w, http.StatusBadRequest, "port must be a decimal number from 1 to 65535")
		return
	}
	method := "CONNECT"
	if m := params["method"]; m != "" {
		if !isToken(m) || len(m) > 32 {
			writeError(w, http.StatusBadRequest, "method must be an HTTP method name")
			return
		}
		method = strings.ToUpper(m)
	}
	user := params["user"]

	p := h.policy()
	if p == nil {
		writeError(w, http.StatusServiceUnavailable, "no policy is loaded")
		return
	}
	authOn := h.o.AuthEnabled != nil && h.o.AuthEnabled()
	d := p.DecideVerbose(policy.Request{
		Host:   host,
		Port:   port,
		Method: method,
		User:   user,
		// A named user implies authentication, as in the CLI: otherwise asking "may alice
		// use this?" on a gateway without auth would ignore the users lists.
		AuthEnabled: authOn || user != "",
	})
	h.writeJSON(w, http.StatusOK, policy.NewExplanation(net.JoinHostPort(hostPart, rawPort), host, port, p.File, d))
}

type policyView struct {
	File     string      `json:"file"`
	Version  string      `json:"version"`
	LoadedAt *time.Time  `json:"loaded_at"` // null when unknown
	Mode     policy.Mode `json:"mode"`
	Groups   []groupView `json:"groups"`
}

type groupView struct {
	Name    string      `json:"name"`
	Enabled bool        `json:"enabled"`
	Mode    policy.Mode `json:"mode"`
	Ports   []uint16    `json:"ports"`
	Hosts   int         `json:"hosts"` // number of host patterns; the patterns are in the file
}

// servePolicy summarises the policy in force, so an operator can check which file and version
// an instance runs (after a reload, or across instances behind a load balancer).
func (h *handler) servePolicy(w http.ResponseWriter, _ *http.Request) {
	p := h.policy()
	if p == nil {
		writeError(w, http.StatusServiceUnavailable, "no policy is loaded")
		return
	}
	v := policyView{File: p.File, Version: p.Version, Mode: p.Mode, Groups: make([]groupView, 0, len(p.Groups))}
	if h.o.LoadedAt != nil {
		if at := h.o.LoadedAt(); !at.IsZero() {
			v.LoadedAt = &at
		}
	}
	for _, g := range p.Groups {
		ports := g.Ports
		if ports == nil {
			ports = []uint16{} // [] rather than null: consumers iterate without a check
		}
		v.Groups = append(v.Groups, groupView{Name: g.Name, Enabled: g.Enabled, Mode: g.Mode, Ports: ports, Hosts: len(g.Hosts)})
	}
	h.writeJSON(w, http.StatusOK, v)
}

// serveAudit answers /v1/audit?conn=ID&conn=ID...: the gateway's recent audit records of those
// connections (`scpgate validate -admin` ties its probes to the gateway's decisions with it).
// Unknown or forgotten ids are left out of "records".
func (h *handler) serveAudit(w http.ResponseWriter, r *http.Request) {
	if h.o.Audit == nil {
		writeError(w, http.StatusNotFound, "audit records are not kept")
		return
	}
	ids := r.URL.Query()["conn"]
	switch {
	case len(ids) == 0:
		writeError(w, http.StatusBadRequest, "give one or more conn=ID parameters")
		return
	case len(ids) > MaxAuditIDs:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("at most %d conn parameters per request", MaxAuditIDs))
		return
	}
	h.writeJSON(w, http.StatusOK, struct {
		Records []audit.Record `json:"records"`
	}{h.o.Audit(ids)})
}

// isToken reports whether s is an RFC 9110 token, the syntax of a method name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// writeJSON encodes like the CLI (two-space indent, trailing newline), so the endpoint and
// `scpgate policy explain -json` print the same bytes.
func (h *handler) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		// The header is gone; the client has most likely disconnected.
		h.log.Debug("admin: writing response failed", "err", err)
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	_, _ = w.Write(append(b, '\n'))
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
