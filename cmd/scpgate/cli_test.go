package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/bcrypt"
)

// TestMain lets a test run this package's main in a child process (the test binary itself, with
// SCPGATE_TEST_MAIN=1), for what needs a real process: a terminal, signals, exit codes.
func TestMain(m *testing.M) {
	if os.Getenv("SCPGATE_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func mainCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "SCPGATE_TEST_MAIN=1")
	return cmd
}

// Every command and subcommand answers -h, -help and --help on stdout with its flags and an
// example, and exits 0.
func TestHelpEverywhere(t *testing.T) {
	commands := []struct {
		args  []string
		flags []string // flags the help must list
	}{
		{[]string{}, nil},
		{[]string{"serve"}, []string{"-config", "-log-level"}},
		{[]string{"check"}, []string{"-config"}},
		{[]string{"policy"}, nil},
		{[]string{"policy", "lint"}, nil},
		{[]string{"policy", "explain"}, []string{"-policy", "-json", "-method", "-user"}},
		{[]string{"policy", "pac"}, []string{"-policy", "-proxy", "-all"}},
		{[]string{"passwd"}, []string{"-file", "-cost"}},
		{[]string{"report"}, []string{"-audit", "-policy", "-since", "-until", "-format", "-out"}},
		{[]string{"validate"}, []string{"-config", "-proxy", "-credentials", "-sample", "-issuer", "-audit", "-admin", "-format", "-out", "-evidence"}},
		{[]string{"validate", "verify"}, nil},
		{[]string{"version"}, nil},
	}
	for _, c := range commands {
		for _, h := range []string{"-h", "-help", "--help"} {
			args := append(append([]string{}, c.args...), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				code, out, errs := runCmd(t, args...)
				if code != 0 || errs != "" {
					t.Fatalf("exit %d, stderr %q", code, errs)
				}
				if !strings.Contains(out, "Usage:") {
					t.Errorf("no usage line:\n%s", out)
				}
				if len(c.args) >= 1 && c.args[0] != "policy" || len(c.args) == 2 {
					if !strings.Contains(out, "Example:\n  scpgate ") {
						t.Errorf("no example:\n%s", out)
					}
				}
				for _, f := range c.flags {
					if !strings.Contains(out, "  "+f+" ") && !strings.Contains(out, "  "+f+"\n") {
						t.Errorf("help does not list %s:\n%s", f, out)
					}
				}
			})
		}
	}
	// A help request after the arguments is still one.
	if code, out, _ := runCmd(t, "policy", "explain", "go.microsoft.com", "--help"); code != 0 || !strings.Contains(out, "Usage: scpgate policy explain") {
		t.Errorf("explain HOST --help: exit %d\n%s", code, out)
	}
}

// A bad flag prints the problem and the help on stderr and exits 2.
func TestBadFlag(t *testing.T) {
	for _, args := range [][]string{{"serve", "-nope"}, {"check"}, {"check", "-x"}, {"policy", "explain", "-nope", "a:1"}, {"passwd", "-x"}, {"policy", "lint", "-x"}, {"version", "-x"}, {"version", "extra"}} {
		code, out, errs := runCmd(t, args...)
		if code != 2 || out != "" || !strings.Contains(errs, "Usage: scpgate") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		code, out, _ := runCmd(t, args...)
		if code != 0 || !strings.HasPrefix(out, "scpgate ") || !strings.Contains(out, "(commit ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("%v: exit %d: %q", args, code, out)
		}
	}
}

// The Makefile stamps the version with -ldflags -X; a binary built that way prints it.
func TestVersionStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "scpgate")
	ld := "-X github.com/scpgate/scpgate/internal/buildinfo.version=v9.8.7-test -X github.com/scpgate/scpgate/internal/buildinfo.commit=0123abc"
	if out, err := exec.Command("go", "build", "-ldflags", ld, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "scpgate v9.8.7-test (commit 0123abc, " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

// Exit codes: 0 allow, 1 deny, 2 for every error.
func TestExplainExitCodes(t *testing.T) {
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid.yaml")
	os.WriteFile(invalid, []byte("version: 1\ngroups:\n  g:\n    hosts: [a.example.com\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"allow", []string{"-policy", "../../endpoints.yaml", "go.microsoft.com:443"}, 0, ""},
		{"deny", []string{"-policy", "../../endpoints.yaml", "manage.microsoft.com:443"}, 1, ""},
		{"missing policy", []string{"-policy", filepath.Join(dir, "nope.yaml"), "go.microsoft.com:443"}, 2, "nope.yaml"},
		{"invalid policy", []string{"-policy", invalid, "go.microsoft.com:443"}, 2, invalid + ":5:1:"},
		{"bad host", []string{"-policy", "../../endpoints.yaml", "bad_host.example:443"}, 2, "bad_host"},
		{"bad port", []string{"-policy", "../../endpoints.yaml", "go.microsoft.com:0443"}, 2, "port"},
		{"no target", []string{"-policy", "../../endpoints.yaml"}, 2, "Usage:"},
		{"two targets", []string{"a.example:1", "b.example:1"}, 2, "Usage:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCmd(t, append([]string{"policy", "explain"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errs, tt.err) {
				t.Fatalf("exit %d (want %d), stderr lacks %q:\n%s%s", code, tt.code, tt.err, out, errs)
			}
		})
	}
}

// The port defaults to 443, and both outputs show the normalised target.
func TestExplainNormalizedAndDefaultPort(t *testing.T) {
	code, out, errs := runCmd(t, "policy", "explain", "-policy", "../../endpoints.yaml", "GO.Microsoft.COM.")
	if code != 0 || !strings.Contains(out, "target:   go.microsoft.com:443\n") {
		t.Fatalf("exit %d:\n%s%s", code, out, errs)
	}
	for _, tt := range []struct{ in, target, normalized string }{
		{"GO.Microsoft.COM.", "GO.Microsoft.COM.", "go.microsoft.com:443"},
		{"go.microsoft.com:443", "go.microsoft.com:443", "go.microsoft.com:443"},
		{"[2001:DB8::1]", "[2001:DB8::1]", "[2001:db8::1]:443"},
		{"2001:db8::1", "2001:db8::1", "[2001:db8::1]:443"},
		{"0x7f.1:8443", "0x7f.1:8443", "127.0.0.1:8443"},
	} {
		code, out, errs := runCmd(t, "policy", "explain", "-policy", "../../endpoints.yaml", "-json", tt.in)
		var got struct{ Target, Normalized string }
		if err := json.Unmarshal([]byte(out), &got); err != nil || code == 2 {
			t.Fatalf("%s: exit %d %v\n%s%s", tt.in, code, err, out, errs)
		}
		if got.Target != tt.target || got.Normalized != tt.normalized {
			t.Errorf("%s: target %q normalized %q, want %q %q", tt.in, got.Target, got.Normalized, tt.target, tt.normalized)
		}
	}
}

func TestPolicyPAC(t *testing.T) {
	code, out, errs := runCmd(t, "policy", "pac", "-policy", "../../endpoints.yaml", "-proxy", "gw.corp.example:3128")
	if code != 0 || !strings.Contains(out, "function FindProxyForURL(url, host)") || !strings.Contains(out, `"proxy": "gw.corp.example:3128"`) ||
		!strings.Contains(out, `"p": "*.manage.microsoft.com"`) || strings.Contains(out, `"p": "dl.delivery.mp.microsoft.com"`) {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runCmd(t, "policy", "pac", "-proxy", "gw"); code != 2 || !strings.Contains(errs, "HOST:PORT") {
		t.Fatalf("bad -proxy: exit %d %s", code, errs)
	}
}

// On a terminal, passwd asks twice and echoes nothing; driven through a real pseudo-terminal.
func TestPasswdTerminal(t *testing.T) {
	const secret = "Tr0ub4dor&3-horse"
	tests := []struct {
		name           string
		first, second  string
		code           int
		wantSet, wantM string
	}{
		{"match", secret, secret, 0, "user scp set", ""},
		{"mismatch", secret, secret + "x", 1, "", "do not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "users.htpasswd")
			cmd := mainCmd(t, "passwd", "-file", file, "-cost", "4", "scp")
			tty, err := pty.Start(cmd)
			if err != nil {
				t.Fatalf("pty: %v", err)
			}
			defer tty.Close()
			lines := make(chan string, 64)
			var transcript strings.Builder
			go func() {
				defer close(lines)
				r := bufio.NewReader(tty)
				for {
					s, err := r.ReadString(':')
					if s != "" {
						lines <- s
					}
					if err != nil {
						return
					}
				}
			}()
			expect := func(what string) {
				t.Helper()
				deadline := time.After(10 * time.Second)
				for {
					select {
					case s, ok := <-lines:
						if !ok {
							t.Fatalf("output ended before %q:\n%s", what, transcript.String())
						}
						transcript.WriteString(s)
						if strings.Contains(transcript.String(), what) {
							return
						}
					case <-deadline:
						t.Fatalf("no %q within 10s:\n%s", what, transcript.String())
					}
				}
			}
			expect("Password for scp:")
			io.WriteString(tty, tt.first+"\r")
			expect("Retype the password:")
			io.WriteString(tty, tt.second+"\r")
			for s := range lines {
				transcript.WriteString(s)
			}
			err = cmd.Wait()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			out := transcript.String()
			if code != tt.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tt.code, out)
			}
			if strings.Contains(out, secret) {
				t.Fatalf("the password was echoed:\n%s", out)
			}
			if tt.wantSet != "" && !strings.Contains(out, tt.wantSet) || tt.wantM != "" && !strings.Contains(out, tt.wantM) {
				t.Fatalf("output:\n%s", out)
			}
			data, _ := os.ReadFile(file)
			if tt.code != 0 {
				if len(data) != 0 {
					t.Fatalf("a mismatch wrote the file:\n%s", data)
				}
				return
			}
			user, hash, _ := strings.Cut(strings.TrimSpace(string(data)), ":")
			if user != "scp" || bcrypt.CompareHashAndPassword([]byte(hash), []byte(secret)) != nil {
				t.Fatalf("the file does not hold the typed password: %q", data)
			}
		})
	}
}

func TestCheckCommand(t *testing.T) {
	code, out, errs := runCmd(t, "check", "-config", "../../examples/gateway.yaml")
	if code != 0 || !strings.Contains(out, "examples/gateway.yaml: ok") || errs != "" {
		t.Fatalf("the example config: exit %d\n%s%s", code, out, errs)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(cfg, []byte("listen: [127.0.0.1:0]\npolicy: endpoints.yaml\nauth:\n  htpasswd: users.htpasswd\n"), 0o644)
	code, out, errs = runCmd(t, "check", "-config", cfg)
	want := []string{
		cfg + ":2:9: policy: " + filepath.Join(dir, "endpoints.yaml") + ": no such file or directory",
		cfg + ":4:13: auth.htpasswd: open " + filepath.Join(dir, "users.htpasswd") + ": no such file or directory (create it with `scpgate passwd",
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if code != 1 || out != "" || len(lines) != len(want) {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errs)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d:\n got %s\nwant %s...", i, lines[i], w)
		}
	}
	// serve runs the same checks first and starts nothing.
	code, _, serveErrs := runCmd(t, "serve", "-config", cfg)
	if code != 1 || serveErrs != errs {
		t.Fatalf("serve: exit %d, stderr:\n%s\nwant the check's:\n%s", code, serveErrs, errs)
	}
}
