package validate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/scpgate/scpgate/gateway/audit"
)

// AuditSource gives the gateway's audit records for connection ids.
type AuditSource interface {
	// Lookup returns the records it has for ids: the latest record of each (a refusal has
	// its "decision" record, a tunnel its "close" record, written when it ends).
	Lookup(ctx context.Context, ids []string) (map[string]GatewayRecord, error)
	// String names the source for the report.
	String() string
}

// AuditFiles reads the gateway's audit files (JSON lines, as gateway/audit writes them).
// Every Lookup rereads them whole; Run reads only what was appended since it started (see
// tail), and rereads them whole only if records are still missing at the end.
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

// tail follows audit files from where they ended when it was made: a run polls for its
// records every 100 ms, and rereading a large audit file each time would cost the gateway's
// disk more than the probes cost its network. A file that shrank (rotated or truncated) is read
// again from its start.
type tail struct {
	files AuditFiles
	off   []int64
	seen  map[string]GatewayRecord // every record appended since the start, by connection id
}

// newTail starts following files at their current ends.
func newTail(files AuditFiles) *tail {
	t := &tail{files: files, off: make([]int64, len(files)), seen: map[string]GatewayRecord{}}
	for i, p := range files {
		if st, err := os.Stat(p); err == nil {
			t.off[i] = st.Size()
		}
	}
	return t
}

func (t *tail) String() string { return t.files.String() }

// Lookup reads what was appended since the last call and answers from every record seen.
func (t *tail) Lookup(ctx context.Context, ids []string) (map[string]GatewayRecord, error) {
	for i, p := range t.files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := t.read(i, p); err != nil {
			return nil, err
		}
	}
	out := make(map[string]GatewayRecord, len(ids))
	for _, id := range ids {
		if r, ok := t.seen[id]; ok {
			out[id] = r
		}
	}
	return out, nil
}

// read consumes the complete lines appended to file i; a half-written last line waits for the
// next call.
func (t *tail) read(i int, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	if st.Size() < t.off[i] {
		t.off[i] = 0
	}
	if _, err := f.Seek(t.off[i], io.SeekStart); err != nil {
		return fmt.Errorf("audit file %s: %w", path, err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			// io.EOF: an incomplete line (or none) is left for the next call.
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("audit file %s: %w", path, err)
		}
		t.off[i] += int64(len(line))
		if rec, err := audit.DecodeLine(line); err == nil && rec.ConnID != "" {
			t.seen[rec.ConnID] = recordOf(rec, string(bytes.TrimRight(line, "\r\n")))
		}
	}
}

// recordOf is the part of an audit record a result shows; line is the record as written.
func recordOf(rec audit.Record, line string) GatewayRecord {
	return GatewayRecord{
		Found: true, ConnID: rec.ConnID, Decision: rec.Decision, Reason: rec.Reason, Group: rec.Group,
		Pattern: rec.Pattern, Address: rec.Address, Status: rec.Status, SNI: rec.SNI, Line: line,
	}
}

// lastLookTime bounds the last read of the audit source after the wait (or the run) ended.
const lastLookTime = time.Second

// lastLook is a context for that read: ctx's values, not its end.
func lastLook(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), lastLookTime)
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
			lctx, cancel := lastLook(ctx)
			last, err := src.Lookup(lctx, ids)
			cancel()
			if err != nil {
				return got, err
			}
			return last, nil
		case <-tick.C:
		}
	}
}
