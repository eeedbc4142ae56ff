package tlslisten

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newZapLogger returns a zap logger whose entries go to l's handler: certmagic only speaks zap,
// and the gateway logs everything through log/slog. With quiet, certmagic's info lines become
// debug lines: with static certificate files it obtains and renews nothing, and lines such as
// "started background certificate maintenance" only make an operator wonder what it maintains.
// Its warnings and errors stay as they are.
func newZapLogger(l *slog.Logger, quiet bool) *zap.Logger {
	return zap.New(&slogCore{h: l.Handler(), quiet: quiet})
}

// slogCore is a zapcore.Core that forwards each entry to a slog.Handler.
type slogCore struct {
	h     slog.Handler
	quiet bool // info becomes debug
}

func (c *slogCore) level(l zapcore.Level) slog.Level {
	lv := zapToSlogLevel(l)
	if c.quiet && lv == slog.LevelInfo {
		return slog.LevelDebug
	}
	return lv
}

func zapToSlogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), c.level(l))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	if len(fields) == 0 {
		return c
	}
	return &slogCore{h: c.h.WithAttrs(fieldsToAttrs(fields)), quiet: c.quiet}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, c.level(e.Level), e.Message, 0)
	// certmagic names child loggers of an unnamed root, which zap joins as ".acme_client".
	if name := strings.TrimPrefix(e.LoggerName, "."); name != "" {
		r.AddAttrs(slog.String("logger", name))
	}
	r.AddAttrs(fieldsToAttrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

// fieldsToAttrs encodes zap fields with zap's own map encoder (which knows every field type,
// errors included) and turns the result into slog attributes.
func fieldsToAttrs(fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields))
	// Sorted so that the same entry always logs its attributes in the same order.
	for _, k := range slices.Sorted(maps.Keys(enc.Fields)) {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	return attrs
}
