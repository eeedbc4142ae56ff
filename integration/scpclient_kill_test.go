package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scpgate/scpgate/scpclient/state"
	"github.com/scpgate/scpgate/scpclient/uploader"
	"github.com/scpgate/scpgate/sim/cloudsim"
)

// eventually checks cond every 10 ms until it holds, for at most a minute. It is for state that
// another process writes to disk, where there is no event to wait on.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s: not within a minute", what)
		}
	}
}

// startCheck starts `scpclient check` without waiting for it.
func (s *scpEnv) startCheck(args ...string) (*exec.Cmd, chan error) {
	s.t.Helper()
	cmd := exec.Command(s.bin, append([]string{"check"}, args...)...)
	cmd.Env = clientEnv()
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	s.t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, done
}

func kill9(t *testing.T, cmd *exec.Cmd, done chan error) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("scpclient ended with %v, want killed", err)
	}
}

// TestSCPClientKilledDuringDownload: SIGKILL while a payload is half transferred leaves no
// payload in place; the restarted client resumes with a Range request and places it verified.
func TestSCPClientKilledDuringDownload(t *testing.T) {
	s := newSCPEnv(t)
	// The CDN sends 200 KiB of the first payload, then stalls until the client goes away.
	if err := s.sw.Cloud.SetFault(cloudsim.HostCDN, "/release/", cloudsim.Fault{Kind: cloudsim.FaultSlow, AfterBytes: 200 << 10, Count: 1}); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := s.writeConfig(clientConf{proxyURL: "http://" + s.gw.addr, user: "alice", dataDir: dataDir})
	cmd, done := s.startCheck("-config", cfg, "-no-upload")
	first := s.applicable()[0]
	part := filepath.Join(dataDir, "EasySetupPayload", first.GUID, "."+first.GUID+".cab.partial")
	eventually(t, "200 KiB of the first payload on disk", func() bool {
		st, err := os.Stat(part)
		return err == nil && st.Size() >= 200<<10
	})
	kill9(t, cmd, done)
	if _, err := os.Stat(filepath.Join(dataDir, "EasySetupPayload", first.GUID, first.GUID+".cab")); !os.IsNotExist(err) {
		t.Fatalf("a partial payload is in place after the kill (%v)", err)
	}
	if rec := readState(t, dataDir).Downloader.Updates[strings.ToLower(first.GUID)]; rec == nil || rec.State != state.DownloadInProgress {
		t.Fatalf("state after the kill: %+v, want 262145", rec)
	}
	s.sw.Cloud.ClearFaults()
	if r := s.scpclient("check", "-config", cfg, "-no-upload"); r.exit != 0 {
		t.Fatalf("restart: %d %s", r.exit, r.stderr)
	}
	s.checkPlaced(dataDir)
	resumed := false
	for _, r := range s.sw.Cloud.Requests() {
		if strings.Contains(r.Path, first.GUID) && strings.HasPrefix(r.Range, "bytes=") && r.Status == 206 {
			resumed = true
		}
	}
	if !resumed {
		t.Fatal("the restarted client did not resume with a Range request")
	}
}

// TestSCPClientKilledDuringUpload: SIGKILL before the receiver stored the package, and SIGKILL
// after it stored it but before the client read the acknowledgement: after a restart the
// receiver holds each package exactly once and the spool is empty.
func TestSCPClientKilledDuringUpload(t *testing.T) {
	for _, tc := range []struct {
		name       string
		afterBytes int64 // of the receipt: 0 stalls before the handler stores anything
		stored     int   // packages the receiver holds at the kill
	}{
		{"before the receiver stored it", 0, 0},
		{"after the receiver stored it", 10, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSCPEnv(t)
			if err := s.sw.Cloud.SetFault(cloudsim.HostConnectedService, cloudsim.ServiceUsageDataPath,
				cloudsim.Fault{Kind: cloudsim.FaultSlow, AfterBytes: tc.afterBytes, Count: 1}); err != nil {
				t.Fatal(err)
			}
			dataDir := filepath.Join(t.TempDir(), "data")
			cfg := s.writeConfig(clientConf{proxyURL: "https://" + s.tlsGW, user: "alice", dataDir: dataDir})
			cmd, done := s.startCheck("-config", cfg)
			logFile := filepath.Join(dataDir, "Logs", uploader.LogFileName)
			eventually(t, "the upload under way", func() bool {
				b, _ := os.ReadFile(logFile)
				return strings.Contains(string(b), "Uploading usage data package") && len(s.sw.Cloud.Uploads()) == tc.stored
			})
			kill9(t, cmd, done)
			spool := uploader.Spool{Dir: uploader.SpoolDir(dataDir)}
			if left, _ := spool.List(); len(left) != 1 {
				t.Fatalf("spool after the kill: %v, want the package", left)
			}
			s.sw.Cloud.ClearFaults()
			for range 2 {
				if r := s.scpclient("check", "-config", cfg); r.exit != 0 {
					t.Fatalf("restart: %d %s", r.exit, r.stderr)
				}
			}
			ups := s.sw.Cloud.Uploads()
			if left, _ := spool.List(); len(left) != 0 || len(ups) != 1 {
				t.Fatalf("spool %v, receiver %d packages; want empty and exactly one", left, len(ups))
			}
			if tc.stored == 1 && ups[0].Acks != 2 {
				t.Fatalf("acks %d, want 2 (the resend was recognised by its idempotency key)", ups[0].Acks)
			}
		})
	}
}
