package caddyauth_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// upstream is an app behind the guard that records every request it is
// handed.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "METHOD query=... length=... body=..." per request
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, fmt.Sprintf("%s query=%s length=%d body=%s ctype=%s", r.Method, r.URL.RawQuery, r.ContentLength, b, r.Header.Get("Content-Type")))
		u.mu.Unlock()
		fmt.Fprint(w, "upstream content")
	}))
	t.Cleanup(u.Close)
	return u
}

// requests returns what the upstream was handed so far, and forgets it.
func (u *upstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.seen
	u.seen = nil
	return s
}

const (
	appOrigin   = "https://app.example.com"
	otherOrigin = "https://evil.example.com"
)

func preflightHeaders(origin, method string) []string {
	return []string{"Origin: " + origin, "Access-Control-Request-Method: " + method, "Access-Control-Request-Headers: authorization, content-type"}
}

// noCORS fails unless the answer grants no origin anything.
func noCORS(t *testing.T, what string, r reply) {
	t.Helper()
	for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Expose-Headers"} {
		if v := r.header.Values(h); len(v) > 0 {
			t.Errorf("%s: %s: %q, want none", what, h, v)
		}
	}
}

// grantsCORS fails unless the answer grants exactly origin, with
// credentials, and varies by Origin.
func grantsCORS(t *testing.T, what string, r reply, origin string) {
	t.Helper()
	if v := r.header.Values("Access-Control-Allow-Origin"); len(v) != 1 || v[0] != origin {
		t.Errorf("%s: Access-Control-Allow-Origin %q, want exactly %q", what, v, origin)
	}
	if v := r.header.Get("Access-Control-Allow-Credentials"); v != "true" {
		t.Errorf("%s: Access-Control-Allow-Credentials %q", what, v)
	}
	if !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Origin") {
		t.Errorf("%s: Vary %q lacks Origin", what, r.header.Values("Vary"))
	}
}

// TestGuardPreflightE2E: a CORS preflight never reaches an app behind
// the guard unless `preflight pass` says so, and then without its body.
func TestGuardPreflightE2E(t *testing.T) {
	up := newUpstream(t)
	body := `	jwt_allauth {
		prefix /auth
	}
	handle /own-cors/* {
		jwt_allauth_guard {
			preflight pass
		}
		reverse_proxy ` + up.Listener.Addr().String() + `
	}
	handle /static/* {
		jwt_allauth_guard
		respond "static secret"
	}
	handle {
		jwt_allauth_guard
		reverse_proxy ` + up.Listener.Addr().String() + `
	}`
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "", body))
	mustCreateUser(t, userEmail, userPass, 0)
	access, _ := s.login(userEmail, userPass)

	// By default the guard answers: 204, no body, nothing passed on, no
	// CORS grant (no origin is listed).
	for _, path := range []string{"/app/data?id=7", "/static/x?id=7"} {
		r := s.req("OPTIONS", path, "id=7&all=1", preflightHeaders(appOrigin, "DELETE")...).expect(t, 204)
		if len(r.raw) != 0 {
			t.Fatalf("%s: preflight answered with a body: %q", path, r.raw)
		}
		noCORS(t, path, r)
	}
	if got := up.requests(); len(got) != 0 {
		t.Fatalf("preflights reached the upstream: %q", got)
	}
	// A plain OPTIONS is an ordinary request: no token, no entry.
	s.req("OPTIONS", "/app/data", nil).expect(t, 401)
	s.req("OPTIONS", "/static/x", nil).expect(t, 401)
	if got := up.requests(); len(got) != 0 {
		t.Fatalf("an OPTIONS without a token reached the upstream: %q", got)
	}
	// With a token the upstream is reached, so the wiring is real.
	if r := s.get("/app/data", bearer(access)).expect(t, 200); string(r.raw) != "upstream content" {
		t.Fatalf("upstream answer %q", r.raw)
	}
	if got := up.requests(); len(got) != 1 || !strings.HasPrefix(got[0], "GET ") {
		t.Fatalf("upstream saw %q", got)
	}

	// preflight pass: the app gets it, query kept, body dropped.
	r := s.req("OPTIONS", "/own-cors/data?id=7", `{"secret":"x"}`, preflightHeaders(appOrigin, "PUT")...).expect(t, 200)
	if string(r.raw) != "upstream content" {
		t.Fatalf("passed preflight answer %q", r.raw)
	}
	got := up.requests()
	if len(got) != 1 || got[0] != "OPTIONS query=id=7 length=0 body= ctype=" {
		t.Fatalf("upstream saw %q, want one bodyless OPTIONS with its query", got)
	}
	// Everything else on that route still needs a token.
	s.req("OPTIONS", "/own-cors/data", `{"secret":"x"}`).expect(t, 401)
	s.get("/own-cors/data").expect(t, 401)
	if got := up.requests(); len(got) != 0 {
		t.Fatalf("requests without a token reached the upstream: %q", got)
	}
}

// TestCORSOriginsE2E: `cors` on the endpoints and on the guard grants
// exactly the listed origins, with credentials, and nothing to others.
func TestCORSOriginsE2E(t *testing.T) {
	up := newUpstream(t)
	body := `	jwt_allauth {
		prefix /auth
		cors ` + appOrigin + `
	}
	jwt_allauth_guard {
		cors ` + appOrigin + ` https://admin.example.com:8443
	}
	reverse_proxy ` + up.Listener.Addr().String()
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "", body))
	mustCreateUser(t, userEmail, userPass, 0)

	// The endpoints: preflight, login, a 401 and a 404 all carry the grant.
	r := s.req("OPTIONS", "/auth/login/", nil, preflightHeaders(appOrigin, "POST")...).expect(t, 204)
	grantsCORS(t, "login preflight", r, appOrigin)
	if m := r.header.Get("Access-Control-Allow-Methods"); m != "POST, OPTIONS" {
		t.Errorf("login preflight methods %q", m)
	}
	if h := r.header.Get("Access-Control-Allow-Headers"); !strings.Contains(h, "Authorization") || !strings.Contains(h, "Content-Type") {
		t.Errorf("login preflight headers %q", h)
	}
	if r.header.Get("Access-Control-Max-Age") == "" {
		t.Error("login preflight without Max-Age")
	}
	r = s.req("OPTIONS", "/auth/user/", nil, preflightHeaders(appOrigin, "PATCH")...).expect(t, 204)
	if m := r.header.Get("Access-Control-Allow-Methods"); m != "GET, HEAD, PATCH, DELETE, OPTIONS" {
		t.Errorf("user preflight methods %q", m)
	}
	r = s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}, "Origin: "+appOrigin).expect(t, 200)
	grantsCORS(t, "login", r, appOrigin)
	if _, ok := r.cookie("refresh_token"); !ok {
		t.Fatal("no refresh cookie for the app")
	}
	access := r.str("access")
	r = s.get("/auth/user/", "Origin: "+appOrigin).expect(t, 401)
	grantsCORS(t, "401", r, appOrigin)
	if e := r.header.Get("Access-Control-Expose-Headers"); !strings.Contains(e, "WWW-Authenticate") || !strings.Contains(e, "Retry-After") {
		t.Errorf("expose headers %q", e)
	}

	// The guard: preflight answered for both listed origins, the
	// upstream never sees one; a real request carries the grant, the
	// 401 too.
	for _, o := range []string{appOrigin, "https://admin.example.com:8443"} {
		r = s.req("OPTIONS", "/api/items?x=1", "x", preflightHeaders(o, "DELETE")...).expect(t, 204)
		grantsCORS(t, "guard preflight "+o, r, o)
		if m := r.header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "DELETE") {
			t.Errorf("guard preflight methods %q", m)
		}
		if len(r.raw) != 0 {
			t.Errorf("guard preflight body %q", r.raw)
		}
	}
	r = s.get("/api/items", bearer(access), "Origin: "+appOrigin).expect(t, 200)
	grantsCORS(t, "guarded GET", r, appOrigin)
	if string(r.raw) != "upstream content" {
		t.Fatalf("guarded answer %q", r.raw)
	}
	r = s.get("/api/items", "Origin: "+appOrigin).expect(t, 401)
	grantsCORS(t, "guard 401", r, appOrigin)
	if got := up.requests(); len(got) != 1 || !strings.HasPrefix(got[0], "GET ") {
		t.Fatalf("upstream saw %q, want only the authorised GET", got)
	}

	// Any other origin, a listed one on another scheme or port, and the
	// literal "null" get no grant at all, on any answer.
	for _, o := range []string{otherOrigin, "http://app.example.com", "https://app.example.com:8443", "https://admin.example.com", "null"} {
		noCORS(t, "login preflight "+o, s.req("OPTIONS", "/auth/login/", nil, preflightHeaders(o, "POST")...).expect(t, 204))
		noCORS(t, "login "+o, s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}, "Origin: "+o).expect(t, 200))
		noCORS(t, "guard preflight "+o, s.req("OPTIONS", "/api/items", nil, preflightHeaders(o, "GET")...).expect(t, 204))
		noCORS(t, "guarded GET "+o, s.get("/api/items", bearer(access), "Origin: "+o).expect(t, 200))
		noCORS(t, "guard 401 "+o, s.get("/api/items", "Origin: "+o).expect(t, 401))
	}
	// No Origin, no grant either.
	noCORS(t, "no origin", s.get("/api/items", bearer(access)).expect(t, 200))
	if got := up.requests(); len(got) != 6 {
		t.Fatalf("upstream saw %d requests, want the 6 authorised GETs: %q", len(got), got)
	}
}

// TestCookieSameSiteE2E: `cookie_samesite` sets the attribute of both
// session cookies; `none` only goes with Secure cookies.
func TestCookieSameSiteE2E(t *testing.T) {
	store := "store sqlite " + t.TempDir() + "/a.db"
	secure := func(options string) string {
		return strings.Replace(caddyfile(store, options, browserBody), "cookie_insecure", "", 1)
	}
	s := startCaddy(t, secure("cookie_samesite none"))
	mustCreateUser(t, userEmail, userPass, 0)
	r := s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}).expect(t, 200)
	if c, ok := r.cookie("refresh_token"); !ok || c.SameSite != http.SameSiteNoneMode || !c.Secure {
		t.Fatalf("refresh cookie %+v", c)
	}
	r = loginPage(t, s, userEmail, userPass)
	if c, ok := accessCookieOf(r); !ok || c.SameSite != http.SameSiteNoneMode || !c.Secure {
		t.Fatalf("access cookie %+v in %v", c, r.header.Values("Set-Cookie"))
	}

	s.reload(secure("cookie_samesite strict"))
	r = s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}).expect(t, 200)
	if c, ok := r.cookie("refresh_token"); !ok || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("refresh cookie %+v", c)
	}
	r = loginPage(t, s, userEmail, userPass)
	if c, ok := accessCookieOf(r); !ok || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("access cookie %+v", c)
	}

	s.reload(secure(""))
	r = s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}).expect(t, 200)
	if c, ok := r.cookie("refresh_token"); !ok || c.SameSite != http.SameSiteLaxMode {
		t.Fatalf("default refresh cookie %+v", c)
	}
}

// loginPage signs in through the login page as a browser would, the CSRF
// cookie sent back by hand (a cookie jar keeps Secure cookies from plain
// HTTP), and returns the answer to the post.
func loginPage(t *testing.T, s *site, email, password string) reply {
	t.Helper()
	p := s.get("/auth/page/login", acceptHTML).expect(t, 200)
	m := csrfRE.FindStringSubmatch(string(p.raw))
	if m == nil {
		t.Fatalf("no CSRF token on the login page:\n%s", p.raw)
	}
	var jar []string
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		jar = append(jar, c.Name+"="+c.Value)
	}
	form := url.Values{"csrf_token": {m[1]}, "email": {email}, "password": {password}, "next": {"/"}}
	return s.post("/auth/page/login", form.Encode(), acceptHTML, "Content-Type: application/x-www-form-urlencoded", "Cookie: "+strings.Join(jar, "; ")).expect(t, http.StatusSeeOther)
}

// accessCookieOf finds the access-token cookie an answer sets, whatever
// its prefix.
func accessCookieOf(r reply) (*http.Cookie, bool) {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if strings.HasSuffix(c.Name, "access_token") {
			return c, true
		}
	}
	return nil, false
}

// TestCORSStartupRefusals: a wildcard, something that is not an origin,
// `preflight pass` with `cors`, and SameSite=None without Secure stop
// Caddy from starting, with a message that says what to write.
func TestCORSStartupRefusals(t *testing.T) {
	guard := func(opts string) string { return "\tjwt_allauth_guard {\n\t\t" + opts + "\n\t}\n\trespond ok" }
	endpoints := func(opts string) string { return "\tjwt_allauth {\n\t\t" + opts + "\n\t}\n\trespond ok" }
	for name, tc := range map[string]struct{ options, body, want string }{
		"wildcard on the guard":     {"", guard("cors *"), "list the exact origins"},
		"wildcard on the endpoints": {"", endpoints("cors https://app.example.com *"), "list the exact origins"},
		"a path":                    {"", guard("cors https://app.example.com/"), "write scheme://host[:port]"},
		"no scheme":                 {"", endpoints("cors app.example.com"), "write scheme://host[:port]"},
		"a wildcard host":           {"", guard("cors https://*.example.com"), "write scheme://host[:port]"},
		"a default port":            {"", guard("cors https://app.example.com:443"), "write https://app.example.com"},
		"pass with cors":            {"", guard("preflight pass\n\t\tcors https://app.example.com"), "drop cors"},
		"unknown preflight":         {"", guard("preflight skip"), "want answer or pass"},
		"none without Secure":       {"cookie_samesite none", defaultBody, "cookie_samesite none needs Secure cookies"},
		"unknown samesite":          {"cookie_samesite loose", defaultBody, "cookie_samesite"},
	} {
		t.Run(name, func(t *testing.T) {
			cf := caddyfile("store sqlite "+t.TempDir()+"/a.db", tc.options, tc.body)
			refusesToStart(t, cf, tc.want)
		})
	}
}

// spaPage is a single-page app on another origin: it signs in through
// the endpoints with credentials, calls the guarded API without and with
// the access token, then renews the token through the refresh cookie, and
// reports what it saw (or that the browser refused).
const spaPage = `<!doctype html><html><head><title>app</title><script>
async function signInAndCall(base, email, password) {
	try {
		const login = await fetch(base + "/auth/login/", {
			method: "POST", credentials: "include",
			headers: {"Content-Type": "application/json"},
			body: JSON.stringify({email: email, password: password}),
		});
		const body = await login.json();
		const anon = await fetch(base + "/api/me", {credentials: "include"});
		const api = await fetch(base + "/api/me", {credentials: "include", headers: {"Authorization": "Bearer " + body.access}});
		const refresh = await fetch(base + "/auth/refresh/", {method: "POST", credentials: "include"});
		const renewed = (await refresh.json()).access;
		return "login " + login.status + "; anonymous " + anon.status + " " + anon.headers.get("WWW-Authenticate") +
			"; api " + api.status + " " + await api.text() + "; refresh " + refresh.status + (renewed && renewed !== body.access ? " renewed" : "");
	} catch (e) {
		return "refused: " + e.name;
	}
}
</script></head><body>app</body></html>`

// TestBrowserCrossOriginSPAE2E: in Chromium, a page on a listed origin
// signs in and calls the guarded API with fetch; on the same site (another
// port of 127.0.0.1) the default SameSite=Lax refresh cookie also renews
// the token, on another site (localhost) the browser keeps it, as README
// says; the same page on an origin not listed is refused by the browser.
func TestBrowserCrossOriginSPAE2E(t *testing.T) {
	c := newChrome(t)
	serve := func() string {
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, spaPage)
		}))
		t.Cleanup(app.Close)
		return strconv.Itoa(app.Listener.Addr().(*net.TCPAddr).Port)
	}
	port, otherPort := serve(), serve()
	crossSite := "http://localhost:" + port // another site than 127.0.0.1
	sameSite := "http://127.0.0.1:" + port  // another origin, the same site
	unlisted := "http://127.0.0.1:" + otherPort
	body := `	jwt_allauth {
		prefix /auth
		cors ` + crossSite + ` ` + sameSite + `
	}
	handle /api/* {
		jwt_allauth_guard {
			cors ` + crossSite + ` ` + sameSite + `
		}
		respond "user={http.auth.user.id}"
	}`
	startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "", body))
	u := mustCreateUser(t, userEmail, userPass, 0)
	call := fmt.Sprintf("signInAndCall(%q, %q, %q)", testBase, userEmail, userPass)
	signedIn := fmt.Sprintf(`login 200; anonymous 401 Bearer realm="api"; api 200 user=%d`, u.ID)

	for origin, want := range map[string]string{
		sameSite:  signedIn + "; refresh 200 renewed",
		crossSite: signedIn + "; refresh 400",
		unlisted:  "refused: TypeError",
	} {
		c.run("opening the app at "+origin, chromedp.Navigate(origin+"/"))
		if got := value(c, "calling from "+origin, chromedp.Evaluate[string](call, chromedp.EvalAwaitPromise)); got != want {
			t.Errorf("from %s: %q, want %q", origin, got, want)
		}
	}
}
