package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// passwordAPI is the password reset by mailed link and the password
// change.
type passwordAPI struct{ *Handler }

// reset answers POST {prefix}/password/reset/: the
// same success whatever the address.
func (h passwordAPI) reset(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	email := f.Str("email", true, true)
	if err := h.svc.Passwords.RequestReset(r.Context(), h.origin(r), email, f.core()); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{"detail": "Password reset e-mail has been sent."})
}

// resetConfirm answers GET {prefix}/password/reset/confirm/<uid>/<token>/,
// the mailed link: a reset capability is set in the
// password_reset_access_token cookie with a CSRF cookie, and the browser
// goes on to password_reset_redirect or the built-in form. Any bad link
// gets the built-in "invalid link" page (200). An Authorization header is
// ignored.
func (h passwordAPI) resetConfirm(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimSuffix(h.pathParam(r, "/password/reset/confirm/"), "/")
	uid, secret, ok := strings.Cut(rest, "/")
	invalid := func() error {
		return pages{h.Handler}.linkPage(w, r, http.StatusOK, pageResetInvalid)
	}
	if !ok || strings.Contains(secret, "/") {
		return invalid()
	}
	c, err := h.svc.Passwords.FollowResetLink(r.Context(), h.origin(r), uid, secret)
	if errors.Is(err, account.ErrLinkInvalid) {
		return invalid()
	}
	if err != nil {
		return err
	}
	return h.handOverCapability(w, c, resetCookie, h.cfg.PasswordResetRedirect, "/password/reset/default/")
}

// resetSetNew answers POST {prefix}/password/reset/set-new/, authorised by
// the password_reset_access_token cookie and the CSRF header; the answer
// goes through the MFA gate.
func (h passwordAPI) resetSetNew(w http.ResponseWriter, r *http.Request) error {
	return h.setWithCapability(w, r, resetCookie, account.PurposePassResetAccess, h.svc.Passwords.SetNew)
}

// change answers POST {prefix}/password/change/: with
// the old password, the new one is saved, every session and pending link
// of the user is revoked, and a new session is opened for the caller.
func (h passwordAPI) change(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	in := account.PasswordChange{Old: f.password("old_password", true)}
	in.NewPassword = f.newPassword()
	in.Form = f.core()
	pair, err := h.svc.Passwords.Change(r.Context(), h.origin(r), bearerToken(r), in)
	if err != nil {
		return err
	}
	return h.writeTokens(w, http.StatusOK, pair, map[string]any{"detail": "New password has been saved."})
}

// redirect answers 302 to target (a URL or a path).
func redirect(w http.ResponseWriter, target string) error {
	w.Header().Set("Location", target)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusFound)
	return nil
}
