package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"

	"github.com/scpgate/scpgate/auditreport"
	"github.com/scpgate/scpgate/internal/atomicfile"
)

const reportUsage = `Usage: scpgate report -audit FILE [FILE...] [flags]

The gateway-side view of its audit files: per endpoint the last success, failures by reason,
bytes and distinct clients; the denied names, most frequent first, with the disabled group that
would allow each; the rules of enabled groups that allowed nothing (candidates to remove).
Give every file to read: rotated files (gzip-compressed too) and the files of several gateway
instances. "-" reads standard input. Malformed lines are counted and listed, never fatal.

Example:
  scpgate report -audit /var/log/scpgate/audit.log* -since 2026-11-01 -format html -out /tmp/report

Flags:
`

// cmdReport reads audit files and prints (or writes to -out) the report. Exit 0 with the report,
// 2 for bad flags or a file that could not be read to its end (the report of what was read is
// still written).
func cmdReport(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var files stringList
	fs.Var(&files, "audit", "audit `FILE` to read (repeatable; the words after it are files too)")
	policyFile := fs.String("policy", "", "policy `FILE` to compare with (default: ./endpoints.yaml if present, else the built-in one)")
	since := fs.String("since", "", "only records at or after `TIME`: RFC 3339 or a date (2026-12-01)")
	until := fs.String("until", "", "only records before `TIME`; a date means the end of that day")
	format := fs.String("format", "", "output `FORMAT`s, comma separated: "+strings.Join(auditreport.Formats(), ", ")+" (default text; with -out all of them)")
	outDir := fs.String("out", "", "write audit-report.EXT files into `DIR` instead of printing one format")
	fs.Usage = func() {}
	usage := func(w io.Writer) {
		fmt.Fprint(w, reportUsage)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	if err := parseInterleaved(fs, args, &files); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		usage(stderr)
		return exitUsage
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "scpgate report: "+format+"\n", a...)
		return exitUsage
	}
	if len(files) == 0 {
		usage(stderr)
		return fail("no audit file given: pass -audit FILE")
	}
	formats, err := chooseFormats(*format, *outDir != "")
	if err != nil {
		return fail("-format: %v", err)
	}
	opts := auditreport.Options{}
	if *since != "" {
		if opts.Since, err = auditreport.ParseBound(*since, false); err != nil {
			return fail("-since: %v", err)
		}
	}
	if *until != "" {
		if opts.Until, err = auditreport.ParseBound(*until, true); err != nil {
			return fail("-until: %v", err)
		}
	}
	if !opts.Since.IsZero() && !opts.Until.IsZero() && !opts.Until.After(opts.Since) {
		return fail("-until %s is not after -since %s", *until, *since)
	}
	if opts.Policy, err = loadPolicyOrDefault(*policyFile); err != nil {
		return fail("-policy: %v", err)
	}
	// Every file must exist before a long read starts: a typo should not cost an hour.
	if files, err = distinctFiles(files, stderr); err != nil {
		return fail("%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	agg := auditreport.New(opts)
	code := exitOK
	for _, f := range files {
		var err error
		if f == "-" {
			err = agg.Read(ctx, "stdin", stdin)
		} else {
			err = agg.ReadFile(ctx, f)
		}
		if err != nil {
			if ctx.Err() != nil {
				return fail("interrupted")
			}
			fmt.Fprintf(stderr, "scpgate report: %v (the report covers the lines read before it)\n", err)
			code = exitUsage
		}
	}
	rep := agg.Report()
	if *outDir == "" {
		if err := rep.Write(stdout, formats[0]); err != nil {
			return fail("%v", err)
		}
		return code
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return fail("-out: %v", err)
	}
	for _, f := range formats {
		var buf bytes.Buffer
		if err := rep.Write(&buf, f); err != nil {
			return fail("%v", err)
		}
		path := filepath.Join(*outDir, "audit-report."+auditreport.Extension(f))
		if err := atomicfile.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return fail("-out: %v", err)
		}
		fmt.Fprintf(stdout, "%s report: %s\n", f, path)
	}
	fmt.Fprintln(stdout, rep.Headline())
	return code
}

// distinctFiles checks that every file exists and drops a file named twice (a glob and an
// explicit path, a symlink), saying so on stderr: its records would count double. "-"
// (standard input) is kept once.
func distinctFiles(files []string, stderr io.Writer) ([]string, error) {
	var kept, seenNames []string
	var seen []os.FileInfo
	stdinKept := false
next:
	for _, f := range files {
		if f == "-" {
			if !stdinKept {
				kept = append(kept, f)
			}
			stdinKept = true
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		for i, prev := range seen {
			if os.SameFile(prev, fi) {
				fmt.Fprintf(stderr, "scpgate report: %s is %s again; it is read once\n", f, seenNames[i])
				continue next
			}
		}
		seen, seenNames = append(seen, fi), append(seenNames, f)
		kept = append(kept, f)
	}
	return kept, nil
}

// chooseFormats parses -format. Without -out exactly one format goes to standard output.
func chooseFormats(flagValue string, toDir bool) ([]string, error) {
	if flagValue == "" {
		if toDir {
			return auditreport.Formats(), nil
		}
		return []string{"text"}, nil
	}
	var out []string
	for _, f := range strings.Split(flagValue, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(auditreport.Formats(), f) {
			return nil, fmt.Errorf("unknown format %q (want %s)", f, strings.Join(auditreport.Formats(), ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) > 1 && !toDir {
		return nil, errors.New("several formats need -out DIR")
	}
	return out, nil
}

// parseInterleaved parses flags with the arguments that follow -audit FILE as more files, so
// both "-audit a b -since X" and "-since X -audit a b" work (shell globs expand to many words).
func parseInterleaved(fs *flag.FlagSet, args []string, files *stringList) error {
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		args = fs.Args()
		i := 0
		for i < len(args) && (args[i] == "-" || !strings.HasPrefix(args[i], "-")) {
			*files = append(*files, args[i])
			i++
		}
		if i == len(args) {
			return nil
		}
		args = args[i:]
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}
