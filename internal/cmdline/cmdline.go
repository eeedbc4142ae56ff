// Package cmdline gives every command and subcommand of scpgate, scpsim and scpclient the same
// help: -h, -help and --help print what the command does, its flags and an example on standard
// output and exit 0; a usage error prints the problem and the same help on standard error and
// exits 2.
package cmdline

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes shared by the commands.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// Help is one command's help text.
type Help struct {
	Synopsis string // "scpgate passwd -file FILE [-cost N] USER"
	About    string // what the command does, in a few lines
	Example  string // one or more example command lines
}

// IsHelp reports whether arg asks for help.
func IsHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// Write prints the help: synopsis, description, flags (when fs has any) and example.
func (h Help) Write(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s\n", h.Synopsis)
	if h.About != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(h.About, "\n"))
	}
	if fs != nil {
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprint(w, "\nFlags:\n")
			out := fs.Output()
			fs.SetOutput(w)
			fs.PrintDefaults()
			fs.SetOutput(out)
		}
	}
	if h.Example != "" {
		fmt.Fprint(w, "\nExample:\n")
		for _, line := range strings.Split(strings.TrimRight(h.Example, "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
}

// NewFlagSet returns an empty FlagSet for the command name that reports errors on stderr.
func NewFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // Parse prints the help itself, on the right stream
	return fs
}

// Parse parses args with fs. When the command must stop there, ok is false and code is its exit
// code: ExitOK after a request for help (printed on stdout), ExitUsage after a bad flag (the
// flag package's message, then the help, on stderr).
func Parse(fs *flag.FlagSet, h Help, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		// "scpgate policy explain go.microsoft.com --help": a help request after the
		// arguments is still a help request.
		for _, a := range fs.Args() {
			if a == "-h" || a == "-help" || a == "--help" {
				h.Write(stdout, fs)
				return ExitOK, false
			}
		}
		return ExitOK, true
	case errors.Is(err, flag.ErrHelp):
		h.Write(stdout, fs)
		return ExitOK, false
	default:
		fmt.Fprintln(stderr)
		h.Write(stderr, fs)
		return ExitUsage, false
	}
}

// Usage reports a usage problem found after parsing (a missing argument): the message, then the
// help, on stderr. It returns ExitUsage.
func Usage(stderr io.Writer, fs *flag.FlagSet, h Help, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	h.Write(stderr, fs)
	return ExitUsage
}
