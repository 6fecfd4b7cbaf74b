package caddyauth

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"
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
	u, err := h.realm.passwordLogin(r.Context(), email, password)
	if err != nil {
		return err
	}
	return h.finishLogin(w, r, u)
}

// passwordLogin is the first factor of every login, JSON or HTML: the
// e-mail and password, then the account's state.
func (rl *realm) passwordLogin(ctx context.Context, email, password string) (User, error) {
	u, err := rl.authenticate(ctx, normalizeEmail(email), password)
	if err != nil {
		return User{}, err
	}
	if rl.policy.emailVerification == verifyMandatory && !u.EmailVerified {
		return User{}, errCode(http.StatusUnauthorized, "User email is not verified", "email_not_verified")
	}
	if !u.IsActive {
		return User{}, errDetail(http.StatusUnauthorized, "No active account found with the given credentials")
	}
	return u, nil
}

// finishLogin runs the MFA gate after the first factor, then opens a
// session when the gate lets the user through.
func (h *Handler) finishLogin(w http.ResponseWriter, r *http.Request, u User) error {
	rl := h.realm
	ctx := r.Context()
	if payload, err := rl.mfaGate(ctx, u); err != nil || payload != nil {
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, payload)
	}
	pair, err := rl.startSession(ctx, u, clientIP(r))
	if err != nil {
		return err
	}
	return h.writeTokens(w, http.StatusOK, pair, nil)
}

// startSession opens a session for a user who passed every factor,
// recording the login time.
func (rl *realm) startSession(ctx context.Context, u User, ip string) (tokenPair, error) {
	u.LastLogin = rl.now()
	var pair tokenPair
	err := rl.store.InTx(ctx, func(tx Store) error {
		if err := tx.UpdateUser(ctx, u); err != nil {
			return err
		}
		var err error
		pair, err = rl.openSession(ctx, tx, u, true, ip)
		return err
	})
	return pair, err
}

// authenticate checks an e-mail and password. Unknown addresses and
// accounts without a usable password cost one hash as well, so the answer
// time does not tell them apart. A legacy or outdated hash is upgraded.
func (rl *realm) authenticate(ctx context.Context, email, password string) (User, error) {
	bad := errCode(http.StatusUnauthorized, "Incorrect credentials", "incorrect_credentials")
	u, err := rl.store.UserByEmail(ctx, email)
	if errors.Is(err, ErrNotFound) || (err == nil && u.PasswordHash == "") {
		if err := rl.hasher.dummyVerify(ctx, password); err != nil {
			return User{}, err
		}
		return User{}, bad
	}
	if err != nil {
		return User{}, err
	}
	ok, rehash, err := rl.hasher.verify(ctx, password, u.PasswordHash)
	if err != nil {
		return User{}, err
	}
	if !ok {
		return User{}, bad
	}
	if rehash {
		if h, err := rl.hasher.hash(ctx, password); err == nil {
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
		rl.logger.Info("refresh token reused, session revoked", zap.String("user_id", c.UserID), zap.String("client_ip", ip))
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
		Path:     "/",
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
