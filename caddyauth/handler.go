package caddyauth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/web"
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

	web    *web.Handler
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.jwt_allauth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision gets the realm from the app and builds the site's web layer.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.Prefix == "" {
		h.Prefix = "/auth"
	}
	h.Prefix = strings.TrimRight(h.Prefix, "/")
	rl, err := realmOf(ctx)
	if err != nil {
		return err
	}
	site := rl.site
	if site.PublicURL == "" {
		site.PublicURL = strings.TrimRight(h.SiteURL, "/")
	}
	if site.PublicURL == "" {
		return fmt.Errorf("jwt_allauth: password reset, e-mail confirmation and invitation mails link to the site, " +
			"but this site block does not name exactly one host to take its address from: " +
			"write `public_url https://auth.example.com` (the site's public address) in the global jwt_allauth block")
	}
	site.Prefix = h.Prefix
	site.CORS = h.CORS
	site.Templates = h.Templates
	site.DisablePages = h.DisablePages
	site.Logger = h.logger
	h.web, err = web.New(rl.svc, site)
	return err
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
	return web.CheckOrigins(h.CORS)
}

// ServeHTTP answers requests under the prefix and passes the rest on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	handled, err := h.web.Serve(w, r)
	if !handled {
		return next.ServeHTTP(w, r)
	}
	return caddyError(err)
}

// caddyError is how an error of the web layer goes back to Caddy: a bug
// as a 500 (nothing was written), anything else (a failed write) as it is.
func caddyError(err error) error {
	if err == nil {
		return nil // most requests: no errors.As, whose target would escape
	}
	var bug *web.Bug
	if errors.As(err, &bug) {
		return caddyhttp.Error(http.StatusInternalServerError, bug.Err)
	}
	return err
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
