// Package cmtrace writes and parses Configuration Manager's site-server trace format, the one
// SMS_Executive components such as SMS_DMP_DOWNLOADER write:
//
//	message~~  $$<COMPONENT><MM-DD-YYYY HH:MM:SS.mmm+BIAS><thread=N (0xHEX)>
//
// BIAS is minutes in the Windows sense (UTC = local time + bias, so US Pacific daylight time is
// +420). A log rolls over to a single ".lo_" history file when it would grow past MaxSize
// (250,000 bytes by default, ConfigMgr's documented default). The format has no severity field:
// warnings and errors are marked in the message ("WARNING: ", "ERROR: "), as ConfigMgr does.
package cmtrace

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMaxSize is ConfigMgr's default maximum log size before rollover.
const DefaultMaxSize = 250000

// HistorySuffix replaces ".log" in the name of the rolled-over file.
const HistorySuffix = ".lo_"

const (
	sep        = "~~  $$<"
	timeLayout = "01-02-2006 15:04:05.000"
)

// Log is one component's log file. Its methods are safe for concurrent use.
type Log struct {
	mu        sync.Mutex
	path      string
	component string
	f         *os.File
	size      int64
	max       int64
	now       func() time.Time
	thread    int
	mirror    io.Writer
}

// Option adjusts Open.
type Option func(*Log)

// WithMaxSize sets the rollover size in bytes.
func WithMaxSize(n int64) Option { return func(l *Log) { l.max = n } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(l *Log) { l.now = now } }

// WithThread sets the thread number written on every line (default: the process id, since
// goroutines have no stable thread id).
func WithThread(n int) Option { return func(l *Log) { l.thread = n } }

// WithMirror also writes every message to w as "COMPONENT: message", for a console.
func WithMirror(w io.Writer) Option { return func(l *Log) { l.mirror = w } }

// Truncate starts the file empty instead of appending (ServiceConnectionTool.log is overwritten
// on every run).
func Truncate() Option { return func(l *Log) { l.size = -1 } }

// Open opens (creating folders as needed) the log at path for component.
func Open(path, component string, opts ...Option) (*Log, error) {
	if component == "" || strings.ContainsAny(component, "<>\r\n") {
		return nil, fmt.Errorf("cmtrace: bad component name %q", component)
	}
	l := &Log{path: path, component: component, max: DefaultMaxSize, now: time.Now, thread: os.Getpid()}
	for _, o := range opts {
		o(l)
	}
	if l.max <= 0 {
		return nil, errors.New("cmtrace: max size must be positive")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("cmtrace: log folder: %w", err)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if l.size < 0 {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cmtrace: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cmtrace: %w", err)
	}
	l.f, l.size = f, st.Size()
	return l, nil
}

// Path is the log file's path.
func (l *Log) Path() string { return l.path }

// Info logs an informational message.
func (l *Log) Info(msg string) { l.write(msg) }

// Warning logs msg marked "WARNING: ".
func (l *Log) Warning(msg string) { l.write(mark("WARNING: ", msg)) }

// Error logs msg marked "ERROR: ".
func (l *Log) Error(msg string) { l.write(mark("ERROR: ", msg)) }

// Infof, Warningf and Errorf format their message first.
func (l *Log) Infof(format string, a ...any)    { l.Info(fmt.Sprintf(format, a...)) }
func (l *Log) Warningf(format string, a ...any) { l.Warning(fmt.Sprintf(format, a...)) }
func (l *Log) Errorf(format string, a ...any)   { l.Error(fmt.Sprintf(format, a...)) }

func mark(prefix, msg string) string {
	if strings.HasPrefix(msg, prefix) {
		return msg
	}
	return prefix + msg
}

// Format renders one line (with its newline) for e.
func Format(e Entry) string {
	return fmt.Sprintf("%s%s%s><%s%s><thread=%d (0x%X)>\n", oneLine(e.Message), sep, e.Component,
		e.Time.Format(timeLayout), formatBias(e.Bias), e.Thread, e.Thread)
}

// oneLine keeps a record on one line: the format's own line marker "~~" stands for newlines.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.NewReplacer("\n", "~~", "\r", "~~").Replace(s)
}

func formatBias(b int) string {
	if b < 0 {
		return strconv.Itoa(b)
	}
	return "+" + strconv.Itoa(b)
}

// BiasOf is the Windows bias of t's zone: minutes to add to local time to get UTC.
func BiasOf(t time.Time) int {
	_, off := t.Zone()
	return -off / 60
}

func (l *Log) write(msg string) {
	t := l.now()
	line := Format(Entry{Message: msg, Component: l.component, Time: t, Bias: BiasOf(t), Thread: l.thread})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mirror != nil {
		fmt.Fprintf(l.mirror, "%s: %s\n", l.component, oneLine(msg))
	}
	if l.f == nil {
		return
	}
	if l.size > 0 && l.size+int64(len(line)) > l.max {
		l.rollover()
	}
	n, _ := l.f.WriteString(line)
	l.size += int64(n)
}

// rollover moves the log to its .lo_ history file (replacing the previous one) and starts an
// empty log. If that fails the log keeps growing rather than losing lines.
func (l *Log) rollover() {
	hist := strings.TrimSuffix(l.path, filepath.Ext(l.path)) + HistorySuffix
	if err := l.f.Close(); err != nil {
		return
	}
	_ = os.Rename(l.path, hist)
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		l.f = nil
		return
	}
	st, err := f.Stat()
	if err == nil {
		l.size = st.Size()
	}
	l.f = f
}

// Close closes the file; later writes are dropped (but still mirrored).
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
