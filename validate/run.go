package validate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/scpgate/scpgate/policy"
)

// Run derives the checks from cfg.Policy, probes them through cfg.Proxy with at most
// cfg.Concurrency in flight, matches each probe with the gateway's audit record and judges the
// results. The run never takes longer than cfg.Timeout, plus at most a second per phase for a
// last read of the audit records: checks that could not finish in time fail. An error means
// the run could not start (bad configuration); failed checks are in the report, not the error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	plan, err := Derive(cfg.Policy, cfg.Derive)
	if err != nil {
		return nil, err
	}
	rep := &Report{
		SchemaVersion: SchemaVersion,
		Tool:          userAgent,
		Started:       cfg.Now().UTC(),
		Proxy:         cfg.Proxy,
		User:          cfg.User,
		Policy:        PolicyRef{File: cfg.Policy.File, Version: cfg.Policy.Version},
		Groups:        groupNames(plan),
		Drift:         plan.Drift,
	}
	if cfg.Audit != nil {
		rep.AuditSource = cfg.Audit.String()
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if cfg.AdminURL != "" {
		actx, cancel := context.WithTimeout(runCtx, cfg.CheckTimeout)
		gp, err := FetchGatewayPolicy(actx, cfg.AdminURL)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("validate: %w", err)
		}
		gp.Matches = gp.Version == cfg.Policy.Version
		rep.GatewayPolicy = gp
	}
	p := &prober{cfg: &cfg, now: cfg.Now}
	// Audit files are followed from where they end now: the probes' records come after.
	au := auditor{src: cfg.Audit, wait: cfg.AuditWait}
	if files, ok := cfg.Audit.(AuditFiles); ok {
		au.src, au.full = newTail(files), files
	}

	// The wrong-password probe runs last, alone: the gateway counts failed logins per address
	// and may lock the address out for a while, which must not spoil the other probes.
	var first, last []Check
	for _, c := range plan.Checks {
		if cfg.MustPassOnly && c.Expect != ExpectPass {
			continue
		}
		if c.Creds == CredsWrong {
			last = append(last, c)
		} else {
			first = append(first, c)
		}
	}
	prog := &progress{fn: cfg.Progress, total: len(first) + len(last)}
	results := p.runAll(runCtx, first, cfg.Concurrency, prog)
	if err := au.match(runCtx, results); err != nil {
		return nil, err
	}
	// The IP-literal near misses need the address each name resolved to: the gateway's vetted
	// address from its record, else a lookup of our own.
	var lits []Check
	var skipped []SkippedCheck
	if !cfg.MustPassOnly {
		lits, skipped = p.ipLiteralChecks(runCtx, results)
	}
	rep.Drift.Skipped = append(rep.Drift.Skipped, skipped...)
	prog.add(len(lits))
	more := p.runAll(runCtx, lits, cfg.Concurrency, prog)
	if err := au.match(runCtx, more); err != nil {
		return nil, err
	}
	results = append(results, more...)
	final := p.runAll(runCtx, last, 1, prog)
	if err := au.match(runCtx, final); err != nil {
		return nil, err
	}
	results = append(results, final...)
	// A probe cut by its connection deadline may return a moment before the context's own
	// timer fires: the clock decides.
	if dl, _ := runCtx.Deadline(); errors.Is(runCtx.Err(), context.DeadlineExceeded) || !time.Now().Before(dl) {
		rep.Incomplete = true
	}
	for i := range results {
		judge(&results[i], cfg.Audit != nil)
	}
	rep.Results = results
	rep.Outcome, rep.Summary = outcome(results)
	if gp := rep.GatewayPolicy; gp != nil && !gp.Matches && rep.Outcome.Message == MsgAllPassed {
		rep.Outcome = Outcome{Message: MsgWarning, Severity: "warning", ExitCode: 1, Failed: []string{},
			Text: fmt.Sprintf("all %d checks passed, but the gateway runs policy %.12s, not the checked %.12s", rep.Summary.Total, gp.Version, cfg.Policy.Version)}
	}
	rep.Finished = cfg.Now().UTC()
	rep.DurationMS = float64(rep.Finished.Sub(rep.Started).Microseconds()) / 1000
	return rep, nil
}

func groupNames(plan *Plan) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, r := range plan.Drift.Rules {
		if !seen[r.Group] {
			seen[r.Group] = true
			out = append(out, r.Group)
		}
	}
	return out
}

// progress counts finished checks for the Progress callback.
type progress struct {
	mu          sync.Mutex
	fn          func(done, total int)
	done, total int
}

func (p *progress) add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total += n
	if p.fn != nil && n > 0 {
		p.fn(p.done, p.total)
	}
}

func (p *progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if p.fn != nil {
		p.fn(p.done, p.total)
	}
}

// runAll probes checks with at most n in flight; results keep the checks' order. A check that
// cannot start before ctx ends fails with the reason.
func (p *prober) runAll(ctx context.Context, checks []Check, n int, prog *progress) []Result {
	results := make([]Result, len(checks))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	var interval time.Duration
	if p.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / p.cfg.Rate)
	}
	next := time.Now()
	for i, c := range checks {
		if !pace(ctx, next) {
			results[i] = Result{Check: c, Steps: []Step{}, Error: "not run: the overall timeout ended the run"}
			prog.tick()
			continue
		}
		next = next.Add(interval)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i] = Result{Check: c, Steps: []Step{}, Error: "not run: the overall timeout ended the run"}
			prog.tick()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = p.run(ctx, c)
			prog.tick()
		}()
	}
	wg.Wait()
	return results
}

// auditor matches results with the gateway's records.
type auditor struct {
	src  AuditSource
	full AuditSource // read whole when src (a tail) still misses records; nil: none
	wait time.Duration
}

// pace waits until t; false if ctx ended first.
func pace(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// match attaches the gateway's audit records to results by connection id.
func (a *auditor) match(ctx context.Context, results []Result) error {
	if a.src == nil {
		return nil
	}
	var ids []string
	for _, r := range results {
		if r.Proxy != nil && r.Proxy.ConnID != "" {
			ids = append(ids, r.Proxy.ConnID)
		}
	}
	recs, err := collect(ctx, a.src, ids, a.wait)
	if err == nil && len(recs) < len(ids) && a.full != nil {
		// A file rotated during the run: its earlier part is in another file now.
		lctx, cancel := lastLook(ctx)
		recs, err = a.full.Lookup(lctx, ids)
		cancel()
	}
	if err != nil {
		return fmt.Errorf("validate: reading the gateway's audit records: %w", err)
	}
	for i := range results {
		r := &results[i]
		if r.Proxy == nil {
			continue
		}
		if rec, ok := recs[r.Proxy.ConnID]; ok && r.Proxy.ConnID != "" {
			r.Gateway = &rec
		} else {
			r.Gateway = &GatewayRecord{Found: false, ConnID: r.Proxy.ConnID}
		}
	}
	return nil
}

// ipLiteralChecks builds one "IP literal of the resolved address" check per address of the
// endpoints that were reached.
func (p *prober) ipLiteralChecks(ctx context.Context, results []Result) ([]Check, []SkippedCheck) {
	var checks []Check
	var skipped []SkippedCheck
	seen := map[netip.Addr]bool{}
	for _, r := range results {
		if r.Expect != ExpectPass || r.Probe != ProbeTLS || r.Proxy == nil || r.Proxy.Status != http.StatusOK {
			continue
		}
		addr, src := netip.Addr{}, ""
		if r.Gateway != nil && r.Gateway.Address != "" {
			if ap, err := netip.ParseAddrPort(r.Gateway.Address); err == nil {
				addr, src = ap.Addr(), "the gateway's vetted address for "+r.Host
			}
		}
		if !addr.IsValid() {
			lctx, cancel := context.WithTimeout(ctx, p.cfg.CheckTimeout)
			addrs, err := p.cfg.Resolve(lctx, r.Host)
			cancel()
			if err != nil || len(addrs) == 0 {
				skipped = append(skipped, SkippedCheck{Kind: "ip_literal", Group: r.Group, Pattern: r.Pattern, Host: r.Host,
					Why: "no gateway record with the vetted address and no local answer for " + r.Host})
				continue
			}
			addr, src = addrs[0].Unmap(), "the local resolver's answer for "+r.Host
		}
		if seen[addr] {
			continue
		}
		seen[addr] = true
		d := p.cfg.Policy.Decide(policy.Request{Host: policy.Host{Addr: addr}, Port: r.Port, Method: http.MethodConnect,
			User: p.cfg.User, AuthEnabled: p.cfg.User != ""})
		if d.Allow && !d.WouldDeny {
			skipped = append(skipped, SkippedCheck{Kind: "ip_literal", Group: r.Group, Pattern: r.Pattern, Host: addr.String(),
				Why: fmt.Sprintf("the address is allowed by group %s (%s)", d.Group, d.Pattern)})
			continue
		}
		c := Check{Expect: ExpectBlock, Probe: ProbeTLS, Kind: "ip_literal", Group: r.Group, Pattern: r.Pattern,
			Host: addr.String(), Port: r.Port, Creds: CredsConfigured, ExpectReason: d.Reason, ReportMode: d.WouldDeny,
			Why: "the IP literal of " + src, From: r.ID}
		c.ID = checkID(&c)
		c.ExpectStatus = expectStatus(&c)
		checks = append(checks, c)
	}
	return checks, skipped
}
