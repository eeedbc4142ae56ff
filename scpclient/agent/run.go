package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/control"
	"github.com/scpgate/scpgate/scpclient/downloader"
	"github.com/scpgate/scpgate/scpclient/state"
	"github.com/scpgate/scpgate/scpclient/uploader"
)

// Component states in Status.
const (
	StateRunning = "running"
	StateStopped = "stopped"
)

// Runner is `scpclient run`: SMS_DMP_DOWNLOADER, SMS_DMP_UPLOADER and SMS_SERVICE_CONNECTOR
// (the endpoint connectivity check) in one process, each in its own goroutine, restartable one at a time over the control channel. As in ConfigMgr, a change
// of mode in the configuration file takes effect only when SMS_DMP_DOWNLOADER restarts (or the
// process does); the uploader follows the mode in force.
type Runner struct {
	site    *Site
	cfgPath string
	log     *slog.Logger
	started time.Time

	// after is time.After; tests replace it to drive the connectivity check's schedule.
	after func(time.Duration) <-chan time.Time

	mu    sync.Mutex
	ctx   context.Context // the process's; components run under children of it
	comps map[string]*comp
}

// Components are the supervised components, in the order they start and are listed.
func Components() []string {
	return []string{downloader.Component, uploader.Component, ConnectivityComponent}
}

type comp struct {
	name    string
	loop    func(ctx context.Context, c *comp, cfg *config.Config)
	cancel  context.CancelFunc
	done    chan struct{}
	trigger chan struct{}

	mu       sync.Mutex
	started  time.Time
	restarts int
	cycles   int
	lastErr  string
}

func (c *comp) record(err error) {
	c.mu.Lock()
	c.cycles++
	c.lastErr = ""
	if err != nil {
		c.lastErr = err.Error()
	}
	c.mu.Unlock()
}

// NewRunner prepares the components of an opened site; cfgPath is re-read on a restart.
func NewRunner(site *Site, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{site: site, cfgPath: site.cfg.Path(), log: log, comps: map[string]*comp{}, after: time.After}
	r.comps[downloader.Component] = &comp{name: downloader.Component, loop: r.downloaderLoop}
	r.comps[uploader.Component] = &comp{name: uploader.Component, loop: r.uploaderLoop}
	r.comps[ConnectivityComponent] = &comp{name: ConnectivityComponent, loop: r.connectivityLoop}
	return r
}

// Run starts both components and the control channel and returns when ctx ends and every
// component has stopped.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	r.ctx, r.started = ctx, time.Now()
	r.mu.Unlock()
	cfg := r.site.cfg
	srv, err := control.Listen(cfg.DataDir, r, r.log)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	r.site.SetMode(cfg.Mode)
	r.mu.Lock()
	for _, name := range Components() {
		r.start(r.comps[name], cfg)
	}
	r.mu.Unlock()
	<-ctx.Done()
	r.mu.Lock()
	for _, c := range r.comps {
		r.stop(c)
	}
	r.mu.Unlock()
	return <-served
}

// start and stop run with r.mu held.
func (r *Runner) start(c *comp, cfg *config.Config) {
	ctx, cancel := context.WithCancel(r.ctx)
	c.cancel, c.done, c.trigger = cancel, make(chan struct{}), make(chan struct{}, 1)
	c.mu.Lock()
	c.started, c.cycles, c.lastErr = time.Now(), 0, ""
	c.mu.Unlock()
	go func() {
		defer close(c.done)
		c.loop(ctx, c, cfg)
	}()
}

func (r *Runner) stop(c *comp) {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
}

// Restart stops one component, re-reads the configuration and starts the component with it.
// Restarting SMS_DMP_DOWNLOADER puts the configured mode in force.
func (r *Runner) Restart(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.comps[name]
	if !ok {
		return fmt.Errorf("unknown component %q (want one of %s)", name, strings.Join(Components(), ", "))
	}
	cfg, err := config.Load(r.cfgPath)
	if err != nil {
		return fmt.Errorf("%s not restarted: %w", name, err)
	}
	if cfg.HierarchyID != r.site.cfg.HierarchyID || cfg.DataDir != r.site.cfg.DataDir {
		return fmt.Errorf("%s not restarted: hierarchy_id and data_dir changes need a restart of the whole process", name)
	}
	r.log.Info("restarting component", "component", name)
	r.stop(c)
	c.mu.Lock()
	c.restarts++
	c.mu.Unlock()
	if name == downloader.Component {
		r.site.SetMode(cfg.Mode)
	}
	r.start(c, cfg)
	return nil
}

// Trigger runs a component's cycle now ("Check for Updates" in the console).
func (r *Runner) Trigger(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.comps[name]
	if !ok {
		return fmt.Errorf("unknown component %q", name)
	}
	select {
	case c.trigger <- struct{}{}:
	default: // one is already pending
	}
	return nil
}

// Status reports the components and the mode in force.
func (r *Runner) Status() control.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := control.Status{PID: os.Getpid(), Started: r.started, ModeInForce: r.site.Mode(r.site.cfg)}
	for _, name := range Components() {
		c := r.comps[name]
		state := StateStopped
		if c.done != nil {
			select {
			case <-c.done:
			default:
				state = StateRunning
			}
		}
		c.mu.Lock()
		st.Components = append(st.Components, control.Component{Name: name, State: state, Started: c.started,
			Restarts: c.restarts, Cycles: c.cycles, LastError: c.lastErr})
		c.mu.Unlock()
	}
	return st
}

// wait blocks until d passes, the component is triggered (true) or ctx ends (false).
func wait(ctx context.Context, c *comp, d time.Duration) (triggered, ok bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, false
	case <-c.trigger:
		return true, true
	case <-t.C:
		return false, true
	}
}

func (r *Runner) downloaderLoop(ctx context.Context, c *comp, cfg *config.Config) {
	lg, err := r.site.OpenLog(cfg, downloader.LogFileName, downloader.Component)
	if err != nil {
		c.record(err)
		r.log.Error("cannot open the component log", "component", c.name, "err", err)
		<-ctx.Done()
		return
	}
	defer lg.Close()
	lg.Infof("%s started; mode in force: %s", downloader.Component, cfg.Mode)
	_ = r.site.Store.Change(func(f *state.File) { f.Downloader.ModeInForce = cfg.Mode })
	if cfg.Mode == config.ModeOffline {
		lg.Info("The service connection point is in offline mode: it does not contact the cloud. Import updates with the service connection tool (scpclient tool -import).")
		for {
			if _, ok := wait(ctx, c, 365*24*time.Hour); !ok {
				lg.Infof("%s stopped", downloader.Component)
				return
			}
			c.record(nil)
			lg.Info("Check for Updates is not available in offline mode; use the service connection tool.")
		}
	}
	d, err := r.site.Downloader(cfg, lg)
	if err != nil {
		c.record(err)
		lg.Errorf("%s cannot start: %v", downloader.Component, err)
		<-ctx.Done()
		return
	}
	r.loop(ctx, c, lg, cfg.CheckInterval, cfg.RetryBackoff, func(ctx context.Context, _ bool) error {
		_, err := d.Cycle(ctx)
		return err
	}, func(next time.Time) {
		_ = r.site.Store.Change(func(f *state.File) { f.Downloader.NextCheck = next.UTC() })
	})
	lg.Infof("%s stopped", downloader.Component)
}

func (r *Runner) uploaderLoop(ctx context.Context, c *comp, cfg *config.Config) {
	lg, err := r.site.OpenLog(cfg, uploader.LogFileName, uploader.Component)
	if err != nil {
		c.record(err)
		<-ctx.Done()
		return
	}
	defer lg.Close()
	lg.Infof("%s started", uploader.Component)
	u, err := r.site.Uploader(cfg, lg)
	if err != nil {
		c.record(err)
		lg.Errorf("%s cannot start: %v", uploader.Component, err)
		<-ctx.Done()
		return
	}
	r.loop(ctx, c, lg, cfg.UploadInterval, cfg.RetryBackoff, u.Cycle, func(next time.Time) {
		_ = r.site.Store.Change(func(f *state.File) { f.Uploader.NextUpload = next.UTC() })
	})
	lg.Infof("%s stopped", uploader.Component)
}

// loop runs cycle at start-up, then every interval, sooner on a trigger, and after a failure
// again after Backoff (never later than the interval).
func (r *Runner) loop(ctx context.Context, c *comp, lg *cmtrace.Log, interval, backoff time.Duration,
	cycle func(ctx context.Context, force bool) error, next func(time.Time)) {
	failures, forced := 0, false
	for {
		err := cycle(ctx, forced)
		if ctx.Err() != nil {
			return
		}
		c.record(err)
		d := interval
		if err != nil && !errors.Is(err, context.Canceled) {
			failures++
			d = Backoff(backoff, interval, failures)
			lg.Infof("Next attempt in %s", d.Round(time.Millisecond))
		} else {
			failures = 0
		}
		next(time.Now().Add(d))
		var ok bool
		if forced, ok = wait(ctx, c, d); !ok {
			return
		}
	}
}
