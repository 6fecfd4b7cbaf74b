package caddyauth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

const refreshCookie = "refresh_token"

// tokenErrorMessage is the API's wording for a token that failed to parse.
func tokenErrorMessage(err error) string {
	for _, known := range []error{tokens.ErrExpired, tokens.ErrWrongType} {
		if errors.Is(err, known) {
			return known.Error()
		}
	}
	return tokens.ErrInvalid.Error()
}

// login answers POST {prefix}/login/ (behaviour.md §3.1).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) error {
	f, err := readForm(w, r)
	if err != nil {
		return err
	}
	email := f.Str("email", true, true)
	password := f.Str("password", true, false)
	if err := f.err(); err != nil {
		return err
	}
	res, err := h.realm.passwordLogin(r, email, password)
	if err != nil {
		return err
	}
	if res.mfa != nil {
		return writeJSON(w, http.StatusOK, res.mfa)
	}
	return h.writeTokens(w, http.StatusOK, res.pair, nil)
}

// loginResult is where a password login leads: mfa is the MFA gate's
// answer when a second step is due (a login or a setup challenge), else
// pair is the new session.
type loginResult struct {
	mfa  map[string]any
	pair tokenPair
}

// passwordLogin is every login by e-mail and password, JSON or HTML: the
// login throttles (before any hashing), the password, the account's state,
// the MFA gate, then the session, recording the login time. Each outcome
// is counted and audited here.
func (rl *realm) passwordLogin(r *http.Request, email, password string) (loginResult, error) {
	ctx := r.Context()
	if err := rl.throttle(ctx, throttleLoginIP, rl.clientKey(clientIP(r))); err != nil {
		rl.loginFailed(ctx, email, 0, "throttled", err)
		return loginResult{}, err
	}
	failure, err := rl.countFailure(ctx, email)
	if err != nil {
		rl.loginFailed(ctx, email, 0, "throttled", err)
		return loginResult{}, err
	}
	u, err := rl.authenticate(ctx, normalizeEmail(email), password, rl.hashOwners(r, email))
	var wrong *apiError
	rl.settle(ctx, failure, errors.As(err, &wrong))
	if err != nil {
		rl.loginFailed(ctx, email, 0, "credentials", err)
		return loginResult{}, err
	}
	if rl.policy.emailVerification == verifyMandatory && !u.EmailVerified {
		rl.loginFailed(ctx, email, u.ID, "email_not_verified", nil)
		return loginResult{}, errCode(http.StatusUnauthorized, "User email is not verified", "email_not_verified")
	}
	if !u.IsActive {
		rl.loginFailed(ctx, email, u.ID, "inactive", nil)
		return loginResult{}, errDetail(http.StatusUnauthorized, msgNoActiveAccount)
	}
	if payload, err := rl.mfaGate(ctx, u); err != nil || payload != nil {
		if err != nil {
			rl.loginFailed(ctx, u.Email, u.ID, "mfa_gate", err)
			return loginResult{}, err
		}
		rl.metrics.login(resultMFARequired)
		rl.audit(ctx, auditLoginSucceeded, u.ID, zap.Bool("mfa_pending", true))
		return loginResult{mfa: payload}, nil
	}
	var pair tokenPair
	refused := ""
	err = rl.store.InTx(ctx, func(tx account.Store) error {
		// The row as it is now, locked until the session is open: an
		// account disabled, or a password changed, while this login waited
		// for a hashing slot gets no session.
		cur, err := tx.UserForUpdate(ctx, u.ID)
		switch {
		case errors.Is(err, account.ErrNotFound) || (err == nil && cur.PasswordHash != u.PasswordHash):
			refused = "credentials"
			return errCode(http.StatusUnauthorized, "Incorrect credentials", "incorrect_credentials")
		case err != nil:
			return err
		case !cur.IsActive:
			refused = "inactive"
			return errDetail(http.StatusUnauthorized, msgNoActiveAccount)
		}
		if err := tx.SetLastLogin(ctx, cur.ID, rl.now()); err != nil {
			return err
		}
		pair, err = rl.openSession(ctx, tx, cur, true, clientIP(r))
		return err
	})
	if refused != "" {
		rl.loginFailed(ctx, email, u.ID, refused, nil)
		return loginResult{}, err
	}
	if err != nil {
		rl.metrics.login(resultError)
		return loginResult{}, err
	}
	rl.metrics.login(resultSuccess)
	rl.audit(ctx, auditLoginSucceeded, u.ID)
	return loginResult{pair: pair}, nil
}

// loginFailed counts and audits a refused login. err decides the metric's
// result (throttled, locked, error for a failing dependency, else failure).
func (rl *realm) loginFailed(ctx context.Context, email string, userID int64, reason string, err error) {
	result := resultFailure
	var ae *apiError
	switch {
	case err != nil && !errors.As(err, &ae):
		rl.metrics.login(resultError)
		return // a failing dependency, logged by writeError
	case reason == "throttled":
		result = resultThrottled
	case ae != nil && ae.status == http.StatusTooManyRequests:
		result, reason = resultLocked, "mfa_locked"
	}
	rl.metrics.login(result)
	level := zapcore.InfoLevel
	if result == resultThrottled {
		level = zapcore.DebugLevel // a flood of throttled guesses must not flood the log
	}
	rl.auditAt(ctx, level, auditLoginFailed, userID, zap.String("reason", reason), rl.emailHash(email))
}

// authenticate checks an e-mail and password, hashing for owners (see
// passwordHasher). Unknown addresses and accounts without a usable
// password cost one hash as well, so the answer time does not tell them
// apart. A legacy or outdated hash is upgraded. A wrong password or
// unknown address is the only *apiError.
func (rl *realm) authenticate(ctx context.Context, email, password string, owners []string) (account.User, error) {
	bad := errCode(http.StatusUnauthorized, "Incorrect credentials", "incorrect_credentials")
	u, err := rl.store.UserByEmail(ctx, email)
	if errors.Is(err, account.ErrNotFound) || (err == nil && u.PasswordHash == "") {
		if err := rl.hasher.dummyVerify(ctx, password, owners...); err != nil {
			return account.User{}, err
		}
		return account.User{}, bad
	}
	if err != nil {
		return account.User{}, err
	}
	ok, rehash, err := rl.hasher.verify(ctx, password, u.PasswordHash, owners...)
	if err != nil {
		return account.User{}, err
	}
	if !ok {
		return account.User{}, bad
	}
	if rehash {
		if h, err := rl.hasher.hash(ctx, password, owners...); err == nil {
			switch err := rl.upgradeHash(ctx, u.ID, u.PasswordHash, h); {
			case err == nil:
				u.PasswordHash = h
			case !errors.Is(err, errHashChanged):
				rl.logger.Warn("upgrading password hash", zap.Int64("user_id", u.ID), zap.Error(err))
			}
		}
	}
	return u, nil
}

// errHashChanged: the hash an upgrade would replace is no longer stored.
var errHashChanged = errors.New("the password changed meanwhile")

// upgradeHash replaces the user's password hash old by upgraded, unless a
// concurrent reset or change has replaced old already (errHashChanged):
// an upgrade never undoes a new password.
func (rl *realm) upgradeHash(ctx context.Context, userID int64, old, upgraded string) error {
	return rl.store.InTx(ctx, func(tx account.Store) error {
		cur, err := tx.UserForUpdate(ctx, userID)
		if err != nil {
			return err
		}
		if cur.PasswordHash != old {
			return errHashChanged
		}
		return tx.SetPasswordHash(ctx, userID, upgraded)
	})
}

// refresh answers POST {prefix}/refresh/ (behaviour.md §3.2): the refresh
// token rotates; a token presented twice revokes its whole session.
func (h *Handler) refresh(w http.ResponseWriter, r *http.Request) error {
	raw, err := h.presentedRefresh(w, r, func() error {
		return errField("refresh", msgFieldRequired)
	})
	if err != nil {
		return err
	}
	pair, err := h.realm.rotateRefresh(r.Context(), raw, clientIP(r), 0)
	if err != nil {
		return err
	}
	return h.writeTokens(w, http.StatusOK, pair, nil)
}

// rotateRefresh spends a refresh token and returns the session's next
// pair. A token presented twice revokes its whole session; so does a
// session past session_lifetime or a user who is gone or disabled. With
// a grace (the browser's refresh hop, see refreshHopGrace), a token
// rotated at most grace ago is not a reuse: it gets its successor.
func (rl *realm) rotateRefresh(ctx context.Context, raw, ip string, grace time.Duration) (tokenPair, error) {
	c, err := rl.keys.Parse(raw, tokens.TypeRefresh, rl.now())
	if err != nil {
		return tokenPair{}, errTokenNotValid(tokenErrorMessage(err))
	}
	if c.Session == "" {
		return tokenPair{}, errTokenNotValid(msgTokenInvalid)
	}
	if lt := rl.policy.sessionLifetime; lt > 0 && c.SessionIAT > 0 && rl.now().Unix() >= c.SessionIAT+int64(lt.Seconds()) {
		if n, err := rl.store.RevokeSession(ctx, c.Session); err != nil {
			return tokenPair{}, err
		} else if n > 0 {
			rl.auditSessionRevoked(ctx, c.NumericUserID(), "session_lifetime")
		}
		return tokenPair{}, errCode(http.StatusUnauthorized, "Session reached its maximum lifetime. Please log in again", "session_expired")
	}
	uid := c.NumericUserID()
	u, err := rl.store.UserByID(ctx, uid)
	if errors.Is(err, account.ErrNotFound) || (err == nil && !u.IsActive) {
		if n, err := rl.store.RevokeUserSessions(ctx, uid); err != nil {
			return tokenPair{}, err
		} else if n > 0 {
			rl.auditSessionRevoked(ctx, uid, "user_inactive")
		}
		return tokenPair{}, errTokenNotValid(msgTokenInvalid)
	}
	if err != nil {
		return tokenPair{}, err
	}
	sessionIAT := c.SessionIAT
	if sessionIAT == 0 && c.IssuedAt != nil {
		sessionIAT = c.IssuedAt.Unix() // a token minted before session_iat existed
	}
	pair, err := rl.rotateRecorded(ctx, u, c, sessionIAT, ip, grace)
	switch {
	case errors.Is(err, account.ErrNotFound):
		// Not on the whitelist: reused, logged out or revoked.
		rl.auditSessionRevoked(ctx, uid, "refresh_not_whitelisted")
		return tokenPair{}, errTokenNotValid(msgTokenInvalid)
	case errors.Is(err, account.ErrDisabled):
		if !u.EmailVerified {
			return tokenPair{}, errCode(http.StatusUnauthorized, "User email is not verified", "email_not_verified")
		}
		return tokenPair{}, errTokenNotValid(msgTokenInvalid)
	case err != nil:
		return tokenPair{}, err
	}
	return pair, nil
}

// refreshHopGrace is how long the browser's refresh hop still takes a
// refresh token just rotated: a page's parallel navigations (tabs, frames,
// prefetches) each go through the hop with the same cookie, and all but
// the first would otherwise revoke the session as a reuse. Past it, a
// spent token revokes its session as on POST {prefix}/refresh/, which has
// no grace.
const refreshHopGrace = 5 * time.Second

// rotateRecorded rotates the refresh token c into a new pair and records
// the rotation (old and new jti) for refreshHopGrace, in one transaction:
// a concurrent call with the same token waits on the row and then sees
// the record. When c's row is gone, RotateRefresh has deleted the
// session's rows in this transaction (a reuse); with a grace, a record of
// c's rotation at most grace ago undoes that and the caller gets the
// token its rotation issued (the last of the chain, when that one was
// rotated as well) with a fresh access token. Otherwise the revocation
// stands and ErrNotFound is returned.
func (rl *realm) rotateRecorded(ctx context.Context, u account.User, c tokens.Claims, sessionIAT int64, ip string, grace time.Duration) (tokenPair, error) {
	errSuccessor := errors.New("rotated within the grace")
	var pair tokenPair
	var succ account.Token
	revoked := false
	err := rl.store.InTx(ctx, func(tx account.Store) error {
		var err error
		pair, err = rl.issuePair(ctx, tx, u, c.Session, sessionIAT, true, ip, c.ID)
		switch {
		case errors.Is(err, account.ErrNotFound):
			if grace > 0 {
				var found bool
				if succ, found, err = rl.successor(ctx, tx, u.ID, c.ID, grace); err != nil {
					return err
				}
				if found {
					return errSuccessor // rolls the revocation back
				}
			}
			revoked = true
			return nil
		case err != nil:
			return err
		}
		_, err = tx.CreateToken(ctx, account.Token{UserID: u.ID, Purpose: purposeRefreshRotated, Token: c.ID + rotationSep + pair.refreshJTI, Created: rl.now()})
		return err
	})
	switch {
	case errors.Is(err, errSuccessor):
		return rl.successorPair(ctx, u, c.Session, sessionIAT, succ)
	case err != nil:
		return tokenPair{}, err
	case revoked:
		return tokenPair{}, account.ErrNotFound
	}
	return pair, nil
}

// rotationSep joins the old and the new jti in a rotation record.
const rotationSep = ">"

// successor follows the rotation records of userID made at most grace
// ago from jti to the last token of the chain, and returns the record
// that issued it.
func (rl *realm) successor(ctx context.Context, st account.Store, userID int64, jti string, grace time.Duration) (account.Token, bool, error) {
	rows, err := st.UserTokens(ctx, userID, purposeRefreshRotated, rl.now().Add(-grace))
	if err != nil {
		return account.Token{}, false, err
	}
	var last account.Token
	found := false
	for range rows { // a chain has at most one link per record
		i := slices.IndexFunc(rows, func(row account.Token) bool { return strings.HasPrefix(row.Token, jti+rotationSep) })
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
func (rl *realm) successorPair(ctx context.Context, u account.User, session string, sessionIAT int64, rec account.Token) (tokenPair, error) {
	live, err := rl.store.SessionActive(ctx, session)
	if err != nil {
		return tokenPair{}, err
	}
	if !live {
		return tokenPair{}, account.ErrNotFound
	}
	_, jti, _ := strings.Cut(rec.Token, rotationSep)
	refresh, _, err := rl.signRefresh(u, session, sessionIAT, jti, rec.Created)
	if err != nil {
		return tokenPair{}, err
	}
	access, err := rl.signAccess(u, session, sessionIAT, rl.now())
	if err != nil {
		return tokenPair{}, err
	}
	return tokenPair{access: access, refresh: refresh, refreshJTI: jti}, nil
}

// presentedRefresh reads the refresh token from the channel the policy
// names (the cookie, or the body's `refresh` field); the other channel is
// ignored. missing builds the error for an absent token.
func (h *Handler) presentedRefresh(w http.ResponseWriter, r *http.Request, missing func() error) (string, error) {
	if !h.realm.policy.refreshInBody {
		if c, err := r.Cookie(refreshCookie); err == nil && c.Value != "" {
			return c.Value, nil
		}
		return "", missing()
	}
	f, err := readForm(w, r)
	if err != nil {
		return "", err
	}
	tok := f.Str("refresh", true, true)
	if err := f.err(); err != nil {
		return "", err
	}
	return tok, nil
}

// logout answers POST {prefix}/logout/ (behaviour.md §3.3). Unlike the
// reference, it also clears the refresh cookie.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) error {
	caller, err := h.authenticated(r)
	if err != nil {
		return err
	}
	raw, err := h.presentedRefresh(w, r, func() error {
		return errDetail(http.StatusBadRequest, "Refresh token cookie not found.")
	})
	if err != nil {
		return err
	}
	rl := h.realm
	invalid := errDetail(http.StatusBadRequest, "Invalid token.")
	c, err := rl.keys.Parse(raw, tokens.TypeRefresh, rl.now())
	if err != nil || c.Session == "" || c.UserID != caller.UserID {
		return invalid
	}
	n, err := rl.store.DeleteRefresh(r.Context(), caller.NumericUserID(), c.ID, c.Session)
	if err != nil {
		return err
	}
	if n == 0 {
		return invalid
	}
	rl.auditSessionRevoked(r.Context(), caller.NumericUserID(), "logout")
	h.clearRefreshCookie(w)
	return writeJSON(w, http.StatusOK, map[string]string{"detail": "Successfully logged out."})
}

// logoutAll answers POST {prefix}/logout-all/: every session of the caller
// ends.
func (h *Handler) logoutAll(w http.ResponseWriter, r *http.Request) error {
	caller, err := h.liveCaller(r)
	if err != nil {
		return err
	}
	if _, err := h.realm.store.RevokeUserSessions(r.Context(), caller.NumericUserID()); err != nil {
		return err
	}
	h.realm.auditSessionRevoked(r.Context(), caller.NumericUserID(), "logout_all")
	h.clearRefreshCookie(w)
	return writeJSON(w, http.StatusOK, map[string]string{"detail": "Successfully logged out from all devices."})
}

// user answers GET and PATCH {prefix}/user/ (behaviour.md §3.5).
func (h *Handler) user(w http.ResponseWriter, r *http.Request) error {
	caller, err := h.authenticated(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	var u account.User
	if r.Method == http.MethodPatch {
		// The body first, then the row, locked while the names change: a
		// slow body cannot carry a stale copy of the row past a concurrent
		// change.
		var f *form
		if f, err = readForm(w, r); err != nil {
			return err
		}
		if err := h.realm.liveSession(ctx, caller); err != nil {
			return err
		}
		err = h.realm.store.InTx(ctx, func(tx account.Store) error {
			var err error
			if u, err = tx.UserForUpdate(ctx, caller.NumericUserID()); err != nil {
				return err
			}
			if f.Has("first_name") {
				u.FirstName = f.Str("first_name", false, true)
				f.MaxLen("first_name", u.FirstName, 150)
			}
			if f.Has("last_name") {
				u.LastName = f.Str("last_name", false, true)
				f.MaxLen("last_name", u.LastName, 150)
			}
			if err := f.err(); err != nil {
				return err
			}
			return tx.SetNames(ctx, u.ID, u.FirstName, u.LastName)
		})
	} else {
		u, err = h.realm.store.UserByID(ctx, caller.NumericUserID())
	}
	if errors.Is(err, account.ErrNotFound) {
		return errTokenNotValid(msgTokenInvalid)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{
		"email":      u.Email,
		"first_name": u.FirstName,
		"last_name":  u.LastName,
	})
}

// jwks answers GET {prefix}/.well-known/jwks.json with the public keys, so
// upstream apps can verify tokens themselves.
func (h *Handler) jwks(w http.ResponseWriter, r *http.Request) error {
	body, err := h.realm.keys.JWKS()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, err = w.Write(body)
	return err
}

// writeTokens answers with a session: `access` (plus extra fields) in the
// body, and the refresh token in the cookie or the body as configured.
func (h *Handler) writeTokens(w http.ResponseWriter, status int, pair tokenPair, extra map[string]any) error {
	body := map[string]any{"access": pair.access}
	for k, v := range extra {
		body[k] = v
	}
	if h.realm.policy.refreshInBody {
		body["refresh"] = pair.refresh
	} else {
		h.setRefreshCookie(w, pair.refresh, int(h.realm.policy.refreshTTL.Seconds()))
	}
	return writeJSON(w, status, body)
}

func (h *Handler) setRefreshCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     refreshCookie,
		Value:    value,
		Path:     h.Prefix + "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   h.realm.policy.cookieSecure,
		SameSite: h.realm.policy.cookieSameSite,
	})
}

func (h *Handler) clearRefreshCookie(w http.ResponseWriter) {
	if !h.realm.policy.refreshInBody {
		h.setRefreshCookie(w, "", -1)
	}
}

// authenticated checks the request's bearer access token for the
// endpoints that need one.
func (h *Handler) authenticated(r *http.Request) (tokens.Claims, error) {
	return h.realm.checkAccess(r, false)
}
