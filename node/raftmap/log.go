package raftmap

import (
	"bytes"
	"fmt"
	"io"
	stdlog "log"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	logging "github.com/ipfs/go-log/v2"
)

var log = logging.Logger("dscluster/raft")

// hcLogger routes raft's hclog output to the go-log logger dscluster/raft.
// Raft is chatty at info, so only warnings and errors pass by default; when
// dscluster/raft is set to debug in go-log, raft's debug and info pass too.
type hcLogger struct {
	z       *logging.ZapEventLogger
	name    string
	implied []any
	level   *atomic.Int32 // hclog.Level; shared by the loggers With and Named derive
}

var _ hclog.Logger = (*hcLogger)(nil)

// newHCLogger returns the adapter; the go-log caller is raft's call site.
func newHCLogger(name string) *hcLogger {
	lv := new(atomic.Int32)
	lv.Store(int32(hclog.Warn))
	return &hcLogger{z: logging.WithSkip(log, 2), name: name, level: lv}
}

func (l *hcLogger) enabled(level hclog.Level) bool {
	min := hclog.Level(l.level.Load())
	if min == hclog.Off || level == hclog.Off || level == hclog.NoLevel {
		return false
	}
	if level >= min {
		return true
	}
	return level >= hclog.Debug && l.z.LevelEnabled(logging.LevelDebug)
}

// fields returns the implied and given key/value pairs with string keys, as
// zap's sugared logger wants them.
func (l *hcLogger) fields(args []any) []any {
	out := make([]any, 0, len(l.implied)+len(args)+2)
	if l.name != "" {
		out = append(out, "raft_logger", l.name)
	}
	all := append(append([]any(nil), l.implied...), args...)
	for i := 0; i < len(all); i += 2 {
		k := fmt.Sprint(all[i])
		if i+1 == len(all) {
			out = append(out, "EXTRA_VALUE_AT_END", all[i])
			break
		}
		v := all[i+1]
		if f, ok := v.(hclog.Format); ok && len(f) > 0 {
			if s, ok := f[0].(string); ok {
				v = fmt.Sprintf(s, f[1:]...)
			}
		}
		out = append(out, k, v)
	}
	return out
}

func (l *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	l.emit(level, msg, args)
}

// emit is called by exactly one method of hcLogger, which WithSkip accounts
// for.
func (l *hcLogger) emit(level hclog.Level, msg string, args []any) {
	if level >= hclog.Error && peerUnreachable(msg) {
		level = hclog.Debug
	}
	if !l.enabled(level) {
		return
	}
	kv := l.fields(args)
	switch {
	case level <= hclog.Debug:
		l.z.Debugw(msg, kv...)
	case level == hclog.Info:
		l.z.Infow(msg, kv...)
	case level == hclog.Warn:
		l.z.Warnw(msg, kv...)
	default:
		l.z.Errorw(msg, kv...)
	}
}

// peerUnreachable matches the errors raft logs on every retry while a
// follower is down. The node's heartbeats report the member down (and out)
// once; a line per retry for the whole grace period says nothing more.
func peerUnreachable(msg string) bool {
	for _, p := range []string{"failed to heartbeat to", "failed to appendEntries to", "failed to pipeline appendEntries", "failed to contact",
		"failed to decode incoming command"} { // a peer's connection closed mid-stream
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func (l *hcLogger) Trace(msg string, args ...any) { l.emit(hclog.Trace, msg, args) }
func (l *hcLogger) Debug(msg string, args ...any) { l.emit(hclog.Debug, msg, args) }
func (l *hcLogger) Info(msg string, args ...any)  { l.emit(hclog.Info, msg, args) }
func (l *hcLogger) Warn(msg string, args ...any)  { l.emit(hclog.Warn, msg, args) }
func (l *hcLogger) Error(msg string, args ...any) { l.emit(hclog.Error, msg, args) }

func (l *hcLogger) IsTrace() bool { return l.enabled(hclog.Trace) }
func (l *hcLogger) IsDebug() bool { return l.enabled(hclog.Debug) }
func (l *hcLogger) IsInfo() bool  { return l.enabled(hclog.Info) }
func (l *hcLogger) IsWarn() bool  { return l.enabled(hclog.Warn) }
func (l *hcLogger) IsError() bool { return l.enabled(hclog.Error) }

func (l *hcLogger) ImpliedArgs() []any { return append([]any(nil), l.implied...) }

func (l *hcLogger) With(args ...any) hclog.Logger {
	d := *l
	d.implied = append(append([]any(nil), l.implied...), args...)
	return &d
}

func (l *hcLogger) Name() string { return l.name }

func (l *hcLogger) Named(name string) hclog.Logger {
	d := *l
	if d.name != "" {
		name = d.name + "." + name
	}
	d.name = name
	return &d
}

func (l *hcLogger) ResetNamed(name string) hclog.Logger {
	d := *l
	d.name = name
	return &d
}

func (l *hcLogger) SetLevel(level hclog.Level) { l.level.Store(int32(level)) }

func (l *hcLogger) GetLevel() hclog.Level { return hclog.Level(l.level.Load()) }

func (l *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *stdlog.Logger {
	return stdlog.New(l.StandardWriter(opts), "", 0)
}

func (l *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	infer := false
	if opts != nil {
		infer = opts.InferLevels
		if opts.ForceLevel != hclog.NoLevel {
			level, infer = opts.ForceLevel, false
		}
	}
	return &lineWriter{l: l, level: level, infer: infer}
}

// lineWriter logs each line written to it.
type lineWriter struct {
	l     *hcLogger
	level hclog.Level
	infer bool
	mu    sync.Mutex
	buf   []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := strings.TrimSpace(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
		if line == "" {
			continue
		}
		level := w.level
		if w.infer {
			level, line = inferLevel(line, level)
		}
		w.l.Log(level, line)
	}
}

// inferLevel reads a leading [LEVEL] tag, as hclog's standard writer does.
func inferLevel(line string, def hclog.Level) (hclog.Level, string) {
	for _, t := range []struct {
		tag   string
		level hclog.Level
	}{
		{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info},
		{"[WARN]", hclog.Warn}, {"[ERROR]", hclog.Error}, {"[ERR]", hclog.Error},
	} {
		if rest, ok := strings.CutPrefix(line, t.tag); ok {
			return t.level, strings.TrimSpace(rest)
		}
	}
	return def, line
}
