package integration

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scpgate/scpgate/manifest"
	"github.com/scpgate/scpgate/scpclient/state"
	"github.com/scpgate/scpgate/scpclient/usage"
	"github.com/scpgate/scpgate/sim/cloudsim"
)

// inEmptyNetns returns the command prefix that runs a program in a new network namespace with no
// interface up (not even loopback), where any connect fails. Outside CI it skips when that is not
// possible (unshare needs root); in CI it fails.
func inEmptyNetns(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("unshare", "-n", "ip", "-o", "addr").CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("unshare -n: %v %s (the no-network proof needs root and util-linux, iproute2)", err, out)
		}
		t.Skipf("unshare -n is not available here: %v %s", err, out)
	}
	// Only the loopback device exists in a new namespace, and it is down: no address at all.
	if strings.TrimSpace(string(out)) != "" {
		t.Fatalf("the new network namespace has addresses:\n%s", out)
	}
	return []string{"unshare", "-n"}
}

// runIn runs the scpclient binary with args to completion (bounded by two minutes), prefixed
// (for example by unshare -n), with extra environment variables.
func (s *scpEnv) runIn(prefix []string, env []string, args ...string) runResult {
	s.t.Helper()
	full := append(append(append([]string(nil), prefix...), s.bin), args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = clientEnv(env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := runResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.exit = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("%v: %v", full, err)
	}
	return r
}

// TestSCPClientOfflineToolTwoHierarchies: two offline sites (two hierarchies, two data folders)
// prepare their usage data in a namespace without network; -connect uploads both through the
// gateway and downloads one pack per hierarchy; each site imports only its own pack, verified,
// again without network. A pack for another hierarchy and a tampered payload are refused.
func TestSCPClientOfflineToolTwoHierarchies(t *testing.T) {
	s := newSCPEnv(t)
	netns := inEmptyNetns(t)
	usb := filepath.Join(t.TempDir(), "usb")
	if err := os.MkdirAll(usb, 0o755); err != nil {
		t.Fatal(err)
	}
	hierarchies := []string{testHierarchy, "0b9d2c41-7e55-4f0a-8d3e-2a1b3c4d5e6f"}
	var cfgs, dataDirs []string
	for i, h := range hierarchies {
		dataDir := filepath.Join(t.TempDir(), "data")
		// The connectivity check keeps its default schedule: offline it must not run.
		cfg := s.writeConfig(clientConf{mode: "offline", hierarchy: h, dataDir: dataDir, level: []string{"basic", "full"}[i],
			connectivity: "connectivity_check:\n  interval: 24h\n"})
		cfgs, dataDirs = append(cfgs, cfg), append(dataDirs, dataDir)
		dest := filepath.Join(usb, "UsageData-"+string(rune('A'+i))+usage.FileExt)
		if r := s.runIn(netns, nil, "tool", "-prepare", "-usagedatadest", dest, "-config", cfg); r.exit != 0 {
			t.Fatalf("prepare %s: %d %s", h, r.exit, r.stderr)
		}
		if r := s.runIn(netns, nil, "tool", "-export", "-dest", filepath.Join(usb, "UsageData.csv"), "-config", cfg); r.exit != 0 {
			t.Fatalf("export: %d %s", r.exit, r.stderr)
		}
	}
	logLines(t, filepath.Join(usb, "ServiceConnectionTool.log"), "ServiceConnectionTool")

	packs := filepath.Join(usb, "UpdatePacks")
	r := s.runIn(nil, []string{"SCPCLIENT_PROXY_PASSWORD=alice-pw"}, "tool", "-connect", "-usagedatasrc", usb, "-updatepackdest", packs,
		"-proxyserveruri", "http://"+s.gw.addr, "-proxyusername", "alice", "-trustedcafile", s.sw.CAFile, "-manifestkeyfile", s.sw.PublicKeyFile)
	if r.exit != 0 {
		t.Fatalf("connect: %d %s", r.exit, r.stderr)
	}
	if ups := s.sw.Cloud.Uploads(); len(ups) != 2 {
		t.Fatalf("uploads %d, want one per hierarchy", len(ups))
	}
	logLines(t, filepath.Join(packs, "ServiceConnectionTool.log"), "ServiceConnectionTool")
	// Default selection: only the newest update that applies to the site version, no hotfix.
	m := manifest.Manifest{Updates: s.sw.Cloud.Updates()}
	apps := m.Applicable(manifest.MustParseVersion(cloudsim.DefaultInstalledVersion), false)
	newest := apps[len(apps)-1]

	for i, cfg := range cfgs {
		r := s.runIn(netns, nil, "tool", "-import", "-updatepacksrc", packs, "-config", cfg)
		if r.exit != 0 {
			t.Fatalf("import %d: %d %s", i, r.exit, r.stderr)
		}
		placed := filepath.Join(dataDirs[i], "EasySetupPayload", newest.GUID, newest.GUID+".cab")
		if fileHash(t, placed) != newest.SHA256 {
			t.Fatalf("import %d: %s not verified", i, placed)
		}
		ents, _ := os.ReadDir(filepath.Join(dataDirs[i], "EasySetupPayload"))
		if len(ents) != 1 {
			t.Fatalf("import %d placed %d payload folders, want only the newest update", i, len(ents))
		}
		st := readState(t, dataDirs[i])
		if u := st.Downloader.Updates[strings.ToLower(newest.GUID)]; u == nil || u.State != state.DownloadSuccess {
			t.Fatalf("import %d: state %+v", i, u)
		}
		inOrder(t, logLines(t, filepath.Join(dataDirs[i], "Logs", "ServiceConnectionTool.log"), "ServiceConnectionTool"),
			"File '", "Checking IsPayloadLocal with HashAlgorithm = SHA256", "Imported ", "Import finished")
	}

	// The offline site runs its components without network; triggers change nothing.
	n := len(s.sw.Cloud.Requests())
	p := s.startRunIn(netns, "-config", cfgs[0])
	p.waitLine(1, "SMS_DMP_DOWNLOADER: SMS_DMP_DOWNLOADER started; mode in force: offline")
	p.waitLine(1, "SMS_DMP_UPLOADER: The service connection point is in offline mode")
	p.waitLine(1, "SMS_SERVICE_CONNECTOR: The service connection point is in offline mode: the endpoint connectivity check does not run.")
	for _, c := range []string{"SMS_DMP_DOWNLOADER", "SMS_DMP_UPLOADER", "SMS_SERVICE_CONNECTOR"} {
		if r := s.scpclient("trigger", c, "-config", cfgs[0]); r.exit != 0 {
			t.Fatalf("trigger %s: %d %s", c, r.exit, r.stderr)
		}
	}
	p.waitLine(1, "SMS_DMP_DOWNLOADER: Check for Updates is not available in offline mode")
	p.waitLine(2, "SMS_DMP_UPLOADER: The service connection point is in offline mode")
	p.waitLine(1, "SMS_SERVICE_CONNECTOR: The endpoint connectivity check is not available in offline mode.")
	p.stop()
	if got := len(s.sw.Cloud.Requests()); got != n {
		t.Fatalf("the cloud saw %d requests from an offline site", got-n)
	}

	// Site B given site A's pack folder directly: another hierarchy, refused.
	packA := filepath.Join(packs, "hierarchy-"+usage.HierarchyHash(hierarchies[0])[:16])
	if r := s.runIn(netns, nil, "tool", "-import", "-updatepacksrc", packA, "-config", cfgs[1]); r.exit != 1 || !strings.Contains(r.stderr, "another hierarchy") {
		t.Fatalf("foreign pack: %d %s", r.exit, r.stderr)
	}
	// A tampered payload: refused before anything is placed.
	fresh := filepath.Join(t.TempDir(), "data")
	cfgC := s.writeConfig(clientConf{mode: "offline", hierarchy: hierarchies[0], dataDir: fresh})
	payload := filepath.Join(packA, newest.GUID, newest.GUID+".cab")
	b, err := os.ReadFile(payload)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(payload, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := s.runIn(netns, nil, "tool", "-import", "-updatepacksrc", packs, "-config", cfgC); r.exit != 1 || !strings.Contains(r.stderr, "does not hash") {
		t.Fatalf("tampered pack: %d %s", r.exit, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(fresh, "EasySetupPayload", newest.GUID)); !os.IsNotExist(err) {
		t.Fatalf("a tampered pack placed something (%v)", err)
	}
}
