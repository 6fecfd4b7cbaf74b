package caddyauth

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const refreshCookie = "refresh_token"

// userID is the numeric form of the user_id claim (0 when malformed).
func (c Claims) userID() int64 {
	id, _ := strconv.ParseInt(c.UserID, 10, 64)
	return id
}

// tokenErrorMessage is the API's wording for a token that failed to parse.
func tokenErrorMessage(err error) string {
	for _, known := range []error{errTokenExpired, errTokenWrongType} {
		if errors.Is(err, known) {
			return known.Error()
		}
	}
	return errTokenInvalid.Error()
}

// login answers POST {prefix}/login/ (behaviour.md §3.1).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) error {
	f, err := readForm(w, r)
	if err != nil {
		return err
	}
	email := f.str("email", true, true)
	password := f.str("password", true, false)
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
	u.LastLogin = rl.now()
	var pair tokenPair
	err = rl.store.InTx(ctx, func(tx Store) error {
		if err := tx.UpdateUser(ctx, u); err != nil {
			return err
		}
		var err error
		pair, err = rl.openSession(ctx, tx, u, true, clientIP(r))
		return err
	})
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
func (rl *realm) authenticate(ctx context.Context, email, password string, owners []string) (User, error) {
	bad := errCode(http.StatusUnauthorized, "Incorrect credentials", "incorrect_credentials")
	u, err := rl.store.UserByEmail(ctx, email)
	if errors.Is(err, ErrNotFound) || (err == nil && u.PasswordHash == "") {
		if err := rl.hasher.dummyVerify(ctx, password, owners...); err != nil {
			return User{}, err
		}
		return User{}, bad
	}
	if err != nil {
		return User{}, err
	}
	ok, rehash, err := rl.hasher.verify(ctx, password, u.PasswordHash, owners...)
	if err != nil {
		return User{}, err
	}
	if !ok {
		return User{}, bad
	}
	if rehash {
		if h, err := rl.hasher.hash(ctx, password, owners...); err == nil {
			u.PasswordHash = h
			if err := rl.store.UpdateUser(ctx, u); err != nil {
				rl.logger.Warn("upgrading password hash", zap.Int64("user_id", u.ID), zap.Error(err))
			}
		}
	}
	return u, nil
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
	pair, err := h.realm.rotateRefresh(r.Context(), raw, clientIP(r))
	if err != nil {
		return err
	}
	return h.writeTokens(w, http.StatusOK, pair, nil)
}

// rotateRefresh spends a refresh token and returns the session's next
// pair. A token presented twice revokes its whole session; so does a
// session past session_lifetime or a user who is gone or disabled.
func (rl *realm) rotateRefresh(ctx context.Context, raw, ip string) (tokenPair, error) {
	c, err := rl.keys.parse(raw, tokenTypeRefresh, rl.now())
	if err != nil {
		return tokenPair{}, errTokenNotValid(tokenErrorMessage(err))
	}
	if c.Session == "" {
		return tokenPair{}, errTokenNotValid(msgTokenInvalid)
	}
	if lt := rl.policy.sessionLifetime; lt > 0 && c.SessionIAT > 0 && rl.now().Unix() >= c.SessionIAT+int64(lt.Seconds()) {
		if _, err := rl.store.RevokeSession(ctx, c.Session); err != nil {
			return tokenPair{}, err
		}
		return tokenPair{}, errCode(http.StatusUnauthorized, "Session reached its maximum lifetime. Please log in again", "session_expired")
	}
	uid := c.userID()
	u, err := rl.store.UserByID(ctx, uid)
	if errors.Is(err, ErrNotFound) || (err == nil && !u.IsActive) {
		if _, err := rl.store.RevokeUserSessions(ctx, uid); err != nil {
			return tokenPair{}, err
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
	pair, err := rl.issuePair(ctx, rl.store, u, c.Session, sessionIAT, true, ip, c.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		// Not on the whitelist: reused, logged out or revoked.
		rl.auditSessionRevoked(ctx, uid, "refresh_not_whitelisted")
		return tokenPair{}, errTokenNotValid(msgTokenInvalid)
	case errors.Is(err, ErrDisabled):
		if !u.EmailVerified {
			return tokenPair{}, errCode(http.StatusUnauthorized, "User email is not verified", "email_not_verified")
		}
		return tokenPair{}, errTokenNotValid(msgTokenInvalid)
	case err != nil:
		return tokenPair{}, err
	}
	return pair, nil
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
	tok := f.str("refresh", true, true)
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
	c, err := rl.keys.parse(raw, tokenTypeRefresh, rl.now())
	if err != nil || c.Session == "" || c.UserID != caller.UserID {
		return invalid
	}
	n, err := rl.store.DeleteRefresh(r.Context(), caller.userID(), c.ID, c.Session)
	if err != nil {
		return err
	}
	if n == 0 {
		return invalid
	}
	h.clearRefreshCookie(w)
	return writeJSON(w, http.StatusOK, map[string]string{"detail": "Successfully logged out."})
}

// logoutAll answers POST {prefix}/logout-all/: every session of the caller
// ends.
func (h *Handler) logoutAll(w http.ResponseWriter, r *http.Request) error {
	caller, err := h.authenticated(r)
	if err != nil {
		return err
	}
	if _, err := h.realm.store.RevokeUserSessions(r.Context(), caller.userID()); err != nil {
		return err
	}
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
	u, err := h.realm.store.UserByID(ctx, caller.userID())
	if errors.Is(err, ErrNotFound) {
		return errTokenNotValid(msgTokenInvalid)
	}
	if err != nil {
		return err
	}
	if r.Method == http.MethodPatch {
		f, err := readForm(w, r)
		if err != nil {
			return err
		}
		if f.has("first_name") {
			u.FirstName = f.str("first_name", false, true)
			f.maxLen("first_name", u.FirstName, 150)
		}
		if f.has("last_name") {
			u.LastName = f.str("last_name", false, true)
			f.maxLen("last_name", u.LastName, 150)
		}
		if err := f.err(); err != nil {
			return err
		}
		if err := h.realm.store.UpdateUser(ctx, u); err != nil {
			return err
		}
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
	body, err := h.realm.keys.jwks()
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
		SameSite: http.SameSiteLaxMode,
	})
}

func (h *Handler) clearRefreshCookie(w http.ResponseWriter) {
	if !h.realm.policy.refreshInBody {
		h.setRefreshCookie(w, "", -1)
	}
}

// authenticated checks the request's bearer access token for the
// endpoints that need one.
func (h *Handler) authenticated(r *http.Request) (Claims, error) {
	return h.realm.checkAccess(r, false)
}
