package web

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// GuardConfig is how a guard protects its routes (the Caddy adapter's
// jwt_allauth_guard handler and its Caddyfile directive).
type GuardConfig struct {
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

	// Also accept a personal access token (`jat_…`, made at
	// {prefix}/tokens/) as `Authorization: Bearer <token>`, never from a
	// cookie. Off by default. Its answer is cached for up to 5 s
	// (account.PersonalTokenCacheTTL): a revocation on another node, or
	// the owner disabled, takes effect within that; its expiry at once.
	AccessTokens bool `json:"access_tokens,omitempty"`
}

// Guard lets a request through only with a valid access token of the
// realm; see the Caddy adapter's Guard for what it answers otherwise.
type Guard struct {
	GuardConfig
	sessions     *account.Sessions
	pats         *account.PersonalTokens
	accessCookie string
	logger       *zap.Logger
	failures     Failures

	strip []string      // the headerKey of each name of Headers
	set   []claimHeader // Headers, names canonical, in their order
}

// claimHeader is an upstream header set from the claim
// account.IdentityClaims[field].
type claimHeader struct {
	name  string
	field int
}

// NewGuard is a guard of cfg (validated) over the sessions (and, with
// access_tokens, the personal tokens) of a realm whose pages keep the
// access token in the cookie accessCookie.
func NewGuard(cfg GuardConfig, svc *account.Service, accessCookie string, logger *zap.Logger, failures Failures) *Guard {
	g := &Guard{GuardConfig: cfg, sessions: svc.Sessions, pats: svc.PersonalTokens, accessCookie: accessCookie, logger: logger, failures: failures}
	for _, name := range slices.Sorted(maps.Keys(cfg.Headers)) {
		if key := headerKey(name); !slices.Contains(g.strip, key) {
			g.strip = append(g.strip, key)
		}
		g.set = append(g.set, claimHeader{http.CanonicalHeaderKey(name), slices.Index(account.IdentityClaims[:], cfg.Headers[name])})
	}
	return g
}

// Preflight modes of the guard.
const (
	PreflightAnswer = "answer"
	PreflightPass   = "pass"
)

// Validate checks the header mapping, the login page and the CORS settings.
func (g *GuardConfig) Validate() error {
	if !slices.Contains([]string{"", PreflightAnswer, PreflightPass}, g.Preflight) {
		return fmt.Errorf("preflight: unknown value %q (want answer or pass)", g.Preflight)
	}
	if g.Preflight == PreflightPass && len(g.CORS) > 0 {
		return errors.New("preflight pass hands CORS preflights to the upstream app, which then answers CORS itself; drop cors from this guard, or drop preflight pass to let the guard answer for the cors origins")
	}
	if err := CheckOrigins(g.CORS); err != nil {
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
		if !slices.Contains(account.IdentityClaims[:], claim) {
			return fmt.Errorf("header %s: unknown claim %q (want one of %s)", name, claim, strings.Join(account.IdentityClaims[:], ", "))
		}
	}
	return nil
}

// reservedHeaders may not be set from claims (compared by headerKey).
var reservedHeaders = []string{"authorization", "cookie", "host", "content-length", "content-type", "transfer-encoding", "connection", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded"}

// Serve checks r: when its token is valid (and its role allowed), the
// configured headers are set from the claims and pass is called with the
// token's identity (shared, read-only); a preflight handed on is passed
// with nil, its body removed. Otherwise the answer is written here and
// pass is not called. orig gives the request as the client sent it, for
// the login redirect's `next`; it is called for nothing else.
func (g *Guard) Serve(w http.ResponseWriter, r *http.Request, orig func() *http.Request, pass func(id *account.Identity) error) error {
	if len(g.strip) > 0 {
		g.stripHeaders(r.Header)
	}
	granted := CORSHeaders(w.Header(), r, g.CORS)
	if IsPreflight(r) {
		if g.Preflight == PreflightPass {
			withoutBody(r)
			return pass(nil)
		}
		if granted {
			AllowPreflight(w.Header(), guardMethods)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	id, err := g.check(r)
	if err != nil {
		if g.sendsToLogin(r, err) {
			return g.redirectToLogin(w, r, orig())
		}
		return WriteError(w, g.logger, g.failures, err)
	}
	if len(g.Roles) > 0 && !slices.Contains(g.Roles, id.Role) {
		return WriteError(w, g.logger, g.failures, errDetail(http.StatusForbidden, account.MsgPermissionDenied))
	}
	for _, h := range g.set {
		r.Header[h.name] = []string{id.Text(h.field)}
	}
	return pass(id)
}

// check verifies the request's token: a personal token from the
// Authorization header when access_tokens is on, else an access token.
func (g *Guard) check(r *http.Request) (*account.Identity, error) {
	raw := bearerToken(r)
	if g.AccessTokens && account.IsPersonalToken(raw) {
		return g.pats.Check(r.Context(), raw)
	}
	if raw == "" && (g.Cookie || g.Redirect != "") {
		raw = cookieValue(r, g.accessCookie)
	}
	return g.sessions.Identify(r.Context(), raw, g.SessionCheck)
}

// sendsToLogin reports whether a failed check should redirect rather than
// answer 401: redirect is on, the token is missing or unusable (not a
// database outage), and a browser is asking for a page.
func (g *Guard) sendsToLogin(r *http.Request, err error) bool {
	var refusal *account.Refusal
	return g.Redirect != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		errors.As(err, &refusal) && refusal.Kind == account.Unauthenticated && wantsHTML(r.Header.Get("Accept"))
}

// redirectToLogin answers 302 to the login page with the original URL as
// `next`, or to the refresh page when the browser shows signs of a
// session (an access-token cookie, or a refresh cookie when its path
// reaches this far) that the refresh cookie may renew.
func (g *Guard) redirectToLogin(w http.ResponseWriter, r, orig *http.Request) error {
	target := g.Redirect
	if cookieValue(r, RefreshCookie) != "" || cookieValue(r, g.accessCookie) != "" {
		target = path.Join(path.Dir(g.Redirect), "refresh")
	}
	h := w.Header()
	h.Set("Location", target+"?next="+url.QueryEscape(safeNext(orig.URL.RequestURI())))
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "Accept, Cookie")
	w.WriteHeader(http.StatusFound)
	return nil
}

// stripHeaders deletes every header of h whose name equals one of
// Headers once case and the `_`/`-` spelling are ignored, so a client
// cannot smuggle an identity header past a proxy that treats them alike.
func (g *Guard) stripHeaders(h http.Header) {
	for k := range h {
		for _, want := range g.strip {
			if sameHeader(k, want) {
				delete(h, k)
				break
			}
		}
	}
}

func headerKey(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "_", "-")
}

// sameHeader is headerKey(k) == want for a want that headerKey made,
// without allocating when k is ASCII, as the names of request headers are.
func sameHeader(k, want string) bool {
	if len(k) != len(want) {
		return !isASCII(k) && headerKey(k) == want
	}
	for i := range len(k) {
		c := k[i]
		switch {
		case c >= utf8.RuneSelf:
			return headerKey(k) == want
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// BearerToken returns the token of an `Authorization: Bearer` header, or
// "" when there is none.
func BearerToken(r *http.Request) string { return bearerToken(r) }
