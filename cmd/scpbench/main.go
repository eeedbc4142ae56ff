// Command scpbench is scpgate's load tool: `scpbench run` measures scpgate against a direct
// connection, a bare Go splice proxy, squid and tinyproxy on loopback (make bench), and
// `scpbench hold` holds thousands of idle tunnels open through scpgate (make bench-hold).
// It is a development tool; it starts real processes and only ever uses loopback.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: scpbench COMMAND [flags]

Commands:
  run            scpgate vs direct, a bare Go splice proxy, squid and tinyproxy (make bench)
  hold           hold thousands of concurrent tunnels through scpgate (make bench-hold)
  splice-proxy   the bare Go splice proxy (started by run)
  sink           the TCP echo/discard/generate sink (started by hold)

Run 'scpbench COMMAND -h' for a command's flags.
`

func main() { os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr)) }

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr)
	case "hold":
		err = cmdHold(ctx, args[1:], stdout, stderr)
	case "splice-proxy":
		fs := flag.NewFlagSet("splice-proxy", flag.ContinueOnError)
		fs.SetOutput(stderr)
		listen := fs.String("listen", "127.0.0.1:0", "listen address")
		allow := fs.String("allow", "", "the only host:port CONNECT may reach")
		if err = fs.Parse(args[1:]); err == nil {
			if *allow == "" {
				err = errors.New("splice-proxy: -allow is required")
			} else {
				err = runSpliceProxy(ctx, *listen, *allow, func(net.Addr) {})
			}
		}
	case "sink":
		fs := flag.NewFlagSet("sink", flag.ContinueOnError)
		fs.SetOutput(stderr)
		listen := fs.String("listen", "127.0.0.1:0", "listen address")
		if err = fs.Parse(args[1:]); err == nil {
			err = runSink(ctx, *listen, func(a net.Addr) { fmt.Fprintln(stdout, a) })
		}
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "scpbench: unknown command %q\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintln(stderr, "scpbench:", err)
		return 1
	}
}
