// Command scpgate is the egress policy gateway for a Configuration Manager service connection
// point: the gateway itself, the tools to lint and explain its policy, and the audit report.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/scpgate/scpgate/internal/buildinfo"
	"github.com/scpgate/scpgate/internal/cmdline"
)

const usage = `scpgate — egress policy gateway for a ConfigMgr service connection point

Usage:
  scpgate serve -config FILE               run the gateway
  scpgate check -config FILE               load everything serve would, bind nothing; print
                                           every problem as file:line:col; exit 0 ok, 1 not
  scpgate policy lint FILE...              check policy files; exit 1 listing every error
  scpgate policy explain [-policy FILE] [-json] [-method M] [-user U] HOST[:PORT]
                                           which rule allows or denies HOST:PORT (default
                                           port 443) and why; exit 0 allow, 1 deny, 2 error
  scpgate policy pac [-policy FILE] [-proxy HOST:PORT] [-all]
                                           a proxy auto-config (PAC) file from the policy
  scpgate validate [-config FILE] [flags]  probe every endpoint and near miss through the gateway;
                                           exit 0/1/2 = ConfigMgr 11410/11411/11412
  scpgate validate verify DIR              check an evidence bundle
  scpgate passwd -file FILE USER           add or replace a proxy user (bcrypt); asks for the
                                           password twice on a terminal, else reads one line
  scpgate report -audit FILE... [-policy FILE] [-since T] [-until T] [-format F] [-out DIR]
                                           per-endpoint report of audit files: successes, failures,
                                           denied names, rules that allowed nothing
  scpgate version                          version, commit and Go version (also --version)

Run 'scpgate COMMAND -h' for a command's flags and an example.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit codes shared by every subcommand.
const (
	exitOK    = cmdline.ExitOK
	exitFail  = cmdline.ExitFail // a denial, a lint error, a failed run
	exitUsage = cmdline.ExitUsage
)

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "policy":
		return cmdPolicy(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "passwd":
		return cmdPasswd(args[1:], stdin, stdout, stderr)
	case "report":
		return cmdReport(args[1:], stdin, stdout, stderr)
	case "version", "-version", "--version":
		return cmdVersion(args[1:], stdout, stderr)
	default:
		if cmdline.IsHelp(args[0]) {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		fmt.Fprintf(stderr, "scpgate: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}

var versionHelp = cmdline.Help{
	Synopsis: "scpgate version   (or scpgate --version)",
	About: "Prints the version (from git describe when built with make), the commit it was built\n" +
		"from and the Go release that built it.",
	Example: "scpgate version",
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("version", stderr)
	if code, ok := cmdline.Parse(fs, versionHelp, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return cmdline.Usage(stderr, fs, versionHelp, "takes no arguments")
	}
	fmt.Fprintln(stdout, "scpgate", buildinfo.Read())
	return exitOK
}
