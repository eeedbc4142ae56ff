package render

import (
	"html/template"
	"io"
	"strings"

	"github.com/scpgate/scpgate/validate"
)

// htmlPage is one self-contained page: inline CSS, no script, no external asset, so it opens
// from a file, from an evidence bundle or an e-mail attachment, and prints on paper.
var htmlPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"lower":   strings.ToLower,
	"answer":  answerText,
	"gateway": gatewayText,
	"tls":     tlsText,
	"expect":  expectText,
	"cm":      cmText,
	"short":   short,
	"join":    strings.Join,
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>scpgate validate: {{.Outcome.Message}} {{.Outcome.Severity}}</title>
<style>
:root { --pass:#1a7f37; --pass-bg:#dafbe1; --warn:#9a6700; --warn-bg:#fff8c5; --fail:#cf222e; --fail-bg:#ffebe9; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:#1f2328; margin: 0; padding: 16px 20px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.summary { border-radius: 8px; padding: 16px 20px; margin: 16px 0; border: 2px solid; }
.summary.informational { border-color: var(--pass); background: var(--pass-bg); }
.summary.warning { border-color: var(--warn); background: var(--warn-bg); }
.summary.error { border-color: var(--fail); background: var(--fail-bg); }
.summary .msg { font-size: 20px; font-weight: 600; }
.counts span { display: inline-block; margin-right: 18px; font-weight: 600; }
.meta { color: #59636e; font-size: 13px; }
.meta code { font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
table.checks { table-layout: fixed; }
table.checks td { overflow-wrap: anywhere; }
th, td { border: 1px solid var(--line); padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tr.pass td.status { background: var(--pass-bg); color: var(--pass); font-weight: 700; }
tr.warn td.status { background: var(--warn-bg); color: var(--warn); font-weight: 700; }
tr.fail td.status { background: var(--fail-bg); color: var(--fail); font-weight: 700; }
tr.fail td { border-left-color: var(--fail); }
td.target { font-family: ui-monospace, Consolas, monospace; }
.small { color: #59636e; font-size: 12px; }
ul.compact { margin: 4px 0; padding-left: 20px; }
@media print {
  body { padding: 0; max-width: none; font-size: 10px; }
  table { font-size: 9px; page-break-inside: auto; }
  tr { page-break-inside: avoid; }
  thead { display: table-header-group; }
  h2 { page-break-after: avoid; }
  .summary, tr td.status { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
</style>
</head>
<body>
<h1>scpgate connectivity validation</h1>
<div class="meta">Proxy <code>{{.Proxy}}</code>{{if .User}} as <code>{{.User}}</code>{{end}} &middot; policy <code>{{.Policy.File}}</code> (sha256 <code>{{short .Policy.Version}}</code>) &middot; started {{.Started.Format "2006-01-02 15:04:05Z07:00"}} &middot; {{printf "%.1f" .DurationMS}} ms{{if .AuditSource}} &middot; gateway records from <code>{{.AuditSource}}</code>{{else}} &middot; no gateway audit source{{end}}</div>
<div id="summary" class="summary {{.Outcome.Severity}}">
<div class="msg">{{.Outcome.Message}} {{.Outcome.Severity}}: {{.Outcome.Text}}</div>
<div class="counts"><span id="count-total">{{.Summary.Total}} checks</span><span style="color:var(--pass)">{{.Summary.Pass}} pass</span><span style="color:var(--warn)">{{.Summary.Warn}} warn</span><span style="color:var(--fail)">{{.Summary.Fail}} fail</span></div>
{{if .Incomplete}}<div><strong>The overall timeout ended the run; unfinished checks failed.</strong></div>{{end}}
{{if .Outcome.Failed}}<div class="small">{{if eq .Outcome.Message 11412}}Failed{{else}}Warnings{{end}}: {{join .Outcome.Failed ", "}}</div>{{end}}
</div>
<p class="small">ConfigMgr column: how ConfigMgr's "Validate internet access" would read the same answer (it counts a timeout, a TLS failure and 407, 408, 426, 451, 502, 511, 598, 599 as failures and anything else, 403 included, as reachable); * marks a disagreement with this check.</p>
{{range .Sections}}
<h2>{{.Name}}</h2>
<table class="checks">
<colgroup><col style="width:4%"><col style="width:8%"><col style="width:13%"><col style="width:8%"><col style="width:8%"><col style="width:11%"><col style="width:15%"><col style="width:4%"><col style="width:6%"><col style="width:7%"><col style="width:16%"></colgroup>
<thead><tr><th>Result</th><th>Check</th><th>Target</th><th>Expected</th><th>Proxy answer</th><th>Gateway record</th><th>TLS</th><th>HTTP</th><th>ConfigMgr</th><th>Timing</th><th>Detail</th></tr></thead>
<tbody>
{{range .Results}}<tr class="check {{.Status}}" id="{{.ID}}">
<td class="status">{{.Status}}</td><td>{{.Kind}}</td><td class="target">{{.Target}}{{if .SNI}}<br>SNI {{.SNI}}{{end}}</td><td>{{expect .}}</td>
<td>{{answer .}}{{if .Proxy}}{{if .Proxy.ConnID}}<br><span class="small">conn {{.Proxy.ConnID}}</span>{{end}}{{end}}</td>
<td>{{gateway .}}{{if .Gateway}}{{if .Gateway.Group}}<br><span class="small">{{.Gateway.Group}} {{.Gateway.Pattern}}</span>{{end}}{{if .Gateway.Address}}<br><span class="small">{{.Gateway.Address}}</span>{{end}}{{end}}</td>
<td class="tls">{{tls .}}{{if .TLS}}<br><span class="small">{{.TLS.Cipher}}{{if .TLS.ALPN}} {{.TLS.ALPN}}{{end}}</span>{{range .TLS.Chain}}<br><span class="small">{{.Subject}} &larr; {{.Issuer}} ({{.DaysLeft}} d)</span>{{end}}{{end}}</td>
<td>{{if .HTTPStatus}}{{.HTTPStatus}}{{else}}-{{end}}</td><td>{{cm .ConfigMgr}}</td><td class="small">{{range .Steps}}{{.Name}}&nbsp;{{printf "%.0f" .MS}}&nbsp;ms<br>{{end}}</td><td class="detail">{{.Detail}}<br><span class="small">{{.Why}}</span></td>
</tr>
{{end}}</tbody>
</table>
{{end}}
<h2>Coverage</h2>
<table>
<thead><tr><th>Group</th><th>Pattern</th><th>Coverage</th><th>Hosts probed</th></tr></thead>
<tbody>
{{range .Drift.Rules}}<tr><td>{{.Group}}</td><td class="target">{{.Pattern}}</td><td>{{.Coverage}}</td><td class="target">{{join .Hosts ", "}}</td></tr>
{{end}}</tbody>
</table>
{{if .Drift.NotEnabled}}<h2>Shipped endpoints not enabled</h2>
<ul class="compact">{{range .Drift.NotEnabled}}<li><code>{{.Pattern}}</code> <span class="small">({{.Group}})</span></li>{{end}}</ul>{{end}}
{{if .Drift.Skipped}}<h2>Near misses not checked</h2>
<ul class="compact">{{range .Drift.Skipped}}<li>{{.Kind}} {{if .Host}}<code>{{.Host}}</code>{{else if .Pattern}}<code>{{.Pattern}}</code>{{end}}: {{.Why}}</li>{{end}}</ul>{{end}}
<p class="small">Report schema version {{.SchemaVersion}}; generated by {{.Tool}}.</p>
</body>
</html>
`))

type htmlSection struct {
	Name    string
	Results []validate.Result
}

type htmlData struct {
	*validate.Report
	Sections []htmlSection
}

// HTML writes the self-contained HTML page: summary first, then one table per group.
func HTML(w io.Writer, rep *validate.Report) error {
	data := htmlData{Report: rep}
	for _, g := range groupOrder(rep) {
		sec := htmlSection{Name: g}
		for _, r := range rep.Results {
			if groupName(r) == g {
				sec.Results = append(sec.Results, r)
			}
		}
		if len(sec.Results) > 0 {
			data.Sections = append(data.Sections, sec)
		}
	}
	return htmlPage.Execute(w, data)
}
