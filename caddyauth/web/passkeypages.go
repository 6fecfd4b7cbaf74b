package web

import (
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// passkeyPages is what the pages show of passkeys: the login page's
// "Sign in with a passkey" and autofill (passwordless mode), the MFA
// page's "Use a passkey", and the account's passkeys page, where a
// signed-in user adds and removes them. The script {prefix}/page/passkey.js
// runs the browser's side of each ceremony: it asks one of the begin
// endpoints below for the options (a post with the page's CSRF token),
// hands them to navigator.credentials, and posts the credential
// (credential.toJSON()) with the page's own form, in its `credential`
// field. So each ceremony ends where the page's other forms end: the
// login page's and the MFA page's posts answer through loginStep and
// setSession as for a password or a TOTP code, and refusals are shown
// on the page.
type passkeyPages struct{ *Handler }

// msgNoCredential answers a passkey form posted without a passkey (a
// browser without the script).
const msgNoCredential = "Your browser sent no passkey. Passkeys need JavaScript and a browser that supports them."

// routes adds the passkeys page, the script and the begin endpoints.
func (h passkeyPages) routes(routes map[string]endpoint) {
	get := []string{http.MethodGet, http.MethodHead}
	post := []string{http.MethodPost}
	pg := pages(h)
	routes["/page/passkey.js"] = endpoint{get, pg.script}
	routes["/page/passkeys"] = endpoint{[]string{http.MethodGet, http.MethodHead, http.MethodPost}, pg.pageHandler(h.account)}
	routes["/page/passkey/mfa"] = endpoint{post, h.begin("", h.mfaOptions)}
	routes["/page/passkey/register"] = endpoint{post, h.begin(h.cfg.Prefix+"/page/passkeys", h.registerOptions)}
	if h.policy.Passkeys == account.PasskeysPasswordless {
		routes["/page/passkey/login"] = endpoint{post, h.begin("", h.loginOptions)}
	}
}

// begin adapts a begin endpoint of the script: a form post carrying the
// page's CSRF token (checked as every page form's), answered with the
// ceremony's options as JSON ({"publicKey": ...}). A refusal is
// {"detail"} in the pages' words, with `location` when the browser must
// sign in (again) first and come back to the page back (when that is
// set); a failing dependency is the JSON endpoints' 503.
func (h passkeyPages) begin(back string, options func(r *http.Request) ([]byte, error)) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
			return errDetail(http.StatusUnsupportedMediaType, "This endpoint only accepts the page's form.")
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		if err := r.ParseForm(); err != nil {
			return errDetail(http.StatusBadRequest, "The form could not be read.")
		}
		if !h.csrfValid(r) {
			return errDetail(http.StatusForbidden, "The page expired or did not come from this site. Reload it and try again.")
		}
		opts, err := options(r)
		status, msg, ok := pageRefusal(w, err)
		switch {
		case ok:
			body := map[string]string{"detail": msg}
			if loc := h.signInFirst(status, back); loc != "" && back != "" {
				body["location"] = loc
			}
			return writeJSON(w, status, body)
		case err != nil:
			return err
		}
		return writeOptions(w, opts)
	}
}

// signInFirst is where a refused browser must sign in before it tries
// again, coming back to back, or "": a session that is gone (401) signs
// in, one that is too old for the change (403, reauth_window) signs in
// again, as the TOTP setup page asks.
func (h passkeyPages) signInFirst(status int, back string) string {
	switch status {
	case http.StatusUnauthorized:
		return withNext(h.cfg.Prefix+"/page/login", back)
	case http.StatusForbidden:
		return h.cfg.Prefix + "/page/login?reauth=1&next=" + url.QueryEscape(back)
	}
	return ""
}

// loginOptions answers POST {prefix}/page/passkey/login: the options of
// a passwordless sign-in (POST {prefix}/passkey/login/begin/).
func (h passkeyPages) loginOptions(r *http.Request) ([]byte, error) {
	return h.svc.Passkeys.LoginBegin(r.Context(), h.origin(r))
}

// login finishes a passwordless sign-in posted to the login page.
func (h passkeyPages) login(r *http.Request) (account.Step, error) {
	response := r.PostForm.Get("credential")
	if response == "" {
		return account.Step{}, errDetail(http.StatusBadRequest, msgNoCredential)
	}
	return h.svc.Passkeys.LoginFinish(r.Context(), h.origin(r), []byte(response))
}

// mfaOptions answers POST {prefix}/page/passkey/mfa: the options for the
// passkeys of the login challenge in the MFA page's flow cookie.
func (h passkeyPages) mfaOptions(r *http.Request) ([]byte, error) {
	id, _ := loginChallengeOf(r)
	if id == "" {
		return nil, errDetail(http.StatusBadRequest, "This sign-in has expired. Please start again.")
	}
	return h.svc.Passkeys.SecondFactorBegin(r.Context(), h.origin(r), id)
}

// registerOptions answers POST {prefix}/page/passkey/register: the
// creation options of a new passkey for the signed-in user, who must have
// signed in recently.
func (h passkeyPages) registerOptions(r *http.Request) ([]byte, error) {
	in := account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: h.accessCookieValue(r)}}
	return h.svc.Passkeys.RegisterBegin(r.Context(), h.origin(r), in)
}

// passkeyRow is a passkey as the passkeys page lists it.
type passkeyRow struct {
	ID                    int64
	Name, Added, LastUsed string
	Locked                bool
}

// shownTime is how the passkeys page shows an instant.
func shownTime(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") }

// account is GET/POST {prefix}/page/passkeys: the signed-in user's
// passkeys, the form that adds one (the script posts its credential and
// name) and a form per passkey that removes it. A browser without a
// session signs in first, and one whose session is older than
// reauth_window signs in again before a change (reauthenticate), then
// comes back here.
func (h passkeyPages) account(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	access := h.accessCookieValue(r)
	self := h.cfg.Prefix + "/page/passkeys"
	d := pageData{Title: "Passkeys", Script: true}
	if r.Method == http.MethodPost {
		var err error
		if v := r.PostForm.Get("remove"); v != "" {
			id, _ := strconv.ParseInt(v, 10, 64)
			err = h.svc.Passkeys.Delete(ctx, h.origin(r), account.Enrolment{Access: access}, id)
			if err == nil {
				return seeOther(w, self+"?removed=1")
			}
		} else {
			var reg account.Registered
			reg, err = h.register(r, access)
			if err == nil && reg.Codes != nil {
				return h.render(w, r, http.StatusOK, "recovery-codes", pageData{Title: "Save your recovery codes", Codes: reg.Codes, Continue: self + "?added=1"})
			}
			if err == nil {
				return seeOther(w, self+"?added=1")
			}
		}
		status, msg, ok := pageRefusal(w, err)
		if !ok {
			return err
		}
		if loc := h.signInFirst(status, self); loc != "" {
			return seeOther(w, loc)
		}
		d.Error = msg
		return h.list(w, r, status, d)
	}
	switch q := r.URL.Query(); {
	case q.Get("added") != "":
		d.Info = "Passkey added. You can now use it to sign in."
	case q.Get("removed") != "":
		d.Info = "Passkey removed."
	}
	return h.list(w, r, http.StatusOK, d)
}

// register finishes adding a passkey posted by the script.
func (h passkeyPages) register(r *http.Request, access string) (account.Registered, error) {
	response := r.PostForm.Get("credential")
	if response == "" {
		return account.Registered{}, errDetail(http.StatusBadRequest, msgNoCredential)
	}
	in := account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: access}, Name: r.PostForm.Get("name"), Response: []byte(response)}
	return h.svc.Passkeys.RegisterFinish(r.Context(), h.origin(r), in)
}

// list renders the passkeys page with status, or sends a browser without
// a session to sign in.
func (h passkeyPages) list(w http.ResponseWriter, r *http.Request, status int, d pageData) error {
	self := h.cfg.Prefix + "/page/passkeys"
	keys, err := h.svc.Passkeys.List(r.Context(), h.accessCookieValue(r))
	if account.IsRefusal(err) {
		return seeOther(w, withNext(h.cfg.Prefix+"/page/login", self))
	}
	if err != nil {
		return err
	}
	for _, k := range keys {
		row := passkeyRow{ID: k.ID, Name: k.Name, Added: shownTime(k.Created), LastUsed: "never", Locked: k.Locked}
		if !k.LastUsed.IsZero() {
			row.LastUsed = shownTime(k.LastUsed)
		}
		d.Passkeys = append(d.Passkeys, row)
	}
	return h.render(w, r, status, "passkeys", d)
}
