//go:build linux

package auditreport

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkReportBinary runs the real `scpgate report` over generated audit files of growing
// size (AUDITREPORT_BENCH_MIB, default "128,1024" MiB) and reports lines per second (wall and
// CPU time) and the child's peak RSS from rusage: memory must stay flat as the file grows. Run it with
// -benchtime 1x (make bench-report); it needs a few GiB of free space in the temp directory.
func BenchmarkReportBinary(b *testing.B) {
	if testing.Short() {
		b.Skip("generates GiB-sized files")
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "scpgate")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/scpgate/scpgate/cmd/scpgate").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	sizes := os.Getenv("AUDITREPORT_BENCH_MIB")
	if sizes == "" {
		sizes = "128,1024"
	}
	for _, s := range strings.Split(sizes, ",") {
		mib, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || mib <= 0 {
			b.Fatalf("AUDITREPORT_BENCH_MIB: %q is not a size in MiB", s)
		}
		b.Run(s+"MiB", func(b *testing.B) {
			path := filepath.Join(dir, "audit-"+s+".log")
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			lines, err := genAudit(f, int64(mib)<<20)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				b.Fatal(err)
			}
			defer os.Remove(path)
			b.ResetTimer()
			var peak int64
			var elapsed, cpu time.Duration
			for b.Loop() {
				cmd := exec.Command(bin, "report", "-audit", path, "-format", "json", "-policy", filepath.Join("..", "endpoints.yaml"))
				start := time.Now()
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("scpgate report: %v\n%.2000s", err, out)
				}
				elapsed += time.Since(start)
				ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
				peak = max(peak, ru.Maxrss) // KiB on Linux
				cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
			b.ReportMetric(float64(lines)*float64(b.N)/elapsed.Seconds(), "lines/s")
			// CPU time is less sensitive than wall time to other work on a shared machine.
			b.ReportMetric(float64(lines)*float64(b.N)/cpu.Seconds(), "lines/cpu-s")
			b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
			b.ReportMetric(float64(lines), "lines")
		})
	}
}
