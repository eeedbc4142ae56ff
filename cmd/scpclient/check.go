package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/scpgate/scpgate/internal/cmdline"
	"github.com/scpgate/scpgate/scpclient/agent"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/downloader"
	"github.com/scpgate/scpgate/scpclient/progress"
	"github.com/scpgate/scpgate/scpclient/state"
)

var checkHelp = cmdline.Help{
	Synopsis: "scpclient check [-config FILE] [-attempts N] [-no-upload] [-quiet]",
	About: "Check for Updates, once: one online update check (SMS_DMP_DOWNLOADER), retried on failure\n" +
		"after retry_backoff, doubling; then a usage upload (SMS_DMP_UPLOADER) when one is due or\n" +
		"spooled. Prints every update's state and exits. On a terminal transfers get a progress bar;\n" +
		"elsewhere the component log lines are echoed on stdout unless -quiet. It takes the site's\n" +
		"lock, so it does not run beside 'scpclient run' on the same data folder, and it is refused\n" +
		"in offline mode (use 'scpclient tool').\n" +
		"Exit 0 ok, 1 the check or the upload failed or could not start (offline mode, the lock is\n" +
		"held), 2 bad flags or configuration.",
	Example: "scpclient check -config /etc/scpclient/scpclient.yaml\n" +
		"scpclient check -config /etc/scpclient/scpclient.yaml -attempts 1 -no-upload -quiet",
}

// cmdCheck is "Check for Updates": one update check (retried with backoff on failure), then a
// usage upload if one is due or spooled, then exit.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("check", stderr)
	cfgPath := configFlag(fs)
	attempts := fs.Int("attempts", 3, "`N` tries before giving up (waits retry_backoff, doubling, between them)")
	noUpload := fs.Bool("no-upload", false, "do not upload usage data in this run")
	quiet := fs.Bool("quiet", false, "do not echo the component log lines on stdout (they are echoed when stdout is not a terminal, where no progress bar is drawn)")
	if code, ok := cmdline.Parse(fs, checkHelp, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return strayArgument(stderr, fs, checkHelp)
	}
	if *attempts < 1 {
		return cmdline.Usage(stderr, fs, checkHelp, "-attempts %d: want at least 1", *attempts)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fail(stderr, "check", exitUsage, err)
	}
	if cfg.Mode == config.ModeOffline {
		return fail(stderr, "check", exitFail, errOffline)
	}
	// On a terminal transfers get a progress bar; elsewhere (a pipe, a log collector) the plain
	// log lines show what happens.
	opts := agent.Options{Progress: progress.ForTerminal(os.Stdout)}
	if opts.Progress == nil && !*quiet {
		opts.Mirror = os.Stdout
	}
	site, err := agent.Open(cfg, opts)
	if err != nil {
		return fail(stderr, "check", exitFail, err)
	}
	defer site.Close()
	lg, err := site.OpenLog(cfg, downloader.LogFileName, downloader.Component)
	if err != nil {
		return fail(stderr, "check", exitFail, err)
	}
	defer lg.Close()
	d, err := site.Downloader(cfg, lg)
	if err != nil {
		return fail(stderr, "check", exitUsage, err)
	}
	cerr := agent.Retry(ctx, cfg.RetryBackoff, cfg.CheckInterval, *attempts, func(ctx context.Context) error {
		_, err := d.Cycle(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "scpclient check: %v\n", err)
		}
		return err
	})
	var uerr error
	if !*noUpload {
		uerr = site.UploadOnce(ctx, cfg, false)
		if uerr != nil {
			fmt.Fprintf(stderr, "scpclient check: usage upload: %v (the package stays spooled)\n", uerr)
		}
	}
	printUpdates(stdout, site.Store.Snapshot())
	if cerr != nil || uerr != nil {
		return exitFail
	}
	return exitOK
}

func printUpdates(w io.Writer, f state.File) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UPDATE\tKIND\tVERSION\tSTATE\t")
	for _, u := range f.SortedUpdates() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d %s\t\n", u.GUID, u.Kind, u.Version, u.State, u.StateName)
	}
	_ = tw.Flush()
}
