package auditreport

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scpgate/scpgate/internal/junit"
)

// formats are the output formats, in the order -out writes them.
var formats = []string{"text", "json", "html", "csv", "junit"}

// Formats returns the names of the output formats.
func Formats() []string { return slices.Clone(formats) }

// Extension is the file name extension -out uses for a format.
func Extension(format string) string {
	switch format {
	case "text":
		return "txt"
	case "junit":
		return "junit.xml"
	}
	return format
}

// Write renders r in format (one of Formats) to w.
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "text":
		return r.WriteText(w)
	case "json":
		return r.WriteJSON(w)
	case "html":
		return r.WriteHTML(w)
	case "csv":
		return r.WriteCSV(w)
	case "junit":
		return r.WriteJUnit(w)
	}
	return fmt.Errorf("unknown format %q (want one of %s)", format, strings.Join(formats, ", "))
}

// WriteJSON writes the report as one indented JSON document of SchemaID.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Headline is the report in one sentence: what was read and what came out of it.
func (r *Report) Headline() string {
	return fmt.Sprintf("%d records in %d file(s): %d passed, %d refused; %d denied name(s), %d unused rule(s), %d malformed line(s)",
		r.Totals.Records, len(r.Inputs), r.Totals.Passed, r.Totals.Refused, len(r.Denied), len(r.UnusedRules), r.Malformed.Count)
}

// WriteText writes the report as terminal tables.
func (r *Report) WriteText(w io.Writer) error {
	b := &errWriter{w: w}
	b.printf("scpgate audit report: %s\n", r.Headline())
	if r.Policy != nil {
		b.printf("policy:   %s (version %.12s, %d rules in enabled groups)\n", r.Policy.File, r.Policy.Version, r.Policy.EnabledRules)
	} else {
		b.printf("policy:   none compared\n")
	}
	b.printf("period:   %s\n", r.PeriodText())
	b.printf("traffic:  %s up, %s down, %s distinct client(s)\n", bytesText(r.Totals.BytesUp), bytesText(r.Totals.BytesDown), countText(r.Totals.Clients))

	b.table("ENDPOINTS (allowed by the policy)", "none",
		"GROUP\tPATTERN\tHOST:PORT\tOK\tFAILED\tFAILURES\tUP\tDOWN\tCLIENTS\tLAST SUCCESS", len(r.Endpoints),
		func(i int) []any {
			e := r.Endpoints[i]
			pattern := e.Pattern
			if !e.InPolicy && r.Policy != nil {
				pattern += " (not in policy)"
			}
			return []any{dash(e.Group), dash(pattern), hostPort(e.Host, e.Port), e.Successes, e.Failures,
				dash(reasonsText(e.FailureReasons)), bytesText(e.BytesUp), bytesText(e.BytesDown), countText(e.Clients), timeText(e.LastSuccess)}
		})
	b.table("DENIED NAMES (most frequent first)", "none",
		"COUNT\tHOST:PORT\tREASONS\tCLIENTS\tLAST SEEN\tA DISABLED GROUP WOULD ALLOW IT", len(r.Denied),
		func(i int) []any {
			d := r.Denied[i]
			return []any{d.Count, hostPort(d.Host, d.Port), reasonsText(d.Reasons), countText(d.Clients), timeText(&d.LastSeen), dash(d.disabledText())}
		})
	if r.Policy != nil {
		b.table("RULES THAT ALLOWED NOTHING (candidates to remove)", "none: every rule of an enabled group allowed a connection",
			"GROUP\tPATTERN\tKIND", len(r.UnusedRules),
			func(i int) []any { u := r.UnusedRules[i]; return []any{u.Group, u.Pattern, u.Kind} })
	}
	if len(r.Refusals) > 0 {
		b.table("REFUSED BEFORE THE DESTINATION WAS JUDGED", "", "REASON\tCOUNT\tCLIENTS\tLAST SEEN\tMEANING", len(r.Refusals),
			func(i int) []any {
				f := r.Refusals[i]
				return []any{dash(f.Reason), f.Count, countText(f.Clients), timeText(&f.LastSeen), dash(f.Description)}
			})
	}
	b.table("INPUTS", "", "FILE\tLINES\tRECORDS\tOUTSIDE PERIOD\tMALFORMED\tERROR", len(r.Inputs),
		func(i int) []any {
			in := r.Inputs[i]
			name := in.File
			if in.Compressed {
				name += " (gzip)"
			}
			return []any{name, in.Lines, in.Records, in.OutsidePeriod, in.Malformed, dash(in.Error)}
		})
	if r.Malformed.Count > 0 {
		b.printf("\nMALFORMED LINES: %d (skipped; the first %d listed)\n", r.Malformed.Count, len(r.Malformed.Shown))
		for _, m := range r.Malformed.Shown {
			b.printf("  %s:%d: %s\n", m.File, m.Line, m.Error)
		}
	}
	if notes := r.notes(); len(notes) > 0 {
		b.printf("\n")
		for _, note := range notes {
			b.printf("note: %s\n", note)
		}
	}
	return b.err
}

// notes explain the parts of the report that are estimates or incomplete.
func (r *Report) notes() []string {
	var out []string
	if r.anyEstimated() {
		out = append(out, fmt.Sprintf("~N clients is an estimate (HyperLogLog, about 1.6 %% standard error): exact up to %d distinct clients per row.", r.Limits.ClientExactLimit))
	}
	if o := r.Omitted; o.EndpointRecords+o.DeniedRecords+o.RefusalRecords > 0 {
		out = append(out, fmt.Sprintf("row limits reached: %d endpoint, %d denied and %d refusal records are in the totals but not itemised (limits %d/%d/%d rows).",
			o.EndpointRecords, o.DeniedRecords, o.RefusalRecords, r.Limits.MaxEndpoints, r.Limits.MaxDenied, r.Limits.MaxRefusals))
	}
	return out
}

func (r *Report) anyEstimated() bool {
	if r.Totals.Clients.Estimated {
		return true
	}
	for _, e := range r.Endpoints {
		if e.Clients.Estimated {
			return true
		}
	}
	for _, d := range r.Denied {
		if d.Clients.Estimated {
			return true
		}
	}
	for _, f := range r.Refusals {
		if f.Clients.Estimated {
			return true
		}
	}
	return false
}

// PeriodText describes the period asked for and the one the records covered.
func (r *Report) PeriodText() string {
	asked := "all records"
	if r.Period.Since != nil || r.Period.Until != nil {
		asked = "since " + timeText(r.Period.Since) + " until " + timeText(r.Period.Until)
	}
	if r.Period.FirstRecord == nil {
		return asked + "; no records"
	}
	return fmt.Sprintf("%s; records from %s to %s", asked, timeText(r.Period.FirstRecord), timeText(r.Period.LastRecord))
}

func (d Denied) disabledText() string {
	if d.DisabledGroup == "" {
		return ""
	}
	return d.DisabledGroup + " (" + d.DisabledPattern + ")"
}

// WriteCSV writes every row of the report as one CSV table; the first column, kind, says which
// list the row is from (endpoint, denied, unused_rule, refusal) and cells that do not apply to
// that kind are empty. reasons is "reason=count" pairs separated by ";".
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"kind", "group", "pattern", "host", "port", "successes", "failures", "reasons",
		"would_deny", "bytes_up", "bytes_down", "clients", "clients_estimated", "last_success", "last_seen", "disabled_group", "disabled_pattern"})
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	for _, e := range r.Endpoints {
		_ = cw.Write([]string{"endpoint", e.Group, e.Pattern, e.Host, itoa(int64(e.Port)), itoa(e.Successes), itoa(e.Failures),
			pairs(e.FailureReasons), itoa(e.WouldDeny), itoa(e.BytesUp), itoa(e.BytesDown), itoa(e.Clients.N),
			strconv.FormatBool(e.Clients.Estimated), csvTime(e.LastSuccess), csvTime(&e.LastSeen), "", ""})
	}
	for _, d := range r.Denied {
		_ = cw.Write([]string{"denied", d.Group, d.Pattern, d.Host, itoa(int64(d.Port)), "", itoa(d.Count),
			pairs(d.Reasons), itoa(d.WouldDeny), "", "", itoa(d.Clients.N),
			strconv.FormatBool(d.Clients.Estimated), "", csvTime(&d.LastSeen), d.DisabledGroup, d.DisabledPattern})
	}
	for _, u := range r.UnusedRules {
		_ = cw.Write([]string{"unused_rule", u.Group, u.Pattern, "", "", "0", "", "", "", "", "", "", "", "", "", "", ""})
	}
	for _, f := range r.Refusals {
		_ = cw.Write([]string{"refusal", "", "", "", "", "", itoa(f.Count), pairs(map[string]int64{f.Reason: f.Count}), "", "", "",
			itoa(f.Clients.N), strconv.FormatBool(f.Clients.Estimated), "", csvTime(&f.LastSeen), "", ""})
	}
	cw.Flush()
	return cw.Error()
}

func pairs(m map[string]int64) string {
	var s []string
	for _, k := range sortedReasons(m) {
		s = append(s, k+"="+strconv.FormatInt(m[k], 10))
	}
	return strings.Join(s, ";")
}

func csvTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// JUnit XML: one test case per rule that carried traffic or belongs to an enabled group of the
// compared policy, plus two checks of the audit files themselves. A rule passes when it allowed at
// least one connection, fails when every attempt through it failed (the endpoint is unreachable or
// refused after the policy allowed it), and is skipped when nothing tried it (a candidate to
// remove, which is not a failure). Denied names are not test cases: refusing an unlisted name is
// the gateway working, not a defect.
//
// WriteJUnit writes the report as JUnit XML for CI.
func (r *Report) WriteJUnit(w io.Writer) error {
	type tally struct {
		ok, failed int64
		reasons    map[string]int64
	}
	rules := map[ruleKey]*tally{}
	var order []ruleKey
	get := func(k ruleKey) *tally {
		t := rules[k]
		if t == nil {
			t = &tally{reasons: map[string]int64{}}
			rules[k] = t
			order = append(order, k)
		}
		return t
	}
	for _, e := range r.Endpoints {
		if e.Group == "" {
			continue
		}
		t := get(ruleKey{e.Group, e.Pattern})
		t.ok += e.Successes
		t.failed += e.Failures
		for k, n := range e.FailureReasons {
			t.reasons[k] += n
		}
	}
	for _, u := range r.UnusedRules {
		get(ruleKey{u.Group, u.Pattern})
	}
	rs := junit.Suite{Name: "rules"}
	for _, k := range order {
		t := rules[k]
		c := junit.Case{Class: "rules." + k.group, Name: k.pattern}
		switch {
		case t.ok > 0:
		case t.failed > 0:
			c.Failure = &junit.Message{Message: fmt.Sprintf("no connection through this rule succeeded: %d failed (%s)", t.failed, reasonsText(t.reasons))}
		default:
			c.Skipped = &junit.Message{Message: "allowed nothing in the period (candidate to remove)"}
		}
		rs.Add(c)
	}

	as := junit.Suite{Name: "audit files"}
	lines := junit.Case{Class: "audit", Name: "every line is an audit record"}
	if r.Malformed.Count > 0 {
		var text strings.Builder
		for _, m := range r.Malformed.Shown {
			fmt.Fprintf(&text, "%s:%d: %s\n", m.File, m.Line, m.Error)
		}
		lines.Failure = &junit.Message{Message: fmt.Sprintf("%d malformed line(s) skipped", r.Malformed.Count), Text: text.String()}
	}
	as.Add(lines)
	read := junit.Case{Class: "audit", Name: "every file read to its end"}
	var errs []string
	for _, in := range r.Inputs {
		if in.Error != "" {
			errs = append(errs, in.Error)
		}
	}
	if len(errs) > 0 {
		read.Failure = &junit.Message{Message: fmt.Sprintf("%d file(s) not read to the end", len(errs)), Text: strings.Join(errs, "\n")}
	}
	as.Add(read)
	return junit.Write(w, junit.Suites{Name: "scpgate audit report", Suites: []junit.Suite{rs, as}})
}

// sortedReasons orders reason codes by count, most first, then by name.
func sortedReasons(m map[string]int64) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	return keys
}

func reasonsText(m map[string]int64) string {
	var s []string
	for _, k := range sortedReasons(m) {
		s = append(s, fmt.Sprintf("%s %d", dash(k), m[k]))
	}
	return strings.Join(s, ", ")
}

func countText(c Count) string {
	if c.Estimated {
		return "~" + strconv.FormatInt(c.N, 10)
	}
	return strconv.FormatInt(c.N, 10)
}

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func timeText(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func hostPort(host string, port uint16) string {
	if host == "" {
		host = "?"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(int(port))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// errWriter keeps the first write error so the text renderer can check once at the end.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

// table prints a titled, aligned table of n rows (cells from row), or empty when n is 0.
func (e *errWriter) table(title, empty, header string, n int, row func(i int) []any) {
	e.printf("\n%s\n", title)
	if n == 0 && empty != "" {
		e.printf("  %s\n", empty)
		return
	}
	tw := tabwriter.NewWriter(e, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  %s\n", header)
	for i := range n {
		cells := row(i)
		fmt.Fprint(tw, "  ")
		for j, c := range cells {
			sep := "\t"
			if j == len(cells)-1 {
				sep = "\n"
			}
			fmt.Fprintf(tw, "%v%s", c, sep)
		}
	}
	e.err = cmp.Or(e.err, tw.Flush())
}
