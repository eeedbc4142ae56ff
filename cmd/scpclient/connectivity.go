package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/scpgate/scpgate/internal/cmdline"
	"github.com/scpgate/scpgate/scpclient/agent"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/validate"
)

var connectivityHelp = cmdline.Help{
	Synopsis: "scpclient check-connectivity [-config FILE]",
	About: "ConfigMgr's \"Validate internet access\", once: SMS_SERVICE_CONNECTOR's endpoint connectivity\n" +
		"check, the must-pass checks of 'scpgate validate' through the configured proxy, one per\n" +
		"endpoint of connectivity_check.policy (default: the built-in endpoints.yaml). Prints a table\n" +
		"of the endpoints and the outcome, and writes EndpointConnectivityCheckWorker.log. It takes\n" +
		"the site's lock: while 'scpclient run' runs, use 'scpclient trigger SMS_SERVICE_CONNECTOR'.\n" +
		"Exit 0 = 11410 (all passed), 1 = 11411 (warnings only), 2 = 11412 (a failure) or the check\n" +
		"could not run (offline mode, no proxy.url, bad flags or configuration).",
	Example: "scpclient check-connectivity -config /etc/scpclient/scpclient.yaml",
}

// cmdCheckConnectivity is "Validate internet access" run once: SMS_SERVICE_CONNECTOR's
// endpoint connectivity check, written to EndpointConnectivityCheckWorker.log and shown as a
// table. The exit code is the outcome's: 0 (11410), 1 (11411), 2 (11412, or the check could
// not run).
func cmdCheckConnectivity(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "check-connectivity"
	fs := cmdline.NewFlagSet(name, stderr)
	cfgPath := configFlag(fs)
	if code, ok := cmdline.Parse(fs, connectivityHelp, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return strayArgument(stderr, fs, connectivityHelp)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fail(stderr, name, exitUsage, err)
	}
	if cfg.Mode == config.ModeOffline {
		return fail(stderr, name, exitError, errOffline)
	}
	site, err := agent.Open(cfg, agent.Options{})
	if err != nil {
		return fail(stderr, name, exitError, fmt.Errorf("%w (while `scpclient run` runs, use `scpclient trigger %s`)", err, agent.ConnectivityComponent))
	}
	defer site.Close()
	lg, err := site.OpenLog(cfg, agent.ConnectivityLogFileName, agent.ConnectivityComponent)
	if err != nil {
		return fail(stderr, name, exitError, err)
	}
	defer lg.Close()
	rep, err := site.CheckConnectivity(ctx, cfg, lg)
	if err != nil {
		return fail(stderr, name, exitError, err)
	}
	printConnectivity(stdout, rep)
	fmt.Fprintf(stdout, "log: %s\n", lg.Path())
	return rep.Outcome.ExitCode
}

// exitError is check-connectivity's exit code for 11412 (and for a check that cannot run).
const exitError = 2

func printConnectivity(w io.Writer, rep *validate.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tGROUP\tRESULT\tGATEWAY\tCONFIGMGR READS\t")
	for _, r := range rep.Results {
		gw := "-"
		if p := r.Proxy; p != nil {
			gw = strings.Join(strings.Fields(fmt.Sprintf("%d %s %s", p.Status, p.Reason, p.ConnID)), " ")
		}
		fmt.Fprintf(tw, "%s:%d\t%s\t%s\t%s\t%s\t\n", r.Host, r.Port, r.Group, r.Status, gw, r.ConfigMgr.Reading)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d %s: %s\n", rep.Outcome.Message, rep.Outcome.Severity, rep.Outcome.Text)
}
