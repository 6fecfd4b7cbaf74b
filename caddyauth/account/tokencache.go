package account

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// accessCache remembers access tokens whose signature and claims were
// already verified, so the guard pays for a signature check once per token
// rather than once per request. An entry is only a shortcut for the same
// verification: it holds the claims and is refused once the token's exp
// (plus leeway) has passed on the realm's clock. It belongs to one key set,
// so a reload with other keys starts empty.
type accessCache struct {
	entries sync.Map // token -> accessEntry; reads take no lock
	size    atomic.Int64
}

type accessEntry struct {
	claims tokens.Claims
	until  time.Time
}

// maxAccessEntries bounds the cache; past it, the cache starts afresh.
const maxAccessEntries = 50_000

func newAccessCache() *accessCache {
	return new(accessCache)
}

func (ac *accessCache) get(token string, now time.Time) (tokens.Claims, bool) {
	v, ok := ac.entries.Load(token)
	if !ok {
		return tokens.Claims{}, false
	}
	e := v.(*accessEntry)
	if !now.Before(e.until) {
		return tokens.Claims{}, false
	}
	return e.claims, true
}

func (ac *accessCache) put(token string, c tokens.Claims, until time.Time) {
	if ac.size.Load() >= maxAccessEntries {
		ac.entries.Clear()
		ac.size.Store(0)
	}
	if _, loaded := ac.entries.LoadOrStore(token, &accessEntry{claims: c, until: until}); !loaded {
		ac.size.Add(1)
	}
}
