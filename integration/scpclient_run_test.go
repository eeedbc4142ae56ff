package integration

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scpgate/scpgate/internal/syncbuf"
	"github.com/scpgate/scpgate/sim/cloudsim"
)

// clientProc is `scpclient run` as a child process whose echoed log lines a test can wait for.
type clientProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	mu     sync.Mutex
	lines  []string
	more   chan struct{} // closed and replaced on every new line
	exited chan struct{}
	err    error
}

func (s *scpEnv) startRun(args ...string) *clientProc {
	s.t.Helper()
	return s.startRunIn(nil, args...)
}

// startRunIn is startRun with a command prefix (such as unshare -n).
func (s *scpEnv) startRunIn(prefix []string, args ...string) *clientProc {
	s.t.Helper()
	full := append(append(append([]string(nil), prefix...), s.bin, "run"), args...)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Env = clientEnv()
	p := &clientProc{t: s.t, cmd: cmd, stderr: &syncbuf.Buffer{}, more: make(chan struct{}), exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	s.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// waitLine waits for the n-th line (1-based) that contains all of parts, for at most a minute.
func (p *clientProc) waitLine(n int, parts ...string) string {
	p.t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		seen := 0
		for _, l := range p.lines {
			ok := true
			for _, part := range parts {
				ok = ok && strings.Contains(l, part)
			}
			if ok {
				seen++
				if seen == n {
					p.mu.Unlock()
					return l
				}
			}
		}
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.exited:
			p.t.Fatalf("scpclient run exited (%v) before line %d with %q\nstdout:\n%s\nstderr:\n%s", p.err, n, parts, p.output(), p.stderr.String())
		case <-deadline.C:
			p.t.Fatalf("no line %d with %q within a minute\nstdout:\n%s", n, parts, p.output())
		}
	}
}

func (p *clientProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// stop sends SIGTERM and expects exit 0.
func (p *clientProc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatal("scpclient run did not stop within 30 s of SIGTERM")
	}
	if p.err != nil {
		p.t.Fatalf("scpclient run: %v\n%s", p.err, p.stderr.String())
	}
}

func fwlinkRequests(c *cloudsim.Cloud) int {
	n := 0
	for _, r := range c.Requests() {
		if r.Host == cloudsim.HostFwlink {
			n++
		}
	}
	return n
}

// TestSCPClientModeChangeNeedsRestart: `scpclient run` checks at start-up; a mode change in the
// configuration is shown by status but ignored (a triggered check still goes online) until
// restart-component SMS_DMP_DOWNLOADER, after which nothing goes out; the uploader keeps
// running with its state through the downloader's restart.
func TestSCPClientModeChangeNeedsRestart(t *testing.T) {
	s := newSCPEnv(t)
	base, err := os.MkdirTemp("", "scpc") // short: the control socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dataDir := filepath.Join(base, "data")
	conf := clientConf{proxyURL: "https://" + s.tlsGW, user: "alice", dataDir: dataDir}
	cfg := s.writeConfig(conf)
	p := s.startRun("-config", cfg)
	last := s.applicable()[len(s.applicable())-1].GUID
	p.waitLine(1, "SMS_DMP_DOWNLOADER: EasySetupDownloadSinglePackage finishes downloading "+last)
	p.waitLine(1, "SMS_DMP_UPLOADER: Usage data package", "acknowledged")
	s.checkPlaced(dataDir)

	// A second instance for the same hierarchy and data folder is refused.
	if r := s.scpclient("check", "-config", cfg); r.exit != 1 || !strings.Contains(r.stderr, "another service connection point holds the lock") || !strings.Contains(r.stderr, "pid=") {
		t.Fatalf("second instance: exit %d %s", r.exit, r.stderr)
	}

	status := func() string {
		t.Helper()
		r := s.scpclient("status", "-config", cfg)
		if r.exit != 0 {
			t.Fatalf("status: %d %s", r.exit, r.stderr)
		}
		// One space between columns, so the test does not depend on column widths.
		lines := strings.Split(r.stdout, "\n")
		for i, l := range lines {
			lines[i] = strings.Join(strings.Fields(l), " ")
		}
		return strings.Join(lines, "\n")
	}
	out := status()
	for _, want := range []string{"mode in force: online", "mode configured: online", "SMS_DMP_DOWNLOADER", "SMS_DMP_UPLOADER", "running", "262146 DOWNLOAD_SUCCESS", "393214 APPLICABILITY_NA"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}

	conf.mode = "offline"
	s.writeConfig(conf)
	if out := status(); !strings.Contains(out, "mode in force: online") || !strings.Contains(out, "mode configured: offline") {
		t.Fatalf("after the edit:\n%s", out)
	}
	// Check for Updates still goes online: the change is not in force yet.
	n := fwlinkRequests(s.sw.Cloud)
	if r := s.scpclient("trigger", "SMS_DMP_DOWNLOADER", "-config", cfg); r.exit != 0 {
		t.Fatalf("trigger: %d %s", r.exit, r.stderr)
	}
	p.waitLine(1, "SMS_DMP_DOWNLOADER: Synced at")
	p.waitLine(2, "SMS_DMP_DOWNLOADER: EasySetupDownloadSinglePackage finishes downloading "+last)
	if fwlinkRequests(s.sw.Cloud) != n+1 {
		t.Fatalf("fwlink requests %d, want %d: the triggered check must still run online", fwlinkRequests(s.sw.Cloud), n+1)
	}

	if r := s.scpclient("restart-component", "SMS_DMP_DOWNLOADER", "-config", cfg); r.exit != 0 {
		t.Fatalf("restart-component: %d %s", r.exit, r.stderr)
	}
	p.waitLine(1, "SMS_DMP_DOWNLOADER: SMS_DMP_DOWNLOADER started; mode in force: offline")
	out = status()
	if !strings.Contains(out, "mode in force: offline") || !strings.Contains(out, "packages delivered: 1") {
		t.Fatalf("after the restart:\n%s", out)
	}
	// The uploader was not restarted: its line shows 0 restarts.
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == "SMS_DMP_UPLOADER" && (f[1] != "running" || f[3] != "0") {
			t.Fatalf("uploader: %q", l)
		}
		if len(f) >= 4 && f[0] == "SMS_DMP_DOWNLOADER" && (f[1] != "running" || f[3] != "1") {
			t.Fatalf("downloader: %q", l)
		}
	}
	n = len(s.sw.Cloud.Requests())
	for _, c := range []string{"SMS_DMP_DOWNLOADER", "SMS_DMP_UPLOADER"} {
		if r := s.scpclient("trigger", c, "-config", cfg); r.exit != 0 {
			t.Fatalf("trigger %s: %d %s", c, r.exit, r.stderr)
		}
	}
	p.waitLine(1, "SMS_DMP_DOWNLOADER: Check for Updates is not available in offline mode")
	p.waitLine(1, "SMS_DMP_UPLOADER: The service connection point is in offline mode")
	if got := len(s.sw.Cloud.Requests()); got != n {
		t.Fatalf("the cloud saw %d requests in offline mode", got-n)
	}
	p.stop()
	if _, err := os.Stat(filepath.Join(dataDir, "scpclient-control.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket left behind: %v", err)
	}
}
