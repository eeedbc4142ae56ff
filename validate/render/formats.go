package render

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/scpgate/scpgate/internal/junit"
	"github.com/scpgate/scpgate/validate"
)

// Table writes the terminal table: the outcome, one line per check grouped by group, and the
// drift section.
func Table(w io.Writer, rep *validate.Report) error {
	// Built in memory and written once: one error to check, and no half table on a failure.
	ew := &bytes.Buffer{}
	fmt.Fprintf(ew, "scpgate validate: %d %s: %s\n", rep.Outcome.Message, rep.Outcome.Severity, rep.Outcome.Text)
	fmt.Fprintf(ew, "proxy %s, policy %s (%s), %d checks: %d pass, %d warn, %d fail\n",
		rep.Proxy, rep.Policy.File, short(rep.Policy.Version), rep.Summary.Total, rep.Summary.Pass, rep.Summary.Warn, rep.Summary.Fail)
	if rep.Incomplete {
		fmt.Fprintln(ew, "the overall timeout ended the run: unfinished checks failed")
	}
	for _, g := range groupOrder(rep) {
		fmt.Fprintf(ew, "\n== %s\n", g)
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RESULT\tCHECK\tTARGET\tEXPECT\tPROXY\tGATEWAY\tTLS\tCONFIGMGR\tDETAIL")
		for _, r := range rep.Results {
			if groupName(r) != g {
				continue
			}
			target := r.Target()
			if r.SNI != "" {
				target += " sni=" + r.SNI
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", verdict(r.Status), r.Kind, target, expectText(r),
				answerText(r), gatewayText(r), tlsText(r), cmText(r.ConfigMgr), r.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	d := rep.Drift
	fmt.Fprintln(ew, "\n== coverage")
	for _, c := range d.Rules {
		hosts := strings.Join(c.Hosts, ", ")
		if hosts == "" {
			hosts = "-"
		}
		fmt.Fprintf(ew, "  %-24s %-42s %-12s %s\n", c.Group, c.Pattern, c.Coverage, hosts)
	}
	if len(d.NotEnabled) > 0 {
		fmt.Fprintf(ew, "\n== shipped endpoints not enabled (%d)\n", len(d.NotEnabled))
		for _, e := range d.NotEnabled {
			fmt.Fprintf(ew, "  %-24s %s\n", e.Group, e.Pattern)
		}
	}
	if len(d.Skipped) > 0 {
		fmt.Fprintf(ew, "\n== near misses not checked (%d)\n", len(d.Skipped))
		for _, s := range d.Skipped {
			fmt.Fprintf(ew, "  %-16s %-40s %s\n", s.Kind, firstNonEmpty(s.Host, s.Pattern, "-"), s.Why)
		}
	}
	_, err := w.Write(ew.Bytes())
	return err
}

func cmText(v validate.ConfigMgrView) string {
	s := "failure"
	if v.Reachable {
		s = "reachable"
	}
	if v.Disagrees {
		s += "*"
	}
	return s
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// csvHeader is the first row of the CSV output.
var csvHeader = []string{"id", "group", "kind", "expect", "expect_reason", "target", "sni", "status", "blocked", "blocked_by",
	"proxy_status", "proxy_reason", "conn_id", "gateway_decision", "gateway_reason", "gateway_group", "gateway_pattern",
	"gateway_address", "tls_version", "tls_cipher", "tls_inspected", "http_status", "configmgr", "total_ms", "detail"}

// CSV writes one row per check.
func CSV(w io.Writer, rep *validate.Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, r := range rep.Results {
		var pStatus, pReason, conn string
		if r.Proxy != nil {
			pStatus, pReason, conn = strconv.Itoa(r.Proxy.Status), r.Proxy.Reason, r.Proxy.ConnID
		}
		var gDec, gReason, gGroup, gPattern, gAddr string
		if r.Gateway != nil {
			gDec, gReason, gGroup, gPattern, gAddr = r.Gateway.Decision, r.Gateway.Reason, r.Gateway.Group, r.Gateway.Pattern, r.Gateway.Address
			if !r.Gateway.Found {
				gDec = "no record"
			}
		}
		var tv, tc, ti string
		if r.TLS != nil {
			tv, tc, ti = r.TLS.Version, r.TLS.Cipher, strconv.FormatBool(r.TLS.Inspected)
		}
		var total float64
		for _, s := range r.Steps {
			total += s.MS
		}
		http := ""
		if r.HTTPStatus != 0 {
			http = strconv.Itoa(r.HTTPStatus)
		}
		row := []string{r.ID, r.Group, r.Kind, string(r.Expect), string(r.ExpectReason), r.Target(), r.SNI, string(r.Status),
			strconv.FormatBool(r.Blocked), r.BlockedBy, pStatus, pReason, conn, gDec, gReason, gGroup, gPattern, gAddr, tv, tc, ti,
			http, r.ConfigMgr.Reading, strconv.FormatFloat(total, 'f', 1, 64), r.Detail}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// JUnit writes JUnit XML: failures are test failures; warnings pass with the detail in
// system-out and a "warning:" prefix, so CI shows them without failing the build on them.
func JUnit(w io.Writer, rep *validate.Report) error {
	doc := junit.Suites{Name: "scpgate validate", Time: secs(rep.DurationMS)}
	for _, g := range groupOrder(rep) {
		suite := junit.Suite{Name: g, Properties: []junit.Property{{Name: "policy_version", Value: rep.Policy.Version}, {Name: "outcome", Value: strconv.Itoa(rep.Outcome.Message)}}}
		for _, r := range rep.Results {
			if groupName(r) != g {
				continue
			}
			var total float64
			for _, st := range r.Steps {
				total += st.MS
			}
			c := junit.Case{Name: r.ID, Class: "scpgate.validate." + g, Time: secs(total)}
			switch r.Status {
			case validate.StatusFail:
				c.Failure = &junit.Message{Message: r.Detail, Type: r.Kind, Text: r.Why + "\n" + r.Detail}
			case validate.StatusWarn:
				c.SystemOut = "warning: " + r.Detail
			default:
				c.SystemOut = r.Detail
			}
			suite.Add(c)
		}
		doc.Suites = append(doc.Suites, suite)
	}
	return junit.Write(w, doc)
}

func secs(ms float64) string { return strconv.FormatFloat(ms/1000, 'f', 3, 64) }
