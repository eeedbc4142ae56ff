package downloader

import (
	"net/url"
	"strings"
	"testing"

	"github.com/scpgate/scpgate/manifest"
)

func TestFwlinkURLCarriesVersionHierarchyAndRing(t *testing.T) {
	for _, tt := range []struct{ ring, want string }{{"", "General"}, {"Fast", "Fast"}} {
		d := New(Options{Fwlink: "https://go.microsoft.com/fwlink/?LinkId=2008245", InstalledVersion: manifest.MustParseVersion("5.00.9135.1000"),
			HierarchyID: "6f2c2f5b-1d2e-4b51-9c3a-7d1e2f3a4b5c", Ring: tt.ring})
		u, err := url.Parse(d.FwlinkURL())
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		if u.Host != "go.microsoft.com" || q.Get("LinkId") != "2008245" || q.Get("Version") != "5.00.9135.1000" ||
			q.Get("HierarchyId") != "6f2c2f5b-1d2e-4b51-9c3a-7d1e2f3a4b5c" || q.Get("Ring") != tt.want {
			t.Fatalf("fwlink %s", u)
		}
		if !strings.HasPrefix(u.RawQuery, "LinkId=2008245&Version=") {
			t.Fatalf("query %s: want the configured LinkId first, then the SCP's parameters", u.RawQuery)
		}
	}
}
