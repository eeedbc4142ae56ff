// Command scpsim is the development binary that runs the simulated world: the simulated
// Microsoft cloud with its DNS (cloudsim) and the whole story on one machine (demo). It is kept
// apart from scpgate so that the product binary links no simulator and no test CA.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/scpgate/scpgate/internal/buildinfo"
	"github.com/scpgate/scpgate/internal/cmdline"
)

const usage = `scpsim — the simulated Microsoft cloud and the demo (development only)

Usage:
  scpsim cloudsim -dir DIR     run the simulated Microsoft cloud and its DNS on loopback
  scpsim demo [-keep]          the whole story on one machine (needs root for :443);
                               runs the scpgate binary found next to this one (or -scpgate PATH)

  scpsim version               version, commit and Go version (also --version)

Run 'scpsim COMMAND -h' for a command's flags and an example.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes shared by every subcommand.
const (
	exitOK    = cmdline.ExitOK
	exitFail  = cmdline.ExitFail
	exitUsage = cmdline.ExitUsage
)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "cloudsim":
		return cmdCloudsim(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fs := cmdline.NewFlagSet("version", stderr)
		h := cmdline.Help{Synopsis: "scpsim version   (or scpsim --version)", About: "Prints the version, the commit and the Go version.", Example: "scpsim version"}
		if code, ok := cmdline.Parse(fs, h, args[1:], stdout, stderr); !ok {
			return code
		}
		if fs.NArg() != 0 {
			return cmdline.Usage(stderr, fs, h, "takes no arguments")
		}
		fmt.Fprintln(stdout, "scpsim", buildinfo.Read())
		return exitOK
	default:
		if cmdline.IsHelp(args[0]) {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		fmt.Fprintf(stderr, "scpsim: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}
