package web

import (
	"encoding/base64"
	"io"
	"net/http"
)

// The built-in pages behind mailed links, used unless a redirect URL is
// configured for them.
type pageKind int

const (
	pageResetForm pageKind = iota
	pageResetInvalid
	pageSetForm
	pageVerified
	pageLinkInvalid
	pageInvitationInvalid
)

// linkPage writes a built-in page behind a mailed link, from the link
// page template with the layout and the security headers of the pages
// under {prefix}/page/, but that no Referer leaks the link's URL. The
// password forms post with a script (the set-password endpoints want the
// CSRF header), allowed by a per-response nonce and only there.
func (h pages) linkPage(w http.ResponseWriter, r *http.Request, status int, kind pageKind) error {
	d := pageData{SiteName: h.svc.SiteName(h.cfg.PublicURL)}
	switch kind {
	case pageResetForm:
		d.Title, d.Message = "Choose a new password", "Enter your new password twice. Saving it signs you out everywhere."
		d.Endpoint = h.cfg.Prefix + "/password/reset/set-new/"
	case pageResetInvalid:
		d.Title, d.Message = "Invalid link", "This password reset link is invalid, expired or already used. Please request a new one."
	case pageSetForm:
		d.Title, d.Message = "Choose your password", "Enter the password for your new account twice."
		d.Endpoint = h.cfg.Prefix + "/registration/set-password/"
	case pageVerified:
		d.Title, d.Message = "E-mail address confirmed", "Thank you, your e-mail address is confirmed. You can close this page and sign in."
	case pageLinkInvalid:
		d.Title, d.Message = "Invalid link", "This link is invalid, expired or already used."
	case pageInvitationInvalid:
		d.Title, d.Message = "Invalid invitation", "This invitation link is invalid or has expired. Please ask for a new invitation."
	}
	setPageHeaders(w)
	hd := w.Header()
	hd.Set("Referrer-Policy", "no-referrer")
	if d.Endpoint != "" {
		nonce := make([]byte, 16)
		if _, err := io.ReadFull(h.cfg.Rand, nonce); err != nil {
			return err
		}
		d.Nonce = base64.StdEncoding.EncodeToString(nonce)
		hd.Set("Content-Security-Policy", pageCSP+"; script-src 'nonce-"+d.Nonce+"'; connect-src 'self'")
	}
	return h.writePage(w, r, status, linkPageName, d)
}

// resetForm answers GET {prefix}/password/reset/default/: the form, or the
// invalid-link page without a reset capability cookie.
func (h pages) resetForm(w http.ResponseWriter, r *http.Request) error {
	if _, err := r.Cookie(resetCookie); err != nil {
		return h.linkPage(w, r, http.StatusOK, pageResetInvalid)
	}
	return h.linkPage(w, r, http.StatusOK, pageResetForm)
}

// setPasswordForm answers GET {prefix}/registration/set-password/default/.
func (h pages) setPasswordForm(w http.ResponseWriter, r *http.Request) error {
	if _, err := r.Cookie(setPasswordCookie); err != nil {
		return h.linkPage(w, r, http.StatusOK, pageInvitationInvalid)
	}
	return h.linkPage(w, r, http.StatusOK, pageSetForm)
}

// verified answers GET {prefix}/registration/verified/.
func (h pages) verified(w http.ResponseWriter, r *http.Request) error {
	return h.linkPage(w, r, http.StatusOK, pageVerified)
}
