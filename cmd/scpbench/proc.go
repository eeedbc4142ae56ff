package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/scpgate/scpgate/sim/testca"
)

// proc is a proxy (or helper) process this tool started; stop ends it by its pid.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProc runs argv with its output in logPath and waits until addr accepts connections.
func startProc(ctx context.Context, name string, argv []string, logPath, addr string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	if err := waitListening(ctx, addr, p.done, 15*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s did not start listening on %s (log: %s): %w", name, addr, logPath, err)
	}
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM to the process's pid, and SIGKILL if it has not exited within 10 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitListening dials addr until it answers, the process exits or the timeout passes.
func waitListening(ctx context.Context, addr string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("the process exited")
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}

// freePort returns a loopback address with a port nobody listens on right now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func mustPort(addr string) int {
	n, _ := strconv.Atoi(portOf(addr))
	return n
}

// benchCert is the certificate of the TLS sink and the TLS proxy listener, from a CA of the
// bench's own (sim/testca), with the PEM files scpgate reads.
type benchCert struct {
	ca                *testca.CA
	cert              tls.Certificate
	certFile, keyFile string
}

func newBenchCert(dir string, names ...string) (*benchCert, error) {
	ca, err := testca.New("scpbench")
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue(names...)
	if err != nil {
		return nil, err
	}
	certFile, keyFile, err := testca.WriteCertFiles(dir, "bench", cert)
	if err != nil {
		return nil, err
	}
	return &benchCert{ca: ca, cert: cert, certFile: certFile, keyFile: keyFile}, nil
}

func (b *benchCert) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{b.cert}, MinVersion: tls.VersionTLS12}
}

// clientConfig trusts the bench CA and resumes sessions, as a long-running client does.
func (b *benchCert) clientConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: b.ca.Pool(), ServerName: serverName, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
}
