// Command scpclient is the Configuration Manager service connection point the gateway fronts:
// online update checks and verified downloads (check, run), usage uploads, the endpoint
// connectivity check (check-connectivity, and on a schedule in run), component control
// (status, restart-component) and the offline service connection tool (tool). See
// docs/scpclient.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/scpgate/scpgate/internal/cmdline"
)

// Exit codes.
const (
	exitOK    = cmdline.ExitOK
	exitFail  = cmdline.ExitFail  // the operation ran and failed (a failed cycle, a refused import)
	exitUsage = cmdline.ExitUsage // bad flags or configuration
)

const usage = `usage: scpclient <command> [flags]

commands:
  check               run one online update check (and a usage upload when due), then exit
  run                 run SMS_DMP_DOWNLOADER, SMS_DMP_UPLOADER and SMS_SERVICE_CONNECTOR until stopped
  check-connectivity  run the endpoint connectivity check once (exit 0/1/2: 11410/11411/11412)
  status              show the components, the mode in force and configured, checks and updates
  restart-component   restart one component of a running 'scpclient run' (SMS_DMP_DOWNLOADER)
  trigger             run one component's cycle now (Check for Updates, the connectivity check)
  tool                the service connection tool: -prepare, -connect, -import, -export

Every command but tool -connect reads -config FILE (default $SCPCLIENT_CONFIG, else scpclient.yaml).

Run 'scpclient COMMAND -h' for a command's flags and an example.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "check":
		return cmdCheck(ctx, args[1:], stdout, stderr)
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "check-connectivity":
		return cmdCheckConnectivity(ctx, args[1:], stdout, stderr)
	case "status":
		return cmdStatus(ctx, args[1:], stdout, stderr)
	case "restart-component":
		return cmdRestart(ctx, args[1:], stdout, stderr)
	case "trigger":
		return cmdTrigger(ctx, args[1:], stdout, stderr)
	case "tool":
		return cmdTool(ctx, args[1:], stdout, stderr)
	default:
		if cmdline.IsHelp(args[0]) {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		fmt.Fprintf(stderr, "scpclient: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}

// configFlag gives every command the same -config, whose default follows $SCPCLIENT_CONFIG.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", defaultConfig(), "configuration `FILE`; $SCPCLIENT_CONFIG sets the default")
}

// strayArgument refuses an argument the command does not take: `scpclient check
// scpclient.yaml` (without -config) must not run on the default configuration instead.
func strayArgument(stderr io.Writer, fs *flag.FlagSet, h cmdline.Help) int {
	return cmdline.Usage(stderr, fs, h, "unexpected argument %q (a configuration file is given with -config FILE)", fs.Arg(0))
}

func defaultConfig() string {
	if p := os.Getenv("SCPCLIENT_CONFIG"); p != "" {
		return p
	}
	return "scpclient.yaml"
}

// fail prints err for the command and returns code.
func fail(stderr io.Writer, cmd string, code int, err error) int {
	fmt.Fprintf(stderr, "scpclient %s: %v\n", cmd, err)
	return code
}

var errOffline = errors.New("the service connection point is in offline mode: it never contacts the cloud; use `scpclient tool -prepare/-connect/-import`")
