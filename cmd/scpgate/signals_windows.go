//go:build windows

package main

import (
	"context"
	"log/slog"

	"github.com/scpgate/scpgate/gateway/server"
)

// handleSignals does nothing on Windows, which has no SIGHUP, SIGUSR1 or SIGUSR2: the gateway
// reloads changed files through its file watcher and rotates the audit file by size.
func handleSignals(context.Context, *server.Server, *slog.Logger) func() { return func() {} }
