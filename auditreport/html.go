package auditreport

import (
	"html/template"
	"io"
	"time"
)

// WriteHTML writes the report as one self-contained HTML page: inline style, no script, no
// external asset, the summary at the top, and a print style that keeps table rows whole.
func (r *Report) WriteHTML(w io.Writer) error {
	return htmlPage.Execute(w, r)
}

var htmlPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"count":    countText,
	"bytes":    bytesText,
	"reasons":  reasonsText,
	"hostport": hostPort,
	"dash":     dash,
	"time":     timeText,
	"at":       func(t time.Time) string { return timeText(&t) },
	"notes":    func(r *Report) []string { return r.notes() },
	"disabled": func(d Denied) string { return d.disabledText() },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>scpgate audit report</title>
<style>
:root { --ok: #1a7f37; --bad: #b42318; --warn: #9a6700; --muted: #57606a; --line: #d0d7de; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #1f2328; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid var(--line); padding-bottom: .2em; }
.meta { color: var(--muted); margin: .1em 0; }
.cards { display: flex; flex-wrap: wrap; gap: .6em; margin: 1.2em 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: .5em .9em; min-width: 8em; }
.card b { display: block; font-size: 1.5em; }
.card.bad b { color: var(--bad); } .card.warn b { color: var(--warn); } .card.ok b { color: var(--ok); }
table { border-collapse: collapse; width: 100%; margin: .5em 0; }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #fff1f0; } tr.hint td { background: #fff8c5; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .95em; }
.note { color: var(--muted); font-size: .9em; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  h2 { break-after: avoid; }
  tr { break-inside: avoid; }
  thead { display: table-header-group; }
  tr.fail td, tr.hint td, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
</style>
</head>
<body>
<h1>scpgate audit report</h1>
<p class="meta" id="summary">{{.Headline}}</p>
<p class="meta">Period: {{.PeriodText}}</p>
<p class="meta">Policy: {{with .Policy}}<code>{{.File}}</code>, version <code>{{printf "%.12s" .Version}}</code>, {{.EnabledRules}} rules in enabled groups{{else}}none compared{{end}}</p>
<p class="meta">Generated {{at .GeneratedAt}} · schema <code>{{.Schema}}</code></p>
<div class="cards">
<div class="card"><b>{{.Totals.Records}}</b>records</div>
<div class="card ok"><b>{{.Totals.Passed}}</b>passed</div>
<div class="card{{if .Totals.Refused}} bad{{end}}"><b>{{.Totals.Refused}}</b>refused or failed</div>
<div class="card"><b>{{count .Totals.Clients}}</b>distinct clients</div>
<div class="card"><b>{{bytes .Totals.BytesDown}}</b>down ({{bytes .Totals.BytesUp}} up)</div>
<div class="card{{if .Denied}} warn{{end}}"><b>{{len .Denied}}</b>denied names</div>
{{if .Policy}}<div class="card{{if .UnusedRules}} warn{{end}}"><b>{{len .UnusedRules}}</b>rules that allowed nothing</div>{{end}}
<div class="card{{if .Malformed.Count}} bad{{end}}"><b>{{.Malformed.Count}}</b>malformed lines</div>
</div>

<h2>Endpoints allowed by the policy</h2>
{{if .Endpoints}}<table>
<thead><tr><th>Group</th><th>Pattern</th><th>Host:port</th><th>OK</th><th>Failed</th><th>Failures by reason</th><th>Up</th><th>Down</th><th>Clients</th><th>Last success</th></tr></thead>
<tbody>
{{range .Endpoints}}<tr{{if and .Failures (not .Successes)}} class="fail"{{end}}><td>{{dash .Group}}</td><td><code>{{dash .Pattern}}</code>{{if not .InPolicy}} <span class="note">(not in policy)</span>{{end}}</td><td><code>{{hostport .Host .Port}}</code></td><td class="n">{{.Successes}}</td><td class="n">{{.Failures}}</td><td>{{reasons .FailureReasons}}</td><td class="n">{{bytes .BytesUp}}</td><td class="n">{{bytes .BytesDown}}</td><td class="n">{{count .Clients}}</td><td>{{time .LastSuccess}}</td></tr>
{{end}}</tbody></table>{{else}}<p>None.</p>{{end}}

<h2>Denied names, most frequent first</h2>
{{if .Denied}}<table>
<thead><tr><th>Count</th><th>Host:port</th><th>Reasons</th><th>Matched rule</th><th>A disabled group would allow it</th><th>Clients</th><th>Last seen</th></tr></thead>
<tbody>
{{range .Denied}}<tr{{if .DisabledGroup}} class="hint"{{end}}><td class="n">{{.Count}}</td><td><code>{{hostport .Host .Port}}</code></td><td>{{reasons .Reasons}}</td><td>{{if .Group}}{{.Group}} <code>{{.Pattern}}</code>{{else}}-{{end}}</td><td>{{dash (disabled .)}}</td><td class="n">{{count .Clients}}</td><td>{{at .LastSeen}}</td></tr>
{{end}}</tbody></table>{{else}}<p>None.</p>{{end}}

{{if .Policy}}<h2>Rules that allowed nothing (candidates to remove)</h2>
{{if .UnusedRules}}<table>
<thead><tr><th>Group</th><th>Pattern</th><th>Kind</th></tr></thead>
<tbody>
{{range .UnusedRules}}<tr><td>{{.Group}}</td><td><code>{{.Pattern}}</code></td><td>{{.Kind}}</td></tr>
{{end}}</tbody></table>{{else}}<p>None: every rule of an enabled group allowed a connection.</p>{{end}}{{end}}

{{if .Refusals}}<h2>Refused before the destination was judged</h2>
<table>
<thead><tr><th>Reason</th><th>Count</th><th>Clients</th><th>Last seen</th><th>Meaning</th></tr></thead>
<tbody>
{{range .Refusals}}<tr><td><code>{{dash .Reason}}</code></td><td class="n">{{.Count}}</td><td class="n">{{count .Clients}}</td><td>{{at .LastSeen}}</td><td>{{dash .Description}}</td></tr>
{{end}}</tbody></table>{{end}}

<h2>Inputs</h2>
<table>
<thead><tr><th>File</th><th>Lines</th><th>Records</th><th>Outside period</th><th>Malformed</th><th>Error</th></tr></thead>
<tbody>
{{range .Inputs}}<tr{{if .Error}} class="fail"{{end}}><td><code>{{.File}}</code>{{if .Compressed}} (gzip){{end}}</td><td class="n">{{.Lines}}</td><td class="n">{{.Records}}</td><td class="n">{{.OutsidePeriod}}</td><td class="n">{{.Malformed}}</td><td>{{dash .Error}}</td></tr>
{{end}}</tbody></table>
{{if .Malformed.Count}}<p>{{.Malformed.Count}} malformed line(s) were skipped; the first {{len .Malformed.Shown}}:</p>
<ul>{{range .Malformed.Shown}}<li><code>{{.File}}:{{.Line}}</code>: {{.Error}}</li>{{end}}</ul>{{end}}
{{range notes .}}<p class="note">Note: {{.}}</p>{{end}}
</body>
</html>
`))
