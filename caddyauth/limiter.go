package caddyauth

import (
	"context"
	"sync"
	"time"
)

// RateLimiter counts events per key in a sliding window. Allow records one
// event and reports whether it is within limit (at most limit events in any
// window); when it is not, nothing is recorded and retryAfter says when the
// oldest counted event leaves the window. An error means no decision could
// be made; a backend that can fall back to counting in memory does so
// instead of returning one.
type RateLimiter interface {
	Allow(ctx context.Context, key string, limit int, window time.Duration) (ok bool, retryAfter time.Duration, err error)
}

// memoryLimiter is the default RateLimiter: a sliding log per key in this
// process's memory. Each key keeps at most limit timestamps, and keys idle
// for longer than their window are swept away.
type memoryLimiter struct {
	now func() time.Time

	mu    sync.Mutex
	keys  map[string]*limiterEntry
	calls int
}

type limiterEntry struct {
	events []time.Time
	window time.Duration
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
func (m *memoryLimiter) Allow(_ context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
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
	for i < len(e.events) && !e.events[i].After(cutoff) {
		i++
	}
	e.events = e.events[i:]
	if len(e.events) >= limit {
		return false, e.events[len(e.events)-limit].Add(window).Sub(now), nil
	}
	e.events = append(e.events, now)
	return true, 0, nil
}

// sweep drops keys whose newest event has left their window.
func (m *memoryLimiter) sweep(now time.Time) {
	for k, e := range m.keys {
		if len(e.events) == 0 || !e.events[len(e.events)-1].After(now.Add(-e.window)) {
			delete(m.keys, k)
		}
	}
}
