package account

import (
	"context"
	"slices"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/useragent"
)

// SessionInfo is one live session of a user as its owner lists it (GET
// {prefix}/sessions/).
type SessionInfo struct {
	// ID names the session to its owner: a keyed hash of the session id
	// (sessionHandle), so the list hands out nothing that a token or a
	// log line carries.
	ID        string
	Started   time.Time // when the session opened
	LastUsed  time.Time // its last refresh, or its start
	IP        string    // the client's address then
	UserAgent string    // as recorded, "" when it was not
	Agent     useragent.Agent
	Current   bool // the session of the caller's token
}

// msgSessionNotFound answers an id that names none of the caller's
// sessions.
const msgSessionNotFound = "Not found."

// List returns the live sessions of the caller, whose access token must
// belong to a live session, the most recently used first.
func (rl *Sessions) List(ctx context.Context, access string) ([]SessionInfo, error) {
	c, err := rl.LiveAccess(ctx, access)
	if err != nil {
		return nil, err
	}
	return rl.sessionsOf(ctx, c.NumericUserID(), c.Session)
}

// sessionsOf lists the live sessions of user uid, the most recently used
// first; the session current (if it is one of them) is marked.
func (rl *Sessions) sessionsOf(ctx context.Context, uid int64, current string) ([]SessionInfo, error) {
	rows, err := rl.store.UserRefreshTokens(ctx, uid, rl.now())
	if err != nil {
		return nil, err
	}
	// A session has one row between rotations; should it have more, its
	// newest row (rows come newest first) says when it was last used.
	var out []SessionInfo
	index := map[string]int{}
	for _, rt := range rows {
		started := rt.Started
		if started.IsZero() {
			started = rt.Created // a row of an earlier version
		}
		if i, seen := index[rt.Session]; seen {
			out[i].Started = minTime(out[i].Started, started)
			continue
		}
		index[rt.Session] = len(out)
		out = append(out, SessionInfo{
			ID:        rl.sessionHandle(rt.Session),
			Started:   started,
			LastUsed:  rt.Created,
			IP:        rt.IP,
			UserAgent: rt.UserAgent,
			Agent:     useragent.Parse(rt.UserAgent),
			Current:   rt.Session == current,
		})
	}
	return out, nil
}

// Revoke ends the caller's session id (DELETE {prefix}/sessions/<id>/,
// the sessions page's "Sign out"): its refresh tokens are deleted, so it
// refreshes no more, and with session_check its access tokens fail too.
// The caller's token must belong to a live session; an id that names none
// of the caller's sessions is not found. current reports whether it was
// the caller's own session.
func (rl *Sessions) Revoke(ctx context.Context, o Origin, access, id string) (current bool, err error) {
	ctx = withOrigin(ctx, o)
	c, err := rl.LiveAccess(ctx, access)
	if err != nil {
		return false, err
	}
	uid := c.NumericUserID()
	rows, err := rl.store.UserRefreshTokens(ctx, uid, rl.now())
	if err != nil {
		return false, err
	}
	i := slices.IndexFunc(rows, func(rt RefreshToken) bool { return rl.sessionHandle(rt.Session) == id })
	if i < 0 {
		return false, refuse(NotFound, msgSessionNotFound)
	}
	session := rows[i].Session
	n, err := rl.store.DeleteRefresh(ctx, uid, "", session)
	if err != nil {
		return false, err
	}
	if n == 0 {
		return false, refuse(NotFound, msgSessionNotFound) // ended meanwhile
	}
	rl.auditSessionRevoked(ctx, uid, "remote_signout")
	return session == c.Session, nil
}

// sessionHandle is the id under which a session is listed: 128 bits of an
// HMAC of the session id under the realm's hash key. It is stable for the
// session's life, tells nothing of the session id, and cannot be made
// from a session id without the key.
func (rl *Sessions) sessionHandle(session string) string {
	return rl.keyedHash("session", session)[:32]
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
