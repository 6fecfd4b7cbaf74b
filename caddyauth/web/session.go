package web

import (
	"net/http"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/jsonform"
)

// RefreshCookie names the cookie of the refresh token.
const RefreshCookie = "refresh_token"

// sessionAPI is login, refresh, logout and the profile.
type sessionAPI struct{ *Handler }

// login answers POST {prefix}/login/.
func (h sessionAPI) login(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	email := f.Str("email", true, true)
	password := f.Str("password", true, false)
	if err := f.err(); err != nil {
		return err
	}
	step, err := h.svc.Sessions.Login(r.Context(), h.origin(r), email, password)
	if err != nil {
		return err
	}
	return h.writeStep(w, http.StatusOK, step, nil)
}

// writeStep answers with where a proof of identity led: the session, or
// the second step due first (a login challenge, or the setup bootstrap of
// required mode), with extra fields in the body.
func (h *Handler) writeStep(w http.ResponseWriter, status int, step account.Step, extra map[string]any) error {
	body := map[string]any{}
	for k, v := range extra {
		body[k] = v
	}
	switch {
	case step.Challenge != "":
		body["mfa_required"] = true
		body["challenge_id"] = step.Challenge
		// Beyond the reference (an additive field): what the challenge
		// may be answered with.
		body["methods"] = step.Methods.Names()
	case step.SetupChallenge != "":
		body["mfa_setup_required"] = true
		body["setup_challenge_id"] = step.SetupChallenge
	default:
		return h.writeTokens(w, status, step.Pair, body)
	}
	return writeJSON(w, status, body)
}

// refresh answers POST {prefix}/refresh/: the refresh
// token rotates; a token presented twice revokes its whole session.
func (h sessionAPI) refresh(w http.ResponseWriter, r *http.Request) error {
	raw, err := h.presentedRefresh(w, r, func() error {
		return (account.FieldErrors{"refresh": {jsonform.MsgRequired}}).Err()
	})
	if err != nil {
		return err
	}
	pair, err := h.svc.Sessions.Refresh(r.Context(), h.origin(r), raw, 0)
	if err != nil {
		return err
	}
	return h.writeTokens(w, http.StatusOK, pair, nil)
}

// presentedRefresh reads the refresh token from the channel the policy
// names (the cookie, or the body's `refresh` field); the other channel is
// ignored. missing builds the error for an absent token.
func (h sessionAPI) presentedRefresh(w http.ResponseWriter, r *http.Request, missing func() error) (string, error) {
	if !h.cfg.RefreshInBody {
		if c, err := r.Cookie(RefreshCookie); err == nil && c.Value != "" {
			return c.Value, nil
		}
		return "", missing()
	}
	f := readForm(w, r)
	tok := f.Str("refresh", true, true)
	if err := f.err(); err != nil {
		return "", err
	}
	return tok, nil
}

// logout answers POST {prefix}/logout/. Unlike the
// reference, it also clears the refresh cookie.
func (h sessionAPI) logout(w http.ResponseWriter, r *http.Request) error {
	caller, err := h.svc.Sessions.Check(r.Context(), bearerToken(r), false)
	if err != nil {
		return err
	}
	raw, err := h.presentedRefresh(w, r, func() error {
		return errDetail(http.StatusBadRequest, "Refresh token cookie not found.")
	})
	if err != nil {
		return err
	}
	if err := h.svc.Sessions.Logout(r.Context(), h.origin(r), caller, raw); err != nil {
		return err
	}
	h.clearRefreshCookie(w)
	return writeJSON(w, http.StatusOK, map[string]string{"detail": "Successfully logged out."})
}

// logoutAll answers POST {prefix}/logout-all/: every session of the caller
// ends.
func (h sessionAPI) logoutAll(w http.ResponseWriter, r *http.Request) error {
	if err := h.svc.Sessions.LogoutAll(r.Context(), h.origin(r), bearerToken(r)); err != nil {
		return err
	}
	h.clearRefreshCookie(w)
	return writeJSON(w, http.StatusOK, map[string]string{"detail": "Successfully logged out from all devices."})
}

// user answers GET and PATCH {prefix}/user/ (DELETE: deletionAPI).
func (h sessionAPI) user(w http.ResponseWriter, r *http.Request) error {
	if r.Method == http.MethodDelete {
		return deletionAPI{h.Handler}.delete(w, r)
	}
	caller, err := h.svc.Sessions.Check(r.Context(), bearerToken(r), false)
	if err != nil {
		return err
	}
	var p account.Profile
	if r.Method == http.MethodPatch {
		// The body first: the core reads the row afterwards, locked.
		f := readForm(w, r)
		if f.refused != nil {
			return f.refused
		}
		in := account.NameChange{SetFirstName: f.Has("first_name"), SetLastName: f.Has("last_name")}
		if in.SetFirstName {
			in.FirstName = f.Str("first_name", false, true)
		}
		if in.SetLastName {
			in.LastName = f.Str("last_name", false, true)
		}
		in.Invalid = f.core().Invalid
		p, err = h.svc.Users.ChangeNames(r.Context(), caller, in)
	} else {
		p, err = h.svc.Users.Profile(r.Context(), caller)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{
		"email":      p.Email,
		"first_name": p.FirstName,
		"last_name":  p.LastName,
	})
}

// jwks answers GET {prefix}/.well-known/jwks.json with the public keys, so
// upstream apps can verify tokens themselves.
func (h sessionAPI) jwks(w http.ResponseWriter, r *http.Request) error {
	body, err := h.svc.Keys().JWKS()
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
func (h *Handler) writeTokens(w http.ResponseWriter, status int, pair account.TokenPair, extra map[string]any) error {
	body := map[string]any{"access": pair.Access}
	for k, v := range extra {
		body[k] = v
	}
	if h.cfg.RefreshInBody {
		body["refresh"] = pair.Refresh
	} else {
		h.setRefreshCookie(w, pair.Refresh, int(h.policy.RefreshTTL.Seconds()))
	}
	return writeJSON(w, status, body)
}

func (c *cookies) setRefreshCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     RefreshCookie,
		Value:    value,
		Path:     c.cfg.Prefix + "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   c.cfg.CookieSecure,
		SameSite: c.cfg.CookieSameSite,
	})
}

func (c *cookies) clearRefreshCookie(w http.ResponseWriter) {
	if !c.cfg.RefreshInBody {
		c.setRefreshCookie(w, "", -1)
	}
}
