package caddyauth

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"html/template"
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

//go:embed linkpages.html
var linkPagesHTML string

var linkPageTemplate = template.Must(template.New("page").Parse(linkPagesHTML))

// linkPageData is what pages.html sees.
type linkPageData struct {
	Site     string
	Title    string
	Message  string
	Endpoint string // the form posts here; "" means no form
	Nonce    string
}

// page writes a built-in page. The only script is the form's, allowed by
// a per-response nonce; nothing else may load, frame the page or leak the
// URL in a Referer.
func (h *Handler) linkPage(w http.ResponseWriter, r *http.Request, status int, kind pageKind) error {
	rl := h.realm
	d := linkPageData{Site: rl.siteName()}
	switch kind {
	case pageResetForm:
		d.Title, d.Message = "Choose a new password", "Enter your new password twice. Saving it signs you out everywhere."
		d.Endpoint = h.Prefix + "/password/reset/set-new/"
	case pageResetInvalid:
		d.Title, d.Message = "Invalid link", "This password reset link is invalid, expired or already used. Please request a new one."
	case pageSetForm:
		d.Title, d.Message = "Choose your password", "Enter the password for your new account twice."
		d.Endpoint = h.Prefix + "/registration/set-password/"
	case pageVerified:
		d.Title, d.Message = "E-mail address confirmed", "Thank you, your e-mail address is confirmed. You can close this page and sign in."
	case pageLinkInvalid:
		d.Title, d.Message = "Invalid link", "This link is invalid, expired or already used."
	case pageInvitationInvalid:
		d.Title, d.Message = "Invalid invitation", "This invitation link is invalid or has expired. Please ask for a new invitation."
	}
	nonce := make([]byte, 16)
	if _, err := io.ReadFull(rl.rand, nonce); err != nil {
		return err
	}
	d.Nonce = base64.StdEncoding.EncodeToString(nonce)
	var buf bytes.Buffer
	if err := linkPageTemplate.Execute(&buf, d); err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-"+d.Nonce+"'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// resetPage answers GET {prefix}/password/reset/default/: the form, or the
// invalid-link page without a reset capability cookie.
func (h *Handler) resetPage(w http.ResponseWriter, r *http.Request) error {
	if _, err := r.Cookie(resetCookie); err != nil {
		return h.linkPage(w, r, http.StatusOK, pageResetInvalid)
	}
	return h.linkPage(w, r, http.StatusOK, pageResetForm)
}

// setPasswordPage answers GET {prefix}/registration/set-password/default/.
func (h *Handler) setPasswordPage(w http.ResponseWriter, r *http.Request) error {
	if _, err := r.Cookie(setPasswordCookie); err != nil {
		return h.linkPage(w, r, http.StatusOK, pageInvitationInvalid)
	}
	return h.linkPage(w, r, http.StatusOK, pageSetForm)
}

// verifiedPage answers GET {prefix}/registration/verified/.
func (h *Handler) verifiedPage(w http.ResponseWriter, r *http.Request) error {
	return h.linkPage(w, r, http.StatusOK, pageVerified)
}
