// Package slogtest is an slog handler that keeps every record, for tests
// that read the audit lines the account core writes.
package slogtest

import (
	"context"
	"log/slog"
	"slices"
	"sync"
)

// Record is one log line: its level, message (the audit event) and
// attributes.
type Record struct {
	Level slog.Level
	Event string
	Attrs map[string]string
}

// Records is an slog handler keeping every record.
type Records struct {
	mu      sync.Mutex
	records []Record
}

func (a *Records) Enabled(context.Context, slog.Level) bool { return true }
func (a *Records) WithAttrs([]slog.Attr) slog.Handler       { return a }
func (a *Records) WithGroup(string) slog.Handler            { return a }

// Handle keeps r.
func (a *Records) Handle(_ context.Context, r slog.Record) error {
	rec := Record{Level: r.Level, Event: r.Message, Attrs: map[string]string{}}
	r.Attrs(func(at slog.Attr) bool {
		rec.Attrs[at.Key] = at.Value.String()
		return true
	})
	a.mu.Lock()
	defer a.mu.Unlock()
	a.records = append(a.records, rec)
	return nil
}

// All is every record so far, oldest first.
func (a *Records) All() []Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.records)
}

// Events are the records of event so far.
func (a *Records) Events(event string) []Record {
	var out []Record
	for _, r := range a.All() {
		if r.Event == event {
			out = append(out, r)
		}
	}
	return out
}
