package integration

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scpgate/scpgate/internal/syncbuf"
)

// Every start-up failure after the configuration is read ends the real binary with exit 1 and
// one clear line that names the address or file and says what to do: no panic, no stack.
func TestServeStartupFailures(t *testing.T) {
	bin := buildScpgate(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := busy.Addr().String()
	policyFile, err := filepath.Abs("../endpoints.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  string   // gateway.yaml; DIR is the test's folder
		want []string // stderr holds each of these
	}{
		{"listen port in use", "listen: [" + busyAddr + "]\nadmin: 127.0.0.1:0\n",
			[]string{busyAddr, "in use", "listen"}},
		{"admin port in use", "listen: [127.0.0.1:0]\nadmin: " + busyAddr + "\n",
			[]string{busyAddr, "in use", "admin"}},
		{"missing htpasswd", "listen: [127.0.0.1:0]\nauth:\n  htpasswd: DIR/users.htpasswd\n",
			[]string{"DIR/users.htpasswd", "scpgate passwd"}},
		{"missing TLS certificate", "listen: [127.0.0.1:0]\ntls_listen: [127.0.0.1:0]\ntls:\n  cert_file: DIR/gw.crt\n  key_file: DIR/gw.key\n",
			[]string{"tls.cert_file: open DIR/gw.crt: no such file or directory (put the PEM file there", "tls.key_file: open DIR/gw.key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := strings.ReplaceAll(tt.cfg, "DIR", dir) + "policy: " + policyFile + "\nwatch: false\n"
			cfgPath := filepath.Join(dir, "gateway.yaml")
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve", "-config", cfgPath)
			var stderr syncbuf.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want exit status 1\n%s", err, stderr.String())
			}
			out := stderr.String()
			if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
				t.Fatalf("a panic instead of an error:\n%s", out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) > 2 {
				t.Errorf("more than one line per problem:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, strings.ReplaceAll(w, "DIR", dir)) {
					t.Errorf("the error line lacks %q:\n%s", strings.ReplaceAll(w, "DIR", dir), out)
				}
			}
		})
	}
}

// The admin listener of a running gateway serves the PAC file for the policy in force, naming
// the gateway's own plain listener.
func TestServeProxyPAC(t *testing.T) {
	bin := buildScpgate(t)
	w := newWorld(t)
	o := w.origin("go.microsoft.com")
	p := startServe(t, bin, w, o, time.Second)
	resp, err := http.Get("http://" + p.addrs.Admin + "/proxy.pac")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" ||
		!strings.Contains(string(body), `"proxy": "`+p.addrs.Proxy[0]+`"`) || !strings.Contains(string(body), `"p": "go.microsoft.com"`) {
		t.Fatalf("%d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitExit(t, 10*time.Second)
}
