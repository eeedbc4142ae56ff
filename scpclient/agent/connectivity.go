package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/scpgate/scpgate"
	"github.com/scpgate/scpgate/policy"
	"github.com/scpgate/scpgate/scpclient/cmtrace"
	"github.com/scpgate/scpgate/scpclient/config"
	"github.com/scpgate/scpgate/scpclient/state"
	"github.com/scpgate/scpgate/validate"
)

// The endpoint connectivity check is ConfigMgr's "Validate internet access". ConfigMgr runs it
// inside SMS_SERVICE_CONNECTOR and raises the status messages 11410/11411/11412 under that
// component's name, so its log lines carry that name too: an admin filtering CMTrace or the
// status messages by component finds them where ConfigMgr puts them. The log file is the one
// ConfigMgr writes.
const (
	ConnectivityComponent   = "SMS_SERVICE_CONNECTOR"
	ConnectivityLogFileName = "EndpointConnectivityCheckWorker.log"
)

// ErrNoProxy is why the connectivity check cannot run without proxy.url: it checks what the
// gateway decides.
var ErrNoProxy = errors.New("no proxy.url configured: the endpoint connectivity check probes the endpoints through the gateway")

// ConnectivityConfig is the validator's configuration for cfg: the client's own proxy URL,
// credentials and CA bundle (read as the HTTP client reads them), the must-pass checks of the
// enabled groups of connectivity_check.policy (else the built-in endpoints.yaml), and the
// site's dialer, which refuses every connection while the site is offline.
func (s *Site) ConnectivityConfig(cfg *config.Config) (validate.Config, error) {
	cc := cfg.ConnectivityCheck
	if cfg.Proxy.URL == "" {
		return validate.Config{}, ErrNoProxy
	}
	pool, err := LoadPool(cfg.TrustedCAFile, cfg.Proxy.CAFile)
	if err != nil {
		return validate.Config{}, err
	}
	pw, err := cfg.ProxyPassword()
	if err != nil {
		return validate.Config{}, err
	}
	var pol *policy.Policy
	if cc.Policy != "" {
		pol, err = policy.Load(cc.Policy)
	} else {
		pol, err = policy.Parse(scpgate.DefaultPolicyName, scpgate.DefaultPolicy)
	}
	if err != nil {
		return validate.Config{}, fmt.Errorf("connectivity_check.policy: %w", err)
	}
	return validate.Config{
		Proxy: cfg.Proxy.URL, ProxyRootCAs: pool, RootCAs: pool,
		User: cfg.Proxy.User, Password: pw,
		Policy:       pol,
		Derive:       validate.DeriveOptions{Groups: cc.Groups, Samples: cc.Samples},
		Timeout:      cc.Timeout,
		MustPassOnly: true,
		Dial:         s.dialer(cfg),
		Now:          s.opts.Now,
	}, nil
}

// CheckConnectivity runs one endpoint connectivity check, writes it to lg (one line per
// endpoint, then the outcome with its status message id) and records it in the state file.
func (s *Site) CheckConnectivity(ctx context.Context, cfg *config.Config, lg *cmtrace.Log) (*validate.Report, error) {
	if s.Mode(cfg) == config.ModeOffline {
		return nil, ErrOffline
	}
	vc, err := s.ConnectivityConfig(cfg)
	if err != nil {
		lg.Errorf("Endpoint connectivity check cannot run: %v", err)
		return nil, err
	}
	lg.Infof("Endpoint connectivity check started: proxy %s, policy %s (%.12s)", vc.Proxy, vc.Policy.File, vc.Policy.Version)
	rep, err := validate.Run(ctx, vc)
	if err != nil {
		lg.Errorf("Endpoint connectivity check cannot run: %v", err)
		return nil, err
	}
	// A stop or restart cuts the probes short: their failures say nothing about the endpoints.
	if ctx.Err() != nil {
		lg.Info("Endpoint connectivity check stopped before it finished; no outcome recorded.")
		return nil, ctx.Err()
	}
	LogReport(lg, rep)
	_ = s.Store.Change(func(f *state.File) {
		f.Connectivity.LastRun = rep.Finished
		f.Connectivity.Message = rep.Outcome.Message
		f.Connectivity.Outcome = rep.Outcome.Text
	})
	return rep, nil
}

// LogReport writes a report as ConfigMgr's EndpointConnectivityCheckWorker.log would hold it:
// one line per endpoint (passed ones as information, failed ones as errors, with the gateway's
// reason, its connection id and ConfigMgr's own reading), then the outcome line.
func LogReport(lg *cmtrace.Log, rep *validate.Report) {
	for _, r := range rep.Results {
		line := EndpointLine(r)
		switch r.Status {
		case validate.StatusPass:
			lg.Info(line)
		case validate.StatusWarn:
			lg.Warning(line)
		default:
			lg.Error(line)
		}
	}
	for _, d := range rep.Drift.Rules {
		if d.Coverage == "not_sampled" {
			lg.Infof("Not checked: %s (group %s): a wildcard is checked through sample names in connectivity_check.samples", d.Pattern, d.Group)
		}
	}
	level, line := OutcomeLine(rep.Outcome)
	switch level {
	case levelInfo:
		lg.Info(line)
	case levelWarning:
		lg.Warning(line)
	default:
		lg.Error(line)
	}
}

// EndpointLine is one endpoint's log line: host:port, the verdict, the gateway's reason and
// connection id when it refused, and ConfigMgr's own reading of the same answer.
func EndpointLine(r validate.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d (group %s): %s", r.Host, r.Port, r.Group, strings.ToUpper(string(r.Status)))
	if p := r.Proxy; p != nil && p.Status != 200 {
		fmt.Fprintf(&b, "; gateway answered %d", p.Status)
		if p.Reason != "" {
			fmt.Fprintf(&b, " reason=%s", p.Reason)
		}
	}
	if p := r.Proxy; p != nil && p.ConnID != "" {
		fmt.Fprintf(&b, " conn=%s", p.ConnID)
	}
	if r.Detail != "" {
		fmt.Fprintf(&b, "; %s", r.Detail)
	}
	fmt.Fprintf(&b, "; ConfigMgr would read: %s", r.ConfigMgr.Reading)
	return b.String()
}

// Log levels of an outcome line.
const (
	levelInfo = iota
	levelWarning
	levelError
)

// OutcomeLine maps an outcome to its log level and line: 11410 informational, 11411 warning,
// 11412 (or anything unknown) error.
func OutcomeLine(o validate.Outcome) (level int, line string) {
	switch o.Message {
	case validate.MsgAllPassed:
		level = levelInfo
	case validate.MsgWarning:
		level = levelWarning
	default:
		level = levelError
	}
	line = fmt.Sprintf("Status message %d (%s): %s", o.Message, o.Severity, o.Text)
	if len(o.Failed) > 0 {
		line += " Failed: " + strings.Join(o.Failed, ", ")
	}
	return level, line
}

// connectivityLoop is SMS_SERVICE_CONNECTOR: the check at start-up and every interval, and on
// a trigger. Offline it never runs (and opens no connection): it only says so.
func (r *Runner) connectivityLoop(ctx context.Context, c *comp, cfg *config.Config) {
	lg, err := r.site.OpenLog(cfg, ConnectivityLogFileName, ConnectivityComponent)
	if err != nil {
		c.record(err)
		<-ctx.Done()
		return
	}
	defer lg.Close()
	every := cfg.ConnectivityCheck.Every()
	offline := r.site.Mode(cfg) == config.ModeOffline
	switch {
	case offline:
		lg.Info("The service connection point is in offline mode: the endpoint connectivity check does not run.")
	case every == 0:
		lg.Info("Endpoint connectivity check: no schedule (connectivity_check.interval is 0); it runs on a trigger only.")
	default:
		lg.Infof("Endpoint connectivity check: at start-up and every %s.", every)
	}
	r.schedule(ctx, c, every > 0 && !offline, every, func(ctx context.Context) error {
		// The mode in force may have changed since (a restart of SMS_DMP_DOWNLOADER).
		if r.site.Mode(cfg) == config.ModeOffline {
			lg.Info("The endpoint connectivity check is not available in offline mode.")
			return nil
		}
		rep, err := r.site.CheckConnectivity(ctx, cfg, lg)
		if err != nil {
			return err
		}
		if rep.Outcome.Message != validate.MsgAllPassed {
			return fmt.Errorf("status message %d: %s", rep.Outcome.Message, rep.Outcome.Text)
		}
		return nil
	}, func(next time.Time) {
		_ = r.site.Store.Change(func(f *state.File) { f.Connectivity.NextRun = next.UTC() })
	})
	lg.Infof("%s stopped", ConnectivityComponent)
}

// schedule runs fn at start-up and every interval after it when scheduled, and on every
// trigger; without a schedule only on a trigger. next hears when the next scheduled run is
// (the zero time: none). The waits use r.after, so tests drive the clock.
func (r *Runner) schedule(ctx context.Context, c *comp, scheduled bool, every time.Duration,
	fn func(context.Context) error, next func(time.Time)) {
	run := scheduled
	for {
		if run {
			err := fn(ctx)
			if ctx.Err() != nil {
				return
			}
			c.record(err)
		}
		var tick <-chan time.Time
		if scheduled {
			tick = r.after(every)
			next(r.site.opts.Now().Add(every))
		} else {
			next(time.Time{})
		}
		select {
		case <-ctx.Done():
			return
		case <-c.trigger:
		case <-tick:
		}
		run = true
	}
}
