// Package audit writes the gateway's audit trail: one JSON object per line, one line per
// connection when it ends (Event "close") and one at the decision for denials (Event "decision").
//
// Durability. Lines are buffered in memory and handed to the OS when the buffer fills and on every
// sync point; a sync point flushes and fsyncs the file. Sync points happen every SyncInterval
// (default 1s), on Sync, Rotate, Reopen and Close, so a crash loses at most about one interval of
// records (README.md, "Audit": "at most the last second"). Standard output is flushed but never fsynced.
//
// Never blocking the data path. Write encodes the record in the caller's goroutine and queues the
// line for a single writer goroutine that owns the file; a slow disk or a stalled stdout reader
// therefore never holds a connection's goroutine. The queue is bounded (QueueSize); when it is full
// Write waits at most MaxBlock and then drops the record. Every record that does not reach the OS
// (queue full, written after Close, lost in a failed write) is counted in Stats.Dropped and
// reported through the logger, so nothing is lost silently.
//
// Rotation and signals. The gateway should map:
//
//   - SIGUSR1 → Rotate: scpgate rotates by itself (path → path.1 → … → path.MaxBackups).
//   - SIGUSR2 → Reopen: for logrotate's "create" mode (rename, then postrotate
//     `kill -USR2 <pid>`). SIGHUP is taken by policy reload; calling Reopen there too is harmless.
//
// Reopen is a convenience, not a requirement: at every periodic sync the writer checks whether path
// still names the open file and reopens it if the file was renamed or deleted, and it re-reads the
// file size so that logrotate's "copytruncate" mode (which needs no signal because the file is
// opened O_APPEND) keeps size-based rotation correct.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Event values.
const (
	EventDecision = "decision" // written at once for a denial
	EventClose    = "close"    // written when a tunnel or request ends
)

// Decision values.
const (
	DecisionAllow     = "allow"
	DecisionDeny      = "deny"
	DecisionWouldDeny = "would_deny"
)

// Record is one audit line.
type Record struct {
	Time       time.Time `json:"time"`
	ConnID     string    `json:"conn_id"`
	Client     string    `json:"client"`
	User       string    `json:"user,omitempty"`
	Method     string    `json:"method"`
	Host       string    `json:"host"`
	Port       uint16    `json:"port"`
	Target     string    `json:"target,omitempty"`  // the raw target, only when it did not parse
	Address    string    `json:"address,omitempty"` // vetted ip:port that was dialed
	Group      string    `json:"group,omitempty"`
	Pattern    string    `json:"pattern,omitempty"`
	Mode       string    `json:"mode,omitempty"`
	Decision   string    `json:"decision"` // "allow", "deny", "would_deny"
	Reason     string    `json:"reason,omitempty"`
	Status     int       `json:"status"`
	SNI        string    `json:"sni,omitempty"`
	BytesUp    int64     `json:"bytes_up"`
	BytesDown  int64     `json:"bytes_down"`
	DurationMS float64   `json:"duration_ms"`
	Event      string    `json:"event"` // "decision" or "close"
}

// Config configures a Log. The zero value writes to stdout.
type Config struct {
	Path         string        `yaml:"path"`          // "-" or "" = stdout
	SyncInterval time.Duration `yaml:"sync_interval"` // default 1s
	MaxBytes     int64         `yaml:"max_bytes"`     // rotate when the file reaches this size; 0 = never
	MaxBackups   int           `yaml:"max_backups"`   // rotated files kept (path.1 … path.N); default 5
	Logger       *slog.Logger  `yaml:"-"`             // default slog.Default()

	// QueueSize bounds the records waiting for the writer goroutine; default 4096.
	QueueSize int `yaml:"-"`
	// MaxBlock is how long Write waits for room in a full queue before dropping the record;
	// default 100ms, negative = never wait.
	MaxBlock time.Duration `yaml:"-"`
}

// Stats are cumulative counters.
type Stats struct {
	Records     uint64 // records handed to the OS
	Bytes       uint64 // bytes handed to the OS
	Rotations   uint64
	Reopens     uint64 // by Reopen or because the file was moved away
	Syncs       uint64 // sync points completed (flush, plus fsync for a file)
	WriteErrors uint64 // failed encode/write/fsync/open operations
	Dropped     uint64 // records that never reached the OS
}

// ErrClosed is returned by operations on a closed Log.
var ErrClosed = errors.New("audit: log is closed")

const (
	defaultSyncInterval = time.Second
	defaultMaxBackups   = 5
	defaultQueueSize    = 4096
	defaultMaxBlock     = 100 * time.Millisecond
	// flushAt bounds the in-memory buffer: beyond it lines go to the OS without waiting for the
	// next sync point, so memory stays bounded under bursts.
	flushAt = 64 << 10
	// errLogEvery rate-limits repeated write-error logs (a full disk would otherwise log per flush).
	errLogEvery = 10 * time.Second
)

type op int

const (
	opSync op = iota
	opRotate
	opReopen
	opClose
)

type request struct {
	op    op
	reply chan error
}

// Log is an audit log. All methods are safe for concurrent use.
type Log struct {
	path       string // "" for stdout
	maxBytes   int64
	maxBackups int
	maxBlock   time.Duration
	logger     *slog.Logger

	queue chan []byte
	ctrl  chan request
	done  chan struct{} // closed when the writer goroutine has exited

	// closeMu makes "not closed → enqueue" atomic with respect to Close, so a record accepted by
	// Write is always in the queue before Close drains it.
	closeMu  sync.RWMutex
	closed   bool
	closeErr error       // set by the writer goroutine before done is closed
	warned   atomic.Bool // "write after close" logged once

	records, bytes, rotations, reopens, syncs, writeErrors, dropped atomic.Uint64

	// Owned by the writer goroutine.
	tick          <-chan time.Time
	stopTick      func()
	out           io.Writer
	file          *os.File // nil for stdout, or after a failed reopen
	buf           []byte
	bufRecords    int
	size          int64 // bytes in the current file (flushed)
	dirty         bool  // written since the last fsync
	midLine       bool  // a failed write left a partial line in the file
	rotateBlocked bool  // a rotation failed; retry after the next tick, not on every record
	lastErrLog    time.Time
	reportedDrops uint64
}

// New opens (creating it with mode 0640 if needed, appending) the audit file and starts the
// writer goroutine. Close must be called to stop it.
func New(cfg Config) (*Log, error) {
	interval := cfg.SyncInterval
	if interval == 0 {
		interval = defaultSyncInterval
	}
	if interval < 0 {
		return nil, fmt.Errorf("audit: sync interval %v is negative", interval)
	}
	t := time.NewTicker(interval)
	l, err := newLog(cfg, nil, t.C)
	if err != nil {
		t.Stop()
		return nil, err
	}
	l.stopTick = t.Stop
	go l.run()
	return l, nil
}

// newLog builds a Log without starting it. out replaces stdout and tick replaces the ticker, so
// tests can observe output and drive sync points without sleeping.
func newLog(cfg Config, out io.Writer, tick <-chan time.Time) (*Log, error) {
	if cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("audit: max bytes %d is negative", cfg.MaxBytes)
	}
	if cfg.MaxBackups < 0 {
		return nil, fmt.Errorf("audit: max backups %d is negative", cfg.MaxBackups)
	}
	if cfg.QueueSize < 0 {
		return nil, fmt.Errorf("audit: queue size %d is negative", cfg.QueueSize)
	}
	l := &Log{
		maxBytes:   cfg.MaxBytes,
		maxBackups: cfg.MaxBackups,
		maxBlock:   cfg.MaxBlock,
		logger:     cfg.Logger,
		ctrl:       make(chan request),
		done:       make(chan struct{}),
		tick:       tick,
		stopTick:   func() {},
		buf:        make([]byte, 0, flushAt+4096),
	}
	if l.maxBackups == 0 {
		l.maxBackups = defaultMaxBackups
	}
	if l.maxBlock == 0 {
		l.maxBlock = defaultMaxBlock
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	qs := cfg.QueueSize
	if qs == 0 {
		qs = defaultQueueSize
	}
	l.queue = make(chan []byte, qs)

	if cfg.Path == "" || cfg.Path == "-" {
		l.out = out
		if l.out == nil {
			l.out = os.Stdout
		}
		return l, nil
	}
	l.path = cfg.Path
	f, size, err := openFile(l.path)
	if err != nil {
		return nil, err
	}
	l.file, l.out, l.size = f, f, size
	return l, nil
}

func openFile(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: cannot open log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("audit: cannot stat log file: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("audit: log file %q is not a regular file", path)
	}
	return f, st.Size(), nil
}

// Write queues one record. A zero Time is set to now; times are written in UTC. It returns at once
// unless the queue is full, and then waits at most MaxBlock before dropping (and counting) it.
func (l *Log) Write(r Record) {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	// Control characters are escaped: one record is always one line.
	line, ok := r.appendJSON(make([]byte, 0, 384))
	if !ok {
		_, err := json.Marshal(r) // says why
		l.writeErrors.Add(1)
		l.dropped.Add(1)
		l.logger.Error("audit: cannot encode record; dropped", "conn_id", r.ConnID, "err", err)
		return
	}
	line = append(line, '\n')

	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		if !l.warned.Swap(true) {
			l.logger.Warn("audit: record written after close; dropped", "conn_id", r.ConnID)
		}
		return
	}
	select {
	case l.queue <- line:
		return
	default:
	}
	if l.maxBlock > 0 {
		t := time.NewTimer(l.maxBlock)
		defer t.Stop()
		select {
		case l.queue <- line:
			return
		case <-t.C:
		}
	}
	// Reported by the writer goroutine at the next tick, so a burst logs once, not per record.
	l.dropped.Add(1)
}

// Sync flushes queued records and fsyncs the file.
func (l *Log) Sync() error { return l.do(opSync) }

// Rotate renames path to path.1 (shifting path.1 → path.2 … and discarding what falls beyond
// MaxBackups) and opens a fresh path. Records are never lost: until the new file is open they go
// to the old one. A no-op for stdout.
func (l *Log) Rotate() error { return l.do(opRotate) }

// Reopen closes and reopens path, for external rotation that renamed the file. A no-op for stdout.
func (l *Log) Reopen() error { return l.do(opReopen) }

func (l *Log) do(o op) error {
	l.closeMu.RLock()
	closed := l.closed
	l.closeMu.RUnlock()
	if closed {
		return ErrClosed
	}
	req := request{op: o, reply: make(chan error, 1)}
	select {
	case l.ctrl <- req:
	case <-l.done:
		return ErrClosed
	}
	return <-req.reply
}

// Close writes every record accepted so far, fsyncs, closes the file and stops the writer
// goroutine. Later Writes are dropped and counted; Close is idempotent.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		<-l.done
		return l.closeErr
	}
	l.closed = true
	l.closeMu.Unlock()

	req := request{op: opClose, reply: make(chan error, 1)}
	l.ctrl <- req
	<-req.reply
	<-l.done
	return l.closeErr
}

// Stats returns the counters.
func (l *Log) Stats() Stats {
	return Stats{
		Records:     l.records.Load(),
		Bytes:       l.bytes.Load(),
		Rotations:   l.rotations.Load(),
		Reopens:     l.reopens.Load(),
		Syncs:       l.syncs.Load(),
		WriteErrors: l.writeErrors.Load(),
		Dropped:     l.dropped.Load(),
	}
}

// run is the writer goroutine: the only code that touches the file and the buffer.
func (l *Log) run() {
	defer close(l.done)
	for {
		select {
		case line := <-l.queue:
			l.add(line)
		case <-l.tick:
			// Everything Write accepted before this point is already in the queue.
			l.drain()
			l.syncPoint()
			l.checkFile()
			l.rotateBlocked = false
			l.reportDrops()
		case req := <-l.ctrl:
			l.drain()
			var err error
			switch req.op {
			case opSync:
				err = l.syncPoint()
			case opRotate:
				err = l.rotate()
			case opReopen:
				err = l.reopen()
			case opClose:
				err = l.shutdown()
			}
			if req.op == opClose {
				l.closeErr = err // read by Close callers after <-done
				req.reply <- err
				return
			}
			req.reply <- err
		}
	}
}

func (l *Log) drain() {
	for {
		select {
		case line := <-l.queue:
			l.add(line)
		default:
			return
		}
	}
}

func (l *Log) add(line []byte) {
	if l.midLine && len(l.buf) == 0 {
		// Terminate the partial line a failed write left behind so this record stays parseable.
		l.buf = append(l.buf, '\n')
	}
	l.buf = append(l.buf, line...)
	l.bufRecords++
	if len(l.buf) >= flushAt {
		l.flush()
	}
	// A record is never split across files: rotation happens after it.
	if l.maxBytes > 0 && l.file != nil && !l.rotateBlocked && l.size+int64(len(l.buf)) >= l.maxBytes {
		if err := l.rotate(); err != nil {
			l.rotateBlocked = true
			l.logError("audit: size rotation failed; writing on to the current file", err)
		}
	}
}

// flush hands the buffer to the OS. On failure the buffer is discarded (keeping memory bounded)
// and the records that did not make it are counted as dropped.
func (l *Log) flush() error {
	if len(l.buf) == 0 {
		return nil
	}
	if l.path != "" && l.file == nil {
		// A previous reopen failed; try again before giving up on these records.
		if err := l.reopen(); err != nil {
			l.dropped.Add(uint64(l.bufRecords))
			l.buf, l.bufRecords = l.buf[:0], 0
			return err
		}
	}
	lead := l.midLine // buf starts with the '\n' added by add
	n, err := l.out.Write(l.buf)
	if n > 0 {
		l.dirty = true
		l.size += int64(n)
		l.bytes.Add(uint64(n))
		l.midLine = l.buf[n-1] != '\n'
	}
	if err == nil {
		l.records.Add(uint64(l.bufRecords))
		l.buf, l.bufRecords = l.buf[:0], 0
		return nil
	}
	done := bytes.Count(l.buf[:n], []byte{'\n'})
	if lead && n > 0 {
		done--
	}
	l.records.Add(uint64(done))
	l.dropped.Add(uint64(l.bufRecords - done))
	l.writeErrors.Add(1)
	l.logError("audit: write failed; records dropped", err, "dropped", l.bufRecords-done)
	l.buf, l.bufRecords = l.buf[:0], 0
	return fmt.Errorf("audit: write: %w", err)
}

func (l *Log) syncPoint() error {
	err := l.flush()
	if l.file != nil && l.dirty {
		if serr := l.file.Sync(); serr != nil {
			l.writeErrors.Add(1)
			l.logError("audit: fsync failed", serr)
			err = errors.Join(err, fmt.Errorf("audit: fsync: %w", serr))
		} else {
			l.dirty = false
		}
	}
	if err == nil {
		l.syncs.Add(1)
	}
	return err
}

// checkFile runs at each tick: if path no longer names the open file (renamed or deleted by an
// external rotator), reopen it; otherwise refresh the size in case the file was truncated.
func (l *Log) checkFile() {
	if l.path == "" {
		return
	}
	if l.file == nil {
		if err := l.reopen(); err != nil {
			l.logError("audit: cannot reopen log file", err)
		}
		return
	}
	cur, err := l.file.Stat()
	if err != nil {
		return
	}
	st, err := os.Stat(l.path)
	if err == nil && os.SameFile(cur, st) {
		l.size = cur.Size() // the tick flushed first, so the buffer is empty
		return
	}
	l.logger.Info("audit: log file was moved or removed; reopening", "path", l.path)
	if err := l.reopen(); err != nil {
		l.logError("audit: cannot reopen log file", err)
	}
}

func (l *Log) reopen() error {
	if l.path == "" {
		return nil
	}
	var ferr error
	if l.file != nil { // with no file, flush is what called us
		ferr = l.syncPoint()
	}
	f, size, err := openFile(l.path)
	if err != nil {
		l.writeErrors.Add(1)
		return errors.Join(ferr, err)
	}
	l.useFile(f, size)
	l.reopens.Add(1)
	return ferr
}

// useFile makes f (already size bytes long) the file written from now on, closing the old one.
func (l *Log) useFile(f *os.File, size int64) {
	if l.file != nil {
		l.file.Close()
	}
	l.file, l.out, l.size = f, f, size
	l.midLine = false
}

func (l *Log) backupName(i int) string {
	if i == 0 {
		return l.path
	}
	return l.path + "." + strconv.Itoa(i)
}

func (l *Log) rotate() error {
	if l.path == "" {
		return nil
	}
	serr := l.syncPoint()
	for i := l.maxBackups - 1; i >= 1; i-- {
		if err := os.Rename(l.backupName(i), l.backupName(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.writeErrors.Add(1)
			return errors.Join(serr, fmt.Errorf("audit: rotate: %w", err))
		}
	}
	if err := os.Rename(l.path, l.backupName(1)); err != nil {
		l.writeErrors.Add(1)
		return errors.Join(serr, fmt.Errorf("audit: rotate: %w", err))
	}
	syncDir(filepath.Dir(l.path))
	f, size, err := openFile(l.path)
	if err != nil {
		// Keep writing to the old descriptor (now path.1): nothing is lost, and the next tick's
		// checkFile retries the open.
		l.writeErrors.Add(1)
		return errors.Join(serr, err)
	}
	l.useFile(f, size)
	l.rotations.Add(1)
	return serr
}

// syncDir makes renames durable; best effort, as some file systems refuse fsync on directories.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func (l *Log) shutdown() error {
	l.stopTick()
	err := l.syncPoint()
	if l.file != nil {
		if cerr := l.file.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("audit: close: %w", cerr))
		}
		l.file = nil
	}
	l.reportDrops()
	return err
}

func (l *Log) reportDrops() {
	d := l.dropped.Load()
	if d != l.reportedDrops {
		l.logger.Warn("audit: records dropped", "since_last_report", d-l.reportedDrops, "total", d)
		l.reportedDrops = d
	}
}

func (l *Log) logError(msg string, err error, args ...any) {
	now := time.Now()
	if !l.lastErrLog.IsZero() && now.Sub(l.lastErrLog) < errLogEvery {
		return
	}
	l.lastErrLog = now
	l.logger.Error(msg, append([]any{"path", l.path, "err", err}, args...)...)
}
