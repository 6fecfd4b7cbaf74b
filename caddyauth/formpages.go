package caddyauth

import (
	"errors"
	"net/http"
	"slices"
	"strings"
)

// The sign-up and forgot-password pages under {prefix}/page/. Their posts
// are read into the same form type as the JSON bodies and go through the
// same handler methods as POST /registration/ and POST /password/reset/.

// msgResetRequested is the forgot-password page's answer, the same for
// every address.
const msgResetRequested = "If an account exists for this address, a reset link has been sent."

// signupFields are the fields of the sign-up form.
var signupFields = []string{"email", "password1", "password2", "first_name", "last_name"}

// fieldErrors splits a refusal for a form page: the messages of the named
// fields (the first of each), and the rest as one message. ok is false when
// err is not a refusal.
func fieldErrors(w http.ResponseWriter, err error, names []string) (status int, fields map[string]string, msg string, ok bool) {
	var ae *apiError
	if !errors.As(err, &ae) {
		return 0, nil, "", false
	}
	fields = map[string]string{}
	if byField, isFields := ae.body.(map[string][]string); isFields {
		var other []string
		for name, msgs := range byField {
			if len(msgs) == 0 {
				continue
			}
			if slices.Contains(names, name) {
				fields[name] = msgs[0]
			} else {
				other = append(other, msgs[0])
			}
		}
		msg = strings.Join(other, " ")
		if msg == "" {
			msg = "Please correct the errors below."
		}
		return ae.status, fields, msg, true
	}
	status, msg, _ = pageRefusal(w, err)
	return status, fields, msg, true
}

// signupPage is GET/POST {prefix}/page/signup, routed when sign-up is
// open: the sign-up of POST /registration/, its refusals shown by field.
// Then the "verification e-mail sent" page under mandatory verification;
// otherwise the TOTP setup page in required mode, or a session and `next`.
func (h *Handler) signupPage(w http.ResponseWriter, r *http.Request) error {
	next := nextOf(r)
	d := pageData{Title: "Create an account", Next: next, Fields: map[string]string{}}
	if r.Method != http.MethodPost {
		return h.render(w, r, http.StatusOK, "signup", d)
	}
	d.Email = strings.TrimSpace(r.PostForm.Get("email"))
	d.FirstName = strings.TrimSpace(r.PostForm.Get("first_name"))
	d.LastName = strings.TrimSpace(r.PostForm.Get("last_name"))
	res, err := h.signUp(r, formOf(r.PostForm, signupFields...))
	if status, fields, msg, ok := fieldErrors(w, err, signupFields); ok {
		d.Fields, d.Error = fields, msg
		return h.render(w, r, status, "signup", d)
	}
	if err != nil {
		return err
	}
	// Under mandatory verification every sign-up ends here, whether the
	// address was free or not (the bootstrap of a taken one leads nowhere).
	if h.realm.policy.emailVerification == verifyMandatory {
		return h.render(w, r, http.StatusOK, "message", pageData{Title: "Check your e-mail", Info: msgVerificationSent, Next: next})
	}
	if id, _ := res.mfa["setup_challenge_id"].(string); id != "" {
		h.setFlowCookie(w, setupCookie, id)
		return seeOther(w, withNext(h.Prefix+"/page/mfa-setup", next))
	}
	if !res.session {
		return h.render(w, r, http.StatusOK, "message", pageData{Title: "Check your e-mail", Info: msgVerificationSent, Next: next})
	}
	h.setSession(w, res.pair)
	return seeOther(w, next)
}

// passwordResetPage is GET/POST {prefix}/page/password-reset: the request
// of POST /password/reset/ (its throttle and time floor), answered with
// the same page whether the address has an account or not.
func (h *Handler) passwordResetPage(w http.ResponseWriter, r *http.Request) error {
	next := nextOf(r)
	d := pageData{Title: "Reset your password", Next: next, Fields: map[string]string{}}
	if r.Method != http.MethodPost {
		return h.render(w, r, http.StatusOK, "password-reset", d)
	}
	d.Email = strings.TrimSpace(r.PostForm.Get("email"))
	err := h.requestPasswordReset(r, formOf(r.PostForm, "email"))
	if status, fields, msg, ok := fieldErrors(w, err, []string{"email"}); ok {
		d.Fields, d.Error = fields, msg
		return h.render(w, r, status, "password-reset", d)
	}
	if err != nil {
		return err
	}
	return h.render(w, r, http.StatusOK, "message", pageData{Title: "Check your e-mail", Info: msgResetRequested, Next: next})
}
