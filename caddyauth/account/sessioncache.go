package account

import (
	"context"
	"sync"
	"time"
)

// sessionCache answers "is this session still live?" for the optional
// session check, asking the store at most once per session every ttl. A
// revoked session never comes back, so a negative answer is as cacheable as
// a positive one.
type sessionCache struct {
	store Store
	ttl   time.Duration

	mu      sync.Mutex
	entries map[string]sessionEntry
}

type sessionEntry struct {
	live    bool
	checked time.Time
}

// maxSessionEntries bounds the cache; past it, the cache starts afresh.
const maxSessionEntries = 100_000

func newSessionCache(store Store, ttl time.Duration) *sessionCache {
	return &sessionCache{store: store, ttl: ttl, entries: map[string]sessionEntry{}}
}

// active reports whether session has a whitelist row, as of now on the
// realm's clock. A store failure is returned, so the caller fails closed.
func (sc *sessionCache) active(ctx context.Context, session string, now time.Time) (bool, error) {
	sc.mu.Lock()
	e, ok := sc.entries[session]
	sc.mu.Unlock()
	if ok && now.Sub(e.checked) < sc.ttl {
		return e.live, nil
	}
	live, err := sc.store.SessionActive(ctx, session)
	if err != nil {
		return false, err
	}
	sc.mu.Lock()
	if len(sc.entries) >= maxSessionEntries {
		sc.entries = map[string]sessionEntry{}
	}
	sc.entries[session] = sessionEntry{live: live, checked: now}
	sc.mu.Unlock()
	return live, nil
}
