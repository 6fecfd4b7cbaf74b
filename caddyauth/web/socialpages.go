package web

import (
	"crypto/hmac"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// The browser's sign-in with an identity provider, which the reference
// lacks. The login and sign-up pages show a button per provider, a link
// to GET {prefix}/social/<provider>/login/?next=, which keeps the attempt
// in a cookie and sends the browser to the provider. The provider sends
// it back to {prefix}/social/<provider>/callback/, which ends as the
// login page does: on to the second factor or TOTP setup, or the session
// and `next`. Every refusal is a page, never JSON.
//
// Both are pages: they render the page templates, which `pages off` does
// not load, so with the pages off they are not served (404) while the
// JSON flows under {prefix}/social/ stay.

// socialCookie carries a browser's attempt between the start and the
// callback.
const socialCookie = "jwt_allauth_social"

// startPage answers GET {prefix}/social/<provider>/login/?next=.
func (h socialAPI) startPage(w http.ResponseWriter, r *http.Request, provider string) error {
	if h.cfg.DisablePages {
		return errDetail(http.StatusNotFound, "Not found.")
	}
	pg := pages{h.Handler}
	return pg.pageHandler(func(w http.ResponseWriter, r *http.Request) error {
		return pg.socialStart(w, r, provider)
	})(w, r)
}

// callbackPage answers GET and POST {prefix}/social/<provider>/callback/:
// a provider returns the browser with a redirect, or with a form it posts
// (`response_mode=form_post`, as Apple does). That post is no form of this
// site, so it carries no CSRF token: the state, which must be the one the
// browser's cookie kept, binds it to the browser that started.
func (h socialAPI) callbackPage(w http.ResponseWriter, r *http.Request, provider string) error {
	if h.cfg.DisablePages {
		return errDetail(http.StatusNotFound, "Not found.")
	}
	pg := pages{h.Handler}
	return pg.servePage(false, func(w http.ResponseWriter, r *http.Request) error {
		return pg.socialCallback(w, r, provider)
	})(w, r)
}

// socialStart begins the attempt with `next` checked as the login page
// checks it (an unsafe one becomes "/"), and sends the browser to the
// provider.
func (h pages) socialStart(w http.ResponseWriter, r *http.Request, provider string) error {
	next := nextOf(r)
	a, err := h.svc.Social.Begin(r.Context(), h.origin(r), provider, h.socialCallbackURL(r, provider), next)
	if status, msg, ok := pageRefusal(w, err); ok {
		return h.render(w, r, status, "message", pageData{Title: h.socialTitle(provider), Error: msg, Next: next})
	}
	if err != nil {
		return err
	}
	h.setAttemptCookie(w, a.State+"."+base64.RawURLEncoding.EncodeToString([]byte(next)))
	return seeOther(w, a.URL)
}

// socialCallback finishes the attempt the browser's cookie names with
// what the provider sent back.
func (h pages) socialCallback(w http.ResponseWriter, r *http.Request, provider string) error {
	kept, next := attemptOf(cookieValue(r, socialCookie))
	state := r.FormValue("state")
	// The return spends the cookie's attempt. A cookie of another
	// attempt (started later, in another tab) stays for that attempt's
	// own return.
	if kept == "" || hmac.Equal([]byte(state), []byte(kept)) {
		h.setAttemptCookie(w, "")
	}
	d := pageData{Title: h.socialTitle(provider), Next: next}
	if e := r.FormValue("error"); e != "" {
		h.cfg.Logger.Debug("the provider refused a social sign-in", zap.String("provider", provider), zap.String("error", e), zap.String("client_ip", h.cfg.ClientIP(r)))
		var status int
		status, d.Error = h.providerRefusal(provider, e)
		return h.render(w, r, status, "message", d)
	}
	step, err := h.svc.Social.Finish(r.Context(), h.origin(r), provider, h.socialCallbackURL(r, provider),
		account.Return{State: state, KeptState: kept, Next: next, Code: r.FormValue("code")})
	if status, msg, ok := pageRefusal(w, err); ok {
		d.Error = msg
		return h.render(w, r, status, "message", d)
	}
	if err != nil {
		return err
	}
	// The browser arrived here at the end of redirects that began at the
	// provider's site; until it leaves this chain, it withholds the
	// SameSite=Strict cookies (the second factor's flow cookie, the CSRF
	// cookie) from this site. So this page moves on itself, with a
	// navigation of its own, and shows a link in case it does not.
	target := h.loginStep(w, step, next)
	name, _ := h.socialName(provider)
	return h.render(w, r, http.StatusOK, "message", pageData{Title: "Signing you in", Info: "Back from " + name + ". Continuing…", Continue: target, Refresh: target})
}

// providerRefusal is the status and the message of a provider's `error`
// answer. Its error_description is not shown: anyone can make a link to
// the callback with words of their choosing in it.
func (h pages) providerRefusal(provider, code string) (int, string) {
	name, _ := h.socialName(provider)
	switch code {
	case "access_denied":
		return http.StatusForbidden, "The sign-in was cancelled at " + name + ", or " + name + " refused it."
	case "temporarily_unavailable", "server_error":
		return http.StatusServiceUnavailable, "Signing in with " + name + " is not possible right now. Please try again in a moment."
	}
	return http.StatusBadRequest, "Could not sign you in with " + name + ". Please try again."
}

// socialName is the configured provider's display name; a provider id
// that is not configured (a path segment of the request) is never shown.
func (h pages) socialName(provider string) (string, bool) {
	for _, p := range h.cfg.SocialProviders {
		if p.ID == provider {
			return p.Name, true
		}
	}
	return "the provider", false
}

// socialTitle heads a social page.
func (h pages) socialTitle(provider string) string {
	if name, ok := h.socialName(provider); ok {
		return "Sign in with " + name
	}
	return "Sign in"
}

// socialCallbackURL is the redirect URI of a provider: the callback under
// the prefix, at the site's public address (else the request's).
func (h *Handler) socialCallbackURL(r *http.Request, provider string) string {
	base := h.siteURL(r)
	return base + h.cfg.Prefix + "/social/" + url.PathEscape(provider) + "/callback/"
}

// setAttemptCookie stores (or, with "", clears) a browser's attempt: its
// state and, base64url-encoded, its `next`. HttpOnly, under
// {prefix}/social/ only, for as long as the core keeps the attempt.
//
// SameSite: a provider sends the browser back with a top-level GET, which
// carries a Lax cookie, or with a cross-site POST (form_post), which
// carries only a SameSite=None cookie; browsers take None only on a
// Secure cookie. So it is None when cookies are Secure and Lax otherwise
// (a form_post provider requires HTTPS anyway). Being sent cross-site
// gives nothing away: the cookie is what a return must match, and a
// return without the provider's state for it is refused.
func (h *Handler) setAttemptCookie(w http.ResponseWriter, value string) {
	maxAge := int(account.SocialAttemptTTL.Seconds())
	if value == "" {
		maxAge = -1
	}
	sameSite := http.SameSiteLaxMode
	if h.cfg.CookieSecure {
		sameSite = http.SameSiteNoneMode
	}
	http.SetCookie(w, &http.Cookie{
		Name:     socialCookie,
		Value:    value,
		Path:     h.cfg.Prefix + "/social/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   h.cfg.CookieSecure,
		SameSite: sameSite,
	})
}

// attemptOf reads an attempt cookie: the state ("" when there is none or
// it is garbled) and the `next` (checked again: the core refuses an
// attempt whose `next` was changed, and "/" is never a wrong place to
// send a refused browser).
func attemptOf(v string) (state, next string) {
	state, enc, ok := strings.Cut(v, ".")
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if !ok || err != nil || state == "" {
		return "", "/"
	}
	return state, safeNext(string(b))
}
