package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/scpgate/scpgate"
	"github.com/scpgate/scpgate/policy"
)

func cmdPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "scpgate policy: want 'lint' or 'explain'\n")
		return exitUsage
	}
	switch args[0] {
	case "lint":
		return cmdLint(args[1:], stdout, stderr)
	case "explain":
		return cmdExplain(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "scpgate policy: unknown command %q: want 'lint' or 'explain'\n", args[0])
		return exitUsage
	}
}

func cmdLint(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policy lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, "Usage: scpgate policy lint FILE...\n") }
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	code := exitOK
	for _, path := range fs.Args() {
		p, err := policy.Load(path)
		if err != nil {
			code = exitFail
			var list policy.ErrorList
			if errors.As(err, &list) {
				for _, e := range list {
					fmt.Fprintln(stderr, e)
				}
				fmt.Fprintf(stderr, "%s: %d error(s)\n", path, len(list))
				continue
			}
			fmt.Fprintf(stderr, "%s: %v\n", path, err)
			continue
		}
		enabled := 0
		for _, g := range p.Groups {
			if g.Enabled {
				enabled++
			}
		}
		fmt.Fprintf(stdout, "%s: ok (%d groups, %d enabled, version %.12s)\n", path, len(p.Groups), enabled, p.Version)
	}
	return code
}

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policy explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("policy", "", "policy file (default: ./endpoints.yaml if present, else the built-in one)")
	asJSON := fs.Bool("json", false, "print the decision as JSON")
	method := fs.String("method", "CONNECT", "request method (CONNECT, or GET/HEAD for plain HTTP)")
	user := fs.String("user", "", "authenticated user to explain for (implies authentication is on)")
	auth := fs.Bool("auth", false, "explain as if proxy authentication is on")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: scpgate policy explain [flags] HOST:PORT\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	pol, err := loadPolicyOrDefault(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFail
	}
	target := fs.Arg(0)
	host, port, err := policy.ParseHostPort(target)
	if err != nil {
		fmt.Fprintf(stderr, "scpgate policy explain: %v\n", err)
		return exitUsage
	}
	d := pol.DecideVerbose(policy.Request{
		Host: host, Port: port, Method: strings.ToUpper(*method),
		User: *user, AuthEnabled: *auth || *user != "",
	})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(policy.Explanation{Target: target, Policy: pol.File, Decision: d})
	} else {
		fmt.Fprintf(stdout, "policy: %s\n%s", pol.File, d.Explain())
	}
	if d.Allow && !d.WouldDeny {
		return exitOK
	}
	return exitFail
}

func loadPolicyOrDefault(path string) (*policy.Policy, error) {
	if path != "" {
		return policy.Load(path)
	}
	if _, err := os.Stat("endpoints.yaml"); err == nil {
		return policy.Load("endpoints.yaml")
	}
	return policy.Parse(scpgate.DefaultPolicyName, scpgate.DefaultPolicy)
}
