package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"slices"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// The double-submit CSRF cookie and header of the capability forms.
const (
	csrfCookie = "csrftoken"
	csrfHeader = "X-CSRFToken"
)

// handOverCapability sets the capability c in the cookie named cookie
// with its CSRF cookie, and sends the browser to target, or to the
// built-in form at path under the prefix when target is "".
func (h *Handler) handOverCapability(w http.ResponseWriter, c account.Capability, cookie, target, path string) error {
	h.setCapabilityCookies(w, cookie, c)
	if target == "" {
		target = h.cfg.Prefix + path
	}
	return redirect(w, target)
}

// setCapabilityCookies sets the capability cookie (HttpOnly, only sent to
// the endpoints under the prefix) and the CSRF cookie the page must echo in
// the X-CSRFToken header (readable by scripts, the whole site). The CSRF
// value is a MAC of the capability's jti under the CSRF key, so the
// server accepts only the value it issued with this capability: a
// `csrftoken` planted by a sibling subdomain, or kept from another flow,
// never matches.
func (c *cookies) setCapabilityCookies(w http.ResponseWriter, name string, capa account.Capability) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    capa.Token,
		Path:     c.cfg.Prefix + "/",
		MaxAge:   int(capa.TTL.Seconds()),
		HttpOnly: true,
		Secure:   c.cfg.CookieSecure,
		SameSite: http.SameSiteLaxMode,
	})
	http.SetCookie(w, &http.Cookie{
		Name:     csrfCookie,
		Value:    c.capabilityCSRF(capa.JTI),
		Path:     "/",
		MaxAge:   int(capa.TTL.Seconds()),
		Secure:   c.cfg.CookieSecure,
		SameSite: http.SameSiteLaxMode,
	})
}

// capabilityCSRF is the CSRF value issued with the capability of that jti.
func (c *cookies) capabilityCSRF(jti string) string {
	m := hmac.New(sha256.New, c.cfg.CSRFKey)
	m.Write([]byte("capability csrf\x00" + jti))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// clearCapabilityCookie removes a spent capability cookie.
func (c *cookies) clearCapabilityCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Path: c.cfg.Prefix + "/", MaxAge: -1,
		HttpOnly: true, Secure: c.cfg.CookieSecure, SameSite: http.SameSiteLaxMode,
	})
}

// capability reads and verifies the capability cookie of a set-password
// call: refused as unauthenticated without a valid one (the row is
// checked when it is spent), then the double-submit CSRF check: 403, and
// the capability is not spent.
func (h *Handler) capability(r *http.Request, cookie, permission string) (tokens.Claims, error) {
	raw := ""
	if ck, err := r.Cookie(cookie); err == nil {
		raw = ck.Value
	}
	c, err := h.svc.Passwords.ParseCapability(raw, permission)
	if err != nil {
		return tokens.Claims{}, err
	}
	return c, h.checkCSRF(r, c.ID)
}

// setWithCapability answers a password set by the capability in the
// cookie named cookie (of permission): the capability and its CSRF value
// are checked, the body read, and set sets the password; once it is saved
// the spent capability's cookie is cleared, whatever follows.
func (h *Handler) setWithCapability(w http.ResponseWriter, r *http.Request, cookie, permission string,
	set func(ctx context.Context, o account.Origin, c tokens.Claims, in account.NewPassword) (account.Done, error)) error {
	c, err := h.capability(r, cookie, permission)
	if err != nil {
		return err
	}
	f := readForm(w, r)
	in := f.newPassword()
	in.Form = f.core()
	done, err := set(r.Context(), h.origin(r), c, in)
	if done.Saved {
		h.clearCapabilityCookie(w, cookie)
	}
	if err != nil {
		return err
	}
	return h.writeStep(w, http.StatusOK, done.Step, map[string]any{"detail": done.Detail})
}

// checkCSRF is the double-submit check: the X-CSRFToken header must equal
// a csrftoken cookie, and that must be the value issued with the
// capability of jti. Every csrftoken the browser sends is looked at, so a
// second one planted for a parent domain cannot hide the issued one.
func (c *cookies) checkCSRF(r *http.Request, jti string) error {
	var sent []string
	for _, ck := range r.CookiesNamed(csrfCookie) {
		if ck.Value != "" {
			sent = append(sent, ck.Value)
		}
	}
	if len(sent) == 0 {
		return errDetail(http.StatusForbidden, "CSRF Failed: CSRF cookie not set.")
	}
	hv := r.Header.Get(csrfHeader)
	if hv == "" {
		return errDetail(http.StatusForbidden, "CSRF Failed: CSRF token missing.")
	}
	want := c.capabilityCSRF(jti)
	if !hmac.Equal([]byte(hv), []byte(want)) || !slices.Contains(sent, want) {
		return errDetail(http.StatusForbidden, "CSRF Failed: CSRF token incorrect.")
	}
	return nil
}
