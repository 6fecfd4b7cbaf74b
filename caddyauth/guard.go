package caddyauth

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	caddyhttpauth "github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Guard{})
	caddy.RegisterModule(Provider{})
}

// Guard lets a request through only with a valid access token of the
// realm (`Authorization: Bearer <token>`); otherwise it answers 401 JSON
// with `WWW-Authenticate: Bearer`, or 403 when the token's role is not
// allowed, and the next handler is never called. The token is checked in
// process against the realm's keys: no database round trip unless
// `session_check` is on.
//
// On success it sets the placeholders `{http.auth.user.id}`,
// `{http.auth.user.role}`, `{http.auth.user.email_verified}` and
// `{http.auth.user.session}`. CORS preflight requests pass through.
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

// Validate checks the header mapping.
func (g *Guard) Validate() error {
	for name, claim := range g.Headers {
		if name == "" || strings.ContainsAny(name, " :\r\n") {
			return fmt.Errorf("invalid header name %q", name)
		}
		if contains(reservedHeaders, headerKey(name)) {
			return fmt.Errorf("header %s: refusing to overwrite a header the request itself needs", name)
		}
		if !contains(guardClaims, claim) {
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
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		return next.ServeHTTP(w, r)
	}
	c, err := g.realm.checkAccess(r, g.SessionCheck)
	if err != nil {
		return writeError(w, g.logger, g.realm.metrics, err)
	}
	if len(g.Roles) > 0 && !containsInt(g.Roles, c.Role) {
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
func (rl *realm) checkAccess(r *http.Request, sessionCheck bool) (Claims, error) {
	raw := bearerToken(r)
	if raw == "" {
		return Claims{}, errNotAuthenticated()
	}
	c, err := rl.parseAccess(raw)
	if err != nil {
		return Claims{}, errAccessToken(err)
	}
	if (sessionCheck || rl.policy.sessionCheck) && c.Session != "" {
		ok, err := rl.sessions.active(r.Context(), c.Session)
		if err != nil {
			return Claims{}, err
		}
		if !ok {
			e := errCode(http.StatusUnauthorized, "Session is no longer active.", "token_not_valid")
			e.challenge = `Bearer realm="api", error="invalid_token"`
			return Claims{}, e
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
				"token_type":  tokenTypeAccess,
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
func userOf(c Claims) caddyhttpauth.User {
	u := caddyhttpauth.User{ID: c.UserID, Metadata: map[string]string{}}
	for _, claim := range guardClaims[1:] {
		u.Metadata[claim] = claimValue(c, claim)
	}
	return u
}

func claimValue(c Claims, claim string) string {
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

func containsInt(list []int, v int) bool {
	for _, n := range list {
		if n == v {
			return true
		}
	}
	return false
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Guard)(nil)
	_ caddy.Validator             = (*Guard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Guard)(nil)
	_ caddy.Provisioner           = (*Provider)(nil)
	_ caddyhttpauth.Authenticator = (*Provider)(nil)
)
