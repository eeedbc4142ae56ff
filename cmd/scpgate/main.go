// Command scpgate is the egress policy gateway for a Configuration Manager service connection
// point: the gateway itself, the tools to lint and explain its policy, and the audit report.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `scpgate — egress policy gateway for a ConfigMgr service connection point

Usage:
  scpgate serve -config FILE               run the gateway
  scpgate policy lint FILE...              check policy files; exit 1 listing every error
  scpgate policy explain [-policy FILE] [-json] [-method M] [-user U] HOST:PORT
                                           which rule allows or denies HOST:PORT and why;
                                           exit 0 allow, 1 deny
  scpgate passwd -file FILE USER           add or replace a proxy user (bcrypt); password on stdin
  scpgate report -audit FILE... [-policy FILE] [-since T] [-until T] [-format F] [-out DIR]
                                           per-endpoint report of audit files: successes, failures,
                                           denied names, rules that allowed nothing
  scpgate version

Run 'scpgate COMMAND -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit codes shared by every subcommand.
const (
	exitOK    = 0
	exitFail  = 1 // a denial, a lint error, a failed run
	exitUsage = 2
)

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stdout, stderr)
	case "policy":
		return cmdPolicy(args[1:], stdout, stderr)
	case "passwd":
		return cmdPasswd(args[1:], stdin, stdout, stderr)
	case "report":
		return cmdReport(args[1:], stdin, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "scpgate", version())
		return exitOK
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "scpgate: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}
