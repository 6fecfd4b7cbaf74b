// Package web is the HTTP face of the account core: the JSON endpoints in
// the reference's wire format and the HTML pages, over net/http only. Each
// handler decodes, calls one core method and encodes; this is the one
// place where a refusal of the core becomes a status code and a body.
package web

import (
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// Config is how the endpoints of one site are served.
type Config struct {
	// Prefix is the path prefix of the endpoints, e.g. /auth (no
	// trailing slash).
	Prefix string
	// PublicURL is the site's address (scheme://host[:port]); mailed links
	// start with it and the prefix.
	PublicURL string
	// CORS lists the origins of single-page apps allowed to call with
	// credentials.
	CORS []string
	// Templates is a directory of page templates replacing the embedded
	// ones by name ("" for none).
	Templates string
	// DisablePages turns the pages under {prefix}/page/ off; the pages
	// behind mailed links stay.
	DisablePages bool

	RefreshInBody  bool // the refresh token travels in the body, not a cookie
	CookieSecure   bool
	CookieSameSite http.SameSite
	AccessCookie   string // the name of the pages' access-token cookie

	// Where the browser goes after a followed link; "" means the built-in
	// page under the prefix.
	EmailVerifiedRedirect string
	PasswordResetRedirect string
	PasswordSetRedirect   string

	// SocialProviders are the identity providers configured, in order;
	// {prefix}/social/ is served only when there are some.
	SocialProviders []SocialProvider

	CSRFKey  []byte                     // keys the pages' and capabilities' CSRF values
	ClientIP func(*http.Request) string // the client's address as the server trusts it
	Rand     io.Reader
	Logger   *zap.Logger
	Failures Failures
}

// Handler serves the endpoints and pages of one site under its prefix.
type Handler struct {
	cfg      Config
	svc      *account.Service
	policy   account.Config
	pages    *pageSet
	routes   map[string]endpoint
	prefixed []prefixRoute
	*cookies
}

// prefixRoute is an endpoint serving every path that starts with prefix
// (under the handler's prefix) and has something after it: the mailed
// links, whose last segments are their secrets.
type prefixRoute struct {
	prefix string
	endpoint
}

// endpoint is one path under the prefix: the methods it answers and the
// function answering them.
type endpoint struct {
	methods []string
	serve   func(w http.ResponseWriter, r *http.Request) error
}

// New builds the handler of the core svc for cfg, loading the page
// templates.
func New(svc *account.Service, cfg Config) (*Handler, error) {
	if cfg.ClientIP == nil {
		cfg.ClientIP = func(r *http.Request) string {
			if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				return host
			}
			return r.RemoteAddr
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Failures == nil {
		cfg.Failures = noFailures{}
	}
	h := &Handler{cfg: cfg, svc: svc, policy: svc.Config()}
	h.cookies = &cookies{cfg: &h.cfg}
	names := pageNames
	if cfg.DisablePages {
		names = []string{linkPageName}
	}
	var err error
	if h.pages, err = loadPageSet(cfg.Templates, names); err != nil {
		return nil, errors.New("loading page templates: " + err.Error())
	}
	h.routes, h.prefixed = h.buildRoutes()
	return h, nil
}

// buildRoutes lists the endpoints this realm's policy enables. Paths are
// kept without their trailing slash; both spellings are served.
func (h *Handler) buildRoutes() (map[string]endpoint, []prefixRoute) {
	post := []string{http.MethodPost}
	get := []string{http.MethodGet, http.MethodHead}
	pol := h.policy
	s, m, su, p := sessionAPI{h}, mfaAPI{h}, signupAPI{h}, passwordAPI{h}
	routes := map[string]endpoint{
		"/login":                 {post, s.login},
		"/refresh":               {post, s.refresh},
		"/logout":                {post, s.logout},
		"/logout-all":            {post, s.logoutAll},
		"/user":                  {[]string{http.MethodGet, http.MethodHead, http.MethodPatch, http.MethodDelete}, s.user},
		"/.well-known/jwks.json": {get, s.jwks},
		"/sessions":              {get, sessionsAPI{h}.list},
		"/tokens":                {[]string{http.MethodGet, http.MethodHead, http.MethodPost}, tokensAPI{h}.tokens},
		"/admin/users":           {get, adminAPI{h}.list},

		"/mfa/setup":                     {post, m.setup},
		"/mfa/activate":                  {post, m.activate},
		"/mfa/verify":                    {post, m.verify},
		"/mfa/verify-recovery":           {post, m.verifyRecovery},
		"/mfa/deactivate":                {post, m.deactivate},
		"/mfa/authenticators":            {get, m.authenticators},
		"/mfa/recovery-codes/regenerate": {post, m.regenerateRecovery},

		"/password/reset":         {post, p.reset},
		"/password/reset/set-new": {post, p.resetSetNew},
		"/password/change":        {post, p.change},
	}
	prefixed := []prefixRoute{
		{"/password/reset/confirm/", endpoint{get, p.resetConfirm}},
		{"/sessions/", endpoint{[]string{http.MethodDelete}, sessionsAPI{h}.revoke}},
		{"/tokens/", endpoint{[]string{http.MethodDelete}, tokensAPI{h}.revoke}},
		{"/admin/users/", endpoint{[]string{http.MethodGet, http.MethodHead, http.MethodPatch, http.MethodDelete, http.MethodPost}, adminAPI{h}.user}},
	}
	pg := pages{h}
	if h.cfg.PasswordResetRedirect == "" {
		routes["/password/reset/default"] = endpoint{get, pg.resetForm}
	}
	if pol.Registration.SignupOpen() {
		routes["/registration"] = endpoint{post, su.register}
	}
	if pol.Registration.InvitationsOn() {
		routes["/registration/user-register"] = endpoint{post, su.invite}
		routes["/registration/set-password"] = endpoint{post, su.setPassword}
		if h.cfg.PasswordSetRedirect == "" {
			routes["/registration/set-password/default"] = endpoint{get, pg.setPasswordForm}
		}
	}
	if pol.EmailVerification != account.VerifyNone && pol.Registration.SignupOpen() {
		routes["/registration/resend-email"] = endpoint{post, su.resend}
	}
	if pol.EmailVerification != account.VerifyNone || pol.Registration.InvitationsOn() {
		prefixed = append(prefixed, prefixRoute{"/registration/verification/", endpoint{get, su.followLink}})
		if h.cfg.EmailVerifiedRedirect == "" {
			routes["/registration/verified"] = endpoint{get, pg.verified}
		}
	}
	if pol.Passkeys != account.PasskeysOff && h.svc.Passkeys.Available() {
		pk := passkeyAPI{h}
		routes["/mfa/webauthn/register/begin"] = endpoint{post, pk.registerBegin}
		routes["/mfa/webauthn/register/finish"] = endpoint{post, pk.registerFinish}
		routes["/mfa/webauthn/begin"] = endpoint{post, pk.begin}
		routes["/mfa/webauthn/verify"] = endpoint{post, pk.verify}
		prefixed = append(prefixed, prefixRoute{"/mfa/webauthn/", endpoint{[]string{http.MethodPatch, http.MethodDelete}, pk.passkey}})
		if pol.Passkeys == account.PasskeysPasswordless {
			routes["/passkey/login/begin"] = endpoint{post, pk.loginBegin}
			routes["/passkey/login/finish"] = endpoint{post, pk.loginFinish}
		}
	}
	if len(h.cfg.SocialProviders) > 0 {
		so := socialAPI{h}
		routes["/social/providers"] = endpoint{get, so.providers}
		routes["/social/accounts"] = endpoint{get, so.accounts}
		// After the mailed links, the longer prefix first.
		prefixed = append(prefixed,
			prefixRoute{"/social/accounts/", endpoint{[]string{http.MethodDelete}, so.disconnect}},
			prefixRoute{"/social/", endpoint{[]string{http.MethodGet, http.MethodHead, http.MethodPost}, so.provider}})
	}
	routes["/page/style.css"] = endpoint{get, pg.stylesheet}
	if !h.cfg.DisablePages {
		pg.routes(routes)
	}
	return routes, prefixed
}

// route finds the endpoint of a path under the prefix.
func (h *Handler) route(rest string) (endpoint, bool) {
	if ep, ok := h.routes[strings.TrimSuffix(rest, "/")]; ok {
		return ep, true
	}
	for _, p := range h.prefixed {
		if param, ok := strings.CutPrefix(rest, p.prefix); ok && strings.Trim(param, "/") != "" {
			return p.endpoint, true
		}
	}
	return endpoint{}, false
}

// pathParam is what follows the route prefix in the request path.
func (h *Handler) pathParam(r *http.Request, routePrefix string) string {
	return strings.TrimPrefix(r.URL.Path, h.cfg.Prefix+routePrefix)
}

// Serve answers a request under the prefix; handled is false for any
// other path, which the caller passes on. A returned error is a *Bug,
// or the writing of the answer failing.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request) (handled bool, err error) {
	rest, ok := strings.CutPrefix(r.URL.Path, h.cfg.Prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return false, nil
	}
	ep, found := h.route(rest)
	granted := CORSHeaders(w.Header(), r, h.cfg.CORS)
	if !found {
		return true, h.writeError(w, errDetail(http.StatusNotFound, "Not found."))
	}
	if r.Method == http.MethodOptions {
		allow := append(ep.methods, http.MethodOptions)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		if granted && IsPreflight(r) {
			AllowPreflight(w.Header(), allow)
		}
		w.WriteHeader(http.StatusNoContent)
		return true, nil
	}
	if !slices.Contains(ep.methods, r.Method) {
		w.Header().Set("Allow", strings.Join(append(ep.methods, http.MethodOptions), ", "))
		return true, h.writeError(w, errDetail(http.StatusMethodNotAllowed, `Method "`+r.Method+`" not allowed.`))
	}
	if err := ep.serve(w, r); err != nil {
		return true, h.writeError(w, err)
	}
	return true, nil
}

func (h *Handler) writeError(w http.ResponseWriter, err error) error {
	return WriteError(w, h.cfg.Logger, h.cfg.Failures, err)
}

type noFailures struct{}

func (noFailures) Unavailable(error) {}

// siteURL is the site's public address (scheme://host[:port]), else the
// address r was made to.
func (h *Handler) siteURL(r *http.Request) string {
	if h.cfg.PublicURL != "" {
		return h.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// origin is where r came from, as the core sees it.
func (h *Handler) origin(r *http.Request) account.Origin {
	return account.Origin{IP: h.cfg.ClientIP(r), Host: r.Host, Site: h.cfg.PublicURL + h.cfg.Prefix, UserAgent: r.UserAgent()}
}
