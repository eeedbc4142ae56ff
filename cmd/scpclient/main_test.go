package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadInputExitCodes(t *testing.T) {
	dir := t.TempDir()
	// site writes an offline site's configuration with role.
	site := func(name, role string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("site_code: XYZ\nsite_role: "+role+"\n"+
			"hierarchy_id: 6f2c2f5b-1d2e-4b51-9c3a-7d1e2f3a4b5c\ninstalled_version: 5.00.9135.1000\n"+
			"mode: offline\ndata_dir: data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secondary, offline := site("secondary.yaml", "secondary"), site("offline.yaml", "cas")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "usage: scpclient"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"check", "-config", filepath.Join(dir, "missing.yaml")}, exitUsage, "missing.yaml"},
		{[]string{"check", "-config", secondary}, exitUsage, "top-tier site"},
		{[]string{"check", "-attempts", "0", "-config", secondary}, exitUsage, "-attempts 0"},
		{[]string{"status", "-config", secondary}, exitUsage, "secondary.yaml"},
		{[]string{"restart-component", "-config", secondary}, exitUsage, "secondary.yaml"},
		{[]string{"restart-component", "-config", offline}, exitUsage, "SMS_DMP_DOWNLOADER|SMS_DMP_UPLOADER|SMS_SERVICE_CONNECTOR"},
		{[]string{"restart-component", "SMS_DMP_DOWNLOADER", "-config", offline, "SMS_DMP_UPLOADER"}, exitUsage, "want one component"},
		{[]string{"trigger", "-config", offline}, exitUsage, "SMS_DMP_DOWNLOADER|SMS_DMP_UPLOADER|SMS_SERVICE_CONNECTOR"},
		{[]string{"check-connectivity", "-config", secondary}, exitUsage, "top-tier site"},
		{[]string{"check-connectivity", "-config", offline}, exitError, "offline mode"},
		{[]string{"tool", "-prepare", "extra"}, exitFail, `unexpected argument "extra"`},
		{[]string{"check", secondary}, exitUsage, `unexpected argument "` + secondary},
		{[]string{"run", "-quiet", secondary}, exitUsage, "unexpected argument"},
		{[]string{"status", secondary}, exitUsage, "unexpected argument"},
		{[]string{"check-connectivity", secondary}, exitUsage, "unexpected argument"},
		{[]string{"tool", "-prepare", "-import"}, exitFail, "exactly one of -prepare, -connect, -import, -export"},
		{[]string{"tool", "-connect", "-usagedatasrc", dir}, exitFail, "-connect needs -usagedatasrc and -updatepackdest"},
		{[]string{"tool", "-connect", "-usagedatasrc", dir, "-updatepackdest", dir, "-manifestkeyfile", "k", "-downloadall", "-downloadhotfix"}, exitFail, "exclude each other"},
		{[]string{"tool", "-connect", "-usagedatasrc", dir, "-updatepackdest", dir, "-manifestkeyfile", "k", "-proxyusername", "scp"}, exitFail, "-proxyusername needs -proxyserveruri"},
	}
	for _, tt := range tests {
		var out, errb strings.Builder
		code := run(context.Background(), tt.args, &out, &errb)
		if code != tt.code || !strings.Contains(errb.String()+out.String(), tt.want) {
			t.Errorf("scpclient %q: exit %d, want %d; output %q, want it to contain %q", tt.args, code, tt.code, errb.String()+out.String(), tt.want)
		}
	}
}
