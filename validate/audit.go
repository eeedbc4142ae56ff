package validate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/scpgate/scpgate/gateway/audit"
)

// AuditSource gives the gateway's audit records for connection ids.
type AuditSource interface {
	// Lookup returns the records it has for ids (the last record of each id: a tunnel's
	// "close" record supersedes nothing, a denial has only its "decision" record).
	Lookup(ctx context.Context, ids []string) (map[string]GatewayRecord, error)
	// String names the source for the report.
	String() string
}

// AuditFiles reads the gateway's audit files (JSON lines, as gateway/audit writes them).
// Every Lookup rereads them, so records written during the run are seen.
type AuditFiles []string

func (a AuditFiles) String() string { return fmt.Sprint([]string(a)) }

// Lookup scans the files for the ids.
func (a AuditFiles) Lookup(ctx context.Context, ids []string) (map[string]GatewayRecord, error) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	out := map[string]GatewayRecord{}
	for _, path := range a {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if err := scanAudit(path, want, out); err != nil {
			return out, err
		}
	}
	return out, nil
}

func scanAudit(path string, want map[string]bool, out map[string]GatewayRecord) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		rec, err := audit.DecodeLine(line)
		if err != nil || !want[rec.ConnID] {
			// A half-written last line or a foreign line is not this run's business.
			continue
		}
		out[rec.ConnID] = recordOf(rec, string(line))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("audit file %s: %w", path, err)
	}
	return nil
}

// recordOf is the part of an audit record a result shows; line is the record as written.
func recordOf(rec audit.Record, line string) GatewayRecord {
	return GatewayRecord{
		Found: true, ConnID: rec.ConnID, Decision: rec.Decision, Reason: rec.Reason, Group: rec.Group,
		Pattern: rec.Pattern, Address: rec.Address, Status: rec.Status, SNI: rec.SNI, Line: line,
	}
}

// collect waits until the source has a record for every id or wait has passed, polling: the
// gateway writes a tunnel's record when it closes and syncs its file about once a second.
func collect(ctx context.Context, src AuditSource, ids []string, wait time.Duration) (map[string]GatewayRecord, error) {
	if src == nil || len(ids) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := src.Lookup(ctx, ids)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			return got, err
		}
		if len(got) == len(ids) {
			return got, nil
		}
		select {
		case <-ctx.Done():
			// One last look: the wait ended, not the run.
			last, err := src.Lookup(context.WithoutCancel(ctx), ids)
			if err != nil {
				return got, err
			}
			return last, nil
		case <-tick.C:
		}
	}
}
