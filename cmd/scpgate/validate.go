package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/schollz/progressbar/v3"

	"github.com/scpgate/scpgate"
	"github.com/scpgate/scpgate/internal/cmdline"
	"github.com/scpgate/scpgate/validate"
	"github.com/scpgate/scpgate/validate/evidence"
	"github.com/scpgate/scpgate/validate/render"
)

// exitCannotRun is validate's exit code when the run could not start (bad flags or
// configuration): 0, 1 and 2 are taken by ConfigMgr's outcomes 11410, 11411 and 11412.
const exitCannotRun = 3

var validateHelp = cmdline.Help{
	Synopsis: "scpgate validate [-config FILE] [flags]",
	About: `Probes every endpoint of the enabled groups through the gateway as the SCP does (proxy TCP
and TLS, credentials, the CONNECT answer, the TLS chain, one HTTP request, timing), and the near
misses derived from the policy that must be blocked, each with its expected reason. With -audit
or -admin each probe is matched with the gateway's audit record by connection id.

Exit codes: 0 all passed (11410), 1 warnings only (11411), 2 a required endpoint failed or a
must-block check passed (11412), 3 the run could not start (bad flags or configuration).

Flags override the configuration file. Credentials: -credentials FILE (one line user:password),
or -user U with the password in SCPGATE_PROXY_PASSWORD. See also: scpgate validate verify DIR.`,
	Example: `scpgate validate -proxy https://gw:3129 -proxy-ca corp-ca.pem -credentials scp.cred \
    -sample '*.manage.microsoft.com=sccm.manage.microsoft.com' -audit audit.log \
    -format table,html,json -out report/ -evidence evidence/`,
}

var verifyHelp = cmdline.Help{
	Synopsis: "scpgate validate verify DIR",
	About: `Checks an evidence bundle written by scpgate validate -evidence: every file against
MANIFEST.sha256, nothing added or missing, and the policy's hash against the results.
Exit 0 intact, 1 changed, 3 not a bundle.`,
	Example: "scpgate validate verify evidence/",
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "verify" {
		return cmdValidateVerify(args[1:], stdout, stderr)
	}
	fs := cmdline.NewFlagSet("validate", stderr)
	configFile := fs.String("config", "", "YAML configuration `FILE` (see README: scpgate validate)")
	proxy := fs.String("proxy", "", "the gateway as the SCP uses it: http://host:port or https://host:port")
	proxyCA := fs.String("proxy-ca", "", "CA bundle `FILE` for an https:// proxy")
	creds := fs.String("credentials", "", "`FILE` with one line user:password")
	user := fs.String("user", "", "proxy user; the password is read from "+validate.EnvPassword)
	caBundle := fs.String("ca", "", "trusted CA bundle `FILE` for the endpoints (default: system roots)")
	policyFile := fs.String("policy", "", "policy `FILE` the checks are derived from (default: the built-in endpoints.yaml)")
	groups := fs.String("groups", "", "comma-separated groups to check (default: every enabled group)")
	var samples, issuers, audits listFlag
	fs.Var(&samples, "sample", "`PATTERN=NAME` a real name to probe for a wildcard (repeatable)")
	fs.Var(&issuers, "issuer", "`HOST=ISSUER` expected issuer for a host, pattern or * (repeatable)")
	fs.Var(&audits, "audit", "the gateway's audit `FILE` to match probes with (repeatable)")
	privAddr := fs.String("private-address", "", "IP literal of the private-address check (default 10.0.0.1)")
	metaAddr := fs.String("metadata-address", "", "IP literal of the metadata check (default 169.254.169.254)")
	privName := fs.String("private-name", "", "a listed name that resolves to a private address")
	dnsServer := fs.String("dns-server", "", "`IP:port` of a DNS server for the IP-literal checks (default: system resolver)")
	admin := fs.String("admin", "", "the gateway's admin `URL` (http://host:port): /v1/policy, and /v1/audit without -audit")
	concurrency := fs.Int("concurrency", 0, "probes in flight (default 8)")
	rate := fs.Float64("rate", 0, "probes started per second (default 20; -1: no bound)")
	checkTimeout := fs.String("check-timeout", "", "timeout of one probe (default 15s)")
	timeout := fs.String("timeout", "", "timeout of the whole run (default 2m)")
	formats := fs.String("format", "", "comma-separated outputs: "+strings.Join(render.Formats(), ", ")+" (default table)")
	outDir := fs.String("out", "", "`DIR` for the output files (required for formats other than table)")
	evidenceDir := fs.String("evidence", "", "write the evidence bundle into this new `DIR`")
	noProgress := fs.Bool("no-progress", false, "no progress bar even on a terminal")
	quiet := fs.Bool("q", false, "print only the outcome and the files written, not the table")
	if code, ok := cmdline.Parse(fs, validateHelp, args, stdout, stderr); !ok {
		return cannotRun(code)
	}
	if fs.NArg() > 0 {
		return cannotRun(cmdline.Usage(stderr, fs, validateHelp, "unexpected argument %q", fs.Arg(0)))
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "scpgate validate: "+format+"\n", a...)
		return exitCannotRun
	}

	fc := &validate.FileConfig{}
	base := "."
	if *configFile != "" {
		var err error
		if fc, err = validate.LoadFileConfig(*configFile); err != nil {
			return fail("%v", err)
		}
		base = filepath.Dir(*configFile)
		// The file's own output paths are relative to it, like its other paths.
		for _, p := range []*string{&fc.OutputDir, &fc.Evidence} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(base, *p)
			}
		}
	}
	// Flags override the file; a flag's relative path is relative to the working directory.
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	set := func(dst *string, v string, path bool) {
		if v != "" {
			if path {
				v = abs(v)
			}
			*dst = v
		}
	}
	set(&fc.Proxy, *proxy, false)
	set(&fc.ProxyCA, *proxyCA, true)
	set(&fc.CredentialsFile, *creds, true)
	set(&fc.User, *user, false)
	set(&fc.CABundle, *caBundle, true)
	set(&fc.Policy, *policyFile, true)
	set(&fc.PrivateAddress, *privAddr, false)
	set(&fc.MetadataAddress, *metaAddr, false)
	set(&fc.PrivateName, *privName, false)
	set(&fc.DNSServer, *dnsServer, false)
	set(&fc.AdminURL, *admin, false)
	set(&fc.CheckTimeout, *checkTimeout, false)
	set(&fc.Timeout, *timeout, false)
	set(&fc.OutputDir, *outDir, true)
	set(&fc.Evidence, *evidenceDir, true)
	if *groups != "" {
		fc.Groups = splitList(*groups)
	}
	if *formats != "" {
		fc.Formats = splitList(*formats)
	}
	if *concurrency != 0 {
		fc.Concurrency = *concurrency
	}
	if *rate != 0 {
		fc.Rate = *rate
	}
	for _, a := range audits {
		fc.Audit = append(fc.Audit, abs(a))
	}
	for _, kv := range []struct {
		list listFlag
		dst  *map[string][]string
		name string
	}{{samples, &fc.Samples, "sample"}, {issuers, &fc.Issuers, "issuer"}} {
		for _, s := range kv.list {
			k, v, ok := strings.Cut(s, "=")
			if !ok || k == "" || v == "" {
				return fail("-%s %q: want KEY=VALUE", kv.name, s)
			}
			if *kv.dst == nil {
				*kv.dst = map[string][]string{}
			}
			(*kv.dst)[k] = append((*kv.dst)[k], v)
		}
	}
	// Re-check what flags may have changed, through the file parser's rules.
	if err := fc.Check("flags"); err != nil {
		return fail("%v", err)
	}
	if len(fc.Formats) == 0 {
		fc.Formats = []string{"table"}
	}
	if err := render.CheckFormats(fc.Formats); err != nil {
		return fail("-format: %v", err)
	}
	if fc.OutputDir == "" && (len(fc.Formats) > 1 || fc.Formats[0] != "table") {
		return fail("-format %s writes files: give -out FOLDER", strings.Join(fc.Formats, ","))
	}
	if fc.Evidence != "" {
		if entries, err := os.ReadDir(fc.Evidence); err == nil && len(entries) > 0 {
			return fail("-evidence %s is not empty: give a new folder", fc.Evidence)
		}
	}
	cfg, err := fc.Build(base, os.Getenv, scpgate.DefaultPolicy, scpgate.DefaultPolicyName)
	if err != nil {
		return fail("%v", err)
	}
	if files, ok := cfg.Audit.(validate.AuditFiles); ok {
		for _, a := range files {
			if _, err := os.Stat(a); err != nil {
				return fail("audit file: %v", err)
			}
		}
	}
	bar := newBar(stderr, *noProgress)
	if bar != nil {
		cfg.Progress = func(done, total int) {
			bar.ChangeMax(total)
			_ = bar.Set(done)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := validate.Run(ctx, cfg)
	if bar != nil {
		_ = bar.Finish()
		_ = bar.Clear()
	}
	if err != nil {
		return fail("%v", err)
	}
	if *quiet {
		fmt.Fprintf(stdout, "scpgate validate: %d %s: %s\n", rep.Outcome.Message, rep.Outcome.Severity, rep.Outcome.Text)
	} else if err := render.Table(stdout, rep); err != nil {
		return fail("%v", err)
	}
	if fc.OutputDir != "" {
		if err := os.MkdirAll(fc.OutputDir, 0o755); err != nil {
			return fail("-out: %v", err)
		}
		paths, err := render.WriteFiles(fc.OutputDir, fc.Formats, rep)
		if err != nil {
			return fail("writing reports: %v", err)
		}
		for _, f := range render.Formats() {
			if p, ok := paths[f]; ok {
				fmt.Fprintf(stdout, "%s report: %s\n", f, p)
			}
		}
	}
	if fc.Evidence != "" {
		data, err := policyBytes(cfg.Policy.File)
		if err != nil {
			return fail("evidence: %v", err)
		}
		b := evidence.Bundle{Report: rep, Policy: data}
		if rep.GatewayPolicy != nil {
			b.GatewayPolicy = rep.GatewayPolicy.Raw
		}
		digest, err := evidence.Write(fc.Evidence, b)
		if err != nil {
			return fail("%v", err)
		}
		fmt.Fprintf(stdout, "evidence: %s (manifest sha256 %s; check with: scpgate validate verify %s)\n", fc.Evidence, digest, fc.Evidence)
	}
	return rep.Outcome.ExitCode
}

// policyBytes reads the policy the checks came from (the built-in one has no file).
func policyBytes(file string) ([]byte, error) {
	if file == scpgate.DefaultPolicyName {
		return scpgate.DefaultPolicy, nil
	}
	return os.ReadFile(file)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// newBar returns a progress bar on stderr when stderr is a terminal, else nil.
func newBar(stderr io.Writer, off bool) *progressbar.ProgressBar {
	f, ok := stderr.(*os.File)
	if off || !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return progressbar.NewOptions(1,
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription("validating"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionClearOnFinish(),
	)
}

// cannotRun maps the shared usage exit code (2) to validate's own (3): 2 means 11412 here.
func cannotRun(code int) int {
	if code == cmdline.ExitUsage {
		return exitCannotRun
	}
	return code
}

func cmdValidateVerify(args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("validate verify", stderr)
	if code, ok := cmdline.Parse(fs, verifyHelp, args, stdout, stderr); !ok {
		return cannotRun(code)
	}
	if fs.NArg() != 1 {
		return cannotRun(cmdline.Usage(stderr, fs, verifyHelp, "give one evidence folder"))
	}
	args = fs.Args()
	n, err := evidence.Verify(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "scpgate validate verify: %v\n", err)
		var ve evidence.VerifyError
		if errors.As(err, &ve) {
			return exitFail
		}
		return exitCannotRun
	}
	fmt.Fprintf(stdout, "%s: %d files verified against %s\n", args[0], n, evidence.ManifestFile)
	return exitOK
}
