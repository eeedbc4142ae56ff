// Command scpclient is the Configuration Manager service connection point the gateway fronts:
// online update checks and verified downloads (check, run), usage uploads, the endpoint
// connectivity check (check-connectivity, and on a schedule in run), component control
// (status, restart-component) and the offline service connection tool (tool). See
// docs/scpclient.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the operation ran and failed (a failed cycle, a refused import)
	exitUsage = 2 // bad flags or configuration
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

Every command but tool takes -config FILE (default scpclient.yaml, or $SCPCLIENT_CONFIG).
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
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "scpclient: unknown command %q\n%s", args[0], usage)
	return exitUsage
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
