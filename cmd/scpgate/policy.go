package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/scpgate/scpgate"
	"github.com/scpgate/scpgate/internal/cmdline"
	"github.com/scpgate/scpgate/policy"
	"github.com/scpgate/scpgate/policy/pac"
)

const policyUsage = `Usage: scpgate policy COMMAND

Commands:
  lint FILE...        check policy files; exit 0 valid, 1 with every error as file:line:col
  explain HOST[:PORT] which rule allows or denies a target and why; exit 0 allow, 1 deny, 2 error
  pac                 print a proxy auto-config (PAC) file for the policy's enabled groups

Run 'scpgate policy COMMAND -h' for a command's flags and an example.
`

func cmdPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "scpgate policy: want a command\n\n"+policyUsage)
		return exitUsage
	}
	switch args[0] {
	case "lint":
		return cmdLint(args[1:], stdout, stderr)
	case "explain":
		return cmdExplain(args[1:], stdout, stderr)
	case "pac":
		return cmdPAC(args[1:], stdout, stderr)
	default:
		if cmdline.IsHelp(args[0]) {
			fmt.Fprint(stdout, policyUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "scpgate policy: unknown command %q\n\n%s", args[0], policyUsage)
		return exitUsage
	}
}

var lintHelp = cmdline.Help{
	Synopsis: "scpgate policy lint FILE...",
	About: "Checks policy files (endpoints.yaml) the way the gateway loads them. Prints \"ok\" with the\n" +
		"number of groups and the version hash for a valid file, or every problem as file:line:col.\n" +
		"Exit 0 when every file is valid, 1 otherwise, 2 on a usage error.",
	Example: "scpgate policy lint /etc/scpgate/endpoints.yaml",
}

func cmdLint(args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("policy lint", stderr)
	if code, ok := cmdline.Parse(fs, lintHelp, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() == 0 {
		return cmdline.Usage(stderr, fs, lintHelp, "name at least one file")
	}
	code := exitOK
	for _, path := range fs.Args() {
		p, err := policy.Load(path)
		if err != nil {
			code = exitFail
			printPolicyError(stderr, path, err)
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

// printPolicyError prints a policy load failure: every positioned problem on its own line.
func printPolicyError(w io.Writer, path string, err error) {
	var list policy.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(w, e)
		}
		fmt.Fprintf(w, "%s: %d error(s)\n", path, len(list))
		return
	}
	fmt.Fprintf(w, "%s: %v\n", path, err)
}

var explainHelp = cmdline.Help{
	Synopsis: "scpgate policy explain [flags] HOST[:PORT]",
	About: "Says whether the gateway would allow a CONNECT (or plain HTTP request) to HOST:PORT, which\n" +
		"group and pattern decided, and which other rules match. The port defaults to 443. The host\n" +
		"is normalised as the gateway does it (IDNA, lower case, trailing dot); both outputs show it.\n" +
		"Exit 0 allow, 1 deny (also a would-be deny in report mode), 2 for any error: an unreadable\n" +
		"or invalid policy file, a malformed host or port, a usage error.",
	Example: "scpgate policy explain go.microsoft.com\n" +
		"scpgate policy explain -policy /etc/scpgate/endpoints.yaml -json manage.microsoft.com:443\n" +
		"scpgate policy explain -method GET www.microsoft.com:80",
}

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("policy explain", stderr)
	file := fs.String("policy", "", "policy file (default: ./endpoints.yaml if present, else the built-in one)")
	asJSON := fs.Bool("json", false, "print the decision as JSON (the same as the admin listener's /v1/explain)")
	method := fs.String("method", "CONNECT", "request method (CONNECT, or GET/HEAD for plain HTTP)")
	user := fs.String("user", "", "authenticated user to explain for (implies authentication is on)")
	auth := fs.Bool("auth", false, "explain as if proxy authentication is on")
	if code, ok := cmdline.Parse(fs, explainHelp, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return cmdline.Usage(stderr, fs, explainHelp, "want exactly one HOST[:PORT]")
	}
	pol, err := loadPolicyOrDefault(*file)
	if err != nil {
		fmt.Fprintf(stderr, "scpgate policy explain: cannot load the policy:\n")
		printPolicyError(stderr, policyName(*file), err)
		return exitUsage
	}
	target := withDefaultPort(fs.Arg(0))
	host, port, err := policy.ParseHostPort(target)
	if err != nil {
		fmt.Fprintf(stderr, "scpgate policy explain: %v\n", err)
		return exitUsage
	}
	d := pol.DecideVerbose(policy.Request{
		Host: host, Port: port, Method: strings.ToUpper(*method),
		User: *user, AuthEnabled: *auth || *user != "",
	})
	ex := policy.NewExplanation(fs.Arg(0), host, port, pol.File, d)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(ex)
	} else {
		fmt.Fprintf(stdout, "policy:   %s\ntarget:   %s\n%s", pol.File, ex.Normalized, d.Explain())
	}
	if d.Allow && !d.WouldDeny {
		return exitOK
	}
	return exitFail
}

// withDefaultPort adds :443 to a target given without a port ("go.microsoft.com",
// "[2001:db8::1]", "2001:db8::1"), the port the SCP uses for every endpoint.
func withDefaultPort(target string) string {
	if _, _, err := net.SplitHostPort(target); err == nil {
		return target
	}
	host := target
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	} else if strings.Count(host, ":") == 1 {
		return target // "host:" or "host:x": let ParseHostPort say what is wrong
	}
	return net.JoinHostPort(host, "443")
}

func policyName(path string) string {
	if path != "" {
		return path
	}
	return "endpoints.yaml"
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

var pacHelp = cmdline.Help{
	Synopsis: "scpgate policy pac [-policy FILE] [-proxy HOST:PORT] [-all]",
	About: "Prints a proxy auto-config (PAC) file: the hosts (and addresses) the policy's enabled\n" +
		"groups allow go through the gateway at -proxy, everything else DIRECT. Wildcards keep the\n" +
		"policy's meaning (*.x.com never matches x.com). With -all every request goes through the\n" +
		"gateway, for networks whose firewall blocks direct traffic. The admin listener serves the\n" +
		"same file at /proxy.pac.",
	Example: "scpgate policy pac -policy /etc/scpgate/endpoints.yaml -proxy scpgate.corp.example:3128 > proxy.pac",
}

func cmdPAC(args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("policy pac", stderr)
	file := fs.String("policy", "", "policy file (default: ./endpoints.yaml if present, else the built-in one)")
	proxy := fs.String("proxy", "", "the gateway's plain HTTP listener as clients reach it (default: this machine's name, port 3128)")
	all := fs.Bool("all", false, "send every request through the gateway, not only the allowed hosts")
	if code, ok := cmdline.Parse(fs, pacHelp, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return cmdline.Usage(stderr, fs, pacHelp, "takes no arguments")
	}
	if *proxy == "" {
		name, err := os.Hostname()
		if err != nil {
			fmt.Fprintf(stderr, "scpgate policy pac: cannot tell this machine's name (%v): give -proxy HOST:PORT\n", err)
			return exitUsage
		}
		*proxy = net.JoinHostPort(name, "3128")
	}
	pol, err := loadPolicyOrDefault(*file)
	if err != nil {
		fmt.Fprintf(stderr, "scpgate policy pac: cannot load the policy:\n")
		printPolicyError(stderr, policyName(*file), err)
		return exitUsage
	}
	out, err := pac.Generate(pol, pac.Options{Proxy: *proxy, All: *all})
	if err != nil {
		fmt.Fprintf(stderr, "scpgate policy pac: -proxy: %v\n", err)
		return exitUsage
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "scpgate policy pac: %v\n", err)
		return exitFail
	}
	return exitOK
}
