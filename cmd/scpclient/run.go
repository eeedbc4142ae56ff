package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scpgate/scpgate/scpclient/agent"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/control"
	"github.com/scpgate/scpgate/scpclient/downloader"
	"github.com/scpgate/scpgate/scpclient/state"
)

// cmdRun runs both components until SIGINT/SIGTERM; component log lines are echoed on stdout
// unless -quiet.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", defaultConfig(), "configuration file")
	quiet := fs.Bool("quiet", false, "do not echo component log lines on stdout")
	if err := fs.Parse(args); err != nil {
		return exitUsage
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

// controlFlags parses -config and returns the loaded configuration for a control command.
func controlConfig(name string, args []string, stderr io.Writer) (*config.Config, []string, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", defaultConfig(), "configuration file")
	if err := fs.Parse(args); err != nil {
		return nil, nil, exitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return nil, nil, fail(stderr, name, exitUsage, err)
	}
	return cfg, fs.Args(), exitOK
}

// cmdRestart is `restart-component NAME`: the Service Manager's Stop then Start of one
// component.
func cmdRestart(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return componentCommand(ctx, "restart-component", "restart", args, stdout, stderr)
}

// cmdTrigger is `trigger NAME`: run a component's cycle now (Check for Updates).
func cmdTrigger(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return componentCommand(ctx, "trigger", "trigger", args, stdout, stderr)
}

func componentCommand(ctx context.Context, name, command string, args []string, stdout, stderr io.Writer) int {
	// The component may come before or after -config.
	var comp string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		comp, args = args[0], args[1:]
	}
	cfg, rest, code := controlConfig(name, args, stderr)
	if cfg == nil {
		return code
	}
	if comp == "" && len(rest) == 1 {
		comp, rest = rest[0], nil
	}
	if comp == "" || len(rest) != 0 {
		fmt.Fprintf(stderr, "usage: scpclient %s %s [-config FILE]\n", name, strings.Join(agent.Components(), "|"))
		return exitUsage
	}
	if _, err := control.Call(ctx, cfg.DataDir, control.Request{Command: command, Component: comp}); err != nil {
		return fail(stderr, name, exitFail, err)
	}
	fmt.Fprintf(stdout, "%s: %s done\n", comp, command)
	return exitOK
}

// cmdStatus shows the components (from the running process), the mode in force and the mode
// configured, the last and next check and upload, and every update's state.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, _, code := controlConfig("status", args, stderr)
	if cfg == nil {
		return code
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
