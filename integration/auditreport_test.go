package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/scpgate/scpgate/auditreport"
	"github.com/scpgate/scpgate/sim/cloudsim"
	"github.com/scpgate/scpgate/sim/simworld"
)

// TestAuditReportOfRealTraffic: two gateways with the shipped policy carry real curl traffic to
// the simulated cloud; one of them rotates its audit file twice (the older file then compressed,
// as logrotate's compress does). `scpgate report` over all their files must count what the
// gateways audited: the successes of the manifest download through its rule, the DNS failure of
// an allowed name, the denied names (management.azure.com with the disabled group that would
// allow it), the rules that allowed nothing, and -since must select by time.
func TestAuditReportOfRealTraffic(t *testing.T) {
	e := newSimEnv(t)
	gw1 := e.gateway(e.allowCloud())
	gw2 := e.gateway(e.allowCloud())
	bin := buildScpgate(t)

	through := func(gw *proc, url, wantConnect string) {
		t.Helper()
		res := e.hw.curl("-x", "http://"+gw.addr, "--cacert", e.sw.CAFile, url)
		if res.connectCode != wantConnect {
			t.Fatalf("%s through %s: CONNECT %s, want %s (%s)", url, gw.addr, res.connectCode, wantConnect, res.stderr)
		}
	}
	all := func(auditRecord) bool { return true }
	// rotate waits until gw audited n records and rotates: a rotation first writes out every
	// record already accepted, so the rotated file is complete.
	rotate := func(gw *proc, n int) {
		t.Helper()
		waitAuditN(t, gw, n, all)
		if err := gw.srv.RotateAudit(); err != nil {
			t.Fatal(err)
		}
	}

	// gw1, first period: a download and a name only a disabled group lists.
	through(gw1, e.sw.Cloud.ManifestURL(), "200")
	through(gw1, "https://management.azure.com/", "403")
	rotate(gw1, 2)
	old := gw1.auditPath + ".old.gz"
	gzipFile(t, gw1.auditPath+".1", old)
	// gw1, second period: an unlisted name and an allowed name that does not resolve.
	through(gw1, "https://www.example.com/", "403")
	through(gw1, "https://"+simworld.TrapNXDOMAIN+"/", "502")
	rotate(gw1, 4)
	// gw2: another download and the same disabled-group name.
	through(gw2, e.sw.Cloud.ManifestURL(), "200")
	through(gw2, "https://management.azure.com/", "403")
	rotate(gw2, 2)

	files := []string{old, gw1.auditPath + ".1", gw1.auditPath, gw2.auditPath + ".1"}
	rep := runReport(t, bin, files...)

	audited := slices.Concat(trailRecords(gw1), trailRecords(gw2))
	if rep.Totals.Records != int64(len(audited)) || rep.Malformed.Count != 0 || len(rep.Inputs) != 4 || !rep.Inputs[0].Compressed {
		t.Fatalf("report totals %+v malformed %d inputs %+v; the gateways audited %d records", rep.Totals, rep.Malformed.Count, rep.Inputs, len(audited))
	}
	var lastDownload time.Time
	for _, r := range audited {
		if r.Host == cloudsim.HostDownload && r.Event == "close" && r.Time.After(lastDownload) {
			lastDownload = r.Time
		}
	}
	var download, nx *auditreport.Endpoint
	for i, ep := range rep.Endpoints {
		switch ep.Host {
		case cloudsim.HostDownload:
			download = &rep.Endpoints[i]
		case simworld.TrapNXDOMAIN:
			nx = &rep.Endpoints[i]
		}
	}
	if download == nil || download.Successes != 2 || download.Group != "updates-and-servicing" || download.Pattern != cloudsim.HostDownload ||
		download.BytesDown == 0 || download.Clients.N != 1 || download.LastSuccess == nil || !download.LastSuccess.Equal(lastDownload) {
		t.Errorf("download endpoint %+v, want 2 successes from one client, last at %v", download, lastDownload)
	}
	if nx == nil || nx.Failures != 1 || nx.FailureReasons["dns_failure"] != 1 || nx.Pattern != "*.manage.microsoft.com" || nx.LastSuccess != nil {
		t.Errorf("NXDOMAIN endpoint %+v, want one dns_failure through *.manage.microsoft.com", nx)
	}
	if len(rep.Denied) != 2 || rep.Denied[0].Host != "management.azure.com" || rep.Denied[0].Count != 2 ||
		rep.Denied[0].DisabledGroup != "azure-services" || rep.Denied[0].Reasons["no_rule"] != 2 {
		t.Errorf("denied %+v, want management.azure.com twice first, allowed by the disabled azure-services", rep.Denied)
	}
	if len(rep.Denied) == 2 && (rep.Denied[1].Host != "www.example.com" || rep.Denied[1].DisabledGroup != "") {
		t.Errorf("second denied name %+v, want www.example.com with no group to turn on", rep.Denied[1])
	}
	unused := map[string]bool{}
	for _, u := range rep.UnusedRules {
		unused[u.Group+" "+u.Pattern] = true
	}
	if !unused["updates-and-servicing aka.ms"] || unused["updates-and-servicing "+cloudsim.HostDownload] ||
		!unused["updates-and-servicing *.manage.microsoft.com"] {
		t.Errorf("unused rules %v: want aka.ms and *.manage.microsoft.com (its only attempt failed), not %s", unused, cloudsim.HostDownload)
	}

	// -since after the last record selects nothing; the files are still read and listed.
	after := rep.Period.LastRecord.Add(time.Second).Format(time.RFC3339Nano)
	if none := runReport(t, bin, append(files, "-since", after)...); none.Totals.Records != 0 || none.Inputs[1].OutsidePeriod == 0 {
		t.Errorf("-since %s: totals %+v inputs %+v", after, none.Totals, none.Inputs)
	}
}

// runReport runs `scpgate report -format json` over files (and flags after them) and decodes it.
func runReport(t *testing.T, bin string, args ...string) auditreport.Report {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"report", "-format", "json", "-policy", shippedPolicy, "-audit"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scpgate report: %v\n%s", err, stderr.String())
	}
	var rep auditreport.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("report JSON: %v\n%s", err, out)
	}
	return rep
}

// gzipFile compresses src into dst with gzip(1) and removes src, as logrotate's compress does.
func gzipFile(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("gzip", "-S", ".tmp.gz", src).CombinedOutput(); err != nil {
		t.Fatalf("gzip %s: %v\n%s", src, err, out)
	}
	if err := os.Rename(src+".tmp.gz", dst); err != nil {
		t.Fatal(err)
	}
}

// trailRecords is every record gw audited so far.
func trailRecords(gw *proc) []auditRecord {
	gw.trail.mu.Lock()
	defer gw.trail.mu.Unlock()
	return slices.Clone(gw.trail.records)
}
