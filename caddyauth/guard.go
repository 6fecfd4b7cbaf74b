package caddyauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	caddyhttpauth "github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
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
// `{http.auth.user.session}`.
//
// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) carries
// no token, so the guard answers it itself (204, no body) and passes
// nothing on, unless `preflight` is `pass`.
type Guard struct {
	// Roles allowed through; empty allows every role. The list is exact:
	// name 900 and 1000 too if superusers and staff should pass.
	Roles []int `json:"roles,omitempty"`

	// Upstream request headers to set from claims, header name to claim
	// name (`user_id`, `role`, `email_verified`, `session`). A client-sent
	// header of that name, and its `_`/`-` spellings, is always removed
	// first.
	Headers map[string]string `json:"headers,omitempty"`

	// Also reject tokens whose session was revoked (logout, refresh-token
	// reuse, password change). The answer is cached for a few seconds; when
	// the database is down such requests get 503 instead of passing.
	SessionCheck bool `json:"session_check,omitempty"`

	// Also accept the access token from the cookie the HTML pages set
	// (`__Host-access_token`, or `__Host-` and the global `access_cookie`;
	// without the prefix under `cookie_insecure`) when
	// the request has no Authorization header. Only turn this on for routes
	// a browser visits: a cookie is sent by the browser on its own, so an
	// API behind such a guard must not change state on GET.
	Cookie bool `json:"cookie,omitempty"`

	// The login page to send browsers to (implies `cookie`). A GET or HEAD
	// without a valid token whose Accept header prefers text/html over
	// application/json gets 302 to this path with the original URL as
	// `next`; when the browser still holds a refresh cookie, it goes first
	// through the sibling `refresh` page (e.g. `/auth/page/refresh`), which
	// rotates the tokens and comes back. Other requests still get the 401.
	// Must be a path on this site, e.g. `/auth/page/login`.
	Redirect string `json:"redirect,omitempty"`

	// What to do with a CORS preflight: "answer" (default) answers it with
	// 204 and no body, with the CORS headers of `cors` for a listed origin;
	// "pass" hands it on to the next handler, body removed, for an app that
	// answers CORS itself (then leave `cors` out).
	Preflight string `json:"preflight,omitempty"`

	// The origins (`scheme://host[:port]`) of single-page apps that call
	// the routes behind this guard from another origin with credentials.
	// For exactly these, preflights are answered with
	// `Access-Control-Allow-Origin` (the origin itself, never `*`),
	// `-Allow-Credentials: true`, the methods GET, HEAD, POST, PUT, PATCH
	// and DELETE, the headers Authorization, Content-Type, X-CSRFToken and
	// X-Requested-With, and `-Max-Age: 3600`; every answer (a 401 too)
	// carries the origin, credentials and `-Expose-Headers: Retry-After,
	// WWW-Authenticate`, and `Vary: Origin`. The upstream should then not
	// send Access-Control-* headers of its own.
	CORS []string `json:"cors,omitempty"`

	realm  *realm
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
	g.realm = rl
	return err
}

// Validate checks the header mapping, the login page and the CORS settings.
func (g *Guard) Validate() error {
	if !slices.Contains([]string{"", preflightAnswer, preflightPass}, g.Preflight) {
		return fmt.Errorf("preflight: unknown value %q (want answer or pass)", g.Preflight)
	}
	if g.Preflight == preflightPass && len(g.CORS) > 0 {
		return errors.New("preflight pass hands CORS preflights to the upstream app, which then answers CORS itself; drop cors from this guard, or drop preflight pass to let the guard answer for the cors origins")
	}
	if err := checkOrigins(g.CORS); err != nil {
		return err
	}
	if g.Redirect != "" && (!isSafePath(g.Redirect) || strings.ContainsAny(g.Redirect, "?#") || path.Base(g.Redirect) == "/") {
		return fmt.Errorf("redirect must be a path on this site such as /auth/page/login, got %q", g.Redirect)
	}
	for name, claim := range g.Headers {
		if name == "" || strings.ContainsAny(name, " :\r\n") {
			return fmt.Errorf("invalid header name %q", name)
		}
		if slices.Contains(reservedHeaders, headerKey(name)) {
			return fmt.Errorf("header %s: refusing to overwrite a header the request itself needs", name)
		}
		if !slices.Contains(guardClaims, claim) {
			return fmt.Errorf("header %s: unknown claim %q (want one of %s)", name, claim, strings.Join(guardClaims, ", "))
		}
	}
	return nil
}

// guardClaims are the claims the guard can hand to the upstream, and
// placeholders the placeholder each one fills (Caddy's convention: the user
// id is `http.auth.user.id`).
var (
	guardClaims  = []string{"user_id", "role", "email_verified", "session"}
	placeholders = map[string]string{
		"user_id":        "http.auth.user.id",
		"role":           "http.auth.user.role",
		"email_verified": "http.auth.user.email_verified",
		"session":        "http.auth.user.session",
	}
)

// reservedHeaders may not be set from claims (compared by headerKey).
var reservedHeaders = []string{"authorization", "cookie", "host", "content-length", "content-type", "transfer-encoding", "connection", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded"}

// ServeHTTP checks the token and calls next only when it is valid.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	for name := range g.Headers {
		removeHeader(r.Header, name)
	}
	granted := corsHeaders(w.Header(), r, g.CORS)
	if isPreflight(r) {
		if g.Preflight == preflightPass {
			withoutBody(r)
			return next.ServeHTTP(w, r)
		}
		if granted {
			allowPreflight(w.Header(), guardMethods)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	raw := bearerToken(r)
	if raw == "" && (g.Cookie || g.Redirect != "") {
		raw = g.realm.accessCookieValue(r)
	}
	c, err := g.realm.checkToken(r.Context(), raw, g.SessionCheck)
	if err != nil {
		if g.sendsToLogin(r, err) {
			return g.redirectToLogin(w, r)
		}
		return writeError(w, g.logger, g.realm.metrics, err)
	}
	if len(g.Roles) > 0 && !slices.Contains(g.Roles, c.Role) {
		return writeError(w, g.logger, g.realm.metrics, errDetail(http.StatusForbidden, msgPermissionDenied))
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	for _, claim := range guardClaims {
		repl.Set(placeholders[claim], claimValue(c, claim))
	}
	for name, claim := range g.Headers {
		r.Header.Set(name, claimValue(c, claim))
	}
	return next.ServeHTTP(w, r)
}

// sendsToLogin reports whether a failed check should redirect rather than
// answer 401: redirect is on, the token is missing or unusable (not a
// database outage), and a browser is asking for a page.
func (g *Guard) sendsToLogin(r *http.Request, err error) bool {
	var ae *apiError
	return g.Redirect != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		errors.As(err, &ae) && ae.status == http.StatusUnauthorized && wantsHTML(r.Header.Get("Accept"))
}

// redirectToLogin answers 302 to the login page with the original URL as
// `next`, or to the refresh page when the browser shows signs of a
// session (an access-token cookie, or a refresh cookie when its path
// reaches this far) that the refresh cookie may renew.
func (g *Guard) redirectToLogin(w http.ResponseWriter, r *http.Request) error {
	orig := r
	if o, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok {
		orig = &o
	}
	target := g.Redirect
	if cookieValue(r, refreshCookie) != "" || g.realm.accessCookieValue(r) != "" {
		target = path.Join(path.Dir(g.Redirect), "refresh")
	}
	h := w.Header()
	h.Set("Location", target+"?next="+url.QueryEscape(safeNext(orig.URL.RequestURI())))
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "Accept, Cookie")
	w.WriteHeader(http.StatusFound)
	return nil
}

// Provider is the same check as an authentication provider for Caddy's
// `authentication` handler, for configs that combine it with others
// (`http.authentication.providers.jwt_allauth`). A missing or bad token
// leaves the request unauthenticated with a `WWW-Authenticate: Bearer`
// challenge; the `authentication` handler then answers 401.
type Provider struct {
	realm *realm
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
	p.realm = rl
	return err
}

// Authenticate checks the request's bearer token.
func (p *Provider) Authenticate(w http.ResponseWriter, r *http.Request) (caddyhttpauth.User, bool, error) {
	c, err := p.realm.checkAccess(r, false)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
		return caddyhttpauth.User{}, false, nil
	}
	return userOf(c), true, nil
}

// checkAccess verifies the request's bearer access token (and, with
// sessionCheck or the realm's session_check, that its session is live).
func (rl *realm) checkAccess(r *http.Request, sessionCheck bool) (tokens.Claims, error) {
	return rl.checkToken(r.Context(), bearerToken(r), sessionCheck)
}

// checkToken verifies an access token however it came.
func (rl *realm) checkToken(ctx context.Context, raw string, sessionCheck bool) (tokens.Claims, error) {
	if raw == "" {
		return tokens.Claims{}, errNotAuthenticated()
	}
	c, err := rl.parseAccess(raw)
	if err != nil {
		return tokens.Claims{}, errAccessToken(err)
	}
	if (sessionCheck || rl.policy.sessionCheck) && c.Session != "" {
		ok, err := rl.sessions.active(ctx, c.Session)
		if err != nil {
			return tokens.Claims{}, err
		}
		if !ok {
			return tokens.Claims{}, errSessionEnded()
		}
	}
	return c, nil
}

// errAccessToken is the 401 for an access token that cannot be used, in
// the reference's shape.
func errAccessToken(err error) *apiError {
	const msg = "Given token not valid for any token type"
	return &apiError{
		status: http.StatusUnauthorized,
		body: map[string]any{
			"detail": msg,
			"code":   "token_not_valid",
			"messages": []map[string]string{{
				"token_class": "AccessToken",
				"token_type":  tokens.TypeAccess,
				"message":     tokenErrorMessage(err),
			}},
		},
		challenge: `Bearer realm="api", error="invalid_token"`,
	}
}

// realmOf returns the realm of the jwt_allauth app.
func realmOf(ctx caddy.Context) (*realm, error) {
	appIface, err := ctx.App("jwt_allauth")
	if err != nil {
		return nil, fmt.Errorf("getting jwt_allauth app: %v", err)
	}
	return appIface.(*App).realm, nil
}

// userOf is the identity Caddy's authentication handler turns into the
// same placeholders the guard sets.
func userOf(c tokens.Claims) caddyhttpauth.User {
	u := caddyhttpauth.User{ID: c.UserID, Metadata: map[string]string{}}
	for _, claim := range guardClaims[1:] {
		u.Metadata[claim] = claimValue(c, claim)
	}
	return u
}

func claimValue(c tokens.Claims, claim string) string {
	switch claim {
	case "user_id":
		return c.UserID
	case "role":
		return strconv.Itoa(c.Role)
	case "email_verified":
		return strconv.FormatBool(c.EmailVerified)
	default:
		return c.Session
	}
}

// removeHeader deletes every header whose name equals name once case and
// the `_`/`-` spelling are ignored, so a client cannot smuggle an identity
// header past a proxy that treats them alike.
func removeHeader(h http.Header, name string) {
	want := headerKey(name)
	for k := range h {
		if headerKey(k) == want {
			delete(h, k)
		}
	}
}

func headerKey(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "_", "-")
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Guard)(nil)
	_ caddy.Validator             = (*Guard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Guard)(nil)
	_ caddy.Provisioner           = (*Provider)(nil)
	_ caddyhttpauth.Authenticator = (*Provider)(nil)
)
