package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

const (
	// timeWaitQuiet is how many sockets in TIME_WAIT a run starts with at most: a previous run
	// leaves about 100,000 on loopback for 60 s, and while they hold the ephemeral ports the
	// listeners of this run may find none free.
	timeWaitQuiet = 20000
	// timeWaitMax bounds the wait: TIME_WAIT lasts 60 s on Linux.
	timeWaitMax = 75 * time.Second
)

// countTimeWait counts the sockets in TIME_WAIT (state 06) in /proc/net/tcp-format text.
func countTimeWait(r io.Reader) (int, error) {
	n := 0
	sc := bufio.NewScanner(r)
	sc.Scan() // the header line
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) > 3 && string(fields[3]) == "06" {
			n++
		}
	}
	return n, sc.Err()
}

func timeWaitNow() int {
	total := 0
	for _, p := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		n, _ := countTimeWait(f)
		_ = f.Close()
		total += n
	}
	return total
}

// waitForQuietPorts waits (at most timeWaitMax) until the sockets a previous run left in
// TIME_WAIT have mostly expired. The kernel offers no event for it: it looks once a second.
func waitForQuietPorts(ctx context.Context, log io.Writer) error {
	n := timeWaitNow()
	if n <= timeWaitQuiet {
		return nil
	}
	fmt.Fprintf(log, "waiting for %d sockets in TIME_WAIT (a previous run's) to expire, at most %s\n", n, timeWaitMax)
	deadline := time.NewTimer(timeWaitMax)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			fmt.Fprintf(log, "still %d sockets in TIME_WAIT; going on\n", timeWaitNow())
			return nil
		case <-tick.C:
			if timeWaitNow() <= timeWaitQuiet {
				return nil
			}
		}
	}
}
