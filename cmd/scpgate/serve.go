package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/scpgate/scpgate/gateway/server"
	"github.com/scpgate/scpgate/internal/cmdline"
)

var serveHelp = cmdline.Help{
	Synopsis: "scpgate serve -config FILE [-log-level LEVEL] [-ready-json]",
	About: "Runs the gateway: the proxy listeners, the admin listener, policy and htpasswd reloads.\n" +
		"It first runs the checks of 'scpgate check' and stops (exit 1) on any problem.\n" +
		"SIGHUP reloads, SIGTERM or SIGINT drains and stops, SIGUSR1 rotates and SIGUSR2 reopens\n" +
		"the audit file. Logs go to standard error; the audit log where the configuration says.",
	Example: "scpgate serve -config /etc/scpgate/gateway.yaml",
}

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := cmdline.NewFlagSet("serve", stderr)
	configPath := fs.String("config", "", "gateway configuration file (see examples/gateway.yaml)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	readyJSON := fs.Bool("ready-json", false, "print the bound addresses as one JSON line on standard output once listening")
	if code, ok := cmdline.Parse(fs, serveHelp, args, stdout, stderr); !ok {
		return code
	}
	if *configPath == "" || fs.NArg() != 0 {
		return cmdline.Usage(stderr, fs, serveHelp, "want -config FILE and no arguments")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "scpgate serve: -log-level: %v\n", err)
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	// The checks of `scpgate check` first: every problem at once, at file:line:col.
	if printProblems(stderr, server.Check(*configPath)) {
		return exitFail
	}
	cfg, err := server.LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "scpgate serve: %v\n", err)
		return exitFail
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := server.New(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "scpgate serve: %v\n", err)
		return exitFail
	}
	if *readyJSON {
		// One line a supervisor (or `scpgate demo`) reads as the ready event, with the bound
		// addresses: the listeners accept from now on.
		_ = json.NewEncoder(stdout).Encode(srv.Addrs())
	}
	// Operator signals (reload, audit rotation) where the platform has them.
	stopSignals := handleSignals(ctx, srv, logger)
	defer stopSignals()
	if err := srv.Run(ctx); err != nil {
		logger.Error("gateway stopped with an error", "err", err)
		return exitFail
	}
	logger.Info("gateway stopped")
	return exitOK
}
