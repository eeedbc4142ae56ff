package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/scpgate/scpgate/auditreport"
)

// auditReport runs the product's `scpgate report` over the demo's audit file (the gateway has
// exited, so the file is complete), prints the terminal report and the path of the HTML page, and
// checks that the report tells what the traffic did: the update check passed through its rule,
// the unlisted name is among the denied names, and every line was an audit record.
func (d *demo) auditReport(ctx context.Context) error {
	outDir := filepath.Join(d.reports, "audit-report")
	args := []string{"report", "-audit", d.auditFile, "-policy", filepath.Join(d.dir, "endpoints.yaml"), "-out", outDir}
	if !d.validateStart.IsZero() {
		// The SCP's own traffic; the validator's ~120 probes have their own report.
		args = append(args, "-until", d.validateStart.UTC().Format(time.RFC3339Nano))
	}
	cmd := exec.CommandContext(ctx, d.scpgate, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("scpgate report: %v\n%s", err, out)
	}
	text, err := os.ReadFile(filepath.Join(outDir, "audit-report.txt"))
	if err != nil {
		return err
	}
	fmt.Fprint(d.out, string(text))
	fmt.Fprintf(d.out, "\naudit report as HTML: %s (also .txt, .json, .csv, .junit.xml)\n", filepath.Join(outDir, "audit-report.html"))

	data, err := os.ReadFile(filepath.Join(outDir, "audit-report.json"))
	if err != nil {
		return err
	}
	var rep auditreport.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return fmt.Errorf("audit-report.json: %w", err)
	}
	var errs []error
	if rep.Totals.Records == 0 || rep.Malformed.Count > 0 {
		errs = append(errs, fmt.Errorf("audit report: %d records, %d malformed lines; want records and no malformed line", rep.Totals.Records, rep.Malformed.Count))
	}
	passed := false
	for _, e := range rep.Endpoints {
		passed = passed || (e.Host == "go.microsoft.com" && e.Pattern == "go.microsoft.com" && e.Successes > 0)
	}
	if !passed {
		errs = append(errs, errors.New("audit report: no success through the go.microsoft.com rule"))
	}
	denied := false
	for _, dn := range rep.Denied {
		denied = denied || (dn.Host == "www.example.com" && dn.Reasons["no_rule"] > 0)
	}
	if !denied {
		errs = append(errs, errors.New("audit report: www.example.com is not among the denied names"))
	}
	return errors.Join(errs...)
}
