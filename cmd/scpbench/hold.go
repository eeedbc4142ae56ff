package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"flag"

	"github.com/scpgate/scpgate/internal/procstat"
)

// holdReport is what `scpbench hold` measured.
type holdReport struct {
	Tunnels              int     `json:"tunnels_asked"`
	Held                 int     `json:"tunnels_held"`
	Errors               int     `json:"errors"`
	FirstError           string  `json:"first_error,omitempty"`
	OpenSeconds          float64 `json:"open_seconds"`
	IdleFDs              int     `json:"proxy_idle_fds"`
	HeldFDs              int     `json:"proxy_fds_held"`
	FDsPerTunnel         float64 `json:"fds_per_tunnel"`
	IdleRSSKiB           int64   `json:"proxy_idle_rss_kib"`
	HeldRSSKiB           int64   `json:"proxy_rss_held_kib"`
	KiBPerTunnel         float64 `json:"kib_per_tunnel"`
	Goroutines           int     `json:"proxy_goroutines_held"`
	IdleGoroutines       int     `json:"proxy_goroutines_idle"`
	HeapKiBPerTunnel     float64 `json:"go_heap_inuse_kib_per_tunnel"`
	StackKiBPerTunnel    float64 `json:"go_stack_inuse_kib_per_tunnel"`
	CPUSeconds           float64 `json:"proxy_cpu_s_open_and_echo"`
	CPUPerTunnelUS       float64 `json:"proxy_cpu_us_per_tunnel"`
	FDsAfterClose        int     `json:"proxy_fds_after_close"`
	GoroutinesAfterClose int     `json:"proxy_goroutines_after_close"`
	FDsReturnSeconds     float64 `json:"fds_return_seconds"`
	NoFileLimit          uint64  `json:"client_nofile_limit"`
}

func cmdHold(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scpgate := fs.String("scpgate", "bin/scpgate", "the scpgate binary")
	out := fs.String("out", "bin/bench", "directory for hold.json and the scratch files")
	n := fs.Int("n", 9500, "concurrent tunnels to hold")
	conc := fs.Int("conc", 64, "tunnels opened at a time")
	timeout := fs.Duration("timeout", 5*time.Minute, "the whole run stops after this")
	keep := fs.Bool("keep", false, "keep the scratch directory (scpgate's log and audit file)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *conc < 1 {
		return errors.New("hold: -n and -conc must be positive")
	}
	limit, err := raiseNoFile()
	if err != nil {
		return err
	}
	if uint64(*n)+64 > limit {
		return fmt.Errorf("hold: -n %d needs more open files than this process may have (%d)", *n, limit)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	e, cleanup, err := newEnv(ctx, *scpgate, *out, *keep)
	if err != nil {
		return err
	}
	defer cleanup()

	// The sink runs in its own process so its sockets do not count against this one's limit.
	sinkAddr, err := freePort()
	if err != nil {
		return err
	}
	sk, err := startProc(ctx, "sink", []string{e.self, "sink", "-listen", sinkAddr}, filepath.Join(e.dir, "sink.log"), sinkAddr)
	if err != nil {
		return err
	}
	defer sk.stop()
	cfg, err := writeScpgateConfig(e, e.dir, mustPort(sinkAddr), scpgateVariant{})
	if err != nil {
		return err
	}
	p, err := startProc(ctx, "scpgate", []string{e.scpgate, "serve", "-config", cfg.path}, filepath.Join(e.dir, "scpgate.log"), cfg.listen)
	if err != nil {
		return err
	}
	defer p.stop()
	ep := &endpoint{proxy: cfg.listen, target: fmt.Sprintf("%s:%s", sinkName, portOf(sinkAddr)), timeout: 20 * time.Second}
	ep.init()

	rep := holdReport{Tunnels: *n, NoFileLimit: limit}
	idle, err := procstat.Read(p.pid())
	if err != nil {
		return err
	}
	rep.IdleFDs, rep.IdleRSSKiB = idle.FDs, idle.RSSBytes>>10
	idleRT, err := scrape(ctx, cfg.admin)
	if err != nil {
		return err
	}
	rep.IdleGoroutines = int(idleRT.goroutines)

	start := time.Now()
	conns, errs, first := openMany(ctx, ep, *n, *conc, 1)
	defer closeAll(conns)
	rep.OpenSeconds = time.Since(start).Seconds()
	rep.Errors = errs
	if first != nil {
		rep.FirstError = first.Error()
	}
	// Second echo on every tunnel, now that all are open.
	if rep.Errors == 0 {
		rep.Errors, first = echoAll(ctx, conns, *conc)
		if first != nil {
			rep.FirstError = "second echo: " + first.Error()
		}
	}
	held, err := procstat.Read(p.pid())
	if err != nil {
		return err
	}
	heldRT, err := scrape(ctx, cfg.admin)
	if err != nil {
		return err
	}
	rep.Goroutines = int(heldRT.goroutines)
	rep.Held = len(conns)
	open := max(len(conns), 1)
	rep.HeldFDs, rep.HeldRSSKiB = held.FDs, held.RSSBytes>>10
	rep.FDsPerTunnel = float64(held.FDs-idle.FDs) / float64(open)
	rep.KiBPerTunnel = float64(held.RSSBytes-idle.RSSBytes) / 1024 / float64(open)
	rep.HeapKiBPerTunnel = (heldRT.heapInuse - idleRT.heapInuse) / 1024 / float64(open)
	rep.StackKiBPerTunnel = (heldRT.stackInuse - idleRT.stackInuse) / 1024 / float64(open)
	rep.CPUSeconds = (held.CPU - idle.CPU).Seconds()
	rep.CPUPerTunnelUS = float64(held.CPU-idle.CPU) / float64(time.Microsecond) / float64(open)

	closeAll(conns)
	conns = nil
	closed := time.Now()
	rep.FDsAfterClose, err = waitFDs(ctx, p.pid(), idle.FDs+2, 30*time.Second)
	rep.FDsReturnSeconds = time.Since(closed).Seconds()
	if err != nil {
		rep.FirstError = strings.TrimPrefix(rep.FirstError+"; ", "; ") + err.Error()
	}
	afterRT, err := scrape(ctx, cfg.admin)
	if err != nil {
		return err
	}
	rep.GoroutinesAfterClose = int(afterRT.goroutines)

	js, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(*out, "hold.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "held %d/%d tunnels through scpgate (client RLIMIT_NOFILE %d), %d errors, opened in %.1f s\n",
		rep.Held, *n, limit, rep.Errors, rep.OpenSeconds)
	fmt.Fprintf(stdout, "proxy: %d fds idle, %d held = %.2f per tunnel; RSS %d KiB idle, %d KiB held = %.1f KiB per tunnel\n",
		rep.IdleFDs, rep.HeldFDs, rep.FDsPerTunnel, rep.IdleRSSKiB, rep.HeldRSSKiB, rep.KiBPerTunnel)
	fmt.Fprintf(stdout, "proxy Go runtime per tunnel: %.1f KiB heap in use, %.1f KiB stacks\n", rep.HeapKiBPerTunnel, rep.StackKiBPerTunnel)
	fmt.Fprintf(stdout, "proxy: %d goroutines idle, %d held; CPU %.2f s for opening and two echoes = %.0f µs per tunnel\n",
		rep.IdleGoroutines, rep.Goroutines, rep.CPUSeconds, rep.CPUPerTunnelUS)
	fmt.Fprintf(stdout, "after close: %d fds after %.2f s (idle count %d), %d goroutines\n", rep.FDsAfterClose, rep.FDsReturnSeconds, rep.IdleFDs, rep.GoroutinesAfterClose)
	if *keep {
		fmt.Fprintf(stdout, "scratch kept: %s\n", e.dir)
	}
	fmt.Fprintf(stdout, "written: %s\n", filepath.Join(*out, "hold.json"))
	if rep.Errors > 0 || rep.FirstError != "" {
		return fmt.Errorf("hold: %d errors; first: %s", rep.Errors, rep.FirstError)
	}
	return nil
}

// raiseNoFile raises this process's soft RLIMIT_NOFILE to the hard limit and returns it.
func raiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", rl.Max, err)
	}
	return rl.Cur, nil
}

func echoAll(ctx context.Context, conns []net.Conn, conc int) (int, error) {
	var next, errs atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(conns)) {
					return
				}
				if err := echoAgain(conns[i], echoPayload, 20*time.Second); err != nil {
					errs.Add(1)
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return int(errs.Load()), first
}

// runtimeStats is what the gateway's admin /metrics says about its Go runtime.
type runtimeStats struct {
	goroutines, heapInuse, stackInuse float64
}

// scrape reads the runtime's numbers from the gateway's admin /metrics.
func scrape(ctx context.Context, admin string) (runtimeStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return runtimeStats{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return runtimeStats{}, err
	}
	defer resp.Body.Close()
	v, err := parseSamples(resp.Body, "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes")
	if err != nil {
		return runtimeStats{}, err
	}
	return runtimeStats{goroutines: v[0], heapInuse: v[1], stackInuse: v[2]}, nil
}

// parseSamples finds the unlabelled samples of names in a Prometheus text exposition.
func parseSamples(r io.Reader, names ...string) ([]float64, error) {
	out := make([]float64, len(names))
	found := make([]bool, len(names))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		for i, name := range names {
			v, ok := strings.CutPrefix(sc.Text(), name+" ")
			if !ok {
				continue
			}
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f < 0 {
				return nil, fmt.Errorf("%s %q is not a count", name, v)
			}
			out[i], found[i] = f, true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for i, ok := range found {
		if !ok {
			return nil, fmt.Errorf("no %s sample in /metrics", names[i])
		}
	}
	return out, nil
}

// waitFDs waits until pid has at most want open files, checking every 50 ms up to timeout.
func waitFDs(ctx context.Context, pid, want int, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := procstat.CountFDs(pid)
		if err != nil {
			return 0, err
		}
		if n <= want {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("the proxy still holds %d open files %s after every client closed (idle: ≤ %d)", n, timeout, want)
		case <-tick.C:
		}
	}
}
