package cmdline

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	h := Help{Synopsis: "tool do [-n N] ARG", About: "Does it.", Example: "tool do -n 3 x\ntool do y"}
	tests := []struct {
		args           []string
		code           int
		ok             bool
		stdout, stderr []string // substrings; nil: must be empty
	}{
		{[]string{"x"}, ExitOK, true, nil, nil},
		{[]string{"-n", "2", "x"}, ExitOK, true, nil, nil},
		{[]string{"-h"}, ExitOK, false, []string{"Usage: tool do [-n N] ARG\n\nDoes it.\n\nFlags:\n  -n int\n", "Example:\n  tool do -n 3 x\n  tool do y\n"}, nil},
		{[]string{"--help"}, ExitOK, false, []string{"Usage: tool do"}, nil},
		{[]string{"x", "--help"}, ExitOK, false, []string{"Usage: tool do"}, nil},
		{[]string{"-bogus"}, ExitUsage, false, nil, []string{"flag provided but not defined: -bogus", "Usage: tool do"}},
		{[]string{"-n", "many"}, ExitUsage, false, nil, []string{"invalid value", "Example:"}},
	}
	for _, tt := range tests {
		var out, errb strings.Builder
		fs := NewFlagSet("do", &errb)
		fs.Int("n", 1, "how many")
		code, ok := Parse(fs, h, tt.args, &out, &errb)
		if code != tt.code || ok != tt.ok {
			t.Errorf("%v: code %d ok %v, want %d %v", tt.args, code, ok, tt.code, tt.ok)
		}
		for _, c := range []struct {
			got  string
			want []string
		}{{out.String(), tt.stdout}, {errb.String(), tt.stderr}} {
			if c.want == nil && c.got != "" {
				t.Errorf("%v: unexpected output %q", tt.args, c.got)
			}
			for _, w := range c.want {
				if !strings.Contains(c.got, w) {
					t.Errorf("%v: output lacks %q:\n%s", tt.args, w, c.got)
				}
			}
		}
	}
}

func TestUsage(t *testing.T) {
	var errb strings.Builder
	fs := NewFlagSet("do", &errb)
	if code := Usage(&errb, fs, Help{Synopsis: "tool do ARG"}, "want %d argument", 1); code != ExitUsage {
		t.Fatalf("code %d", code)
	}
	if got := errb.String(); got != "do: want 1 argument\n\nUsage: tool do ARG\n" {
		t.Fatalf("%q", got)
	}
}
