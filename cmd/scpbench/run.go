package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scpgate/scpgate/internal/loadstat"
	"github.com/scpgate/scpgate/sim/dnssim"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scpgate := fs.String("scpgate", "bin/scpgate", "the scpgate binary")
	out := fs.String("out", "bin/bench", "directory for bench.md, bench.json and the run's scratch files")
	rounds := fs.Int("rounds", 3, "interleaved rounds (A B C A B C …)")
	only := fs.String("targets", "", "comma-separated subset of targets (default: all)")
	keep := fs.Bool("keep", false, "keep each target's scratch directory (configs, logs, audit)")
	timeout := fs.Duration("timeout", 30*time.Minute, "the whole run stops after this")
	var w workload
	fs.IntVar(&w.setupN, "setup", 2000, "sequential tunnels for the setup latency")
	fs.IntVar(&w.conc, "conc", 32, "concurrency of the rate phase and of opening idle tunnels")
	fs.DurationVar(&w.rateTime, "rate-time", 3*time.Second, "length of the rate phase")
	fs.DurationVar(&w.bulkTime, "bulk-time", 2*time.Second, "length of each bulk phase")
	fs.IntVar(&w.idleN, "idle", 2000, "tunnels held open for the memory measurement")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rounds < 1 || w.setupN < 1 || w.conc < 1 || w.idleN < 1 || w.rateTime <= 0 || w.bulkTime <= 0 {
		return fmt.Errorf("run: -rounds, -setup, -conc, -idle, -rate-time and -bulk-time must be positive")
	}
	w.maxErrs = 50
	targets, err := selectTargets(*only)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	if err := waitForQuietPorts(ctx, stderr); err != nil {
		return err
	}
	e, cleanup, err := newEnv(ctx, *scpgate, *out, *keep)
	if err != nil {
		return err
	}
	defer cleanup()

	results := make([]loadstat.Target, len(targets))
	for i, t := range targets {
		results[i].Name = t.name
	}
	started := time.Now()
	for round := 1; round <= *rounds; round++ {
		for i, t := range targets {
			if ctx.Err() != nil {
				return fmt.Errorf("run stopped: %w", ctx.Err())
			}
			m, err := measure(ctx, e, t, w, round, *keep)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, t.name, err)
			}
			results[i].Rounds = append(results[i].Rounds, m)
			fmt.Fprintf(stderr, "round %d %-22s %s\n", round, t.name, brief(m))
		}
	}
	rs := loadstat.Build(results)
	rep := loadstat.Report{
		Started: started,
		Rounds:  *rounds,
		Workload: []string{
			fmt.Sprintf("setup: dial to the end of the 200 (to the end of the TLS handshake inside the tunnel for the tls-in-tunnel and sni rows), %d sequential tunnels", w.setupN),
			fmt.Sprintf("rate: %d concurrent clients for %s, each tunnel echoes 32 bytes once; proxy CPU per tunnel over this phase", w.conc, w.rateTime),
			fmt.Sprintf("bulk: %s each through 1 and 8 tunnels, up and down; CPU s/GiB over the four phases", w.bulkTime),
			fmt.Sprintf("idle: RSS and fd growth of the proxy over %d open tunnels (each echoed once)", w.idleN),
		},
		Notes: []string{
			fmt.Sprintf("%d CPUs, %s/%s, %s; client, sink and proxy share the CPUs; the machine is shared, so numbers are noisy", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version()),
			"scpgate: audit file on, CONNECT to a name answered by a DNS server on loopback (resolve-and-vet path), no rate limit; squid: logging off; tinyproxy: LogLevel Critical",
		},
		Results:  rs,
		Verdicts: loadstat.Verdicts(rs),
	}
	md := rep.Markdown()
	js, err := rep.JSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "bench.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "bench.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprint(stdout, md)
	fmt.Fprintf(stdout, "\nwritten: %s, %s\n", filepath.Join(*out, "bench.md"), filepath.Join(*out, "bench.json"))
	return nil
}

func selectTargets(only string) ([]target, error) {
	all := allTargets()
	if only == "" {
		return all, nil
	}
	var out []target
	for name := range strings.SplitSeq(only, ",") {
		found := false
		for _, t := range all {
			if t.name == strings.TrimSpace(name) {
				out = append(out, t)
				found = true
			}
		}
		if !found {
			names := make([]string, len(all))
			for i, t := range all {
				names[i] = t.name
			}
			return nil, fmt.Errorf("run: -targets: unknown target %q (known: %s)", name, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// newEnv prepares what every target shares: the scratch directory, the DNS server, the TLS
// certificate and the htpasswd file. cleanup stops the DNS server and removes the scratch
// (unless keep).
func newEnv(ctx context.Context, scpgate, out string, keep bool) (*env, func(), error) {
	for _, bin := range []string{"squid", "tinyproxy"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, nil, fmt.Errorf("%s is not installed (make bench installs it: apt-get install %s)", bin, bin)
		}
	}
	if _, err := os.Stat(scpgate); err != nil {
		return nil, nil, fmt.Errorf("-scpgate: %w (make bench builds it)", err)
	}
	scpgate, _ = filepath.Abs(scpgate)
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp(out, "run-")
	if err != nil {
		return nil, nil, err
	}
	dir, _ = filepath.Abs(dir)
	dns := dnssim.New(nil)
	if err := dns.Start(ctx, "127.0.0.1:0"); err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("dns: %w", err)
	}
	cleanup := func() {
		_ = dns.Close()
		if !keep {
			_ = os.RemoveAll(dir)
		}
	}
	lo := netip.MustParseAddr("127.0.0.1")
	dns.SetA(sinkName, lo)
	dns.SetA(sniName, lo)
	e := &env{dir: dir, scpgate: scpgate, self: self, dnsAddr: dns.Addr()}
	if e.cert, err = newBenchCert(dir, sinkName, sniName, proxyName); err != nil {
		cleanup()
		return nil, nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(benchPass), bcrypt.DefaultCost)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	e.htpasswd = filepath.Join(dir, "users.htpasswd")
	if err := os.WriteFile(e.htpasswd, []byte(benchUser+":"+string(hash)+"\n"), 0o644); err != nil {
		cleanup()
		return nil, nil, err
	}
	return e, cleanup, nil
}

// measure starts a fresh sink and target, runs the workload on it, and stops both.
func measure(ctx context.Context, e *env, t target, w workload, round int, keep bool) (map[string]float64, error) {
	dir := filepath.Join(e.dir, fmt.Sprintf("round%d-%s", round, strings.ReplaceAll(t.name, "+", "-")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	var sinkTLS *tls.Config
	if t.tlsSink {
		sinkTLS = e.cert.serverConfig()
	}
	s, err := startSink("127.0.0.1:0", sinkTLS)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	p, ep, err := t.start(ctx, e, dir, s.Addr().String())
	if err != nil {
		return nil, err
	}
	ep.init()
	r := &runner{ep: ep, w: w}
	if p != nil {
		defer p.stop()
		r.pid = p.pid()
	}
	m := map[string]float64{}
	// Idle first, on the fresh process: memory the other phases grew would hide the cost.
	if t.phases.idle {
		r.idle(ctx, m)
	}
	r.setup(ctx, m)
	if t.phases.rate {
		r.rate(ctx, m)
	}
	if t.phases.bulk {
		r.bulk(ctx, m)
	}
	m[loadstat.ErrorsInRound] = float64(r.errs)
	return m, nil
}

func brief(m map[string]float64) string {
	var b strings.Builder
	for _, k := range loadstat.Metrics() {
		if v, ok := m[k.Key]; ok {
			fmt.Fprintf(&b, " %s=%s", k.Key, fmt.Sprintf(k.Format, v))
		}
	}
	return b.String()
}
