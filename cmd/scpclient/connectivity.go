package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/scpgate/scpgate/scpclient/agent"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/validate"
)

// cmdCheckConnectivity is "Validate internet access" run once: SMS_SERVICE_CONNECTOR's
// endpoint connectivity check, written to EndpointConnectivityCheckWorker.log and shown as a
// table. The exit code is the outcome's: 0 (11410), 1 (11411), 2 (11412, or the check could
// not run).
func cmdCheckConnectivity(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "check-connectivity"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", defaultConfig(), "configuration file")
	if err := fs.Parse(args); err != nil {
		return exitUsage
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
