//go:build !windows

package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/scpgate/scpgate/gateway/server"
)

// handleSignals maps SIGHUP to a reload of the policy, users and TLS files, SIGUSR1 to an audit
// rotation and SIGUSR2 to an audit reopen (logrotate). The returned function stops it.
func handleSignals(ctx context.Context, srv *server.Server, logger *slog.Logger) func() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-sigs:
				switch sig {
				case syscall.SIGHUP:
					if err := srv.Reload(); err != nil {
						logger.Error("reload failed; the previous files stay in force", "err", err)
					}
					if err := srv.ReloadTLS(); err != nil {
						logger.Error("TLS certificate reload failed; the previous certificate is still served", "err", err)
					}
				case syscall.SIGUSR1:
					if err := srv.RotateAudit(); err != nil {
						logger.Error("audit rotation failed", "err", err)
					}
				case syscall.SIGUSR2:
					if err := srv.ReopenAudit(); err != nil {
						logger.Error("audit reopen failed", "err", err)
					}
				}
			}
		}
	}()
	return func() { signal.Stop(sigs) }
}
