package cli

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"

	"dce/app/config"
)

// logSwitch is the server's log handler: text or JSON and the level, both
// switched by a reload (log.format, log.level) for every logger derived
// from it.
type logSwitch struct {
	text, json slog.Handler
	state      *logState
}

type logState struct {
	level slog.LevelVar
	json  atomic.Bool
}

func newLogSwitch(w io.Writer, c config.Log) *logSwitch {
	st := &logState{}
	opts := &slog.HandlerOptions{Level: &st.level}
	l := &logSwitch{text: slog.NewTextHandler(w, opts), json: slog.NewJSONHandler(w, opts), state: st}
	l.apply(c)
	return l
}

// apply sets the level and format of every logger made from l.
func (l *logSwitch) apply(c config.Log) {
	l.state.level.Set(c.SlogLevel())
	l.state.json.Store(c.Format == "json")
}

func (l *logSwitch) current() slog.Handler {
	if l.state.json.Load() {
		return l.json
	}
	return l.text
}

func (l *logSwitch) Enabled(ctx context.Context, lv slog.Level) bool {
	return l.current().Enabled(ctx, lv)
}

func (l *logSwitch) Handle(ctx context.Context, r slog.Record) error {
	return l.current().Handle(ctx, r)
}

func (l *logSwitch) WithAttrs(as []slog.Attr) slog.Handler {
	return &logSwitch{text: l.text.WithAttrs(as), json: l.json.WithAttrs(as), state: l.state}
}

func (l *logSwitch) WithGroup(name string) slog.Handler {
	return &logSwitch{text: l.text.WithGroup(name), json: l.json.WithGroup(name), state: l.state}
}
