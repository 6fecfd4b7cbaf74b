package caddyauth

import (
	"context"
	"net/http"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passwords"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// What an endpoint that changes credentials, MFA or the profile asks of
// its caller beyond a valid access token: the token's session must still
// be live, whatever `session_check` says, and an enrolment must also come
// from a recent authentication.

// msgReauthRequired is the 403 of an enrolment from a session that proved
// nothing recently.
const msgReauthRequired = "Recent authentication required: sign in again, or send your current password in the `password` field."

// errSessionEnded is the 401 for an access token of a revoked session.
func errSessionEnded() *apiError {
	e := errCode(http.StatusUnauthorized, "Session is no longer active.", "token_not_valid")
	e.challenge = `Bearer realm="api", error="invalid_token"`
	return e
}

// liveCaller is authenticated plus liveSession, for such an endpoint that
// reads no body.
func (h *Handler) liveCaller(r *http.Request) (tokens.Claims, error) {
	return h.realm.liveAccess(r.Context(), bearerToken(r))
}

// liveAccess verifies an access token and checks that its session is live
// (liveSession).
func (rl *realm) liveAccess(ctx context.Context, raw string) (tokens.Claims, error) {
	c, err := rl.checkToken(ctx, raw, false)
	if err != nil {
		return tokens.Claims{}, err
	}
	return c, rl.liveSession(ctx, c)
}

// liveSession asks the store (not the guard's cache, which may answer
// from a few seconds ago) whether the session of the verified access
// token c still has a refresh-token row: a logout, a replayed refresh
// token or a credential change ends it. An endpoint with a body calls it
// once the body is read, so a slow body cannot carry a check made before
// a revocation past it.
func (rl *realm) liveSession(ctx context.Context, c tokens.Claims) error {
	live, err := rl.store.SessionActive(ctx, c.Session)
	if err != nil {
		return err
	}
	if !live {
		return errSessionEnded()
	}
	return nil
}

// recentlyAuthenticated reports whether the session of c proved a password
// or a second factor at most reauth_window ago. Every such proof (a login,
// an MFA verification, a password change or reset) opens a new session
// and a refresh keeps session_iat, so session_iat is the time of the
// session's last proof. A token without session_iat proves nothing.
func (rl *realm) recentlyAuthenticated(c tokens.Claims) bool {
	return c.SessionIAT > 0 && rl.now().Sub(time.Unix(c.SessionIAT, 0)) <= rl.policy.reauthWindow
}

// reauthenticate lets an enrolment of u by the bearer of the verified
// access token c through: c's session proved itself recently
// (recentlyAuthenticated), or password, the body's `password` field, is
// u's current password, checked as every password of a signed-in user is
// (realm.checkPassword: throttled, counted towards login failures, audited).
func (rl *realm) reauthenticate(r *http.Request, c tokens.Claims, u account.User, password string) error {
	if password == "" {
		if rl.recentlyAuthenticated(c) {
			return nil
		}
		return errCode(http.StatusForbidden, msgReauthRequired, "reauthentication_required")
	}
	ok, err := rl.checkPassword(r, u, password, "reauthenticate")
	if err != nil {
		return err
	}
	if !ok {
		return errDetail(http.StatusBadRequest, "Invalid password.")
	}
	return nil
}

// enrolmentAllowed is reauthenticate for a JSON enrolment call: ch is the
// setup challenge the call came with (then nothing more is asked), else
// the bearer token (already verified live by the caller) and the form's
// `password` field decide.
func (h *Handler) enrolmentAllowed(r *http.Request, f *form, u account.User, ch *account.Token) error {
	if ch != nil {
		return nil
	}
	password := f.Str("password", false, false)
	f.MaxLen("password", password, passwords.MaxLength)
	if err := f.err(); err != nil {
		return err
	}
	c, err := h.realm.checkToken(r.Context(), bearerToken(r), false)
	if err != nil {
		return err
	}
	return h.realm.reauthenticate(r, c, u, password)
}
