package main

import (
	"context"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// commands lists every subcommand with the flags its help must list.
var commands = []struct {
	name  string
	flags []string
}{
	{"check", []string{"-config", "-attempts", "-no-upload", "-quiet"}},
	{"run", []string{"-config", "-quiet"}},
	{"check-connectivity", []string{"-config"}},
	{"status", []string{"-config"}},
	{"restart-component", []string{"-config"}},
	{"trigger", []string{"-config"}},
	{"tool", []string{"-prepare", "-connect", "-import", "-export", "-config", "-usagedatadest", "-usagedatasrc",
		"-updatepackdest", "-updatepacksrc", "-dest", "-proxyserveruri", "-proxyusername", "-proxypasswordfile",
		"-trustedcafile", "-manifestkeyfile", "-fwlink", "-downloadall", "-downloadhotfix", "-downloadsiteversion"}},
}

// wantHelp fails unless out is cmd's help: synopsis, description, the flags and an example.
func wantHelp(t *testing.T, out, cmd string, flags []string) {
	t.Helper()
	if !strings.HasPrefix(out, "Usage: scpclient "+cmd+" ") {
		t.Errorf("no usage line for %s:\n%s", cmd, out)
	}
	_, rest, _ := strings.Cut(out, "\n")
	about, rest, ok := strings.Cut(rest, "\nFlags:\n")
	if !ok {
		t.Fatalf("no flags section:\n%s", out)
	}
	if strings.TrimSpace(about) == "" {
		t.Errorf("no description:\n%s", out)
	}
	// Only the flags section counts: tool's description names its flags too.
	flagSection, example, ok := strings.Cut(rest, "\nExample:\n")
	if !ok || !strings.HasPrefix(example, "  scpclient "+cmd+" ") {
		t.Errorf("no example of scpclient %s:\n%s", cmd, out)
	}
	for _, f := range flags {
		if !strings.Contains("\n"+flagSection, "\n  "+f+" ") && !strings.Contains("\n"+flagSection, "\n  "+f+"\n") {
			t.Errorf("help does not list %s:\n%s", f, out)
		}
	}
}

// Every command answers -h, -help and --help on stdout with its flags and an example, and exits 0.
func TestHelpEverywhere(t *testing.T) {
	for _, c := range commands {
		for _, h := range []string{"-h", "-help", "--help"} {
			t.Run(c.name+" "+h, func(t *testing.T) {
				code, out, errs := runCmd(t, c.name, h)
				if code != exitOK || errs != "" {
					t.Fatalf("exit %d, stderr %q", code, errs)
				}
				wantHelp(t, out, c.name, c.flags)
			})
		}
	}
	for _, h := range []string{"-h", "-help", "--help", "help"} {
		code, out, errs := runCmd(t, h)
		if code != exitOK || errs != "" || !strings.HasPrefix(out, "usage: scpclient ") ||
			!strings.HasSuffix(out, "Run 'scpclient COMMAND -h' for a command's flags and an example.\n") {
			t.Errorf("scpclient %s: exit %d, stderr %q, stdout:\n%s", h, code, errs, out)
		}
		for _, c := range commands {
			if !strings.Contains(out, "\n  "+c.name+" ") {
				t.Errorf("scpclient %s does not list %s:\n%s", h, c.name, out)
			}
		}
	}
}

// A help request after flags or the component is still one and runs nothing: were the command
// run, the missing configuration or -attempts 0 would fail it.
func TestHelpAfterArguments(t *testing.T) {
	const missing = "no-such-dir/scpclient.yaml"
	tests := []struct {
		cmd  string
		args []string
	}{
		{"check", []string{"-quiet", "-config", missing, "-h"}},
		{"check", []string{"-attempts", "0", "--help"}},
		{"run", []string{"-config", missing, "-help"}},
		{"check-connectivity", []string{"-config", missing, "--help"}},
		{"status", []string{"-config", missing, "-h"}},
		{"restart-component", []string{"SMS_DMP_DOWNLOADER", "-config", missing, "-h"}},
		{"restart-component", []string{"-config", missing, "SMS_DMP_DOWNLOADER", "--help"}},
		{"trigger", []string{"SMS_SERVICE_CONNECTOR", "--help"}},
		{"trigger", []string{"-config", missing, "SMS_SERVICE_CONNECTOR", "-help"}},
		{"tool", []string{"-prepare", "-usagedatadest", "no-such-dir/usage.scpusage.json", "-config", missing, "-h"}},
		{"tool", []string{"-prepare", "-import", "--help"}},
	}
	for _, tt := range tests {
		args := append([]string{tt.cmd}, tt.args...)
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errs := runCmd(t, args...)
			if code != exitOK || errs != "" {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			wantHelp(t, out, tt.cmd, nil)
		})
	}
}

// A bad flag prints the flag package's message and the help on stderr, nothing on stdout, and
// exits 2.
func TestBadFlag(t *testing.T) {
	type badFlag struct {
		cmd  string
		args []string
		want string // the flag package's message
	}
	tests := []badFlag{
		{"check", []string{"-attempts", "many"}, `invalid value "many" for flag -attempts`},
		{"restart-component", []string{"SMS_DMP_DOWNLOADER", "-no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{"trigger", []string{"SMS_DMP_UPLOADER", "-no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{"tool", []string{"-prepare=maybe"}, `invalid boolean value "maybe" for -prepare`},
	}
	for _, c := range commands {
		tests = append(tests, badFlag{c.name, []string{"-no-such-flag"}, "flag provided but not defined: -no-such-flag"})
	}
	for _, tt := range tests {
		args := append([]string{tt.cmd}, tt.args...)
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errs := runCmd(t, args...)
			if code != exitUsage || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
			}
			msg, help, _ := strings.Cut(errs, "\n\n")
			if !strings.Contains(msg, tt.want) {
				t.Errorf("stderr does not start with %q:\n%s", tt.want, errs)
			}
			wantHelp(t, help, tt.cmd, nil)
		})
	}
}
