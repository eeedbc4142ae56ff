package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestReadFallsBack(t *testing.T) {
	in := Read()
	if in.Version == "" || in.GoVersion != runtime.Version() || !strings.Contains(in.Platform, "/") {
		t.Fatalf("%+v", in)
	}
	s := in.String()
	if !strings.Contains(s, in.Version+" (commit ") || !strings.Contains(s, runtime.Version()) {
		t.Fatalf("String() = %q", s)
	}
}

func TestString(t *testing.T) {
	in := Info{Version: "v1.2.3-4-gabcdef0", Commit: "abcdef0123", GoVersion: "go1.26.0", Platform: "linux/amd64"}
	if got, want := in.String(), "v1.2.3-4-gabcdef0 (commit abcdef0123, go1.26.0 linux/amd64)"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	in.Commit = ""
	if got := in.String(); !strings.Contains(got, "commit unknown") {
		t.Fatalf("got %q", got)
	}
}
