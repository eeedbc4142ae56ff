// Package render writes a validate.Report as a terminal table, JSON (with a versioned JSON
// Schema, report.schema.json), a self-contained HTML page, JUnit XML and CSV.
package render

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/scpgate/scpgate/internal/atomicfile"
	"github.com/scpgate/scpgate/validate"
)

// Schema is the JSON Schema of the JSON report, version validate.SchemaVersion. The file is
// validate/render/report.schema.json in the repository.
//
//go:embed report.schema.json
var Schema []byte

// SchemaID is the schema's $id.
const SchemaID = "https://scpgate.invalid/schema/validate-report-v1.json"

// Formats returns the output formats, in the order they are written.
func Formats() []string { return []string{"table", "json", "html", "junit", "csv"} }

// fileNames maps a format to the file it is written to by WriteFiles.
var fileNames = map[string]string{
	"table": "validate.txt",
	"json":  "validate.json",
	"html":  "validate.html",
	"junit": "validate-junit.xml",
	"csv":   "validate.csv",
}

// FileName returns the file name WriteFiles uses for format ("" for an unknown format).
func FileName(format string) string { return fileNames[format] }

// Write renders rep in format to w.
func Write(w io.Writer, format string, rep *validate.Report) error {
	switch format {
	case "table":
		return Table(w, rep)
	case "json":
		return JSON(w, rep)
	case "html":
		return HTML(w, rep)
	case "junit":
		return JUnit(w, rep)
	case "csv":
		return CSV(w, rep)
	}
	return fmt.Errorf("unknown output format %q (want %s)", format, strings.Join(Formats(), ", "))
}

// CheckFormats refuses unknown format names.
func CheckFormats(formats []string) error {
	for _, f := range formats {
		if !slices.Contains(Formats(), f) {
			return fmt.Errorf("unknown output format %q (want %s)", f, strings.Join(Formats(), ", "))
		}
	}
	return nil
}

// WriteFiles renders rep in each format into dir (atomically, one file per format) and
// returns the paths by format.
func WriteFiles(dir string, formats []string, rep *validate.Report) (map[string]string, error) {
	if err := CheckFormats(formats); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range formats {
		var b bytes.Buffer
		if err := Write(&b, f, rep); err != nil {
			return out, err
		}
		path := filepath.Join(dir, fileNames[f])
		if err := atomicfile.WriteFile(path, b.Bytes(), 0o644); err != nil {
			return out, err
		}
		out[f] = path
	}
	return out, nil
}

// JSON writes the report as indented JSON with its schema reference.
func JSON(w io.Writer, rep *validate.Report) error {
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	// "$schema" first, then the report's own fields.
	var b bytes.Buffer
	b.WriteString(`{"$schema":`)
	id, _ := json.Marshal(SchemaID)
	b.Write(id)
	if len(body) > 2 {
		b.WriteByte(',')
		b.Write(body[1:])
	} else {
		b.WriteByte('}')
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// verdict is the short text of a result's status for tables.
func verdict(s validate.Status) string { return strings.ToUpper(string(s)) }

// answerText is the proxy's answer in a few characters: "200 c1f3…", "403 no_rule".
func answerText(r validate.Result) string {
	if r.Proxy == nil {
		return "-"
	}
	s := fmt.Sprint(r.Proxy.Status)
	if r.Proxy.Reason != "" {
		s += " " + r.Proxy.Reason
	}
	return s
}

// gatewayText summarises the matched audit record.
func gatewayText(r validate.Result) string {
	switch {
	case r.Gateway == nil:
		return "-"
	case !r.Gateway.Found:
		return "no record"
	}
	s := r.Gateway.Decision
	if r.Gateway.Reason != "" {
		s += " " + r.Gateway.Reason
	}
	return s
}

func tlsText(r validate.Result) string {
	if r.TLS == nil {
		return "-"
	}
	s := r.TLS.Version
	if r.TLS.Inspected {
		s += " INSPECTED"
	} else if !r.TLS.Verified {
		s += " untrusted"
	}
	return s
}

func expectText(r validate.Result) string {
	if r.Expect == validate.ExpectPass {
		return "reachable"
	}
	if r.ExpectStatus != 0 {
		return fmt.Sprintf("blocked: %d %s", r.ExpectStatus, r.ExpectReason)
	}
	return "blocked: " + string(r.ExpectReason)
}

// groupOrder lists the groups of the results in report order, "(fixed set)" last.
func groupOrder(rep *validate.Report) []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range rep.Groups {
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	for _, r := range rep.Results {
		g := groupName(r)
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out
}

func groupName(r validate.Result) string {
	if r.Group == "" {
		return "(fixed set)"
	}
	return r.Group
}
