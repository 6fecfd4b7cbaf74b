package web

import (
	"bytes"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// The HTML pages under {prefix}/page/: login, the second factor, TOTP
// setup, logout, the refresh hop the guard sends browsers through, and
// sign-up and forgot-password (formpages.go).
// They are plain forms, post to themselves, carry a CSRF token, and call
// the same core flows as the JSON endpoints. Every page is sent with a
// strict Content-Security-Policy; its only resources are the stylesheet
// served from the prefix and the QR code as a data: image. The pages that
// offer passkeys (passkeypages.go) also load the passkey script from the
// prefix, and only they allow it.
//
// The built-in pages behind mailed links (linkpages.go) are rendered from
// the same templates, with the same layout and headers.

//go:embed pages
var embeddedPages embed.FS

// DefaultLoginPage is the guard's `redirect` target when none is given:
// the login page of endpoints under the default prefix.
const DefaultLoginPage = "/auth/page/login"

// pageCSP is the Content-Security-Policy of every page.
const pageCSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// scriptCSP is what a page running the passkey script adds to pageCSP:
// scripts from this site only (never inline), and its requests for a
// ceremony's options.
const scriptCSP = "; script-src 'self'; connect-src 'self'"

// pageNames lists the page templates; each is parsed with layout.html.
var pageNames = []string{"login", "mfa", "mfa-setup", "recovery-codes", "logout", "message", "signup", "password-reset", "passkeys", "sessions", "admin", linkPageName}

// linkPageName is the template of the pages behind mailed links, which
// are served even when the pages under {prefix}/page/ are not.
const linkPageName = "link"

// Cookies that carry a login in progress between two pages. They live
// under {prefix}/page/ only, and no longer than a challenge.
const (
	challengeCookie = "jwt_allauth_mfa"
	setupCookie     = "jwt_allauth_setup"
)

// pageSet is the parsed templates, the stylesheet and the passkey script.
type pageSet struct {
	pages map[string]*template.Template
	css   []byte
	js    []byte
}

// loadPageSet parses the embedded templates of the named pages, each
// replaced by the file of the same name in dir when dir is set and has one
// (`login.html`, `layout.html`, `style.css`, `passkey.js`, ...).
func loadPageSet(dir string, names []string) (*pageSet, error) {
	if err := CheckTemplateDir(dir); err != nil {
		return nil, err
	}
	read := func(name string) ([]byte, error) {
		if dir != "" {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil {
				return b, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		return embeddedPages.ReadFile("pages/" + name)
	}
	layout, err := read("layout.html")
	if err != nil {
		return nil, err
	}
	ps := &pageSet{pages: map[string]*template.Template{}}
	for _, name := range names {
		body, err := read(name + ".html")
		if err != nil {
			return nil, err
		}
		t, err := template.New("layout").Parse(string(layout))
		if err != nil {
			return nil, fmt.Errorf("page template layout.html: %v", err)
		}
		if _, err := t.Parse(string(body)); err != nil {
			return nil, fmt.Errorf("page template %s.html: %v", name, err)
		}
		// Render once with empty data, so that a template naming a field
		// pages do not have stops the start, not a visitor's request.
		if err := t.Execute(io.Discard, pageData{}); err != nil {
			return nil, fmt.Errorf("page template %s.html: %v", name, err)
		}
		ps.pages[name] = t
	}
	if ps.css, err = read("style.css"); err != nil {
		return nil, err
	}
	if ps.js, err = read("passkey.js"); err != nil {
		return nil, err
	}
	return ps, nil
}

// CheckTemplateDir refuses a templates directory that is not there, so a
// misspelt path is not silently replaced by the built-in templates.
func CheckTemplateDir(dir string) error {
	if dir == "" {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("templates: %v", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("templates: %s is not a directory", dir)
	}
	return nil
}

// pageData is what every template sees.
type pageData struct {
	SiteName  string
	Title     string
	Prefix    string // the endpoints' prefix, e.g. /auth
	CSRF      string
	Next      string
	Error     string
	Info      string
	Email     string
	Secret    string
	QR        template.URL // data: URI of the QR code
	Codes     []string
	Continue  string
	Refresh   string // the page moves on to this same-site path at once
	Recovery  bool   // the MFA page shows the recovery-code form
	LoginPage string
	Referrer  string // the page's Referrer-Policy

	// The sign-up and forgot-password pages ("" when not routed), and the
	// sign-up form's other fields and its messages by field name.
	SignupPage string
	ResetPage  string
	FirstName  string
	LastName   string
	Fields     map[string]string
	// The identity providers the login and sign-up pages offer a button
	// for (socialpages.go).
	Social []SocialProvider

	// Passkeys (passkeypages.go). Script loads the passkey script (and
	// the page's CSP allows it); PasskeyLogin: the login page offers a
	// passwordless sign-in and autofill; PasskeyMFA: the MFA page offers
	// a passkey, and PasskeyOnly: no TOTP code; PasskeysPage is the
	// account's passkeys page ("" when not routed), Passkeys what it
	// lists.
	Script       bool
	PasskeyLogin bool
	PasskeyMFA   bool
	PasskeyOnly  bool
	PasskeysPage string
	Passkeys     []passkeyRow

	// The signed-in browser's sessions (mysessions.go).
	Sessions []sessionView

	// The admin page (adminpage.go).
	Admin *adminView

	// The pages behind mailed links.
	Message  string
	Endpoint string // the password form posts here; "" means no form
	Nonce    string // allows the form's script
}

// pages is the HTML pages.
type pages struct{ *Handler }

// routes adds the pages to the route table.
func (h pages) routes(routes map[string]endpoint) {
	getPost := []string{http.MethodGet, http.MethodHead, http.MethodPost}
	get := []string{http.MethodGet, http.MethodHead}
	routes["/page/login"] = endpoint{getPost, h.pageHandler(h.login)}
	routes["/page/mfa"] = endpoint{getPost, h.pageHandler(h.mfa)}
	routes["/page/mfa-setup"] = endpoint{getPost, h.pageHandler(h.mfaSetup)}
	routes["/page/logout"] = endpoint{getPost, h.pageHandler(h.logout)}
	routes["/page/refresh"] = endpoint{get, h.pageHandler(h.refresh)}
	routes["/page/password-reset"] = endpoint{getPost, h.pageHandler(h.passwordReset)}
	routes["/page/sessions"] = endpoint{getPost, h.pageHandler(sessionsAPI{h.Handler}.page)}
	routes["/page/admin"] = endpoint{getPost, h.pageHandler(adminAPI{h.Handler}.page)}
	if h.svc.Passkeys.Available() {
		passkeyPages(h).routes(routes)
	}
	if h.policy.Registration.SignupOpen() {
		routes["/page/signup"] = endpoint{getPost, h.pageHandler(h.signup)}
	}
}

// pageHandler adapts a page: a posted form is read first (only
// `application/x-www-form-urlencoded`, at most 64 KiB) and its CSRF token
// checked; a failing dependency gets a 503 page rather than JSON.
func (h pages) pageHandler(serve func(w http.ResponseWriter, r *http.Request) error) func(w http.ResponseWriter, r *http.Request) error {
	return h.servePage(true, serve)
}

// servePage is pageHandler, with the CSRF check of posted forms only
// when csrf is set: a post this site's forms did not make (a provider's
// return to the social callback) is bound to its browser otherwise.
func (h pages) servePage(csrf bool, serve func(w http.ResponseWriter, r *http.Request) error) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		setPageHeaders(w)
		if r.Method == http.MethodPost {
			if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
				return h.messagePage(w, r, http.StatusUnsupportedMediaType, "Unsupported form", "This page only accepts its own form.")
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
			if err := r.ParseForm(); err != nil {
				return h.messagePage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
			}
			if csrf && !h.csrfValid(r) {
				h.cfg.Logger.Debug("page form refused: CSRF token missing or wrong", zap.String("path", r.URL.Path), zap.String("client_ip", h.cfg.ClientIP(r)))
				return h.messagePage(w, r, http.StatusForbidden, "Form expired", "The form expired or did not come from this site. Go back, reload the page and try again.")
			}
		}
		err := serve(w, r)
		if _, _, _, refused := refusalOf(err); err == nil || refused || asBug(err) != nil {
			return err
		}
		dependencyFailed(w, h.cfg.Logger, h.cfg.Failures, err)
		return h.messagePage(w, r, http.StatusServiceUnavailable, "Try again later", "The service is temporarily unavailable. Please try again in a moment.")
	}
}

// setPageHeaders sets the security headers every page and page redirect
// carries.
func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// render writes a page under {prefix}/page/ with status, and the CSRF
// token its forms carry.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) error {
	csrf, err := h.csrfToken(w, r)
	if err != nil {
		return err
	}
	d.CSRF = csrf
	d.SiteName = h.policy.SiteName
	return h.writePage(w, r, status, name, d)
}

// writePage renders the template name with d and writes it with status.
// The security headers must be set already; the page's referrer meta tag
// repeats the Referrer-Policy header.
func (h *Handler) writePage(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) error {
	d.Prefix = h.cfg.Prefix
	if !h.cfg.DisablePages {
		d.LoginPage = h.cfg.Prefix + "/page/login"
		d.ResetPage = h.cfg.Prefix + "/page/password-reset"
		if h.policy.Registration.SignupOpen() {
			d.SignupPage = h.cfg.Prefix + "/page/signup"
		}
		d.Social = h.cfg.SocialProviders
		if h.svc.Passkeys.Available() {
			d.PasskeysPage = h.cfg.Prefix + "/page/passkeys"
			d.PasskeyLogin = h.policy.Passkeys == account.PasskeysPasswordless
		}
	}
	d.Script = d.Script || (name == "login" && d.PasskeyLogin)
	if d.Script {
		w.Header().Set("Content-Security-Policy", pageCSP+scriptCSP)
	}
	d.Referrer = w.Header().Get("Referrer-Policy")
	var buf bytes.Buffer
	if err := h.pages.pages[name].Execute(&buf, d); err != nil {
		return &Bug{fmt.Errorf("rendering page %s: %v", name, err)}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// messagePage is a page with a title, one message and a link to log in.
func (h *Handler) messagePage(w http.ResponseWriter, r *http.Request, status int, title, msg string) error {
	return h.render(w, r, status, "message", pageData{Title: title, Error: msg})
}

// seeOther answers 303 to a same-site target.
func seeOther(w http.ResponseWriter, target string) error {
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusSeeOther)
	return nil
}

// withNext appends `next` to a page path.
func withNext(page, next string) string {
	if next == "/" {
		return page
	}
	return page + "?next=" + url.QueryEscape(next)
}

// nextOf reads the request's `next` (the form's, else the query's).
func nextOf(r *http.Request) string {
	if v := r.PostForm.Get("next"); v != "" {
		return safeNext(v)
	}
	return safeNext(r.URL.Query().Get("next"))
}

// pageRefusal is the status and the text of a refusal for a page (the
// detail, or the first field message), a throttle's worded for a person;
// a wait is set in Retry-After as on the JSON endpoints. ok is false for
// an error that is no refusal.
func pageRefusal(w http.ResponseWriter, err error) (int, string, bool) {
	status, msg, wait, ok := refusalOf(err)
	if !ok {
		return 0, "", false
	}
	if wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(wait))
	}
	if errors.Is(err, account.ErrRequestThrottled) {
		// A person reads this, not a client library: no DRF wording.
		unit := "seconds"
		if wait == 1 {
			unit = "second"
		}
		return status, "Too many attempts. Please wait " + strconv.Itoa(wait) + " " + unit + " and try again.", true
	}
	return status, msg, true
}

// setSession hands a session to the browser: the access-token cookie
// and the refresh cookie (pages always use the cookie, whatever
// `refresh_token` says for the JSON endpoints).
func (h *Handler) setSession(w http.ResponseWriter, pair account.TokenPair) {
	h.setAccessCookie(w, pair.Access, int(h.policy.AccessTTL.Seconds()))
	h.setRefreshCookie(w, pair.Refresh, int(h.policy.RefreshTTL.Seconds()))
}

func (h *Handler) clearSession(w http.ResponseWriter) {
	h.setAccessCookie(w, "", -1)
	h.setRefreshCookie(w, "", -1)
}

// setFlowCookie stores (or, with "", clears) a login in progress between
// two pages.
func (h *Handler) setFlowCookie(w http.ResponseWriter, name, value string) {
	maxAge := int(h.policy.MFAChallengeTTL.Seconds())
	if value == "" {
		maxAge = -1
	}
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     h.cfg.Prefix + "/page/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   h.cfg.CookieSecure,
		SameSite: http.SameSiteStrictMode,
	})
}

// cookieValue is the value of the request's cookie name, or "".
func cookieValue(r *http.Request, name string) string {
	if c, err := r.Cookie(name); err == nil {
		return c.Value
	}
	return ""
}

// login is GET/POST {prefix}/page/login: e-mail and password, then on to
// the second factor, TOTP setup, or `next` with a session.
func (h pages) login(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	next := nextOf(r)
	if r.Method != http.MethodPost {
		q := r.URL.Query()
		// `reauth`: a page that needs a recent sign-in sent the browser
		// here, so a signed-in browser gets the form, not `next`.
		reauth := q.Get("reauth") != ""
		if _, err := h.svc.Sessions.Check(ctx, h.accessCookieValue(r), false); err == nil && !reauth {
			return seeOther(w, next)
		}
		// A refresh cookie (scoped to the prefix, the guard may not see
		// it) can still renew the session; the hop comes back here with
		// `ended` when it cannot, so this never loops.
		if cookieValue(r, RefreshCookie) != "" && q.Get("ended") == "" && q.Get("logged_out") == "" && !reauth {
			return seeOther(w, withNext(h.cfg.Prefix+"/page/refresh", next))
		}
		d := pageData{Title: "Sign in", Next: next}
		switch {
		case q.Get("logged_out") != "":
			d.Info = "You have been signed out."
		case q.Get("ended") != "":
			d.Info = "Your session has ended. Please sign in again."
		case reauth:
			d.Info = "Please sign in again to continue."
		}
		return h.render(w, r, http.StatusOK, "login", d)
	}
	email := strings.TrimSpace(r.PostForm.Get("email"))
	d := pageData{Title: "Sign in", Next: next, Email: email}
	var step account.Step
	var err error
	if r.PostForm.Has("credential") {
		// The passkey script's post: a passwordless sign-in.
		step, err = passkeyPages(h).login(r)
	} else {
		step, err = h.svc.Sessions.Login(ctx, h.origin(r), email, r.PostForm.Get("password"))
	}
	if status, msg, ok := pageRefusal(w, err); ok {
		d.Error = msg
		return h.render(w, r, status, "login", d)
	}
	if err != nil {
		return err
	}
	return seeOther(w, h.loginStep(w, step, next))
}

// loginStep hands the browser what a login came to, and returns where it
// goes on: the second factor or TOTP setup (the challenge in its flow
// cookie, with the factors it may be answered with), or, with the
// session's cookies, `next`. The login page (password or passkey) and the
// social callback answer so.
func (h *Handler) loginStep(w http.ResponseWriter, step account.Step, next string) string {
	switch {
	case step.Challenge != "":
		h.setFlowCookie(w, challengeCookie, step.Challenge+"."+strconv.Itoa(int(step.Methods)))
		return withNext(h.cfg.Prefix+"/page/mfa", next)
	case step.SetupChallenge != "":
		h.setFlowCookie(w, setupCookie, step.SetupChallenge)
		return withNext(h.cfg.Prefix+"/page/mfa-setup", next)
	}
	h.setSession(w, step.Pair)
	return next
}

// loginChallengeOf reads the challenge cookie: the login challenge's id and
// the factors it may be answered with. The factors only choose what the
// page shows (the core decides what it takes); a cookie without them
// offers the TOTP code and recovery codes.
func loginChallengeOf(r *http.Request) (string, account.Methods) {
	id, m, ok := strings.Cut(cookieValue(r, challengeCookie), ".")
	methods, err := strconv.ParseUint(m, 10, 8)
	if !ok || err != nil {
		return id, account.WithTOTP | account.WithRecoveryCodes
	}
	return id, account.Methods(methods)
}

// mfa is GET/POST {prefix}/page/mfa: the TOTP code, a recovery code, or
// (posted by the passkey script) a passkey's assertion, for the login
// challenge the login page started.
func (h pages) mfa(w http.ResponseWriter, r *http.Request) error {
	next := nextOf(r)
	id, methods := loginChallengeOf(r)
	if id == "" || h.policy.MFA == account.MFADisabled {
		return seeOther(w, withNext(h.cfg.Prefix+"/page/login", next))
	}
	d := pageData{Title: "Two-factor authentication", Next: next, Recovery: r.URL.Query().Get("recovery") != ""}
	if methods&account.WithPasskey != 0 && h.svc.Passkeys.Available() {
		d.PasskeyMFA, d.Script = true, true
		d.PasskeyOnly = methods&account.WithTOTP == 0
	}
	if r.Method != http.MethodPost {
		return h.render(w, r, http.StatusOK, "mfa", d)
	}
	in := account.SecondFactor{Challenge: id}
	if r.PostForm.Has("credential") {
		in.Passkey = []byte(r.PostForm.Get("credential"))
		if len(in.Passkey) == 0 {
			d.Error = msgNoCredential
			return h.render(w, r, http.StatusBadRequest, "mfa", d)
		}
	} else if r.PostForm.Has("recovery_code") {
		d.Recovery, in.Recovery = true, true
		in.Code = strings.TrimSpace(r.PostForm.Get("recovery_code"))
		if in.Code == "" {
			d.Error = "Enter one of your recovery codes."
			return h.render(w, r, http.StatusBadRequest, "mfa", d)
		}
	} else {
		in.Code = strings.ReplaceAll(r.PostForm.Get("code"), " ", "")
		if len(in.Code) != 6 {
			d.Error = "Enter the 6-digit code from your authenticator app."
			return h.render(w, r, http.StatusBadRequest, "mfa", d)
		}
	}
	pair, err := h.svc.Challenges.Verify(r.Context(), h.origin(r), in)
	if status, msg, ok := pageRefusal(w, err); ok {
		// A dead challenge (a lockout kills every one of the user's) means
		// starting over; a throttled request keeps the form.
		if errors.Is(err, account.ErrChallengeDead) {
			h.setFlowCookie(w, challengeCookie, "")
			return h.render(w, r, status, "message", pageData{Title: "Sign in again", Error: msg, Next: next})
		}
		d.Error = msg
		return h.render(w, r, status, "mfa", d)
	}
	if err != nil {
		return err
	}
	h.setFlowCookie(w, challengeCookie, "")
	h.setSession(w, pair)
	return seeOther(w, next)
}

// mfaSetup is GET/POST {prefix}/page/mfa-setup: the QR code and the
// secret of a pending TOTP authenticator, and the code that activates it;
// then the recovery codes, shown once.
func (h pages) mfaSetup(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	next := nextOf(r)
	if h.policy.MFA == account.MFADisabled {
		return h.messagePage(w, r, http.StatusForbidden, "Not available", account.MsgMFADisabled)
	}
	e, err := h.svc.MFA.PageEnrolee(ctx, cookieValue(r, setupCookie), h.accessCookieValue(r))
	if status, _, ok := pageRefusal(w, err); ok {
		back := withNext(h.cfg.Prefix+"/page/mfa-setup", next)
		if status == http.StatusForbidden {
			return seeOther(w, h.cfg.Prefix+"/page/login?reauth=1&next="+url.QueryEscape(back))
		}
		return seeOther(w, withNext(h.cfg.Prefix+"/page/login", back))
	}
	if err != nil {
		return err
	}
	d := pageData{Title: "Set up two-factor authentication", Next: next}
	if r.Method == http.MethodPost {
		code := strings.ReplaceAll(r.PostForm.Get("code"), " ", "")
		if len(code) != 6 {
			d.Error = "Enter the 6-digit code from your authenticator app."
		} else {
			act, err := h.svc.MFA.ActivateFor(ctx, h.origin(r), e, code)
			_, msg, _, ok := refusalOf(err)
			switch {
			case ok:
				d.Error = msg
			case err != nil:
				return err
			default:
				h.setFlowCookie(w, setupCookie, "")
				if act.Opened {
					h.setSession(w, act.Pair)
				}
				return h.render(w, r, http.StatusOK, "recovery-codes", pageData{Title: "Save your recovery codes", Codes: act.Codes, Continue: next})
			}
		}
	}
	setup, err := h.svc.MFA.ShowSetup(ctx, h.origin(r), e)
	if errors.Is(err, account.ErrTOTPActive) {
		return h.render(w, r, http.StatusOK, "message", pageData{Title: "Already set up", Info: account.MsgTOTPActivated, Continue: next})
	}
	if _, msg, _, ok := refusalOf(err); ok {
		return h.messagePage(w, r, http.StatusBadRequest, "Cannot set up", msg)
	}
	if err != nil {
		return err
	}
	d.Secret = setup.Secret
	d.Email = e.Email()
	d.QR = template.URL("data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString([]byte(setup.QR)))
	status := http.StatusOK
	if d.Error != "" {
		status = http.StatusBadRequest
	}
	return h.render(w, r, status, "mfa-setup", d)
}

// logout is GET/POST {prefix}/page/logout: the session of the browser's
// cookies ends and both cookies are cleared.
func (h pages) logout(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return h.render(w, r, http.StatusOK, "logout", pageData{Title: "Sign out"})
	}
	if err := h.svc.Sessions.EndSession(r.Context(), h.origin(r), cookieValue(r, RefreshCookie), h.accessCookieValue(r)); err != nil {
		return err
	}
	h.clearSession(w)
	return seeOther(w, h.cfg.Prefix+"/page/login?logged_out=1")
}

// refresh is GET {prefix}/page/refresh?next=: the guard sends a browser
// here when its access token has expired but it holds a refresh cookie,
// and the login page when the refresh cookie is scoped to the prefix. The
// refresh token rotates exactly as on POST /refresh/ and the browser goes
// back to `next`; when the refresh token is refused, the cookies are
// cleared and the browser goes to the login page, marked so that it does
// not come back here.
func (h pages) refresh(w http.ResponseWriter, r *http.Request) error {
	next := nextOf(r)
	raw := cookieValue(r, RefreshCookie)
	if raw == "" {
		return seeOther(w, withNext(h.cfg.Prefix+"/page/login", next))
	}
	pair, err := h.svc.Sessions.Refresh(r.Context(), h.origin(r), raw, account.RefreshHopGrace)
	if account.IsRefusal(err) {
		h.clearSession(w)
		return seeOther(w, h.cfg.Prefix+"/page/login?ended=1&next="+url.QueryEscape(next))
	}
	if err != nil {
		return err
	}
	h.setSession(w, pair)
	return seeOther(w, next)
}

// script is GET {prefix}/page/passkey.js, the passkey pages' script.
func (h pages) script(w http.ResponseWriter, r *http.Request) error {
	serveAsset(w, r, "passkey.js", "text/javascript; charset=utf-8", h.pages.js)
	return nil
}

// stylesheet is GET {prefix}/page/style.css, served with the pages behind
// mailed links even when the pages under {prefix}/page/ are off.
func (h pages) stylesheet(w http.ResponseWriter, r *http.Request) error {
	serveAsset(w, r, "style.css", "text/css; charset=utf-8", h.pages.css)
	return nil
}

// serveAsset answers a static file of the pages, cacheable for an hour.
func serveAsset(w http.ResponseWriter, r *http.Request, name, contentType string, body []byte) {
	hd := w.Header()
	hd.Set("Content-Type", contentType)
	hd.Set("Cache-Control", "public, max-age=3600")
	hd.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
}
