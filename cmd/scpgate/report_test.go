package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const reportLines = `{"time":"2026-11-30T10:00:00Z","conn_id":"a-1","client":"10.0.0.1:5000","method":"CONNECT","host":"go.microsoft.com","port":443,"group":"updates-and-servicing","pattern":"go.microsoft.com","decision":"allow","status":200,"bytes_up":10,"bytes_down":200,"duration_ms":5,"event":"close"}
{"time":"2026-11-30T11:00:00Z","conn_id":"a-2","client":"10.0.0.1:5001","method":"CONNECT","host":"management.azure.com","port":443,"decision":"deny","reason":"no_rule","status":403,"bytes_up":0,"bytes_down":0,"duration_ms":0,"event":"decision"}
`

func writeAudit(t *testing.T, dir, name, text string, gz bool) string {
	t.Helper()
	data := []byte(text)
	if gz {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(data)
		zw.Close()
		data = buf.Bytes()
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	cur := writeAudit(t, dir, "audit.log", reportLines+"not json\n", false)
	old := writeAudit(t, dir, "audit.log.1.gz", reportLines, true)
	other := writeAudit(t, dir, "b.log", reportLines, false)

	code, out, errs := runCmd(t, "report", "-audit", cur, old, "-since", "2026-11-30", "-audit", other, "-format", "json")
	if code != exitOK {
		t.Fatalf("code %d, stderr %s", code, errs)
	}
	var rep struct {
		Totals    struct{ Records int }
		Inputs    []struct{ File string }
		Malformed struct{ Count int }
		Denied    []struct {
			Host          string
			DisabledGroup string `json:"disabled_group"`
			Count         int
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Totals.Records != 6 || len(rep.Inputs) != 3 || rep.Malformed.Count != 1 {
		t.Errorf("report %+v", rep)
	}
	// management.azure.com is in the shipped policy's disabled azure-services group.
	if len(rep.Denied) != 1 || rep.Denied[0].Count != 3 || rep.Denied[0].DisabledGroup == "" {
		t.Errorf("denied %+v, want management.azure.com 3 times with its disabled group", rep.Denied)
	}

	// The same file named twice (again, through a symlink, and with another spelling) counts
	// once.
	link := filepath.Join(dir, "current.log")
	if err := os.Symlink(cur, link); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd(t, "report", "-audit", other, cur, link, filepath.Join(dir, ".", "b.log"), cur, "-format", "json")
	rep.Inputs = nil
	if err := json.Unmarshal([]byte(out), &rep); code != exitOK || err != nil {
		t.Fatalf("code %d, %v, stderr %s", code, err, errs)
	}
	if rep.Totals.Records != 4 || len(rep.Inputs) != 2 || strings.Count(errs, "it is read once") != 3 ||
		!strings.Contains(errs, link+" is "+cur+" again") {
		t.Errorf("files named twice: %d records from %d inputs (want 4 from 2); stderr:\n%s", rep.Totals.Records, len(rep.Inputs), errs)
	}

	code, out, _ = runCmd(t, "report", "-audit", cur, "-until", "2026-11-30T10:30:00Z")
	if code != exitOK || !strings.Contains(out, "1 records in 1 file(s)") || !strings.Contains(out, "MALFORMED LINES: 1") {
		t.Errorf("text report, code %d:\n%s", code, out)
	}

	outDir := filepath.Join(dir, "out")
	code, out, errs = runCmd(t, "report", "-audit", cur, "-out", outDir)
	if code != exitOK {
		t.Fatalf("-out: code %d %s", code, errs)
	}
	for _, name := range []string{"audit-report.txt", "audit-report.json", "audit-report.html", "audit-report.csv", "audit-report.junit.xml"} {
		if fi, err := os.Stat(filepath.Join(outDir, name)); err != nil || fi.Size() == 0 || !strings.Contains(out, name) {
			t.Errorf("%s: %v (stdout %q)", name, err, out)
		}
	}
}

func TestReportCommandErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeAudit(t, dir, "audit.log", reportLines, false)
	full := writeAudit(t, dir, "full.gz", reportLines, true)
	data, _ := os.ReadFile(full)
	cut := writeAudit(t, dir, "cut.gz", string(data[:len(data)-6]), false)
	notGzip := writeAudit(t, dir, "fake.gz", "\x1f\x8b\nnot gzip\n", false)

	code, out, _ := runCmd(t, "report", "-h")
	if code != exitOK || !strings.Contains(out, "Example:") || !strings.Contains(out, "-since TIME") {
		t.Errorf("-h: code %d\n%s", code, out)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"report"}, "no audit file given"},
		{[]string{"report", "-audit", filepath.Join(dir, "missing.log")}, "missing.log"},
		{[]string{"report", "-audit", good, "-since", "last week"}, "-since"},
		{[]string{"report", "-audit", good, "-since", "2026-12-02", "-until", "2026-12-01"}, "is not after"},
		{[]string{"report", "-audit", good, "-format", "json,html"}, "several formats need -out"},
		{[]string{"report", "-audit", good, "-format", "pdf"}, `unknown format "pdf"`},
		{[]string{"report", "-audit", good, "-policy", filepath.Join(dir, "nope.yaml")}, "-policy"},
		{[]string{"report", "-audit", good, "-bogus"}, "flag provided but not defined"},
		{[]string{"report", "-audit", good, cut}, "cut.gz"},
		{[]string{"report", "-audit", good, notGzip}, "fake.gz: starts like a gzip file but is not one"},
	} {
		code, _, errs := runCmd(t, tt.args...)
		if code != exitUsage || !strings.Contains(errs, tt.want) {
			t.Errorf("%v: code %d, stderr %q; want 2 and %q", tt.args, code, errs, tt.want)
		}
	}
	// A file cut short still yields the report of what was read.
	code, out, _ = runCmd(t, "report", "-audit", good, cut)
	if code != exitUsage || !strings.Contains(out, "4 records in 2 file(s)") {
		t.Errorf("truncated file: code %d\n%s", code, out)
	}
}
