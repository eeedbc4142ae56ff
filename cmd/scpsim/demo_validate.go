package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// validateSamples are real names of the simulated cloud for the wildcard patterns of the
// shipped policy's enabled groups, so every wildcard is probed.
var validateSamples = []string{
	"*.manage.microsoft.com=sccm.manage.microsoft.com",
	"*.akamaiedge.net=a1.akamaiedge.net",
	"*.akamaitechnologies.com=a1.akamaitechnologies.com",
	"*-umwatsonc.events.data.microsoft.com=sample-umwatsonc.events.data.microsoft.com",
}

// validateRun runs `scpgate validate` through the gateway's TLS listener as the service
// connection point would, with the gateway's audit file and admin URL, writes every report
// format and an evidence bundle into a folder that outlives the demo, and verifies the
// bundle. It fails unless the outcome is 11410 (all passed).
func (d *demo) validateRun(ctx context.Context) error {
	d.step("validating the allow-list both ways (scpgate validate), as the SCP would")
	out := filepath.Join(d.reports, "validate")
	d.validateStart = time.Now()
	cloud, err := netip.ParseAddrPort(d.world.Cloud)
	if err != nil {
		return fmt.Errorf("cloudsim address %q: %w", d.world.Cloud, err)
	}
	// The "private" and "metadata" targets are loopback addresses outside allow_ranges (only
	// the cloud's address is inside): the gateway must refuse them without dialing.
	private := nextLoopback(cloud.Addr(), 1)
	metadata := nextLoopback(cloud.Addr(), 2)
	args := []string{"validate",
		"-proxy", "https://" + d.gw.TLS[0], "-proxy-ca", d.gwCAFile, "-user", "scp",
		"-ca", d.world.CAFile, "-issuer", "*=scpgate simworld Microsoft root",
		"-policy", filepath.Join(d.dir, "endpoints.yaml"),
		"-private-address", private.String(), "-metadata-address", metadata.String(),
		"-dns-server", d.world.DNS,
		"-audit", d.auditFile, "-admin", "http://" + d.gw.Admin,
		"-format", "table,json,html,junit,csv", "-out", out,
		"-evidence", filepath.Join(out, "evidence"),
		"-timeout", "60s", "-no-progress", "-q",
	}
	for _, s := range validateSamples {
		args = append(args, "-sample", s)
	}
	cmd := exec.CommandContext(ctx, d.scpgate, args...)
	cmd.Env = append(os.Environ(), "SCPGATE_PROXY_PASSWORD="+d.password)
	cmd.Stdout, cmd.Stderr = d.out, d.errOut
	start := time.Now()
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return fmt.Errorf("scpgate validate exited %d (1: warnings, 11411; 2: a failure, 11412); reports in %s", ee.ExitCode(), out)
	case err != nil:
		return err
	}
	verify, err := exec.CommandContext(ctx, d.scpgate, "validate", "verify", filepath.Join(out, "evidence")).CombinedOutput()
	fmt.Fprint(d.out, string(verify))
	if err != nil {
		return fmt.Errorf("the evidence bundle does not verify: %v", err)
	}
	fmt.Fprintf(d.out, "validation passed in %s (11410)\n", time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(d.out, "HTML report: %s\n", filepath.Join(out, "validate.html"))
	return nil
}

// nextLoopback returns a loopback address n above a (wrapping inside 127.0.0.0/8).
func nextLoopback(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	b[3] = byte((int(b[3])+n)%250 + 1)
	if netip.AddrFrom4(b) == a {
		b[3]++
	}
	return netip.AddrFrom4(b)
}
