package auditreport

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/net/html"

	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/internal/junit"
)

// sampleReport has a row of every kind: endpoints (one only failing), denied names (one a
// disabled group would allow), unused rules, refusals and a malformed line.
func sampleReport(t *testing.T) *Report {
	t.Helper()
	a := New(Options{Policy: mustPolicy(t)})
	text := lines(t,
		allow(0, "10.0.0.1:1", "go.microsoft.com", "go.microsoft.com", 10, 2000),
		failed(1, "10.0.0.1:2", "x.manage.microsoft.com", "*.manage.microsoft.com", "upstream_refused"),
		denied(2, "10.0.0.1:3", "management.azure.com", 443, "no_rule"),
		denied(3, "10.0.0.2:3", "www.example.com", 443, "no_rule"),
		denied(4, "10.0.0.2:4", "www.example.com", 443, "no_rule"),
		refused(5, "10.0.0.9:1", "auth_failed"),
	) + "garbage <b>\n"
	if err := a.Read(context.Background(), "audit.log", strings.NewReader(text)); err != nil {
		t.Fatal(err)
	}
	return a.Report()
}

func render(t *testing.T, r *Report, format string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Write(&buf, format); err != nil {
		t.Fatalf("%s: %v", format, err)
	}
	return buf.Bytes()
}

func TestJSONMatchesSchema(t *testing.T) {
	schemaFile, err := os.Open(filepath.Join("..", "docs", "schema", "audit-report.v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer schemaFile.Close()
	doc, err := jsonschema.UnmarshalJSON(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(SchemaID)
	if err != nil {
		t.Fatal(err)
	}
	empty := New(Options{}).Report()
	for name, r := range map[string]*Report{"sample": sampleReport(t), "empty, no policy": empty} {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(render(t, r, "json")))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(v); err != nil {
			t.Errorf("%s: the JSON report does not match docs/schema/audit-report.v1.json:\n%v", name, err)
		}
	}
	// The schema is strict: a field the schema does not know fails, so it cannot drift from Report.
	v, _ := jsonschema.UnmarshalJSON(strings.NewReader(strings.Replace(string(render(t, empty, "json")), `"totals": {`, `"totals": {"extra": 1,`, 1)))
	if err := sch.Validate(v); err == nil {
		t.Error("the schema accepted an unknown field")
	}
}

func TestCSV(t *testing.T) {
	r := sampleReport(t)
	rows, err := csv.NewReader(bytes.NewReader(render(t, r, "csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, row := range rows[1:] {
		kinds[row[0]]++
	}
	want := map[string]int{"endpoint": len(r.Endpoints), "denied": len(r.Denied), "unused_rule": len(r.UnusedRules), "refusal": len(r.Refusals)}
	for k, n := range want {
		if kinds[k] != n || n == 0 {
			t.Errorf("%d %s rows, want %d (non-zero)", kinds[k], k, n)
		}
	}
	if rows[0][0] != "kind" || len(rows) != 1+len(r.Endpoints)+len(r.Denied)+len(r.UnusedRules)+len(r.Refusals) {
		t.Errorf("header %v, %d rows", rows[0], len(rows))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, row := range rows {
		if row[col["host"]] == "management.azure.com" && row[col["disabled_group"]] != "azure" {
			t.Errorf("denied row %v: want disabled_group azure", row)
		}
	}
}

func TestJUnit(t *testing.T) {
	var doc junit.Suites
	if err := xml.Unmarshal(render(t, sampleReport(t), "junit"), &doc); err != nil {
		t.Fatal(err)
	}
	state := map[string]string{}
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			st := "pass"
			if c.Failure != nil {
				st = "fail"
			} else if c.Skipped != nil {
				st = "skip"
			}
			state[c.Class+" "+c.Name] = st
		}
	}
	want := map[string]string{
		"rules.updates go.microsoft.com":       "pass",
		"rules.updates *.manage.microsoft.com": "fail", // every attempt failed
		"rules.spare unused.example.com":       "skip", // allowed nothing
		"rules.spare 192.0.2.0/24":             "skip",
		"audit every line is an audit record":  "fail", // one garbage line
		"audit every file read to its end":     "pass",
	}
	for k, v := range want {
		if state[k] != v {
			t.Errorf("%s: %q, want %q (all: %v)", k, state[k], v, state)
		}
	}
	if len(state) != len(want) || doc.Tests != len(want) || doc.Failures != 2 || doc.Skipped != 2 {
		t.Errorf("tests=%d failures=%d skipped=%d cases %v", doc.Tests, doc.Failures, doc.Skipped, state)
	}
}

func TestHTMLIsSelfContained(t *testing.T) {
	r := sampleReport(t)
	page := render(t, r, "html")
	root, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	var summary string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "link", "img", "iframe":
				t.Errorf("page has a <%s>: it must be self-contained", n.Data)
			case "tr":
				rows++
			}
			for _, at := range n.Attr {
				if at.Key == "src" || at.Key == "href" {
					t.Errorf("page refers to %s=%q", at.Key, at.Val)
				}
				if at.Key == "id" && at.Val == "summary" && n.FirstChild != nil {
					summary = n.FirstChild.Data
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(root)
	if summary != r.Headline() {
		t.Errorf("summary %q, want %q", summary, r.Headline())
	}
	// One header row per table (endpoints, denied, unused rules, refusals, inputs) plus the rows.
	want := 5 + len(r.Endpoints) + len(r.Denied) + len(r.UnusedRules) + len(r.Refusals) + len(r.Inputs)
	if rows != want {
		t.Errorf("%d table rows, want %d", rows, want)
	}
	for _, s := range []string{"@media print", "management.azure.com:443", "azure (management.azure.com)", "audit.log:7"} {
		if !bytes.Contains(page, []byte(s)) {
			t.Errorf("page lacks %q", s)
		}
	}
}

func TestText(t *testing.T) {
	r := sampleReport(t)
	text := string(render(t, r, "text"))
	for _, s := range []string{
		r.Headline(),
		"ENDPOINTS", "go.microsoft.com:443", "upstream_refused 1",
		"DENIED NAMES", "management.azure.com:443", "azure (management.azure.com)",
		"RULES THAT ALLOWED NOTHING", "unused.example.com",
		"REFUSED BEFORE THE DESTINATION WAS JUDGED", "auth_failed", "the credentials are wrong or malformed",
		"MALFORMED LINES: 1", "audit.log:7: not a JSON object",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("text report lacks %q:\n%s", s, text)
		}
	}
	// Most frequent denied name first.
	if strings.Index(text, "www.example.com:443") > strings.Index(text, "management.azure.com:443") {
		t.Errorf("denied names not most frequent first:\n%s", text)
	}
	if err := r.Write(&bytes.Buffer{}, "yaml"); err == nil {
		t.Error("an unknown format was accepted")
	}
}

func TestEstimateIsFlagged(t *testing.T) {
	a := New(Options{ClientExactLimit: 2})
	for _, c := range []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"} {
		a.Add(audit.Record{Client: c, Host: "go.microsoft.com", Port: 443, Group: "g", Pattern: "p", Decision: "allow", Event: "close"})
	}
	text := string(render(t, a.Report(), "text"))
	if !strings.Contains(text, "~3") || !strings.Contains(text, "is an estimate") {
		t.Errorf("estimate not flagged:\n%s", text)
	}
}
