package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scpgate/scpgate"
	"github.com/scpgate/scpgate/gateway/proxyauth"
	"github.com/scpgate/scpgate/gateway/server"
	"github.com/scpgate/scpgate/internal/cmdline"
	"github.com/scpgate/scpgate/sim/simworld"
	"github.com/scpgate/scpgate/sim/testca"
)

var demoHelp = cmdline.Help{
	Synopsis: "scpsim demo [-keep] [-scpgate PATH]",
	About: `The whole story on one machine: the simulated Microsoft cloud and its DNS, the gateway in
front of it (authentication on, TLS proxy listener), the SCP's real traffic with curl, and a
summary of what passed and what was denied and why. Needs root for port 443 (make demo
re-executes itself in 'unshare -rn' otherwise). Exit 0 only if every expectation held.`,
	Example: "make build && bin/scpsim demo",
}

// cmdDemo runs the whole story on one machine: the simulated Microsoft cloud and its DNS, the
// gateway in front of it (authentication on, TLS proxy listener), real traffic with curl, and a
// summary of what passed and what was denied and why. It starts real processes (this binary's
// `cloudsim` and `serve`), stops them, and exits 0 only if every expectation held.
func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("demo", stderr)
	keep := fs.Bool("keep", false, "keep the working directory (config, audit log, logs) for inspection")
	gatewayBin := fs.String("scpgate", "", "the scpgate binary to run (default: the one next to this binary, then $PATH)")
	reportsDir := fs.String("reports", "", "folder for the validation and audit reports, kept after the demo (default: a new folder under $TMPDIR)")
	if code, ok := cmdline.Parse(fs, demoHelp, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return cmdline.Usage(stderr, fs, demoHelp, "takes no arguments")
	}
	scpgateBin, err := findScpgate(*gatewayBin)
	if err != nil {
		fmt.Fprintf(stderr, "scpsim demo: %v\n", err)
		return exitFail
	}
	if _, err := exec.LookPath("curl"); err != nil {
		fmt.Fprintln(stderr, "scpsim demo: curl is required (apt-get install curl)")
		return exitFail
	}
	dir, err := os.MkdirTemp("", "scpgate-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "scpsim demo: %v\n", err)
		return exitFail
	}
	if *keep {
		fmt.Fprintf(stdout, "working directory: %s (kept)\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	reports, err := reportsFolder(*reportsDir)
	if err != nil {
		fmt.Fprintf(stderr, "scpsim demo: -reports: %v\n", err)
		return exitFail
	}
	// The validation paces its probes (20 a second); a loaded CI machine needs the margin.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := &demo{dir: dir, reports: reports, out: stdout, errOut: stderr, scpgate: scpgateBin}
	err = d.run(ctx)
	if stopErr := d.stop(); err == nil {
		err = stopErr
	}
	if err != nil {
		fmt.Fprintf(stderr, "scpsim demo: %v\n", err)
		if !*keep {
			fmt.Fprintln(stderr, "(run `scpsim demo -keep` to keep the logs and the audit file)")
		}
		return exitFail
	}
	fmt.Fprintln(stdout, "\ndemo passed: every allowed request passed, every other one was refused for the expected reason")
	return exitOK
}

type demo struct {
	scpgate      string // the product binary: serve, policy explain
	dir          string
	reports      string // the reports' folder, which outlives the demo
	clientConfig string // the SCP client's configuration, written by clientCycle
	// validateStart ends the period of the audit report: the SCP's traffic, not the probes.
	validateStart time.Time
	out, errOut   io.Writer
	procs         []*child
	world         simworld.Info
	gw            server.Addresses
	gwCAFile      string
	password      string
	auditFile     string
}

// child is a process the demo started; it is stopped with SIGTERM and must exit 0.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

// reportsFolder is the folder the reports go to: flag (created, emptied of earlier reports) or
// a new one under $TMPDIR. Either way it is not removed, so the printed paths stay valid.
func reportsFolder(flagValue string) (string, error) {
	if flagValue == "" {
		return os.MkdirTemp("", "scpgate-demo-reports-")
	}
	for _, sub := range []string{"validate", "audit-report"} {
		if err := os.RemoveAll(filepath.Join(flagValue, sub)); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(flagValue, 0o755); err != nil {
		return "", err
	}
	return filepath.Abs(flagValue)
}

// findScpgate locates the product binary: the flag, else scpgate next to this binary (make
// build puts both in bin/), else $PATH.
func findScpgate(flagValue string) (string, error) {
	return findBinary(flagValue, "scpgate")
}

// start runs bin (this binary or scpgate) with args as a child process named name.
func (d *demo) start(ctx context.Context, name, bin string, args ...string) (*child, *bufio.Reader, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	logFile, err := os.Create(filepath.Join(d.dir, name+".log"))
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	// Its own process group, so a Ctrl-C on the demo does not reach it before the demo stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	c := &child{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait(); logFile.Close() }()
	d.procs = append(d.procs, c)
	return c, bufio.NewReader(stdout), nil
}

// readReady reads the one JSON line a child prints when it is ready.
func (d *demo) readReady(c *child, r *bufio.Reader, v any) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(d.dir, c.name+".log"))
		return fmt.Errorf("%s did not start: %v\n%s", c.name, err, log)
	}
	go func() { _, _ = io.Copy(io.Discard, r) }()
	return json.Unmarshal(line, v)
}

// stop sends SIGTERM to every child, newest first, and checks each exits 0 within 15 seconds.
func (d *demo) stop() error {
	var errs []error
	for i := len(d.procs) - 1; i >= 0; i-- {
		c := d.procs[i]
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-c.done:
			if err != nil {
				errs = append(errs, fmt.Errorf("%s exited with %v", c.name, err))
			}
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
			errs = append(errs, fmt.Errorf("%s did not stop within 15s after SIGTERM", c.name))
		}
	}
	d.procs = nil
	return errors.Join(errs...)
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "\n== "+format+"\n", args...)
}

func (d *demo) run(ctx context.Context) error {
	d.step("starting the simulated Microsoft cloud and its DNS (scpsim cloudsim)")
	c, r, err := d.start(ctx, "cloudsim", selfBin(), "cloudsim", "-dir", filepath.Join(d.dir, "cloud"))
	if err != nil {
		return err
	}
	if err := d.readReady(c, r, &d.world); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "DNS %s, cloud %s (%d host names, CA %s)\n", d.world.DNS, d.world.Cloud, len(d.world.Hosts), d.world.CAFile)

	d.step("starting the gateway (scpgate serve): authentication on, TLS proxy listener, shipped endpoints.yaml")
	cfgFile, err := d.writeGatewayFiles()
	if err != nil {
		return err
	}
	c, r, err = d.start(ctx, "gateway", d.scpgate, "serve", "-config", cfgFile, "-ready-json")
	if err != nil {
		return err
	}
	if err := d.readReady(c, r, &d.gw); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "proxy http://%s, TLS proxy https://%s, admin http://%s\n", d.gw.Proxy[0], d.gw.TLS[0], d.gw.Admin)

	if err := d.clientCycle(ctx); err != nil {
		return err
	}
	if err := d.clientConnectivity(ctx); err != nil {
		return err
	}

	d.step("the service connection point's traffic, through https://%s with proxy credentials", d.gw.TLS[0])
	results, err := d.scenarios(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(d.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tREQUEST\tGATEWAY ANSWER\tREASON\tRESULT")
	failed := 0
	for _, res := range results {
		mark := "ok"
		if !res.ok {
			mark, failed = "UNEXPECTED", failed+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", mark, res.name, res.answer, orDash(res.reason), res.detail)
	}
	tw.Flush()
	if err := d.validateRun(ctx); err != nil {
		return err
	}

	d.step("why was manage.microsoft.com refused? (scpgate policy explain)")
	// Exit 1 is the answer "deny", not a failure.
	explain, _ := exec.CommandContext(ctx, d.scpgate, "policy", "explain", "-policy", filepath.Join(d.dir, "endpoints.yaml"), "manage.microsoft.com:443").CombinedOutput()
	fmt.Fprint(d.out, string(explain))

	// Stop the gateway first: the audit log is complete (flushed and fsynced) once it exited.
	if err := d.stop(); err != nil {
		return err
	}
	d.step("what the gateway audited: scpgate report -audit %s", d.auditFile)
	if err := d.auditReport(ctx); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d requests did not behave as expected", failed, len(results))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeGatewayFiles writes the policy, users, the TLS listener's certificate (from a "corporate"
// CA of its own) and the gateway configuration.
func (d *demo) writeGatewayFiles() (string, error) {
	if err := os.WriteFile(filepath.Join(d.dir, "endpoints.yaml"), scpgate.DefaultPolicy, 0o644); err != nil {
		return "", err
	}
	var pw [9]byte
	_, _ = rand.Read(pw[:])
	d.password = hex.EncodeToString(pw[:])
	hash, err := proxyauth.HashPassword(d.password, bcrypt.DefaultCost)
	if err != nil {
		return "", err
	}
	if err := proxyauth.AppendOrReplaceUser(filepath.Join(d.dir, "users.htpasswd"), "scp", hash); err != nil {
		return "", err
	}
	corp, err := testca.New("scpgate demo corporate CA")
	if err != nil {
		return "", err
	}
	tlsDir := filepath.Join(d.dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return "", err
	}
	if d.gwCAFile, err = corp.WriteFiles(tlsDir); err != nil {
		return "", err
	}
	cert, err := corp.Issue("127.0.0.1", "scpgate.demo.internal")
	if err != nil {
		return "", err
	}
	certFile, keyFile, err := testca.WriteCertFiles(tlsDir, "gateway", cert)
	if err != nil {
		return "", err
	}
	cloud, err := netip.ParseAddrPort(d.world.Cloud)
	if err != nil {
		return "", fmt.Errorf("cloudsim address %q: %w", d.world.Cloud, err)
	}
	d.auditFile = filepath.Join(d.dir, "audit.log")
	cfg := fmt.Sprintf(`# written by scpgate demo
listen: [127.0.0.1:0]
tls_listen: [127.0.0.1:0]
tls: {cert_file: %q, key_file: %q}
admin: 127.0.0.1:0
policy: endpoints.yaml
dns: {servers: [%q]}
# The simulated cloud lives on loopback; a real deployment leaves allow_ranges empty.
allow_ranges: [%q]
auth: {htpasswd: users.htpasswd}
audit: {path: audit.log}
timeouts: {drain: 5s}
`, certFile, keyFile, d.world.DNS, netip.PrefixFrom(cloud.Addr(), 32).String())
	path := filepath.Join(d.dir, "gateway.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

type result struct {
	name, answer, reason, detail string
	ok                           bool
}

// curlThrough runs curl through the gateway's TLS listener and returns the proxy's CONNECT
// status, the X-Scpgate-Reason it gave, and the origin's final status.
func (d *demo) curlThrough(ctx context.Context, user string, extra ...string) (connect, reason, final string, err error) {
	hdr := filepath.Join(d.dir, "curl-headers")
	args := []string{"-sS", "--max-time", "20", "--noproxy", "",
		"--proxy", "https://" + d.gw.TLS[0], "--proxy-cacert", d.gwCAFile,
		"--cacert", d.world.CAFile, "-D", hdr, "-w", "%{http_connect} %{http_code}"}
	if user != "" {
		args = append(args, "--proxy-user", user)
	}
	cmd := exec.CommandContext(ctx, "curl", append(args, extra...)...)
	cmd.Env = append(os.Environ(), "http_proxy=", "https_proxy=", "HTTPS_PROXY=", "ALL_PROXY=", "all_proxy=")
	out, _ := cmd.Output() // curl fails (exit 56) for every refused CONNECT: the codes say why
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return "", "", "", fmt.Errorf("curl printed %q", out)
	}
	h, _ := os.ReadFile(hdr)
	for _, line := range strings.Split(string(h), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "X-Scpgate-Reason") {
			reason = strings.TrimSpace(v)
		}
	}
	return f[0], reason, f[1], nil
}

func (d *demo) scenarios(ctx context.Context) ([]result, error) {
	user := "scp:" + d.password
	var results []result

	// The update check and the downloads are the SCP client's (clientCycle); what remains is
	// what must be refused, and why.
	denials := []struct {
		name, user, url, connect, reason string
	}{
		{"no proxy credentials", "", "https://go.microsoft.com/", "407", "auth_required"},
		{"wrong password", "scp:wrong", "https://go.microsoft.com/", "407", "auth_failed"},
		{"unlisted name www.example.com", user, "https://www.example.com/", "403", "no_rule"},
		{"apex manage.microsoft.com (only *.manage is listed)", user, "https://manage.microsoft.com/", "403", "no_rule"},
		{"listed name on port 22", user, "https://go.microsoft.com:22/", "403", "port_not_allowed"},
		{"IP literal 2130706433 (127.0.0.1)", user, "https://2130706433/", "403", "ip_literal"},
		{"name resolving to a private address", user, "https://internal.manage.microsoft.com/", "403", "private_address"},
		{"name resolving to cloud metadata 169.254.169.254", user, "https://metadata.manage.microsoft.com/", "403", "private_address"},
		{"name that does not exist (NXDOMAIN)", user, "https://nxdomain.manage.microsoft.com/", "502", "dns_failure"},
	}
	for _, dn := range denials {
		connect, reason, _, err := d.curlThrough(ctx, dn.user, "-o", os.DevNull, dn.url)
		if err != nil {
			return nil, err
		}
		results = append(results, result{
			name: dn.name, answer: connect, reason: reason,
			ok:     connect == dn.connect && reason == dn.reason,
			detail: "refused as expected",
		})
		if !results[len(results)-1].ok {
			results[len(results)-1].detail = fmt.Sprintf("expected %s %s", dn.connect, dn.reason)
		}
	}
	return results, nil
}

// selfBin is this binary, for the cloudsim child.
func selfBin() string {
	self, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return self
}
