package main

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scpgate/scpgate/internal/loadstat"
	"github.com/scpgate/scpgate/internal/procstat"
)

// workload is the measurement plan every target gets, identical for all of them.
type workload struct {
	setupN   int           // sequential tunnels for the setup latency
	conc     int           // concurrency of the rate phase
	rateTime time.Duration // length of the rate phase
	bulkTime time.Duration // length of each bulk phase
	idleN    int           // tunnels held open for the memory measurement
	maxErrs  int           // a phase stops after this many errors
}

var echoPayload = []byte("scpbench-echo-0123456789abcdef!!") // 32 bytes

// runner measures one running target; pid is the proxy's (0: no proxy, the direct row).
type runner struct {
	ep   *endpoint
	pid  int
	w    workload
	errs int
}

func (r *runner) sample() (procstat.Sample, bool) {
	if r.pid == 0 {
		return procstat.Sample{}, false
	}
	s, err := procstat.Read(r.pid)
	return s, err == nil
}

// setup opens and closes setupN tunnels one after another and records p50 and p99.
func (r *runner) setup(ctx context.Context, out map[string]float64) {
	samples := make([]time.Duration, 0, r.w.setupN)
	errs := 0
	for i := 0; i < r.w.setupN && errs < r.w.maxErrs && ctx.Err() == nil; i++ {
		c, d, err := r.ep.open()
		if err != nil {
			errs++
			continue
		}
		_ = c.Close()
		samples = append(samples, d)
	}
	r.errs += errs
	if len(samples) == 0 {
		return
	}
	out[loadstat.SetupP50] = float64(loadstat.Percentile(samples, 50)) / float64(time.Microsecond)
	out[loadstat.SetupP99] = float64(loadstat.Percentile(samples, 99)) / float64(time.Microsecond)
}

// rate runs conc workers for rateTime, each opening a tunnel, echoing once and closing it.
func (r *runner) rate(ctx context.Context, out map[string]float64) {
	before, ok := r.sample()
	var done, errs atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, r.w.rateTime)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range r.w.conc {
		wg.Go(func() {
			for ctx.Err() == nil && errs.Load() < int64(r.w.maxErrs) {
				c, _, err := r.ep.open()
				if err == nil {
					err = echo(c, echoPayload, r.ep.timeout)
					_ = c.Close()
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	r.errs += int(errs.Load())
	n := done.Load()
	if n == 0 {
		return
	}
	out[loadstat.RateTPS] = float64(n) / elapsed.Seconds()
	if after, ok2 := r.sample(); ok && ok2 {
		out[loadstat.CPUPerTunnel] = float64(after.CPU-before.CPU) / float64(time.Microsecond) / float64(n)
	}
}

// bulk moves bytes for bulkTime through 1 and 8 tunnels, up and down, and records MiB/s and the
// proxy's CPU seconds per GiB over all four phases.
func (r *runner) bulk(ctx context.Context, out map[string]float64) {
	before, ok := r.sample()
	var total int64
	for _, p := range []struct {
		key     string
		streams int
		up      bool
	}{
		{loadstat.Bulk1Up, 1, true}, {loadstat.Bulk1Down, 1, false},
		{loadstat.Bulk8Up, 8, true}, {loadstat.Bulk8Down, 8, false},
	} {
		if ctx.Err() != nil {
			return
		}
		n, elapsed := r.bulkPhase(ctx, p.streams, p.up)
		total += n
		if n > 0 {
			out[p.key] = float64(n) / (1 << 20) / elapsed.Seconds()
		}
	}
	if after, ok2 := r.sample(); ok && ok2 && total > 0 {
		out[loadstat.CPUPerGiB] = (after.CPU - before.CPU).Seconds() / (float64(total) / (1 << 30))
	}
}

func (r *runner) bulkPhase(ctx context.Context, streams int, up bool) (int64, time.Duration) {
	conns := make([]net.Conn, 0, streams)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	mode := []byte{modeGenerate}
	if up {
		mode[0] = modeDiscard
	}
	for range streams {
		c, _, err := r.ep.open()
		if err == nil {
			_, err = c.Write(mode)
		}
		if err != nil {
			r.errs++
			return 0, 0
		}
		conns = append(conns, c)
	}
	var total atomic.Int64
	start := time.Now()
	end := start.Add(r.w.bulkTime)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			buf := make([]byte, 256<<10)
			_ = c.SetDeadline(end)
			for ctx.Err() == nil {
				var n int
				var err error
				if up {
					n, err = c.Write(buf)
				} else {
					n, err = c.Read(buf)
				}
				total.Add(int64(n))
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return total.Load(), time.Since(start)
}

// idle opens idleN tunnels (conc at a time), echoes once on each so every one is established
// end to end, and records the proxy's RSS and fd growth per tunnel; then closes them all.
func (r *runner) idle(ctx context.Context, out map[string]float64) {
	before, ok := r.sample()
	if !ok {
		return
	}
	conns, errs, _ := openMany(ctx, r.ep, r.w.idleN, r.w.conc, r.w.maxErrs)
	defer closeAll(conns)
	r.errs += errs
	after, ok := r.sample()
	if !ok || len(conns) == 0 {
		return
	}
	n := float64(len(conns))
	out[loadstat.IdleKiB] = float64(after.RSSBytes-before.RSSBytes) / 1024 / n
	out[loadstat.IdleFDs] = float64(after.FDs-before.FDs) / n
}

// openMany opens n tunnels with conc workers, each echoing once; it returns those that worked,
// the number of failures and the first failure.
func openMany(ctx context.Context, ep *endpoint, n, conc, maxErrs int) ([]net.Conn, int, error) {
	var mu sync.Mutex
	var first error
	conns := make([]net.Conn, 0, n)
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil && next.Add(1) <= int64(n) && errs.Load() < int64(maxErrs) {
				c, _, err := ep.open()
				if err == nil {
					if err = echo(c, echoPayload, ep.timeout); err != nil {
						_ = c.Close()
					}
				}
				if err != nil {
					errs.Add(1)
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return conns, int(errs.Load()), first
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}
