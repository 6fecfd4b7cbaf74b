package account

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// IdentityClaims name the claims of a checked token that a guard hands on
// (as headers, placeholders or a user's metadata), in the order of
// Identity.Field.
var IdentityClaims = [...]string{"user_id", "role", "email_verified", "session"}

// Identity is a checked token as the guard hands it on: its claims, and
// the IdentityClaims as text, each in an interface value made once. The
// caches share one Identity among all the requests that present the same
// token, so a guard passes it on without copying or formatting anything
// per request; it is read-only.
type Identity struct {
	tokens.Claims
	fields [len(IdentityClaims)]any
}

func newIdentity(c tokens.Claims) *Identity {
	return &Identity{Claims: c, fields: [...]any{c.UserID, strconv.Itoa(c.Role), strconv.FormatBool(c.EmailVerified), c.Session}}
}

// Field is the claim IdentityClaims[i] of id as a string, in an interface
// value that storing anew does not allocate.
func (id *Identity) Field(i int) any { return id.fields[i] }

// Text is the claim IdentityClaims[i] of id.
func (id *Identity) Text(i int) string { return id.fields[i].(string) }

// accessCache remembers access tokens whose signature and claims were
// already verified, so the guard pays for a signature check once per token
// rather than once per request. An entry is only a shortcut for the same
// verification: it holds the identity and is refused once the token's exp
// (plus leeway) has passed on the realm's clock. It belongs to one key set,
// so a reload with other keys starts empty.
type accessCache struct {
	entries sync.Map // token -> *accessEntry; reads take no lock
	size    atomic.Int64
}

type accessEntry struct {
	id    *Identity
	until time.Time
}

// maxAccessEntries bounds the cache; past it, the cache starts afresh.
// A token is only put once verified, so each entry is a token the realm
// signed (its claims and a few hundred bytes of JWT).
const maxAccessEntries = 50_000

func newAccessCache() *accessCache {
	return new(accessCache)
}

func (ac *accessCache) get(token string, now time.Time) (*Identity, bool) {
	v, ok := ac.entries.Load(token)
	if !ok {
		return nil, false
	}
	e := v.(*accessEntry)
	if !now.Before(e.until) {
		return nil, false
	}
	return e.id, true
}

func (ac *accessCache) put(token string, id *Identity, until time.Time) {
	if ac.size.Load() >= maxAccessEntries {
		ac.entries.Clear()
		ac.size.Store(0)
	}
	if _, loaded := ac.entries.LoadOrStore(token, &accessEntry{id: id, until: until}); !loaded {
		ac.size.Add(1)
	}
}
