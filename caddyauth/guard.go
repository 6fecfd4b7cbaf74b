package caddyauth

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	caddyhttpauth "github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/web"
)

func init() {
	caddy.RegisterModule(Guard{})
	caddy.RegisterModule(Provider{})
}

// Guard lets a request through only with a valid access token of the
// realm (`Authorization: Bearer <token>`, or with `cookie` the access-token
// cookie); otherwise it answers 401 JSON with `WWW-Authenticate: Bearer`,
// or 403 when the token's role is not allowed, and the next handler is
// never called. With `redirect`, a browser asking for a page is sent to
// the login page instead of the 401. The token is checked in
// process against the realm's keys: no database round trip unless
// `session_check` is on.
//
// On success it sets the placeholders `{http.auth.user.id}`,
// `{http.auth.user.role}`, `{http.auth.user.email_verified}` and
// `{http.auth.user.session}` (empty for a personal access token, which
// `access_tokens` lets through).
//
// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) carries
// no token, so the guard answers it itself (204, no body) and passes
// nothing on, unless `preflight` is `pass`.
type Guard struct {
	web.GuardConfig

	guard  *web.Guard
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Guard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.jwt_allauth_guard",
		New: func() caddy.Module { return new(Guard) },
	}
}

// Provision gets the realm from the app.
func (g *Guard) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	rl, err := realmOf(ctx)
	if err != nil {
		return err
	}
	g.guard = web.NewGuard(g.GuardConfig, rl.svc, rl.site.AccessCookie, g.logger, rl.metrics)
	return nil
}

// Validate checks the header mapping, the login page and the CORS settings.
func (g *Guard) Validate() error { return g.GuardConfig.Validate() }

// placeholders are the placeholders the guard fills, in the order of
// account.IdentityClaims (user_id, role, email_verified, session; Caddy's
// convention: the user id is `http.auth.user.id`).
var placeholders = [len(account.IdentityClaims)]string{
	"http.auth.user.id",
	"http.auth.user.role",
	"http.auth.user.email_verified",
	"http.auth.user.session",
}

// ServeHTTP checks the token and calls next only when it is valid.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	orig := func() *http.Request {
		if o, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok {
			return &o
		}
		return r
	}
	err := g.guard.Serve(w, r, orig, func(id *account.Identity) error {
		if id != nil {
			repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			for i, name := range placeholders {
				repl.Set(name, id.Field(i))
			}
		}
		return next.ServeHTTP(w, r)
	})
	return caddyError(err)
}

// Provider is the same check as an authentication provider for Caddy's
// `authentication` handler, for configs that combine it with others
// (`http.authentication.providers.jwt_allauth`). A missing or bad token
// leaves the request unauthenticated with a `WWW-Authenticate: Bearer`
// challenge; the `authentication` handler then answers 401.
type Provider struct {
	sessions *account.Sessions
}

// CaddyModule returns the Caddy module information.
func (Provider) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.authentication.providers.jwt_allauth",
		New: func() caddy.Module { return new(Provider) },
	}
}

// Provision gets the realm from the app.
func (p *Provider) Provision(ctx caddy.Context) error {
	rl, err := realmOf(ctx)
	if err != nil {
		return err
	}
	p.sessions = rl.svc.Sessions
	return nil
}

// Authenticate checks the request's bearer token.
func (p *Provider) Authenticate(w http.ResponseWriter, r *http.Request) (caddyhttpauth.User, bool, error) {
	id, err := p.sessions.Identify(r.Context(), web.BearerToken(r), false)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
		return caddyhttpauth.User{}, false, nil
	}
	u := caddyhttpauth.User{ID: id.UserID, Metadata: map[string]string{}}
	for i := 1; i < len(account.IdentityClaims); i++ {
		u.Metadata[account.IdentityClaims[i]] = id.Text(i)
	}
	return u, true, nil
}

// realmOf returns the realm of the jwt_allauth app.
func realmOf(ctx caddy.Context) (*realm, error) {
	appIface, err := ctx.App("jwt_allauth")
	if err != nil {
		return nil, fmt.Errorf("getting jwt_allauth app: %v", err)
	}
	return appIface.(*App).realm, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Guard)(nil)
	_ caddy.Validator             = (*Guard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Guard)(nil)
	_ caddy.Provisioner           = (*Provider)(nil)
	_ caddyhttpauth.Authenticator = (*Provider)(nil)
)
