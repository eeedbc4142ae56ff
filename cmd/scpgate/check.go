package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/scpgate/scpgate/gateway/server"
	"github.com/scpgate/scpgate/internal/cmdline"
	"github.com/scpgate/scpgate/internal/yamlpos"
)

var checkHelp = cmdline.Help{
	Synopsis: "scpgate check -config FILE",
	About: "Loads everything 'scpgate serve' would, without binding an address or starting anything:\n" +
		"the gateway configuration, the policy, the htpasswd file, the TLS certificate and key (or\n" +
		"the ACME settings), DNS servers, allow_ranges, the audit log's folder. Prints every problem\n" +
		"as file:line:col with what to do. Exit 0 when all is well, 1 otherwise. 'serve' runs the\n" +
		"same checks before it starts.",
	Example: "scpgate check -config /etc/scpgate/gateway.yaml",
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("check", stderr)
	configPath := fs.String("config", "", "gateway configuration file (required)")
	if code, ok := cmdline.Parse(fs, checkHelp, args, stdout, stderr); !ok {
		return code
	}
	if *configPath == "" || fs.NArg() != 0 {
		return cmdline.Usage(stderr, fs, checkHelp, "want -config FILE and no arguments")
	}
	if !printProblems(stderr, server.Check(*configPath)) {
		fmt.Fprintf(stdout, "%s: ok\n", *configPath)
		return exitOK
	}
	return exitFail
}

// printProblems prints every problem of a check, one a line, and reports whether there was any.
func printProblems(w io.Writer, err error) bool {
	if err == nil {
		return false
	}
	var list yamlpos.List
	if !errors.As(err, &list) {
		fmt.Fprintln(w, err)
		return true
	}
	for _, e := range list {
		fmt.Fprintln(w, e)
	}
	return true
}
