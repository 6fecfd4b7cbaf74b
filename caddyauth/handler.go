package caddyauth

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves the account endpoints (login, refresh, logout, user, MFA,
// registration, password reset) as JSON under a path prefix, for the realm
// configured by the `jwt_allauth` global option. Requests outside the prefix
// go to the next handler untouched.
type Handler struct {
	// The path prefix of the endpoints, e.g. `/auth` serves `/auth/login/`.
	// Must start with `/`. Default: `/auth`.
	Prefix string `json:"prefix,omitempty"`

	// A directory of page templates replacing the embedded ones by file
	// name: `layout.html`, `login.html`, `mfa.html`, `mfa-setup.html`,
	// `recovery-codes.html`, `logout.html`, `message.html`, `link.html`
	// (the pages behind mailed links) and `style.css`. Files it lacks keep
	// the embedded version.
	Templates string `json:"templates,omitempty"`

	// Do not serve the HTML pages under `{prefix}/page/`.
	DisablePages bool `json:"disable_pages,omitempty"`

	// The origins (`scheme://host[:port]`) of single-page apps that call
	// the endpoints from another origin with credentials (the refresh
	// cookie). For exactly these, preflights are answered with
	// `Access-Control-Allow-Origin` (the origin itself, never `*`),
	// `-Allow-Credentials: true`, the endpoint's methods, the headers
	// Authorization, Content-Type, X-CSRFToken and X-Requested-With, and
	// `-Max-Age: 3600`; every answer carries the origin, credentials,
	// `-Expose-Headers: Retry-After, WWW-Authenticate` and `Vary: Origin`.
	// A refresh cookie reaches the endpoints from another site only with
	// the global `cookie_samesite none`.
	CORS []string `json:"cors,omitempty"`

	// The address of the site these endpoints serve, e.g.
	// `https://auth.example.com`: mailed links start with it when the
	// global `public_url` is absent. The Caddyfile fills it in from the
	// site block when the block names exactly one host; in JSON, set it
	// or `public_url`, or the handler refuses to start.
	SiteURL string `json:"site_url,omitempty"`

	realm    *realm
	pages    *pageSet
	routes   map[string]endpoint
	prefixed []prefixRoute
	logger   *zap.Logger

	publicURL string // public_url, else SiteURL: the base of mailed links
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

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.jwt_allauth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision gets the realm from the app and builds the route table.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.Prefix == "" {
		h.Prefix = "/auth"
	}
	h.Prefix = strings.TrimRight(h.Prefix, "/")
	appIface, err := ctx.App("jwt_allauth")
	if err != nil {
		return fmt.Errorf("getting jwt_allauth app: %v", err)
	}
	h.realm = appIface.(*App).realm
	h.publicURL = h.realm.policy.publicURL
	if h.publicURL == "" {
		h.publicURL = strings.TrimRight(h.SiteURL, "/")
	}
	if h.publicURL == "" {
		return fmt.Errorf("jwt_allauth: password reset, e-mail confirmation and invitation mails link to the site, " +
			"but this site block does not name exactly one host to take its address from: " +
			"write `public_url https://auth.example.com` (the site's public address) in the global jwt_allauth block")
	}
	names := pageNames
	if h.DisablePages {
		names = []string{linkPageName}
	}
	if h.pages, err = loadPageSet(h.Templates, names); err != nil {
		return fmt.Errorf("loading page templates: %v", err)
	}
	h.routes, h.prefixed = h.buildRoutes()
	return nil
}

// Validate checks the prefix, the CORS origins and the site URL.
func (h *Handler) Validate() error {
	if !strings.HasPrefix(h.Prefix, "/") || strings.ContainsAny(h.Prefix, "*?{}") {
		return fmt.Errorf("prefix must be a plain path starting with '/', got %q", h.Prefix)
	}
	if h.SiteURL != "" {
		if err := checkPublicURL(strings.TrimRight(h.SiteURL, "/")); err != nil {
			return fmt.Errorf("site_url: %v", err)
		}
	}
	return checkOrigins(h.CORS)
}

// buildRoutes lists the endpoints this realm's policy enables. Paths are
// kept without their trailing slash; both spellings are served.
func (h *Handler) buildRoutes() (map[string]endpoint, []prefixRoute) {
	post := []string{http.MethodPost}
	get := []string{http.MethodGet, http.MethodHead}
	pol := h.realm.policy
	routes := map[string]endpoint{
		"/login":                 {post, h.login},
		"/refresh":               {post, h.refresh},
		"/logout":                {post, h.logout},
		"/logout-all":            {post, h.logoutAll},
		"/user":                  {[]string{http.MethodGet, http.MethodHead, http.MethodPatch}, h.user},
		"/.well-known/jwks.json": {[]string{http.MethodGet, http.MethodHead}, h.jwks},

		"/mfa/setup":                     {post, h.mfaSetup},
		"/mfa/activate":                  {post, h.mfaActivate},
		"/mfa/verify":                    {post, h.mfaVerify},
		"/mfa/verify-recovery":           {post, h.mfaVerifyRecovery},
		"/mfa/deactivate":                {post, h.mfaDeactivate},
		"/mfa/authenticators":            {[]string{http.MethodGet, http.MethodHead}, h.mfaAuthenticators},
		"/mfa/recovery-codes/regenerate": {post, h.mfaRegenerateRecovery},

		"/password/reset":         {post, h.passwordReset},
		"/password/reset/set-new": {post, h.passwordResetSetNew},
		"/password/change":        {post, h.passwordChange},
	}
	prefixed := []prefixRoute{{"/password/reset/confirm/", endpoint{get, h.passwordResetConfirm}}}
	if pol.passwordResetRedirect == "" {
		routes["/password/reset/default"] = endpoint{get, h.resetPage}
	}
	if h.signupOpen() {
		routes["/registration"] = endpoint{post, h.register}
	}
	if h.invitationsOn() {
		routes["/registration/user-register"] = endpoint{post, h.userRegister}
		routes["/registration/set-password"] = endpoint{post, h.setPassword}
		if pol.passwordSetRedirect == "" {
			routes["/registration/set-password/default"] = endpoint{get, h.setPasswordPage}
		}
	}
	if pol.emailVerification != verifyNone && h.signupOpen() {
		routes["/registration/resend-email"] = endpoint{post, h.resendEmail}
	}
	if pol.emailVerification != verifyNone || h.invitationsOn() {
		prefixed = append(prefixed, prefixRoute{"/registration/verification/", endpoint{get, h.verifyEmail}})
		if pol.emailVerifiedRedirect == "" {
			routes["/registration/verified"] = endpoint{get, h.verifiedPage}
		}
	}
	routes["/page/style.css"] = endpoint{get, h.stylesheet}
	if !h.DisablePages {
		h.pageRoutes(routes)
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
	return strings.TrimPrefix(r.URL.Path, h.Prefix+routePrefix)
}

// ServeHTTP answers requests under the prefix and passes the rest on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rest, ok := strings.CutPrefix(r.URL.Path, h.Prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return next.ServeHTTP(w, r)
	}
	ep, found := h.route(rest)
	granted := corsHeaders(w.Header(), r, h.CORS)
	if !found {
		return writeError(w, h.logger, h.realm.metrics, errDetail(http.StatusNotFound, "Not found."))
	}
	if r.Method == http.MethodOptions {
		allow := append(ep.methods, http.MethodOptions)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		if granted && isPreflight(r) {
			allowPreflight(w.Header(), allow)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if !slices.Contains(ep.methods, r.Method) {
		w.Header().Set("Allow", strings.Join(append(ep.methods, http.MethodOptions), ", "))
		return writeError(w, h.logger, h.realm.metrics, errDetail(http.StatusMethodNotAllowed, `Method "`+r.Method+`" not allowed.`))
	}
	if err := ep.serve(w, r); err != nil {
		return writeError(w, h.logger, h.realm.metrics, err)
	}
	return nil
}

// clientIP is Caddy's idea of the client address: the peer, or the
// forwarded address when the peer is a trusted proxy.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		return ip
	}
	return r.RemoteAddr
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
