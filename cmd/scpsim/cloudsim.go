package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/scpgate/scpgate/internal/cmdline"
	"github.com/scpgate/scpgate/sim/simworld"
)

var cloudsimHelp = cmdline.Help{
	Synopsis: "scpsim cloudsim -dir DIR [-dns 127.0.0.1:0] [-cloud 127.x.y.z] [-log-level info]",
	About: `Runs the simulated Microsoft cloud (HTTPS on port 443 of a loopback address) and its DNS
server until SIGINT or SIGTERM. Writes DIR/ca.pem, DIR/manifest-key.pem and DIR/world.json,
then prints one line of JSON (the same as world.json) to standard output once it is ready.
Loopback addresses only; binding port 443 needs root or 'unshare -rn'.`,
	Example: "scpsim cloudsim -dir /tmp/world",
}

// cmdCloudsim is `scpsim cloudsim`: it runs until SIGINT or SIGTERM.
func cmdCloudsim(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return runCloudsim(ctx, args, stdout, stderr)
}

// runCloudsim runs the world until ctx is done. It is cmdCloudsim with the signals taken out,
// so tests can stop it without signalling their own process.
func runCloudsim(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("cloudsim", stderr)
	dir := fs.String("dir", "", "directory for ca.pem, manifest-key.pem and world.json (created if missing)")
	dnsAddr := fs.String("dns", "127.0.0.1:0", "DNS server address, UDP and TCP (loopback IP:port)")
	cloudAddr := fs.String("cloud", "", `cloud address: a loopback IP (port 443); "" picks a random 127.x.y.z`)
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if code, ok := cmdline.Parse(fs, cloudsimHelp, args, stdout, stderr); !ok {
		return code
	}
	if *dir == "" || fs.NArg() != 0 {
		return cmdline.Usage(stderr, fs, cloudsimHelp, "want -dir DIR and no arguments")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "scpsim cloudsim: -log-level: %v\n", err)
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	w, err := simworld.Start(ctx, simworld.Options{Dir: *dir, DNSAddr: *dnsAddr, CloudAddr: *cloudAddr, Logger: logger})
	if err != nil {
		logger.Error("cannot start the simulated cloud", "err", err)
		if errors.Is(err, simworld.ErrNotLoopback) {
			return exitUsage
		}
		return exitFail
	}
	code := exitOK
	line, err := json.Marshal(w.Info())
	if err == nil {
		// One write of one line: a supervisor reading stdout line by line sees readiness as a
		// single event and never a partial document.
		_, err = stdout.Write(append(line, '\n'))
	}
	if err != nil {
		logger.Error("cannot report readiness on standard output", "err", err)
		code = exitFail
	} else {
		<-ctx.Done()
		logger.Info("stopping the simulated cloud")
	}
	if err := w.Close(); err != nil {
		logger.Error("closing the simulated cloud", "err", err)
		code = exitFail
	}
	return code
}
