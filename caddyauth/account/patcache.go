package account

import (
	"crypto/sha256"
	"sync"
	"time"
)

// patCache remembers, by token hash, what the store said of a personal
// token for PersonalTokenCacheTTL on the realm's clock, so a script's
// burst of requests costs one read. A token not found is remembered too.
type patCache struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]patEntry
}

// patEntry is a token's answer: ident is nil when it was not found (or
// its owner may not use it).
type patEntry struct {
	ident   *Identity
	id      int64
	expires time.Time
	checked time.Time
}

// maxPATEntries bounds the cache; past it, the cache starts afresh.
const maxPATEntries = 10_000

func newPATCache() *patCache { return &patCache{entries: map[[sha256.Size]byte]patEntry{}} }

func (pc *patCache) get(hash [sha256.Size]byte, now time.Time) (patEntry, bool) {
	pc.mu.Lock()
	e, ok := pc.entries[hash]
	pc.mu.Unlock()
	if !ok || now.Sub(e.checked) >= PersonalTokenCacheTTL || now.Before(e.checked) {
		return patEntry{}, false
	}
	return e, true
}

func (pc *patCache) put(hash [sha256.Size]byte, e patEntry) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if len(pc.entries) >= maxPATEntries {
		pc.entries = map[[sha256.Size]byte]patEntry{}
	}
	pc.entries[hash] = e
}

// forget drops the entry of token id (revoked on this node).
func (pc *patCache) forget(id int64) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for hash, e := range pc.entries {
		if e.ident != nil && e.id == id {
			delete(pc.entries, hash)
		}
	}
}
