package web

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// The sign-up and forgot-password pages under {prefix}/page/. Their posts
// are read into the same form type as the JSON bodies and go through the
// same core flows as POST /registration/ and POST /password/reset/.

// msgResetRequested is the forgot-password page's answer, the same for
// every address.
const msgResetRequested = "If an account exists for this address, a reset link has been sent."

// signupFields are the fields of the sign-up form.
var signupFields = []string{"email", "password1", "password2", "first_name", "last_name"}

// fieldErrors splits a refusal for a form page: the messages of the named
// fields (the first of each), and the rest as one message. ok is false when
// err is not a refusal.
func fieldErrors(w http.ResponseWriter, err error, names []string) (status int, fields map[string]string, msg string, ok bool) {
	var ref *account.Refusal
	if errors.As(err, &ref) && ref.Fields != nil {
		fields = map[string]string{}
		byField := ref.Fields
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
		return statusOf(ref.Kind), fields, msg, true
	}
	status, msg, ok = pageRefusal(w, err)
	return status, map[string]string{}, msg, ok
}

// signupPage is GET/POST {prefix}/page/signup, routed when sign-up is
// open: the sign-up of POST /registration/, its refusals shown by field.
// Then the "verification e-mail sent" page under mandatory verification;
// otherwise the TOTP setup page in required mode, or a session and `next`.
func (h pages) signup(w http.ResponseWriter, r *http.Request) error {
	next := nextOf(r)
	d := pageData{Title: "Create an account", Next: next, Fields: map[string]string{}}
	if r.Method != http.MethodPost {
		return h.render(w, r, http.StatusOK, "signup", d)
	}
	d.Email = strings.TrimSpace(r.PostForm.Get("email"))
	d.FirstName = strings.TrimSpace(r.PostForm.Get("first_name"))
	d.LastName = strings.TrimSpace(r.PostForm.Get("last_name"))
	f := formOf(r.PostForm, signupFields...)
	in := registrant(f)
	in.Form = f.core()
	res, err := h.svc.Signup.SignUp(r.Context(), h.origin(r), in)
	if status, fields, msg, ok := fieldErrors(w, err, signupFields); ok {
		d.Fields, d.Error = fields, msg
		return h.render(w, r, status, "signup", d)
	}
	if err != nil {
		return err
	}
	// Under mandatory verification every sign-up ends here, whether the
	// address was free or not (the bootstrap of a taken one leads nowhere).
	if h.policy.EmailVerification == account.VerifyMandatory {
		return h.render(w, r, http.StatusOK, "message", pageData{Title: "Check your e-mail", Info: account.MsgVerificationSent, Next: next})
	}
	if res.SetupChallenge != "" {
		h.setFlowCookie(w, setupCookie, res.SetupChallenge)
		return seeOther(w, withNext(h.cfg.Prefix+"/page/mfa-setup", next))
	}
	if res.Pair.Access == "" {
		return h.render(w, r, http.StatusOK, "message", pageData{Title: "Check your e-mail", Info: account.MsgVerificationSent, Next: next})
	}
	h.setSession(w, res.Pair)
	return seeOther(w, next)
}

// passwordResetPage is GET/POST {prefix}/page/password-reset: the request
// of POST /password/reset/ (its throttle and time floor), answered with
// the same page whether the address has an account or not.
func (h pages) passwordReset(w http.ResponseWriter, r *http.Request) error {
	next := nextOf(r)
	d := pageData{Title: "Reset your password", Next: next, Fields: map[string]string{}}
	if r.Method != http.MethodPost {
		return h.render(w, r, http.StatusOK, "password-reset", d)
	}
	d.Email = strings.TrimSpace(r.PostForm.Get("email"))
	f := formOf(r.PostForm, "email")
	email := f.Str("email", true, true)
	err := h.svc.Passwords.RequestReset(r.Context(), h.origin(r), email, f.core())
	if status, fields, msg, ok := fieldErrors(w, err, []string{"email"}); ok {
		d.Fields, d.Error = fields, msg
		return h.render(w, r, status, "password-reset", d)
	}
	if err != nil {
		return err
	}
	return h.render(w, r, http.StatusOK, "message", pageData{Title: "Check your e-mail", Info: msgResetRequested, Next: next})
}
