package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scpgate/scpgate/internal/syncbuf"
	"github.com/scpgate/scpgate/sim/simworld"
)

// cloudsimRun is a running `scpgate cloudsim`: done is closed when it returned code.
type cloudsimRun struct {
	info   simworld.Info
	stderr *syncbuf.Buffer
	done   chan struct{}
	code   int
}

// startCloudsim runs run (runCloudsim or cmdCloudsim) in a goroutine and waits, with a bound,
// for its readiness line. The pipe is closed when the command returns, which releases the
// line reader if the command failed before printing anything.
func startCloudsim(t *testing.T, run func(stdout, stderr io.Writer) int) *cloudsimRun {
	t.Helper()
	pr, pw := io.Pipe()
	r := &cloudsimRun{stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	go func() {
		r.code = run(pw, r.stderr)
		pw.Close()
		close(r.done)
	}()
	type result struct {
		line string
		err  error
	}
	lines := make(chan result, 1)
	go func() {
		br := bufio.NewReader(pr)
		line, err := br.ReadString('\n')
		lines <- result{line, err}
		// Keep draining so a stray write after the line can never block the command.
		_, _ = io.Copy(io.Discard, br)
	}()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case res := <-lines:
		if res.err != nil {
			t.Fatalf("no readiness line (exit %d, %v):\n%s", r.wait(t), res.err, r.stderr.String())
		}
		if err := json.Unmarshal([]byte(res.line), &r.info); err != nil {
			t.Fatalf("readiness line %q: %v", res.line, err)
		}
	case <-timer.C:
		t.Fatalf("no readiness line within 30s:\n%s", r.stderr.String())
	}
	return r
}

// wait returns the exit code, failing the test if the command does not stop within 15s.
func (r *cloudsimRun) wait(t *testing.T) int {
	t.Helper()
	timer := time.NewTimer(15 * time.Second)
	defer timer.Stop()
	select {
	case <-r.done:
		return r.code
	case <-timer.C:
		t.Fatalf("cloudsim did not stop within 15s:\n%s", r.stderr.String())
		return -1
	}
}

// getThroughCloud does an HTTPS GET of https://name/ at the cloud's address, trusting only the
// CA file the command wrote.
func getThroughCloud(t *testing.T, info simworld.Info, name string) (int, string) {
	t.Helper()
	pemData, err := os.ReadFile(info.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("%s holds no certificate", info.CAFile)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		// The cloud's own address, never a name: the test process has no DNS for the fake zone.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, info.Cloud)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + name + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestCloudsimCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "world")
	ctx, cancel := context.WithCancel(context.Background())
	r := startCloudsim(t, func(stdout, stderr io.Writer) int {
		return runCloudsim(ctx, []string{"-dir", dir}, stdout, stderr)
	})
	// On an early failure too, the world is stopped and waited for before the test ends.
	t.Cleanup(func() { cancel(); r.wait(t) })

	if r.info.CAFile != filepath.Join(dir, simworld.CAFileName) || r.info.Cloud == "" || r.info.DNS == "" {
		t.Fatalf("readiness line: %+v", r.info)
	}
	onDisk, err := simworld.ReadInfo(filepath.Join(dir, simworld.InfoFileName))
	if err != nil || onDisk.Cloud != r.info.Cloud || onDisk.DNS != r.info.DNS {
		t.Fatalf("world.json %+v (%v) differs from the readiness line %+v", onDisk, err, r.info)
	}
	if code, body := getThroughCloud(t, r.info, "go.microsoft.com"); code != 200 || body != "scpgate cloudsim: go.microsoft.com" {
		t.Fatalf("GET: %d %q", code, body)
	}

	cancel()
	if code := r.wait(t); code != exitOK {
		t.Fatalf("exit %d after the stop, want 0:\n%s", code, r.stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, simworld.InfoFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("world.json still there after the stop: %v", err)
	}
	if !strings.Contains(r.stderr.String(), "world ready") {
		t.Fatalf("no log on stderr:\n%s", r.stderr.String())
	}
}

// TestCloudsimSIGTERM sends a real SIGTERM to the test process. cmdCloudsim has the signal
// registered from before it prints its line until it returns, so the signal is caught there.
func TestCloudsimSIGTERM(t *testing.T) {
	r := startCloudsim(t, func(stdout, stderr io.Writer) int {
		return cmdCloudsim([]string{"-dir", t.TempDir()}, stdout, stderr)
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != exitOK {
		t.Fatalf("exit %d after SIGTERM, want 0:\n%s", code, r.stderr.String())
	}
}

func TestCloudsimRefusesBadArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no dir", nil},
		{"extra argument", []string{"-dir", "DIR", "extra"}},
		{"dns on all interfaces", []string{"-dir", "DIR", "-dns", "0.0.0.0:5353"}},
		{"dns on a private address", []string{"-dir", "DIR", "-dns", "10.20.30.40:53"}},
		{"cloud on a private address", []string{"-dir", "DIR", "-cloud", "10.20.30.40"}},
		{"cloud on all interfaces", []string{"-dir", "DIR", "-cloud", "0.0.0.0"}},
		{"bad log level", []string{"-dir", "DIR", "-log-level", "loud"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for i, a := range tt.args {
				if a == "DIR" {
					tt.args[i] = dir
				}
			}
			var out strings.Builder
			errb := &syncbuf.Buffer{}
			code := runCloudsim(context.Background(), tt.args, &out, errb)
			if code != exitUsage || out.Len() != 0 {
				t.Fatalf("exit %d stdout %q, want exit 2 and no output:\n%s", code, out.String(), errb.String())
			}
		})
	}
}

// Every scpsim command answers -h, -help and --help with its flags and an example, exit 0.
func TestScpsimHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"cloudsim", "-h"}, {"cloudsim", "--help"}, {"demo", "-h"}, {"demo", "--help"}, {"version", "-h"}} {
		var out, errb strings.Builder
		code := run(args, &out, &errb)
		if code != exitOK || errb.Len() != 0 || !strings.Contains(out.String(), "Usage") {
			t.Errorf("%v: exit %d stdout %q stderr %q", args, code, out.String(), errb.String())
		}
		if len(args) == 2 && args[0] != "version" && !strings.Contains(out.String(), "Example:") {
			t.Errorf("%v: no example:\n%s", args, out.String())
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errb strings.Builder
		if code := run(args, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "scpsim ") || !strings.Contains(out.String(), "(commit ") {
			t.Errorf("%v: exit %d %q", args, code, out.String())
		}
	}
}
