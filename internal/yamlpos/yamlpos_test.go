package yamlpos

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wantLine is the first line of every file in testdata/syntax: "# want LINE:COL MESSAGE".
var wantLine = regexp.MustCompile(`^# want (\d+):(\d+) (.+)\n`)

type brokenFile struct {
	name, path string
	data       []byte
	line, col  int
	msg        string
}

func brokenFiles(t *testing.T) []brokenFile {
	t.Helper()
	paths, err := filepath.Glob("testdata/syntax/*.yaml")
	if err != nil || len(paths) < 10 {
		t.Fatalf("testdata/syntax: %d files, %v", len(paths), err)
	}
	var out []brokenFile
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m := wantLine.FindSubmatch(data)
		if m == nil {
			t.Fatalf("%s: first line is not \"# want LINE:COL MESSAGE\"", p)
		}
		line, _ := strconv.Atoi(string(m[1]))
		col, _ := strconv.Atoi(string(m[2]))
		out = append(out, brokenFile{filepath.Base(p), p, data, line, col, string(m[3])})
	}
	return out
}

// Every broken file is reported at the line and column its header names, with its message.
func TestSyntaxPositions(t *testing.T) {
	for _, f := range brokenFiles(t) {
		t.Run(f.name, func(t *testing.T) {
			e := Syntax(f.data)
			if e == nil {
				t.Fatal("no error")
			}
			if e.Line != f.line || e.Col != f.col || e.Msg != f.msg {
				t.Fatalf("got %d:%d %q\nwant %d:%d %q", e.Line, e.Col, e.Msg, f.line, f.col, f.msg)
			}
		})
	}
}

// composerOnly are problems PyYAML finds only when it builds the tree, which yamllint does not do.
var composerOnly = map[string]bool{"unknown-alias.yaml": true}

// The positions agree with a real YAML linter (Debian's yamllint, PyYAML's scanner and parser) on
// the same files. yamllint is installed by .ci/deps.sh; CI fails without it.
func TestSyntaxAgreesWithYamllint(t *testing.T) {
	bin, err := exec.LookPath("yamllint")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("yamllint is not installed (.ci/deps.sh installs it)")
		}
		t.Skip("yamllint not installed; run .ci/deps.sh")
	}
	lintLine := regexp.MustCompile(`:(\d+):(\d+): \[error\] syntax error: `)
	for _, f := range brokenFiles(t) {
		t.Run(f.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := exec.Command(bin, "-f", "parsable", "-d", "{rules: {}}", f.path)
			cmd.Stdout, cmd.Stderr = &out, &out
			_ = cmd.Run() // exit 1 on an error is expected
			m := lintLine.FindStringSubmatch(out.String())
			if m == nil {
				if composerOnly[f.name] {
					return
				}
				t.Fatalf("yamllint reports no syntax error:\n%s", out.String())
			}
			if got := m[1] + ":" + m[2]; got != strconv.Itoa(f.line)+":"+strconv.Itoa(f.col) {
				t.Fatalf("yamllint says %s, we say %d:%d\n%s", got, f.line, f.col, out.String())
			}
		})
	}
}

func TestSyntaxValid(t *testing.T) {
	for _, src := range []string{
		"", "# only a comment\n", "a: 1\n", "a: [1, 2]\nb: {c: d}\n", "a: &x 1\nb: *x\n",
		"a: |\n  text\twith a tab\n", "a:\t1\n", "---\na: 1\n---\nb: 2\n", "\xEF\xBB\xBFa: 1\n",
	} {
		if e := Syntax([]byte(src)); e != nil {
			t.Errorf("%q: %v", src, e)
		}
	}
}

func TestSyntaxInvalidUTF8(t *testing.T) {
	e := Syntax([]byte("a: 1\nb: \xff\n"))
	if e == nil || e.Line != 2 || e.Col != 4 || !strings.Contains(e.Msg, "UTF-8") {
		t.Fatalf("got %v, want 2:4 ... UTF-8", e)
	}
}

// TestSyntaxEndsOnAnErrorFoundAhead: the scanner reads ahead in 512-byte chunks, and a bad
// byte found in a later chunk while it looks for a key's value records an error after the
// parser has already "succeeded"; from then on every parse call returns no event and no
// failure. Syntax looped forever on such a file (a policy with a NUL byte, found by
// policy.FuzzParse); it must report the bad byte. The padding moves the NUL across the chunk
// boundary: 499-501 hung.
func TestSyntaxEndsOnAnErrorFoundAhead(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 480; n < 530; n++ {
			src := "a: " + strings.Repeat("x", n) + "\nsni:     \x00"
			e := Syntax([]byte(src))
			if e == nil || e.Line != 2 || e.Col != 10 || !strings.Contains(e.Msg, "control characters are not allowed") {
				t.Errorf("padding %d: got %v, want 2:10 ... control characters are not allowed", n, e)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute): // a hang guard, far above the milliseconds this takes
		t.Fatal("Syntax did not return: it loops on an error found while scanning ahead")
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"listen", "tls_listen", "tls", "admin", "auth", "watch", "policy", "dns", "allow_ranges", "audit", "timeouts", "limits"}
	tests := []struct{ word, want string }{
		{"listne", "listen"}, {"lisen", "listen"}, {"polcy", "policy"}, {"Admin", "admin"},
		{"timeout", "timeouts"}, {"allow_range", "allow_ranges"}, {"tls_lisetn", "tls_listen"},
		{"xyz", ""}, {"frobnicate", ""}, {"", ""},
	}
	for _, tt := range tests {
		if got := Suggest(tt.word, known); got != tt.want {
			t.Errorf("Suggest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
}
