package agent

import (
	"context"

	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/uploader"
)

// Uploader builds the usage uploader for cfg; while the mode in force is offline it only
// reports that usage data goes through the service connection tool (and its client could not
// dial anyway).
func (s *Site) Uploader(cfg *config.Config, lg *cmtrace.Log) (*uploader.Uploader, error) {
	o := uploader.Options{Config: cfg, Store: s.Store, Log: lg, Now: s.opts.Now,
		Mode: func() string { return s.Mode(cfg) }, Progress: s.opts.Progress}
	c, err := s.Client(cfg)
	if err != nil {
		return nil, err
	}
	o.Client = c
	return uploader.New(o), nil
}

// UploadOnce runs one uploader cycle with its own log (as `scpclient check` does).
func (s *Site) UploadOnce(ctx context.Context, cfg *config.Config, force bool) error {
	lg, err := s.OpenLog(cfg, uploader.LogFileName, uploader.Component)
	if err != nil {
		return err
	}
	defer lg.Close()
	u, err := s.Uploader(cfg, lg)
	if err != nil {
		return err
	}
	return u.Cycle(ctx, force)
}
