package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scpgate/scpgate/internal/cmdline"
	"github.com/scpgate/scpgate/scpclient/agent"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/control"
	"github.com/scpgate/scpgate/scpclient/downloader"
	"github.com/scpgate/scpgate/scpclient/state"
)

var runHelp = cmdline.Help{
	Synopsis: "scpclient run [-config FILE] [-quiet]",
	About: "Runs SMS_DMP_DOWNLOADER (update checks and downloads), SMS_DMP_UPLOADER (usage uploads)\n" +
		"and SMS_SERVICE_CONNECTOR (the endpoint connectivity check) until SIGINT or SIGTERM; each\n" +
		"runs a cycle at start-up, then every interval. In offline mode they only log. Component log\n" +
		"lines are echoed on stdout unless -quiet. It holds the site's lock while it runs; 'scpclient\n" +
		"status', 'restart-component' and 'trigger' talk to it over <data_dir>/scpclient-control.sock.\n" +
		"Exit 0 after a clean stop, 1 on a failure, 2 bad flags or configuration.",
	Example: "scpclient run -config /etc/scpclient/scpclient.yaml",
}

// cmdRun runs the components until SIGINT/SIGTERM; component log lines are echoed on stdout
// unless -quiet.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("run", stderr)
	cfgPath := configFlag(fs)
	quiet := fs.Bool("quiet", false, "do not echo component log lines on stdout")
	if code, ok := cmdline.Parse(fs, runHelp, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return strayArgument(stderr, fs, runHelp)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fail(stderr, "run", exitUsage, err)
	}
	opts := agent.Options{}
	if !*quiet {
		opts.Mirror = os.Stdout
	}
	site, err := agent.Open(cfg, opts)
	if err != nil {
		return fail(stderr, "run", exitFail, err)
	}
	defer site.Close()
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if err := agent.NewRunner(site, logger).Run(ctx); err != nil {
		return fail(stderr, "run", exitFail, err)
	}
	return exitOK
}

// components are the choices for the argument of restart-component and trigger.
var components = strings.Join(agent.Components(), "|")

var restartHelp = cmdline.Help{
	Synopsis: "scpclient restart-component " + components + " [-config FILE]",
	About: "Stops and starts one component of the running 'scpclient run', which re-reads the\n" +
		"configuration for it: for SMS_DMP_DOWNLOADER the mode in the file takes effect now;\n" +
		"SMS_SERVICE_CONNECTOR checks again at its start. The component may come before or after\n" +
		"-config. Exit 0 done, 1 not restarted (no 'scpclient run' answers, or it refused), 2 bad\n" +
		"flags or configuration, or not exactly one component.",
	Example: "scpclient restart-component SMS_DMP_DOWNLOADER -config /etc/scpclient/scpclient.yaml",
}

var triggerHelp = cmdline.Help{
	Synopsis: "scpclient trigger " + components + " [-config FILE]",
	About: "Asks the running 'scpclient run' to run one component's cycle now: Check for Updates\n" +
		"(SMS_DMP_DOWNLOADER), a usage upload (SMS_DMP_UPLOADER) or the endpoint connectivity check\n" +
		"(SMS_SERVICE_CONNECTOR). It returns once the request is queued; the cycle's outcome is in\n" +
		"the component's log and in 'scpclient status'. The component may come before or after\n" +
		"-config. Exit 0 queued, 1 not queued (no 'scpclient run' answers, or it refused), 2 bad\n" +
		"flags or configuration, or not exactly one component.",
	Example: "scpclient trigger SMS_SERVICE_CONNECTOR -config /etc/scpclient/scpclient.yaml",
}

// cmdRestart is `restart-component NAME`: the Service Manager's Stop then Start of one
// component.
func cmdRestart(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return componentCommand(ctx, "restart-component", "restart", restartHelp, args, stdout, stderr)
}

// cmdTrigger is `trigger NAME`: run a component's cycle now (Check for Updates).
func cmdTrigger(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return componentCommand(ctx, "trigger", "trigger", triggerHelp, args, stdout, stderr)
}

func componentCommand(ctx context.Context, name, command string, help cmdline.Help, args []string, stdout, stderr io.Writer) int {
	// The component may come before or after -config.
	var comp string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		comp, args = args[0], args[1:]
	}
	fs := cmdline.NewFlagSet(name, stderr)
	cfgPath := configFlag(fs)
	if code, ok := cmdline.Parse(fs, help, args, stdout, stderr); !ok {
		return code
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fail(stderr, name, exitUsage, err)
	}
	rest := fs.Args()
	if comp == "" && len(rest) == 1 {
		comp, rest = rest[0], nil
	}
	if comp == "" || len(rest) != 0 {
		return cmdline.Usage(stderr, fs, help, "want one component: %s", components)
	}
	if _, err := control.Call(ctx, cfg.DataDir, control.Request{Command: command, Component: comp}); err != nil {
		return fail(stderr, name, exitFail, err)
	}
	fmt.Fprintf(stdout, "%s: %s done\n", comp, command)
	return exitOK
}

var statusHelp = cmdline.Help{
	Synopsis: "scpclient status [-config FILE]",
	About: "Shows the mode in force and the mode configured, the last and next update check, usage\n" +
		"upload and connectivity check (with its status message), the components of the running\n" +
		"'scpclient run' (state, start, restarts, cycles, last error) and every update's state. It\n" +
		"reads the state file in data_dir and asks the running process; when none answers, the\n" +
		"components show as not running. Exit 0 (also when nothing runs), 1 when the state file\n" +
		"cannot be read, 2 bad flags or configuration.",
	Example: "scpclient status -config /etc/scpclient/scpclient.yaml",
}

// cmdStatus shows the components (from the running process), the mode in force and the mode
// configured, the last and next check and upload, and every update's state.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("status", stderr)
	cfgPath := configFlag(fs)
	if code, ok := cmdline.Parse(fs, statusHelp, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return strayArgument(stderr, fs, statusHelp)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fail(stderr, "status", exitUsage, err)
	}
	st, serr := state.Read(cfg.DataDir + string(os.PathSeparator) + state.FileName)
	if serr != nil && !os.IsNotExist(serr) {
		return fail(stderr, "status", exitFail, serr)
	}
	res, cerr := control.Call(ctx, cfg.DataDir, control.Request{Command: "status"})
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	inForce := "(not running)"
	if cerr == nil && res.Status != nil {
		inForce = res.Status.ModeInForce
	}
	fmt.Fprintf(tw, "mode in force:\t%s\n", inForce)
	fmt.Fprintf(tw, "mode configured:\t%s\n", cfg.Mode)
	if cerr == nil && res.Status != nil && inForce != cfg.Mode {
		fmt.Fprintf(tw, "\t(restart %s to apply: scpclient restart-component %s)\n", downloader.Component, downloader.Component)
	}
	fmt.Fprintf(tw, "last check:\t%s\t%s\n", when(st.Downloader.LastCheck), st.Downloader.LastResult)
	fmt.Fprintf(tw, "next check:\t%s\n", when(st.Downloader.NextCheck))
	fmt.Fprintf(tw, "last upload:\t%s\t%s\n", when(st.Uploader.LastUpload), st.Uploader.LastResult)
	fmt.Fprintf(tw, "next upload:\t%s\n", when(st.Uploader.NextUpload))
	fmt.Fprintf(tw, "packages delivered:\t%d\n", st.Uploader.Delivered)
	fmt.Fprintf(tw, "last connectivity check:\t%s\t%s\n", when(st.Connectivity.LastRun), connectivityOutcome(st.Connectivity))
	fmt.Fprintf(tw, "next connectivity check:\t%s\n", when(st.Connectivity.NextRun))
	_ = tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tSTATE\tSTARTED\tRESTARTS\tCYCLES\tLAST ERROR")
	if cerr != nil || res.Status == nil {
		for _, name := range agent.Components() {
			fmt.Fprintf(tw, "%s\tnot running\t-\t-\t-\t\n", name)
		}
	} else {
		for _, c := range res.Status.Components {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", c.Name, c.State, when(c.Started), c.Restarts, c.Cycles, c.LastError)
		}
	}
	_ = tw.Flush()
	fmt.Fprintln(stdout)
	printUpdates(stdout, st)
	return exitOK
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func connectivityOutcome(c state.Connectivity) string {
	if c.Message == 0 {
		return ""
	}
	return fmt.Sprintf("%d: %s", c.Message, c.Outcome)
}
