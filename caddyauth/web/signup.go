package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// signupAPI is registration: sign-up, the mailed links, invitations.
type signupAPI struct{ *Handler }

// Cookies set when a mailed link is followed.
const (
	resetCookie       = "password_reset_access_token"
	setPasswordCookie = "set_password_access_token"
)

// registrant reads a sign-up's fields from f.
func registrant(f *form) account.Registrant {
	return account.Registrant{
		Email:     f.Str("email", true, true),
		Password1: f.Str("password1", true, false),
		Password2: f.Str("password2", true, false),
		FirstName: f.Str("first_name", true, true),
		LastName:  f.Str("last_name", true, true),
	}
}

// register answers POST {prefix}/registration/.
func (h signupAPI) register(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	in := registrant(f)
	in.Form = f.core()
	res, err := h.svc.Signup.SignUp(r.Context(), h.origin(r), in)
	if err != nil {
		return err
	}
	if !res.Pending() && res.Pair.Access == "" {
		return writeJSON(w, http.StatusCreated, map[string]string{"detail": account.MsgVerificationSent})
	}
	var extra map[string]any
	if res.MailSent && res.SetupChallenge != "" {
		extra = map[string]any{"detail": account.MsgVerificationSent}
	}
	return h.writeStep(w, http.StatusCreated, res.Step, extra)
}

// followLink answers GET {prefix}/registration/verification/<key>/, the
// link of a confirmation or invitation mail: the
// browser goes to email_verified_redirect or the built-in page, or, for an
// invited user without a password, on to the set-password step with its
// capability.
func (h signupAPI) followLink(w http.ResponseWriter, r *http.Request) error {
	key := strings.TrimSuffix(h.pathParam(r, "/registration/verification/"), "/")
	pg := pages{h.Handler}
	if strings.Contains(key, "/") {
		return pg.linkPage(w, r, http.StatusNotFound, pageLinkInvalid)
	}
	res, err := h.svc.Signup.FollowLink(r.Context(), h.origin(r), key)
	switch {
	case errors.Is(err, account.ErrLinkInvalid):
		return pg.linkPage(w, r, http.StatusNotFound, pageLinkInvalid)
	case errors.Is(err, account.ErrInvitationInvalid):
		return pg.linkPage(w, r, http.StatusBadRequest, pageInvitationInvalid)
	case err != nil:
		return err
	case res.Capability != nil:
		return h.handOverCapability(w, *res.Capability, setPasswordCookie, h.cfg.PasswordSetRedirect, "/registration/set-password/default/")
	}
	target := h.cfg.EmailVerifiedRedirect
	if target == "" {
		target = h.cfg.Prefix + "/registration/verified/"
	}
	return redirect(w, target)
}

// invite answers POST {prefix}/registration/user-register/: a holder of an `invite_roles` role creates an account without a
// password for `email` with `role`, and the invitation link is mailed.
func (h signupAPI) invite(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	in := account.Invitee{Email: f.Str("email", true, true)}
	in.Role, _ = f.Integer("role", true)
	in.FirstName = f.Str("first_name", false, true)
	in.LastName = f.Str("last_name", false, true)
	in.Form = f.core()
	if err := h.svc.Signup.Invite(r.Context(), h.origin(r), bearerToken(r), in); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, map[string]any{})
}

// setPassword answers POST {prefix}/registration/set-password/, authorised
// by the set_password_access_token cookie and the CSRF header. In MFA
// required mode the answer is the setup bootstrap instead of tokens.
func (h signupAPI) setPassword(w http.ResponseWriter, r *http.Request) error {
	return h.setWithCapability(w, r, setPasswordCookie, account.PurposePassSetAccess, h.svc.Signup.SetPassword)
}

// resend answers POST {prefix}/registration/resend-email/: a new
// confirmation link for an unconfirmed sign-up; the answer is the same
// whatever the address.
func (h signupAPI) resend(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	email := f.Str("email", true, true)
	if err := h.svc.Signup.Resend(r.Context(), h.origin(r), email, f.core()); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{"detail": "ok"})
}
