// Package buildinfo says which build a binary is: its version, the commit it was built from and
// the Go release that built it.
//
// `make build` stamps the version from `git describe` and the commit with
//
//	-ldflags "-X github.com/scpgate/scpgate/internal/buildinfo.version=... -X ...buildinfo.commit=..."
//
// A plain `go build` or `go install` falls back to what the Go toolchain records in the binary:
// the module version (go install pkg@v1.2.3) and the VCS revision of the checkout.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at link time by the Makefile; never written at run time.
var (
	version string
	commit  string
)

// Info is one binary's build.
type Info struct {
	Version   string // "v0.3.0-12-g62da721", or "devel" when nothing says
	Commit    string // full revision, with "-dirty" when built from a modified tree; "" if unknown
	GoVersion string // "go1.26.0"
	Platform  string // "linux/amd64"
}

// Read returns this binary's build information.
func Read() Info {
	in := Info{Version: version, Commit: commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		if in.Commit == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			in.Commit = rev
		}
	}
	if in.Version == "" {
		in.Version = "devel"
	}
	return in
}

// String is the version line every command prints: "scpgate v0.3.0 (commit 62da721…, go1.26.0 linux/amd64)".
func (in Info) String() string {
	c := in.Commit
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("%s (commit %s, %s %s)", in.Version, c, in.GoVersion, in.Platform)
}
