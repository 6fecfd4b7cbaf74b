package account

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/useragent"
)

// Sessions is login, refresh, logout and the checks of access tokens.
type Sessions struct{ *core }

// TokenPair is what a session-opening call hands to the client.
type TokenPair struct {
	Access, Refresh string
	refreshJTI      string
}

// openSession mints a new session for u: a refresh token with a fresh
// session id, its whitelist row, and the access token derived from it.
func (rl *core) openSession(ctx context.Context, st Store, u User, ip string) (TokenPair, error) {
	session, err := tokens.NewID(rl.rand)
	if err != nil {
		return TokenPair{}, err
	}
	p, err := rl.signPair(ctx, u, session, rl.now().Unix(), ip, "")
	if err != nil {
		return TokenPair{}, err
	}
	return p.TokenPair, p.record(ctx, st)
}

// pendingPair is a session's next pair, signed and not yet recorded: it
// is good for nothing until record stores its refresh row.
type pendingPair struct {
	TokenPair
	row    RefreshToken
	oldJTI string // the row it replaces; "" for a new session
}

// signPair signs the refresh token of a session and its access token,
// and builds the refresh row that record writes: a new session's (oldJTI
// empty), with the session's start and the user agent of ctx's Origin, or
// oldJTI's successor (the store carries those over). It writes nothing,
// so a caller can sign before it opens the transaction that records the
// row and hold its locks for less time.
func (rl *core) signPair(ctx context.Context, u User, session string, sessionIAT int64, ip, oldJTI string) (pendingPair, error) {
	now := rl.now()
	jti, err := tokens.NewID(rl.rand)
	if err != nil {
		return pendingPair{}, err
	}
	refresh, refreshExp, err := rl.signRefresh(u, session, sessionIAT, jti, now)
	if err != nil {
		return pendingPair{}, err
	}
	access, err := rl.signAccess(u, session, sessionIAT, now)
	if err != nil {
		return pendingPair{}, err
	}
	row := RefreshToken{JTI: jti, Session: session, UserID: u.ID, Enabled: true, Created: now, Expires: refreshExp, IP: ip}
	if oldJTI == "" {
		row.Started = now
		if !rl.policy.OmitUserAgent {
			row.UserAgent = useragent.Clip(originOf(ctx).UserAgent)
		}
	}
	return pendingPair{TokenPair: TokenPair{Access: access, Refresh: refresh, refreshJTI: jti}, row: row, oldJTI: oldJTI}, nil
}

// record stores p's refresh row through st: inserts it, or, when p
// replaces a row, rotates that row into it (Store.RotateRefresh).
func (p pendingPair) record(ctx context.Context, st Store) error {
	if p.oldJTI == "" {
		return st.InsertRefresh(ctx, p.row)
	}
	return st.RotateRefresh(ctx, p.oldJTI, p.row)
}

// sessionClaims are the claims every token of u's session carries.
func sessionClaims(u User, session string, sessionIAT int64) tokens.Claims {
	return tokens.Claims{
		UserID:        strconv.FormatInt(u.ID, 10),
		Session:       session,
		SessionIAT:    sessionIAT,
		Role:          u.Role,
		EmailVerified: u.EmailVerified,
	}
}

// capExpiry shortens exp to the end of the session when session_lifetime
// is set.
func (rl *core) capExpiry(exp time.Time, sessionIAT int64) time.Time {
	if lt := rl.policy.SessionLifetime; lt > 0 {
		if limit := time.Unix(sessionIAT, 0).Add(lt); exp.After(limit) {
			return limit
		}
	}
	return exp
}

// signRefresh signs the refresh token jti of a session, issued at issued,
// and returns it with its expiry.
func (rl *core) signRefresh(u User, session string, sessionIAT int64, jti string, issued time.Time) (string, time.Time, error) {
	exp := rl.capExpiry(issued.Add(rl.policy.RefreshTTL), sessionIAT)
	c := sessionClaims(u, session, sessionIAT)
	c.TokenType = tokens.TypeRefresh
	c.ID = jti
	c.IssuedAt = jwt.NewNumericDate(issued)
	c.ExpiresAt = jwt.NewNumericDate(exp)
	tok, err := rl.keys.Sign(c)
	return tok, exp, err
}

// signAccess signs a new access token of a session, issued at now.
func (rl *core) signAccess(u User, session string, sessionIAT int64, now time.Time) (string, error) {
	c := sessionClaims(u, session, sessionIAT)
	c.TokenType = tokens.TypeAccess
	var err error
	if c.ID, err = tokens.NewID(rl.rand); err != nil {
		return "", err
	}
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(rl.capExpiry(now.Add(rl.policy.AccessTTL), sessionIAT))
	return rl.keys.Sign(c)
}

// openLoginSession opens a session for u and records the login time. u
// may sign in: under mandatory verification its address is confirmed
// (sign-up opens no session then, and a reset or an invitation link
// confirms the address before it gets here).
func (rl *core) openLoginSession(ctx context.Context, u User) (TokenPair, error) {
	var pair TokenPair
	err := rl.store.InTx(ctx, func(tx Store) error {
		cur, err := tx.UserForUpdate(ctx, u.ID)
		if err != nil {
			return err
		}
		if err := tx.SetLastLogin(ctx, cur.ID, rl.now()); err != nil {
			return err
		}
		pair, err = rl.openSession(ctx, tx, cur, originOf(ctx).IP)
		return err
	})
	return pair, err
}

// tokenProblem is the API's wording for a token that failed to parse.
func tokenProblem(err error) string {
	for _, known := range []error{tokens.ErrExpired, tokens.ErrWrongType} {
		if errors.Is(err, known) {
			return known.Error()
		}
	}
	return tokens.ErrInvalid.Error()
}

// Refresh spends a refresh token and returns the session's next pair. A
// token presented twice revokes its whole session;
// so does a session past session_lifetime or a user who is gone or
// disabled. With a grace (the browser's refresh hop, see RefreshHopGrace),
// a token rotated at most grace ago is not a reuse: it gets its successor.
func (rl *Sessions) Refresh(ctx context.Context, o Origin, raw string, grace time.Duration) (TokenPair, error) {
	ctx = withOrigin(ctx, o)
	c, err := rl.keys.Parse(raw, tokens.TypeRefresh, rl.now())
	if err != nil {
		return TokenPair{}, errTokenNotValid(tokenProblem(err))
	}
	if c.Session == "" {
		return TokenPair{}, errTokenNotValid(MsgTokenInvalid)
	}
	if lt := rl.policy.SessionLifetime; lt > 0 && c.SessionIAT > 0 && rl.now().Unix() >= c.SessionIAT+int64(lt.Seconds()) {
		if n, err := rl.store.RevokeSession(ctx, c.Session); err != nil {
			return TokenPair{}, err
		} else if n > 0 {
			rl.auditSessionRevoked(ctx, c.NumericUserID(), "session_lifetime")
		}
		return TokenPair{}, refuseCode(Unauthenticated, "Session reached its maximum lifetime. Please log in again", "session_expired")
	}
	uid := c.NumericUserID()
	u, err := rl.store.UserByID(ctx, uid)
	if errors.Is(err, ErrNotFound) || (err == nil && !u.IsActive) {
		if n, err := rl.store.RevokeUserSessions(ctx, uid); err != nil {
			return TokenPair{}, err
		} else if n > 0 {
			rl.auditSessionRevoked(ctx, uid, "user_inactive")
		}
		return TokenPair{}, errTokenNotValid(MsgTokenInvalid)
	}
	if err != nil {
		return TokenPair{}, err
	}
	sessionIAT := c.SessionIAT
	if sessionIAT == 0 && c.IssuedAt != nil {
		sessionIAT = c.IssuedAt.Unix() // a token minted before session_iat existed
	}
	pair, err := rl.rotateRecorded(ctx, u, c, sessionIAT, o.IP, grace)
	switch {
	case errors.Is(err, ErrNotFound):
		// Not on the whitelist: reused, logged out or revoked.
		rl.auditSessionRevoked(ctx, uid, "refresh_not_whitelisted")
		return TokenPair{}, errTokenNotValid(MsgTokenInvalid)
	case errors.Is(err, ErrDisabled):
		if !u.EmailVerified {
			return TokenPair{}, refuseCode(Unauthenticated, "User email is not verified", "email_not_verified")
		}
		return TokenPair{}, errTokenNotValid(MsgTokenInvalid)
	case err != nil:
		return TokenPair{}, err
	}
	return pair, nil
}

// RefreshHopGrace is how long the browser's refresh hop still takes a
// refresh token just rotated: a page's parallel navigations (tabs, frames,
// prefetches) each go through the hop with the same cookie, and all but
// the first would otherwise revoke the session as a reuse. Past it, a
// spent token revokes its session as on POST {prefix}/refresh/, which has
// no grace.
const RefreshHopGrace = 5 * time.Second

// rotateRecorded rotates the refresh token c into a new pair and records
// the rotation (old and new jti) for RefreshHopGrace, in one transaction:
// a concurrent call with the same token waits on the row and then sees
// the record. When c's row is gone (a reuse), the session is revoked
// once the transaction is over and ErrNotFound returned, unless there is
// a grace and a record of c's rotation at most grace ago: then the caller
// gets the token its rotation issued (the last of the chain, when that
// one was rotated as well) with a fresh access token.
func (rl *Sessions) rotateRecorded(ctx context.Context, u User, c tokens.Claims, sessionIAT int64, ip string, grace time.Duration) (TokenPair, error) {
	// Signed before the transaction: on SQLite it holds the database's
	// write lock, which every other rotation waits for.
	next, err := rl.signPair(ctx, u, c.Session, sessionIAT, ip, c.ID)
	if err != nil {
		return TokenPair{}, err
	}
	var succ Token
	spent, rotatedWithin := false, false
	err = rl.store.InTx(ctx, func(tx Store) error {
		err := next.record(ctx, tx)
		switch {
		case errors.Is(err, ErrNotFound):
			spent = true
			if grace == 0 {
				return nil
			}
			succ, rotatedWithin, err = rl.successor(ctx, tx, u.ID, c.ID, grace)
			return err
		case err != nil:
			return err
		}
		_, err = tx.CreateToken(ctx, Token{UserID: u.ID, Purpose: purposeRefreshRotated, Token: c.ID + rotationSep + next.refreshJTI, Created: rl.now()})
		return err
	})
	switch {
	case err != nil:
		return TokenPair{}, err
	case rotatedWithin:
		return rl.successorPair(ctx, u, c.Session, sessionIAT, succ)
	case spent:
		// Ended after the transaction, not in it: the revocation locks
		// the user's row, which a rotation of this session in flight
		// holds shared until it commits (Store.RotateRefresh), so that
		// its new row is ended too.
		if _, err := rl.store.RevokeSession(ctx, c.Session); err != nil {
			return TokenPair{}, err
		}
		return TokenPair{}, ErrNotFound
	}
	return next.TokenPair, nil
}

// rotationSep joins the old and the new jti in a rotation record.
const rotationSep = ">"

// successor follows the rotation records of userID made at most grace
// ago from jti to the last token of the chain, and returns the record
// that issued it.
func (rl *Sessions) successor(ctx context.Context, st Store, userID int64, jti string, grace time.Duration) (Token, bool, error) {
	rows, err := st.UserTokens(ctx, userID, purposeRefreshRotated, rl.now().Add(-grace))
	if err != nil {
		return Token{}, false, err
	}
	var last Token
	found := false
	for range rows { // a chain has at most one link per record
		i := slices.IndexFunc(rows, func(row Token) bool { return strings.HasPrefix(row.Token, jti+rotationSep) })
		if i < 0 {
			break
		}
		last, found = rows[i], true
		_, jti, _ = strings.Cut(rows[i].Token, rotationSep)
	}
	return last, found, nil
}

// successorPair answers a hop that came within the grace with the
// refresh token the record rec issued (its jti, signed again as of the
// record's time) and a new access token, if the session is still live.
func (rl *Sessions) successorPair(ctx context.Context, u User, session string, sessionIAT int64, rec Token) (TokenPair, error) {
	live, err := rl.store.SessionActive(ctx, session)
	if err != nil {
		return TokenPair{}, err
	}
	if !live {
		return TokenPair{}, ErrNotFound
	}
	_, jti, _ := strings.Cut(rec.Token, rotationSep)
	refresh, _, err := rl.signRefresh(u, session, sessionIAT, jti, rec.Created)
	if err != nil {
		return TokenPair{}, err
	}
	access, err := rl.signAccess(u, session, sessionIAT, rl.now())
	if err != nil {
		return TokenPair{}, err
	}
	return TokenPair{Access: access, Refresh: refresh, refreshJTI: jti}, nil
}

// Logout ends the session of the refresh token raw, which must belong to
// the caller. Any refusal is "Invalid token.".
func (rl *Sessions) Logout(ctx context.Context, o Origin, caller tokens.Claims, raw string) error {
	ctx = withOrigin(ctx, o)
	invalid := refuse(Invalid, "Invalid token.")
	c, err := rl.keys.Parse(raw, tokens.TypeRefresh, rl.now())
	if err != nil || c.Session == "" || c.UserID != caller.UserID {
		return invalid
	}
	n, err := rl.store.DeleteRefresh(ctx, caller.NumericUserID(), c.ID, c.Session)
	if err != nil {
		return err
	}
	if n == 0 {
		return invalid
	}
	rl.auditSessionRevoked(ctx, caller.NumericUserID(), "logout")
	return nil
}

// EndSession ends the session of a browser's page logout: the session of
// the refresh token raw if it verifies, else that of the access token
// access. Neither is required.
func (rl *Sessions) EndSession(ctx context.Context, o Origin, raw, access string) error {
	ctx = withOrigin(ctx, o)
	var session tokens.Claims
	if c, err := rl.keys.Parse(raw, tokens.TypeRefresh, rl.now()); err == nil {
		session = c
	} else if c, err := rl.Check(ctx, access, false); err == nil {
		session = c
	}
	if session.Session == "" {
		return nil
	}
	n, err := rl.store.RevokeSession(ctx, session.Session)
	if err != nil {
		return err
	}
	if n > 0 {
		rl.auditSessionRevoked(ctx, session.NumericUserID(), "logout")
	}
	return nil
}

// LogoutAll ends every session of the caller, whose access token must
// belong to a live session.
func (rl *Sessions) LogoutAll(ctx context.Context, o Origin, access string) error {
	ctx = withOrigin(ctx, o)
	caller, err := rl.LiveAccess(ctx, access)
	if err != nil {
		return err
	}
	if _, err := rl.store.RevokeUserSessions(ctx, caller.NumericUserID()); err != nil {
		return err
	}
	rl.auditSessionRevoked(ctx, caller.NumericUserID(), "logout_all")
	return nil
}

// Check verifies an access token however it came (and, with sessionCheck
// or the realm's session_check, that its session is live). The answer of
// a token is cached until it expires; a session's for a few seconds.
func (rl *Sessions) Check(ctx context.Context, raw string, sessionCheck bool) (tokens.Claims, error) {
	id, err := rl.Identify(ctx, raw, sessionCheck)
	if err != nil {
		return tokens.Claims{}, err
	}
	return id.Claims, nil
}

// Identify is Check giving the token's Identity, as the cache shares it.
func (rl *Sessions) Identify(ctx context.Context, raw string, sessionCheck bool) (*Identity, error) {
	if raw == "" {
		return nil, errNotAuthenticated()
	}
	now := rl.now()
	id, err := rl.parseAccess(raw, now)
	if err != nil {
		return nil, &Refusal{Kind: Unauthenticated, Detail: "Given token not valid for any token type",
			Code: "token_not_valid", TokenProblem: tokenProblem(err), reason: ErrAccessToken}
	}
	if (sessionCheck || rl.policy.SessionCheck) && id.Session != "" {
		ok, err := rl.liveCache.active(ctx, id.Session, now)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errSessionEnded()
		}
	}
	return id, nil
}

// parseAccess verifies an access token at now, through the cache.
func (rl *Sessions) parseAccess(raw string, now time.Time) (*Identity, error) {
	if id, ok := rl.verified.get(raw, now); ok {
		return id, nil
	}
	return rl.verifyAccess(raw, now)
}

// verifyAccess is parseAccess for a token the cache does not hold, in a
// function of its own so that the cached path keeps a small stack frame
// (a goroutine's stack, shrunk by a GC, grows again on a deep call).
func (rl *Sessions) verifyAccess(raw string, now time.Time) (*Identity, error) {
	c, err := rl.keys.Parse(raw, tokens.TypeAccess, now)
	if err != nil {
		return nil, err
	}
	id := newIdentity(c)
	rl.verified.put(raw, id, c.ExpiresAt.Time.Add(rl.policy.Leeway))
	return id, nil
}

// LiveAccess verifies an access token and checks that its session is
// live (liveSession), as every endpoint that changes credentials, MFA or
// the profile asks, whatever session_check says.
func (rl *Sessions) LiveAccess(ctx context.Context, raw string) (tokens.Claims, error) {
	c, err := rl.Check(ctx, raw, false)
	if err != nil {
		return tokens.Claims{}, err
	}
	return c, rl.liveSession(ctx, c)
}

// liveSession asks the store (not the guard's cache, which may answer
// from a few seconds ago) whether the session of the verified access
// token c still has a refresh-token row: a logout, a replayed refresh
// token or a credential change ends it. A flow with a body calls it once
// the body is read, so a slow body cannot carry a check made before a
// revocation past it.
func (rl *core) liveSession(ctx context.Context, c tokens.Claims) error {
	live, err := rl.store.SessionActive(ctx, c.Session)
	if err != nil {
		return err
	}
	if !live {
		return errSessionEnded()
	}
	return nil
}

// liveCaller is the account of the verified access token c once its
// session is known live (liveSession); an account gone since is refused
// as its token is (userGone).
func (rl *Sessions) liveCaller(ctx context.Context, c tokens.Claims) (User, error) {
	if err := rl.liveSession(ctx, c); err != nil {
		return User{}, err
	}
	u, err := rl.store.UserByID(ctx, c.NumericUserID())
	if err != nil {
		return User{}, userGone(err)
	}
	return u, nil
}

// RecentlyAuthenticated reports whether the session of c proved a
// password or a second factor at most reauth_window ago. Every such proof
// (a login, an MFA verification, a password change or reset) opens a new
// session and a refresh keeps session_iat, so session_iat is the time of
// the session's last proof. A token without session_iat proves nothing.
func (rl *Sessions) RecentlyAuthenticated(c tokens.Claims) bool {
	return c.SessionIAT > 0 && rl.now().Sub(time.Unix(c.SessionIAT, 0)) <= rl.policy.ReauthWindow
}

// Profile is what GET and PATCH {prefix}/user/ show.
type Profile struct {
	Email, FirstName, LastName string
}

// profileOf is u's profile.
func profileOf(u User) Profile {
	return Profile{Email: u.Email, FirstName: u.FirstName, LastName: u.LastName}
}

// userGone is the refusal of a caller whose account is gone.
func userGone(err error) error {
	if errors.Is(err, ErrNotFound) {
		return errTokenNotValid(MsgTokenInvalid)
	}
	return err
}
