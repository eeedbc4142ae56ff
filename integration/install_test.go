package integration

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needTool finds a tool the test checks against; CI (CI=true) must have it (.ci/deps.sh
// installs it), elsewhere the test skips.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (.ci/deps.sh installs Debian's %s)", name, pkg)
		}
		t.Skipf("%s not installed; run .ci/deps.sh", name)
	}
	return p
}

func runIn(t *testing.T, dir string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// `make install DESTDIR=...` stages the binary (with its git version), the configuration
// (never overwriting an existing file), the unit, the logrotate snippet and the folders.
func TestMakeInstall(t *testing.T) {
	needTool(t, "make", "make")
	root := t.TempDir()
	build := t.TempDir()
	args := []string{"-s", "install", "DESTDIR=" + root, "PREFIX=/usr", "BIN=" + build + "/scpgate", "SIMBIN=" + build + "/scpsim"}
	out, err := runIn(t, "..", "make", args...)
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/bin/scpgate", "etc/scpgate/gateway.yaml", "etc/scpgate/endpoints.yaml",
		"etc/systemd/system/scpgate.service", "etc/logrotate.d/scpgate", "usr/lib/sysusers.d/scpgate.conf",
		"usr/share/doc/scpgate/scp-admin.md", "usr/share/doc/scpgate/privileged-ports.conf"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	for _, d := range []string{"var/lib/scpgate", "var/log/scpgate"} {
		if st, err := os.Stat(filepath.Join(root, d)); err != nil || !st.IsDir() {
			t.Errorf("folder %s: %v", d, err)
		}
	}
	// The installed binary carries the commit it was built from.
	head, err := runIn(t, "..", "git", "rev-parse", "HEAD")
	if err != nil {
		t.Fatalf("git rev-parse: %v %s", err, head)
	}
	ver, err := runIn(t, root, filepath.Join(root, "usr/bin/scpgate"), "--version")
	if err != nil || !strings.Contains(ver, "(commit "+strings.TrimSpace(head)) {
		t.Errorf("installed binary's version %q does not name commit %s (%v)", ver, head, err)
	}
	// The installed configuration is valid as shipped.
	if out, err := runIn(t, root, filepath.Join(root, "usr/bin/scpgate"), "policy", "lint", filepath.Join(root, "etc/scpgate/endpoints.yaml")); err != nil {
		t.Errorf("installed endpoints.yaml: %v\n%s", err, out)
	}
	// The shipped server configuration passes `scpgate check` (its absolute paths moved into
	// the staging root).
	shipped, err := os.ReadFile(filepath.Join(root, "etc/scpgate/gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	staged := strings.NewReplacer("/etc/scpgate/", root+"/etc/scpgate/", "/var/log/scpgate/", root+"/var/log/scpgate/").Replace(string(shipped))
	stagedPath := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(stagedPath, []byte(staged), 0o644)
	if out, err := runIn(t, root, filepath.Join(root, "usr/bin/scpgate"), "check", "-config", stagedPath); err != nil || !strings.Contains(out, ": ok") {
		t.Errorf("scpgate check of the shipped gateway.yaml: %v\n%s", err, out)
	}
	// A second install keeps the admin's edits.
	gw := filepath.Join(root, "etc/scpgate/gateway.yaml")
	mine := []byte("# edited by the admin\nlisten: [0.0.0.0:8080]\n")
	if err := os.WriteFile(gw, mine, 0o640); err != nil {
		t.Fatal(err)
	}
	out, err = runIn(t, "..", "make", args...)
	if err != nil {
		t.Fatalf("second make install: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(gw); string(got) != string(mine) {
		t.Fatalf("make install overwrote the edited gateway.yaml:\n%s", got)
	}
	if !strings.Contains(out, "keeping "+gw) {
		t.Errorf("make install did not say it kept %s:\n%s", gw, out)
	}
}

// The unit passes systemd-analyze verify (no running systemd needed), with and without the
// privileged-ports drop-in, and is hardened as the README promises.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", "systemd")
	unit, err := os.ReadFile("../deploy/scpgate.service.in")
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)
	for _, want := range []string{"\nUser=scpgate\n", "\nNoNewPrivileges=yes\n", "\nProtectSystem=strict\n",
		"\nReadWritePaths=/var/lib/scpgate /var/log/scpgate\n", "\nExecReload=/bin/kill -HUP $MAINPID\n",
		"\nCapabilityBoundingSet=\n", "\nAmbientCapabilities=\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "#") && strings.Contains(line, "CAP_NET_BIND_SERVICE") {
			t.Errorf("the unit grants CAP_NET_BIND_SERVICE by default: %q", line)
		}
	}
	// verify checks that ExecStart exists: point it at a real scpgate binary.
	bin := buildScpgate(t)
	dir := t.TempDir()
	unitFile := filepath.Join(dir, "scpgate.service")
	os.WriteFile(unitFile, []byte(strings.ReplaceAll(text, "@BINDIR@/scpgate", bin)), 0o644)
	verify := func(name string) {
		t.Helper()
		out, err := runIn(t, dir, analyze, "verify", unitFile)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("%s: systemd-analyze verify: %v\n%s", name, err, out)
		}
	}
	verify("unit")
	// Hardened: systemd's own exposure score (0 best, 10 worst) stays at 2.0 or below; it is
	// 1.4 today, the rest being group-readable files (UMask 0027, for the audit log's readers).
	if out, err := runIn(t, dir, analyze, "security", "--offline=true", "--threshold=20", unitFile); err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0: %v\n%s", err, out)
	}
	dropin, err := os.ReadFile("../deploy/privileged-ports.conf")
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "scpgate.service.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "scpgate.service.d", "privileged-ports.conf"), dropin, 0o644)
	verify("unit with the privileged-ports drop-in")
	// The check is real: a misspelt directive is reported.
	os.WriteFile(filepath.Join(dir, "scpgate.service.d", "typo.conf"), []byte("[Service]\nProtectSytem=strict\n"), 0o644)
	if out, _ := runIn(t, dir, analyze, "verify", unitFile); !strings.Contains(out, "ProtectSytem") {
		t.Errorf("systemd-analyze verify did not notice a misspelt key:\n%s", out)
	}
}

// The logrotate snippet parses and rotates with logrotate -d (debug: nothing is changed), and
// tells scpgate to reopen the file with SIGUSR2.
func TestLogrotateSnippet(t *testing.T) {
	logrotate := needTool(t, "logrotate", "logrotate")
	snippet, err := os.ReadFile("../deploy/logrotate")
	if err != nil {
		t.Fatal(err)
	}
	text := string(snippet)
	if !strings.Contains(text, "--signal=SIGUSR2 scpgate.service") || !strings.Contains(text, "create 0640 scpgate scpgate") {
		t.Fatalf("the snippet does not create the file for scpgate and send SIGUSR2:\n%s", text)
	}
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	os.Mkdir(logDir, 0o750)
	os.WriteFile(filepath.Join(logDir, "audit.log"), []byte(`{"decision":"allow"}`+"\n"), 0o640)
	text = strings.ReplaceAll(text, "/var/log/scpgate", logDir)
	if _, err := user.Lookup("scpgate"); err != nil {
		// Outside an installed machine the system user does not exist; logrotate would refuse
		// the unknown owner, which is not what this test is about.
		text = strings.ReplaceAll(text, "create 0640 scpgate scpgate", "create 0640 root root")
	}
	conf := filepath.Join(dir, "scpgate.conf")
	os.WriteFile(conf, []byte(text), 0o644)
	out, err := runIn(t, dir, logrotate, "-d", "-f", "-s", filepath.Join(dir, "state"), conf)
	if err != nil || strings.Contains(out, "error:") {
		t.Fatalf("logrotate -d: %v\n%s", err, out)
	}
	for _, want := range []string{"rotating log " + filepath.Join(logDir, "audit.log"), "running postrotate script", "SIGUSR2"} {
		if !strings.Contains(out, want) {
			t.Errorf("logrotate -d output lacks %q:\n%s", want, out)
		}
	}
}
