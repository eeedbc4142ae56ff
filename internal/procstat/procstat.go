// Package procstat reads what Linux's /proc says about a process: CPU time, resident memory
// and open file descriptors. The load tool measures proxies with it.
package procstat

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat. It is 100 on every Linux
// architecture Go supports (the kernel's USER_HZ, fixed in its ABI).
const userHZ = 100

// Sample is one reading of a process.
type Sample struct {
	CPU      time.Duration // user + system time so far
	RSSBytes int64
	FDs      int
}

// Read samples pid: CPU from /proc/<pid>/stat, RSS from /proc/<pid>/status and the number of
// entries in /proc/<pid>/fd.
func Read(pid int) (Sample, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return Sample{}, err
	}
	cpu, err := ParseStatCPU(string(stat))
	if err != nil {
		return Sample{}, fmt.Errorf("%s/stat: %w", dir, err)
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return Sample{}, err
	}
	rss, err := ParseStatusRSS(string(status))
	if err != nil {
		return Sample{}, fmt.Errorf("%s/status: %w", dir, err)
	}
	fds, err := CountFDs(pid)
	if err != nil {
		return Sample{}, err
	}
	return Sample{CPU: cpu, RSSBytes: rss, FDs: fds}, nil
}

// CountFDs returns how many file descriptors pid has open.
func CountFDs(pid int) (int, error) {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// ParseStatCPU returns utime+stime from the text of /proc/<pid>/stat. The command name (field
// 2) is in parentheses and may itself contain spaces and parentheses, so fields are counted
// from the last ')'.
func ParseStatCPU(stat string) (time.Duration, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("no command name in parentheses")
	}
	// After ")": field 3 (state) onwards; utime and stime are fields 14 and 15.
	fields := strings.Fields(stat[end+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("CPU time %q is not a tick count", f)
		}
		ticks += n
	}
	if ticks > int64(1<<62)/int64(time.Second/userHZ) {
		return 0, fmt.Errorf("CPU time of %d ticks is out of range", ticks)
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// ParseStatusRSS returns VmRSS in bytes from the text of /proc/<pid>/status.
func ParseStatusRSS(status string) (int64, error) {
	for line := range strings.SplitSeq(status, "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q is not \"<n> kB\"", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 || kb > 1<<40 {
			return 0, fmt.Errorf("VmRSS %q is not a size", f[0])
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line")
}
