package account

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"
)

// RateLimiter counts events per key in a sliding window. Allow records one
// event and reports whether it is within limit (at most limit events in any
// window); when it is not, nothing is recorded and retryAfter says when the
// oldest counted event leaves the window. An error means no decision could
// be made; a backend that can fall back to counting in memory does so
// instead of returning one.
//
// Reserve is Allow that also returns the id of the event it recorded, and
// Cancel takes such an event back (an event already gone, or an unknown
// id, is not an error). Together they count outcomes without letting a
// burst through: an attempt is recorded before it is tried, so parallel
// attempts see each other, and the ones that succeed are then cancelled
// (the login_email throttle counts wrong passwords this way).
type RateLimiter interface {
	Allow(ctx context.Context, key string, limit int, window time.Duration) (ok bool, retryAfter time.Duration, err error)
	Reserve(ctx context.Context, key string, limit int, window time.Duration) (id string, ok bool, retryAfter time.Duration, err error)
	Cancel(ctx context.Context, key, id string) error
}

// memoryLimiter is the default RateLimiter: a sliding log per key in this
// process's memory. Each key keeps at most limit timestamps, and keys idle
// for longer than their window are swept away.
type memoryLimiter struct {
	now func() time.Time

	mu    sync.Mutex
	keys  map[string]*limiterEntry
	calls int
	seq   uint64 // the id of the last event recorded
}

type limiterEntry struct {
	events []limiterEvent // oldest first
	window time.Duration
}

type limiterEvent struct {
	at time.Time
	id uint64
}

func newMemoryLimiter(now func() time.Time) *memoryLimiter {
	return &memoryLimiter{now: now, keys: map[string]*limiterEntry{}}
}

// NewMemoryLimiter returns the in-memory RateLimiter reading time from now,
// for backends that fall back to it when their service is unreachable.
func NewMemoryLimiter(now func() time.Time) RateLimiter {
	return newMemoryLimiter(now)
}

// sweepEvery says how many calls pass between sweeps of idle keys.
const sweepEvery = 1024

// Allow records one event for key and reports whether it is within limit.
func (m *memoryLimiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	_, ok, wait, err := m.Reserve(ctx, key, limit, window)
	return ok, wait, err
}

// Reserve is Allow returning the id of the event recorded.
func (m *memoryLimiter) Reserve(_ context.Context, key string, limit int, window time.Duration) (string, bool, time.Duration, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.calls%sweepEvery == 0 {
		m.sweep(now)
	}
	e := m.keys[key]
	if e == nil {
		e = &limiterEntry{}
		m.keys[key] = e
	}
	e.window = window
	cutoff := now.Add(-window)
	i := 0
	for i < len(e.events) && !e.events[i].at.After(cutoff) {
		i++
	}
	e.events = e.events[i:]
	if len(e.events) >= limit {
		if limit <= 0 {
			return "", false, window, nil
		}
		return "", false, e.events[len(e.events)-limit].at.Add(window).Sub(now), nil
	}
	m.seq++
	e.events = append(e.events, limiterEvent{at: now, id: m.seq})
	return strconv.FormatUint(m.seq, 10), true, 0, nil
}

// Cancel removes the event id of key, if it is still counted.
func (m *memoryLimiter) Cancel(_ context.Context, key, id string) error {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return nil // not an id this limiter gave out
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.keys[key]; e != nil {
		e.events = slices.DeleteFunc(e.events, func(ev limiterEvent) bool { return ev.id == n })
	}
	return nil
}

// sweep drops keys whose newest event has left their window.
func (m *memoryLimiter) sweep(now time.Time) {
	for k, e := range m.keys {
		if len(e.events) == 0 || !e.events[len(e.events)-1].at.After(now.Add(-e.window)) {
			delete(m.keys, k)
		}
	}
}
