package auditreport

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/scpgate/scpgate/gateway/audit"
	"github.com/scpgate/scpgate/policy"
)

// Defaults for the bounds in Options.
const (
	DefaultClientExactLimit = 1000
	DefaultMaxEndpoints     = 10000
	DefaultMaxDenied        = 10000
	DefaultMaxRefusals      = 100
	DefaultMalformedShown   = 20

	// maxLine bounds one audit line; a longer one is counted as malformed and skipped.
	maxLine = 1 << 20
	// readBuffer is the read buffer per file; real lines are a few hundred bytes.
	readBuffer = 64 << 10
	// maxReasons bounds the distinct reason codes kept per row; more fold into "other".
	maxReasons = 32
)

// Options configure an Aggregator. The zero value reads everything with the default bounds and
// no policy to compare against.
type Options struct {
	// Policy is the policy the report compares the traffic with: the disabled group that would
	// allow a denied name, and the enabled rules that allowed nothing. nil skips both.
	Policy *policy.Policy
	// Since (inclusive) and Until (exclusive) limit the records by their time; zero = open.
	Since, Until time.Time

	// ClientExactLimit is how many distinct clients a row counts exactly before it switches to
	// an estimate (HyperLogLog, about 1.6 % standard error).
	ClientExactLimit int
	// MaxEndpoints, MaxDenied and MaxRefusals bound the rows kept; records for further rows are
	// counted as omitted, so memory stays bounded whatever the input.
	MaxEndpoints, MaxDenied, MaxRefusals int
	// MalformedShown is how many malformed lines are listed with file:line (all are counted).
	MalformedShown int
}

func (o *Options) defaults() {
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&o.ClientExactLimit, DefaultClientExactLimit},
		{&o.MaxEndpoints, DefaultMaxEndpoints},
		{&o.MaxDenied, DefaultMaxDenied},
		{&o.MaxRefusals, DefaultMaxRefusals},
		{&o.MalformedShown, DefaultMalformedShown},
	} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
}

// Aggregator folds audit records into per-endpoint, per-denied-name and per-reason rows. Its
// memory depends on the number of rows (bounded by Options), never on the number of records.
// It is not safe for concurrent use.
type Aggregator struct {
	opts Options

	inputs    []Input
	malformed []Malformed
	totals    Totals
	clients   clientSet
	first     time.Time
	last      time.Time

	endpoints map[endpointKey]*endpointAgg
	denied    map[deniedKey]*deniedAgg
	refusals  map[string]*refusalAgg
	// ruleHits counts the allowed connections of every rule of an enabled group of the policy.
	ruleHits map[ruleKey]int64

	omittedEndpoints, omittedDenied, omittedRefusals int64
}

type endpointKey struct {
	host           string
	port           uint16
	group, pattern string
}

type deniedKey struct {
	host string
	port uint16
}

type ruleKey struct{ group, pattern string }

type endpointAgg struct {
	successes, failures, wouldDeny int64
	failReasons, wouldReasons      map[string]int64
	bytesUp, bytesDown             int64
	clients                        clientSet
	lastSuccess, lastSeen          time.Time
}

type deniedAgg struct {
	count, wouldDeny    int64
	reasons             map[string]int64
	group, pattern      string // the rule that matched but refused (port, method, user, path)
	clients             clientSet
	firstSeen, lastSeen time.Time
}

type refusalAgg struct {
	count    int64
	clients  clientSet
	lastSeen time.Time
}

// New returns an empty Aggregator.
func New(opts Options) *Aggregator {
	opts.defaults()
	a := &Aggregator{
		opts:      opts,
		endpoints: make(map[endpointKey]*endpointAgg),
		denied:    make(map[deniedKey]*deniedAgg),
		refusals:  make(map[string]*refusalAgg),
		ruleHits:  make(map[ruleKey]int64),
	}
	if p := opts.Policy; p != nil {
		for _, g := range p.Groups {
			if !g.Enabled {
				continue
			}
			for _, h := range g.Hosts {
				a.ruleHits[ruleKey{g.Name, h}] = 0
			}
			for _, pr := range g.Addresses {
				a.ruleHits[ruleKey{g.Name, pr.String()}] = 0
			}
		}
	}
	return a
}

// ReadFile streams one audit file (plain or gzip-compressed, detected by its first bytes) into
// the aggregate. Malformed lines are counted, never fatal; the error is for a file that cannot be
// opened or read to the end (the lines read before it still count).
func (a *Aggregator) ReadFile(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return a.Read(ctx, path, f)
}

// Read streams audit lines from r, naming them name in the report (file:line).
func (a *Aggregator) Read(ctx context.Context, name string, r io.Reader) (err error) {
	a.inputs = append(a.inputs, Input{File: name})
	in := &a.inputs[len(a.inputs)-1]
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s: %w", name, err)
			in.Error = err.Error()
		}
	}()
	br := bufio.NewReaderSize(r, readBuffer)
	if magic, _ := br.Peek(2); isGzipMagic(magic) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("starts like a gzip file but is not one (%w); an audit file is JSON lines or their gzip", err)
		}
		defer gz.Close()
		in.Compressed = true
		br = bufio.NewReaderSize(gz, readBuffer)
	}
	lr := lineReader{br: br}
	for {
		line, ok, tooLong, err := lr.next()
		if ok {
			in.Lines++
			if tooLong {
				a.bad(in, fmt.Sprintf("line longer than %d bytes", maxLine))
			} else {
				a.line(in, line)
			}
			if in.Lines%4096 == 0 {
				if cerr := ctx.Err(); cerr != nil {
					return cerr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// isGzipMagic reports whether b starts with gzip's two magic bytes (RFC 1952); a JSON line
// never does.
func isGzipMagic(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

// lineReader splits a stream into lines of at most maxLine bytes without holding more than one
// line in memory.
type lineReader struct {
	br   *bufio.Reader
	long []byte // a line longer than br's buffer, assembled
}

// next returns the next line without its line ending; ok is false only at the end of the
// input. A line longer than maxLine is consumed and reported as tooLong. err is io.EOF after the
// last line.
func (lr *lineReader) next() (line []byte, ok, tooLong bool, err error) {
	lr.long = lr.long[:0]
	for {
		frag, err := lr.br.ReadSlice('\n')
		full := errors.Is(err, bufio.ErrBufferFull)
		switch {
		case tooLong:
		case len(lr.long)+len(frag) > maxLine:
			tooLong, lr.long = true, lr.long[:0]
		case full || len(lr.long) > 0:
			lr.long = append(lr.long, frag...)
			frag = lr.long
		}
		if full {
			continue
		}
		if tooLong {
			return nil, true, true, err
		}
		return bytes.TrimRight(frag, "\r\n"), len(frag) > 0, false, err
	}
}

func (a *Aggregator) line(in *Input, line []byte) {
	if len(bytes.TrimSpace(line)) == 0 {
		in.Blank++
		return
	}
	rec, err := audit.DecodeLine(line)
	if err != nil {
		a.bad(in, err.Error())
		return
	}
	in.Records++
	if !a.inPeriod(rec.Time) {
		in.OutsidePeriod++
		return
	}
	a.Add(rec)
}

func (a *Aggregator) bad(in *Input, why string) {
	in.Malformed++
	if len(a.malformed) < a.opts.MalformedShown {
		a.malformed = append(a.malformed, Malformed{File: in.File, Line: in.Lines, Error: why})
	}
}

func (a *Aggregator) inPeriod(t time.Time) bool {
	if !a.opts.Since.IsZero() && t.Before(a.opts.Since) {
		return false
	}
	if !a.opts.Until.IsZero() && !t.Before(a.opts.Until) {
		return false
	}
	return true
}

// kind is where a record is counted.
type kind int

const (
	kindEndpoint kind = iota // the policy allowed the destination: a success or a failure reaching it
	kindDenied               // the policy refused the destination itself
	kindRefusal              // refused before the destination was judged: auth, rate, bad request...
)

func classify(r *audit.Record) kind {
	switch policy.Reason(r.Reason) {
	case policy.ReasonNoRule, policy.ReasonPortNotAllowed, policy.ReasonDeniedPattern,
		policy.ReasonIPLiteral, policy.ReasonMethodNotAllowed, policy.ReasonUserNotAllowed,
		policy.ReasonPathNotAllowed:
		return kindDenied
	}
	if r.Reason == "" || r.Group != "" {
		return kindEndpoint
	}
	return kindRefusal
}

// Add folds one record into the aggregate (Read calls it for every record in the period).
func (a *Aggregator) Add(rec audit.Record) {
	a.totals.Records++
	if !rec.Time.IsZero() && (a.first.IsZero() || rec.Time.Before(a.first)) {
		a.first = rec.Time
	}
	if rec.Time.After(a.last) {
		a.last = rec.Time
	}
	a.totals.BytesUp += rec.BytesUp
	a.totals.BytesDown += rec.BytesDown
	client := clientIP(rec.Client)
	a.clients.add(client, a.opts.ClientExactLimit)
	passed := rec.Reason == "" || rec.Decision == audit.DecisionWouldDeny
	if passed {
		a.totals.Passed++
	} else {
		a.totals.Refused++
	}

	switch classify(&rec) {
	case kindEndpoint:
		a.addEndpoint(&rec, client, passed)
	case kindDenied:
		a.addDenied(&rec, client)
	default:
		a.addRefusal(&rec, client)
	}
}

func (a *Aggregator) addEndpoint(rec *audit.Record, client string, passed bool) {
	k := endpointKey{rec.Host, rec.Port, rec.Group, rec.Pattern}
	e := a.endpoints[k]
	if e == nil {
		if len(a.endpoints) >= a.opts.MaxEndpoints {
			a.omittedEndpoints++
			a.countRule(rec, passed)
			return
		}
		e = &endpointAgg{}
		a.endpoints[k] = e
	}
	switch {
	case rec.Decision == audit.DecisionWouldDeny:
		e.successes++
		e.wouldDeny++
		e.wouldReasons = bump(e.wouldReasons, rec.Reason)
	case passed:
		e.successes++
		if rec.Time.After(e.lastSuccess) {
			e.lastSuccess = rec.Time
		}
	default:
		e.failures++
		e.failReasons = bump(e.failReasons, rec.Reason)
	}
	a.countRule(rec, passed)
	e.bytesUp += rec.BytesUp
	e.bytesDown += rec.BytesDown
	e.clients.add(client, a.opts.ClientExactLimit)
	if rec.Time.After(e.lastSeen) {
		e.lastSeen = rec.Time
	}
}

// countRule credits an allowed connection to the rule that allowed it, if the compared policy
// has that rule in an enabled group.
func (a *Aggregator) countRule(rec *audit.Record, passed bool) {
	if !passed || rec.Decision != audit.DecisionAllow {
		return
	}
	k := ruleKey{rec.Group, rec.Pattern}
	if n, ok := a.ruleHits[k]; ok {
		a.ruleHits[k] = n + 1
	}
}

func (a *Aggregator) addDenied(rec *audit.Record, client string) {
	k := deniedKey{rec.Host, rec.Port}
	d := a.denied[k]
	if d == nil {
		if len(a.denied) >= a.opts.MaxDenied {
			a.omittedDenied++
			return
		}
		d = &deniedAgg{firstSeen: rec.Time}
		a.denied[k] = d
	}
	d.count++
	if rec.Decision == audit.DecisionWouldDeny {
		d.wouldDeny++
	}
	d.reasons = bump(d.reasons, rec.Reason)
	if rec.Group != "" && d.group == "" {
		d.group, d.pattern = rec.Group, rec.Pattern
	}
	d.clients.add(client, a.opts.ClientExactLimit)
	if rec.Time.Before(d.firstSeen) {
		d.firstSeen = rec.Time
	}
	if rec.Time.After(d.lastSeen) {
		d.lastSeen = rec.Time
	}
}

func (a *Aggregator) addRefusal(rec *audit.Record, client string) {
	r := a.refusals[rec.Reason]
	if r == nil {
		if len(a.refusals) >= a.opts.MaxRefusals {
			a.omittedRefusals++
			return
		}
		r = &refusalAgg{}
		a.refusals[rec.Reason] = r
	}
	r.count++
	r.clients.add(client, a.opts.ClientExactLimit)
	if rec.Time.After(r.lastSeen) {
		r.lastSeen = rec.Time
	}
}

// bump counts k in m (allocating m on first use), folding reasons beyond maxReasons into "other".
func bump(m map[string]int64, k string) map[string]int64 {
	if m == nil {
		m = make(map[string]int64, 2)
	}
	if _, ok := m[k]; !ok && len(m) >= maxReasons {
		k = "other"
	}
	m[k]++
	return m
}

// clientIP is the address part of an "ip:port" client: distinct clients are machines, not
// connections (every connection has a new source port).
func clientIP(client string) string {
	if host, _, err := net.SplitHostPort(client); err == nil {
		return host
	}
	return client
}
