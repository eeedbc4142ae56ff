package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scpgate/scpgate/gateway/server"
	"github.com/scpgate/scpgate/internal/syncbuf"
)

// buildScpgate builds cmd/scpgate from the module root into a temporary directory.
func buildScpgate(t *testing.T) string {
	t.Helper()
	return buildCommand(t, "scpgate")
}

// buildCommand builds cmd/<name> from the module root into a temporary directory, with extra
// go build flags.
func buildCommand(t testing.TB, name string, flags ...string) string {
	t.Helper()
	goBin, err := exec.LookPath("go") // go test puts GOROOT/bin first in PATH
	if err != nil {
		t.Fatalf("the go command is needed to build %s: %v", name, err)
	}
	bin := filepath.Join(t.TempDir(), name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append(append([]string{"build"}, flags...), "-o", bin, "./cmd/"+name)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin
}

// firstLine passes the first line written to it on line and keeps the rest.
type firstLine struct {
	syncbuf.Buffer
	once sync.Once
	line chan string
}

func (f *firstLine) Write(p []byte) (int, error) {
	n, err := f.Buffer.Write(p)
	if s := f.String(); strings.Contains(s, "\n") {
		f.once.Do(func() { f.line <- s[:strings.IndexByte(s, '\n')] })
	}
	return n, err
}

// serveProcess is `scpgate serve -ready-json` running as a child process.
type serveProcess struct {
	cmd    *exec.Cmd
	addrs  server.Addresses
	stderr *syncbuf.Buffer
	exited chan struct{} // closed once Wait returned; err is set by then
	err    error
}

// startServe writes a configuration for w (policy, DNS, allow_ranges for o) and runs
// `scpgate serve -config FILE -ready-json` until it prints its ready line.
func startServe(t *testing.T, bin string, w *world, o *origin, drain time.Duration) *serveProcess {
	t.Helper()
	cfgPath := writeServeConfig(t, w, opsPolicy, o.addr.Addr(), fmt.Sprintf("timeouts:\n  drain: %s\n", drain))
	return runServe(t, bin, "serve", "-config", cfgPath, "-ready-json")
}

// writeServeConfig writes policyText and a gateway configuration for `scpgate serve` into a
// fresh directory: loopback listeners, w's DNS server, allow (the origin's address) allowed,
// an audit file, then extra (more YAML sections). It returns the configuration's path.
func writeServeConfig(t *testing.T, w *world, policyText string, allow netip.Addr, extra string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "endpoints.yaml"), []byte(policyText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`listen: ["127.0.0.1:0"]
admin: "127.0.0.1:0"
policy: endpoints.yaml
watch: false
dns:
  servers: [%q]
allow_ranges: [%q]
audit:
  path: audit.log
`, w.dns.Addr(), netip.PrefixFrom(allow, 32).String()) + extra
	cfgPath := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// runServe runs argv (`scpgate serve … -ready-json`, possibly behind a wrapper) until it prints
// its ready line; the process is killed at the end of the test if it still runs.
func runServe(t *testing.T, argv ...string) *serveProcess {
	t.Helper()
	stdout := &firstLine{line: make(chan string, 1)}
	p := &serveProcess{stderr: &syncbuf.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("scpgate serve stderr:\n%s", p.stderr.String())
		}
	})
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case line := <-stdout.line:
		if err := json.Unmarshal([]byte(line), &p.addrs); err != nil || len(p.addrs.Proxy) != 1 || p.addrs.Admin == "" {
			t.Fatalf("ready line %q: %v", line, err)
		}
	case <-p.exited:
		t.Fatalf("scpgate serve exited before it was ready: %v\n%s", p.err, p.stderr.String())
	case <-timer.C:
		t.Fatal("scpgate serve printed no ready line within 30s")
	}
	return p
}

// waitExit waits at most d for the process to exit and fails the test unless it exited 0.
func (p *serveProcess) waitExit(t *testing.T, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		t.Fatalf("scpgate serve did not exit within %s", d)
	}
	if p.err != nil || p.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("scpgate serve exited with %v, want 0", p.err)
	}
}

// readyz returns the admin listener's /readyz status (0 when it does not answer).
func (p *serveProcess) readyz() int {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + p.addrs.Admin + "/readyz")
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// waitNotReady polls /readyz until it says 503: the child's readiness can only be observed by
// asking it. The loop is bounded by count and by time.
func (p *serveProcess) waitNotReady(t *testing.T) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for range 1000 {
		if p.readyz() == http.StatusServiceUnavailable {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatal("/readyz did not turn 503 within 10s of SIGTERM")
		}
	}
	t.Fatal("/readyz did not turn 503")
}

// TestServeProcessSIGTERM runs the real binary: SIGTERM turns /readyz 503 at once, open tunnels
// keep working until they close (then the process exits 0 without waiting for the deadline), and
// a tunnel still open at the drain deadline is closed and the process still exits 0.
func TestServeProcessSIGTERM(t *testing.T) {
	bin := buildScpgate(t)
	w := newWorld(t)
	o := w.origin("go.microsoft.com")

	t.Run("drains open tunnels", func(t *testing.T) {
		// A long drain: exiting well before it proves the process left because the last tunnel
		// closed, not because the deadline passed.
		const drain = 30 * time.Second
		p := startServe(t, bin, w, o, drain)
		if st := p.readyz(); st != 200 {
			t.Fatalf("/readyz %d before SIGTERM", st)
		}
		tc, err := w.openTLS(p.addrs.Proxy[0], "go.microsoft.com:443", "go.microsoft.com")
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		tc.mustGet(t, "go.microsoft.com")

		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		p.waitNotReady(t)
		// The open tunnel still moves bytes both ways while the gateway drains.
		for range 3 {
			tc.mustGet(t, "go.microsoft.com")
		}
		// New work is not taken: the listener is closed (or, just before, answers 503).
		if c, err := connectTunnel(p.addrs.Proxy[0], "go.microsoft.com:443"); err == nil {
			_ = c.Close()
			t.Fatal("a new CONNECT was accepted while draining")
		}
		select {
		case <-p.exited:
			t.Fatalf("scpgate serve exited with a tunnel open: %v", p.err)
		default:
		}
		_ = tc.Close()
		p.waitExit(t, 10*time.Second)
		if log := p.stderr.String(); strings.Contains(log, "drain deadline reached") {
			t.Fatalf("the drain hit its deadline although the tunnel closed:\n%s", log)
		}
	})

	t.Run("drain deadline closes tunnels", func(t *testing.T) {
		const drain = time.Second
		p := startServe(t, bin, w, o, drain)
		tc, err := w.openTLS(p.addrs.Proxy[0], "go.microsoft.com:443", "go.microsoft.com")
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		tc.mustGet(t, "go.microsoft.com")

		start := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		p.waitNotReady(t)
		// The client keeps the tunnel open and waits: the gateway closes it at the deadline.
		_ = tc.raw.SetReadDeadline(time.Now().Add(drain + 10*time.Second))
		n, err := tc.tls.Read(make([]byte, 1))
		if err == nil || isTimeout(err) {
			t.Fatalf("read %d byte(s), err %v: want the tunnel closed by the gateway", n, err)
		}
		if took := time.Since(start); took < drain {
			t.Fatalf("the tunnel was closed %s after SIGTERM, before the %s drain deadline", took, drain)
		}
		p.waitExit(t, 10*time.Second)
		if log := p.stderr.String(); !strings.Contains(log, "drain deadline reached") {
			t.Fatalf("no drain deadline in the log:\n%s", log)
		}
	})
}
