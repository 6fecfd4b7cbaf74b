package caddyauth_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"golang.org/x/net/html"
)

// The HTML pages and the guard's browser mode, spoken to as a browser
// would over plain HTTP: a cookie jar, form posts, no redirect following
// (each hop is checked).

// browserBody protects the whole site for browsers, and /api/ for API
// clients only (Bearer, 401 JSON).
const browserBody = `	jwt_allauth {
		prefix /auth
	}
	handle /api/* {
		jwt_allauth_guard
		respond "api user={http.auth.user.id}"
	}
	handle {
		jwt_allauth_guard {
			redirect
		}
		respond "page user={http.auth.user.id}"
	}`

// acceptHTML is what a browser sends when it navigates.
const acceptHTML = "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// formBrowser is an HTTP client with a cookie jar.
type formBrowser struct {
	t      *testing.T
	client *http.Client
	jar    *cookiejar.Jar
}

func newFormBrowser(t *testing.T) *formBrowser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	// A transport of its own, as in startCaddy: a connection kept alive
	// to an earlier test's server would answer EOF once it is gone.
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &formBrowser{t: t, jar: jar, client: &http.Client{
		Transport:     tr,
		Jar:           jar,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// page is one answer to the browser.
type page struct {
	status int
	header http.Header
	body   string
}

func (p page) expect(t *testing.T, status int) page {
	t.Helper()
	if p.status != status {
		t.Fatalf("status %d, want %d; body:\n%s", p.status, status, p.body)
	}
	return p
}

// location is the redirect target.
func (p page) location() string { return p.header.Get("Location") }

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// csrf is the CSRF token of the page's form.
func (p page) csrf(t *testing.T) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", p.body)
	}
	return m[1]
}

func (b *formBrowser) do(method, path string, form url.Values, headers ...string) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r, err := http.NewRequest(method, testBase+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	r.Header.Set("Accept", strings.TrimPrefix(acceptHTML, "Accept: "))
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		r.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	res, err := b.client.Do(r)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return page{status: res.StatusCode, header: res.Header, body: string(raw)}
}

func (b *formBrowser) get(path string, headers ...string) page {
	b.t.Helper()
	return b.do(http.MethodGet, path, nil, headers...)
}

func (b *formBrowser) post(path string, form url.Values, headers ...string) page {
	b.t.Helper()
	return b.do(http.MethodPost, path, form, headers...)
}

// cookie is the jar's value of a cookie sent to path ("" when none).
func (b *formBrowser) cookie(path, name string) string {
	u, _ := url.Parse(testBase + path)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// setCookie puts a cookie in the jar for the whole site.
func (b *formBrowser) setCookie(name, value string) {
	u, _ := url.Parse(testBase + "/")
	b.jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// loginForm fills in the login page reached from path and returns the
// answer to the post.
func (b *formBrowser) loginForm(next, email, password string) page {
	b.t.Helper()
	p := b.get("/auth/page/login?next="+url.QueryEscape(next)).expect(b.t, 200)
	return b.post("/auth/page/login", url.Values{"csrf_token": {p.csrf(b.t)}, "next": {next}, "email": {email}, "password": {password}})
}

var secretRE = regexp.MustCompile(`id="secret">([A-Z2-7]+)<`)

func TestGuardRedirectsBrowsersE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", browserBody))
		mustCreateUser(t, userEmail, userPass, 0)

		// A browser asking for a page goes to the login page, with the
		// original URL as next.
		r := s.get("/dash/board?x=1&y=%2F", acceptHTML).expect(t, http.StatusFound)
		if got, want := r.header.Get("Location"), "/auth/page/login?next="+url.QueryEscape("/dash/board?x=1&y=%2F"); got != want {
			t.Fatalf("Location %q, want %q", got, want)
		}
		// API clients, fetch() and curl keep the 401 JSON.
		for _, accept := range []string{"X-No-Accept: 1", "Accept: */*", "Accept: application/json", "Accept: application/json, text/html"} {
			r := s.get("/dash", accept).expect(t, http.StatusUnauthorized)
			if r.str("detail") != "Authentication credentials were not provided." {
				t.Fatalf("Accept %q: body %s", accept, r.raw)
			}
		}
		s.post("/dash", "a=b", acceptHTML, "Content-Type: application/x-www-form-urlencoded").expect(t, http.StatusUnauthorized)
		// A guard without redirect answers 401 to browsers too.
		s.get("/api/x", acceptHTML).expect(t, http.StatusUnauthorized)

		// After the login page, the cookie opens the page; the API guard
		// (no cookie option) does not take the cookie, only the header.
		b := newFormBrowser(t)
		p := b.loginForm("/dash?x=1", userEmail, userPass).expect(t, http.StatusSeeOther)
		if p.location() != "/dash?x=1" {
			t.Fatalf("after login: Location %q", p.location())
		}
		if got := b.get("/dash?x=1").expect(t, 200).body; !strings.HasPrefix(got, "page user=") {
			t.Fatalf("protected page: %q", got)
		}
		b.get("/api/x").expect(t, http.StatusUnauthorized)
		access := b.cookie("/", "access_token")
		if access == "" || claims(t, access)["token_type"] != "access" {
			t.Fatalf("access cookie %q", access)
		}
		s.get("/api/x", bearer(access)).expect(t, 200)
		// A Bearer header wins over the cookie: a bad header is refused.
		b.get("/dash", "Authorization: Bearer nope", "Accept: application/json").expect(t, http.StatusUnauthorized)
	})
}

func TestLoginPageE2E(t *testing.T) {
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", `site_name "Test Site"`, browserBody))
	mustCreateUser(t, userEmail, userPass, 0)
	b := newFormBrowser(t)

	p := b.get("/auth/page/login?next=%2Fdash").expect(t, 200)
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"Content-Type":            "text/html; charset=utf-8",
		"X-Frame-Options":         "DENY",
		"Cache-Control":           "no-store",
	} {
		if got := p.header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if !strings.Contains(p.body, "Test Site") || !strings.Contains(p.body, `name="next" value="/dash"`) {
		t.Fatalf("login page lacks site name or next:\n%s", p.body)
	}
	csrf := p.csrf(t)
	cookies := p.header.Values("Set-Cookie")
	if len(cookies) != 1 || !strings.HasPrefix(cookies[0], "jwt_allauth_csrf=") || !strings.Contains(cookies[0], "HttpOnly") || !strings.Contains(cookies[0], "SameSite=Strict") {
		t.Fatalf("CSRF cookie: %q", cookies)
	}

	// A wrong password shows the form again with the message.
	p = b.post("/auth/page/login", url.Values{"csrf_token": {csrf}, "next": {"/dash"}, "email": {userEmail}, "password": {"wrong-password"}}).expect(t, http.StatusUnauthorized)
	if !strings.Contains(p.body, "Incorrect credentials") || !strings.Contains(p.body, `value="`+userEmail+`"`) {
		t.Fatalf("wrong password page:\n%s", p.body)
	}
	// JSON to the page is refused; the JSON API is elsewhere.
	r := s.post("/auth/page/login", map[string]string{"email": userEmail, "password": userPass})
	if r.status != http.StatusUnsupportedMediaType {
		t.Fatalf("JSON to the page: %d", r.status)
	}

	p = b.post("/auth/page/login", url.Values{"csrf_token": {csrf}, "next": {"/dash"}, "email": {userEmail}, "password": {userPass}}).expect(t, http.StatusSeeOther)
	if p.location() != "/dash" {
		t.Fatalf("Location %q", p.location())
	}
	var sawAccess, sawRefresh bool
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		switch c.Name {
		case "access_token":
			sawAccess = c.HttpOnly && c.SameSite == http.SameSiteLaxMode && c.Path == "/" && c.MaxAge == 1800
		case "refresh_token":
			sawRefresh = c.HttpOnly && c.SameSite == http.SameSiteLaxMode && c.Path == "/auth/"
		}
	}
	if !sawAccess || !sawRefresh {
		t.Fatalf("session cookies: %q", p.header.Values("Set-Cookie"))
	}
	// Signed in, the login page goes straight on.
	if p := b.get("/auth/page/login?next=%2Fdocs").expect(t, http.StatusSeeOther); p.location() != "/docs" {
		t.Fatalf("login page when signed in: %q", p.location())
	}
	// The stylesheet is served from the prefix.
	css := b.get("/auth/page/style.css").expect(t, 200)
	if !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") || !strings.Contains(css.body, "--accent") {
		t.Fatalf("stylesheet: %v %q", css.header, css.body[:min(80, len(css.body))])
	}
}

func TestPageFormsRefuseCSRFE2E(t *testing.T) {
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "mfa_totp_mode required", browserBody))
	mustCreateUser(t, userEmail, userPass, 0)
	_ = s

	// Forged posts to each form (refuseForged) get 403 and change nothing.
	attacker := newFormBrowser(t)
	foreign := attacker.get("/auth/page/login").expect(t, 200).csrf(t)
	refuse := func(t *testing.T, b *formBrowser, path string, good string, fields url.Values) {
		t.Helper()
		refuseForged(t, b, foreign, path, good, fields)
	}

	b := newFormBrowser(t)
	// Login.
	good := b.get("/auth/page/login").expect(t, 200).csrf(t)
	creds := url.Values{"email": {userEmail}, "password": {userPass}, "next": {"/dash"}}
	refuse(t, b, "/auth/page/login", good, creds)
	if b.cookie("/auth/page/", "jwt_allauth_setup") != "" {
		t.Fatal("a refused login started a setup")
	}
	creds.Set("csrf_token", good)
	p := b.post("/auth/page/login", creds).expect(t, http.StatusSeeOther)
	if p.location() != "/auth/page/mfa-setup?next=%2Fdash" {
		t.Fatalf("required mode: after the password, Location %q", p.location())
	}
	// MFA setup.
	p = b.get(p.location()).expect(t, 200)
	m := secretRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no secret on the setup page:\n%s", p.body)
	}
	secret := m[1]
	refuse(t, b, "/auth/page/mfa-setup", p.csrf(t), url.Values{"code": {totpNow(t, secret)}, "next": {"/dash"}})
	p = b.post("/auth/page/mfa-setup", url.Values{"csrf_token": {p.csrf(t)}, "code": {totpNow(t, secret)}, "next": {"/dash"}}).expect(t, 200)
	if strings.Count(p.body, "<li><code>") != 10 || !strings.Contains(p.body, `href="/dash"`) {
		t.Fatalf("recovery codes page:\n%s", p.body)
	}
	b.get("/dash").expect(t, 200)
	// Logout.
	lp := b.get("/auth/page/logout").expect(t, 200)
	refuse(t, b, "/auth/page/logout", lp.csrf(t), url.Values{})
	b.get("/dash").expect(t, 200) // still signed in
	b.post("/auth/page/logout", url.Values{"csrf_token": {lp.csrf(t)}}).expect(t, http.StatusSeeOther)
	if b.get("/dash").expect(t, http.StatusFound).location() != "/auth/page/login?next=%2Fdash" {
		t.Fatal("after logout the page is not refused")
	}
	// MFA verify, with TOTP and with a recovery code.
	advance(t, 31*time.Second) // the setup code's time step is spent
	p = b.loginForm("/dash", userEmail, userPass).expect(t, http.StatusSeeOther)
	if p.location() != "/auth/page/mfa?next=%2Fdash" {
		t.Fatalf("after the password: %q", p.location())
	}
	mp := b.get(p.location()).expect(t, 200)
	refuse(t, b, "/auth/page/mfa", mp.csrf(t), url.Values{"code": {totpNow(t, secret)}, "next": {"/dash"}})
	refuse(t, b, "/auth/page/mfa", mp.csrf(t), url.Values{"recovery_code": {"AAAA-AAAA-AAAA-AAAA"}, "next": {"/dash"}})
	wrong := b.post("/auth/page/mfa", url.Values{"csrf_token": {mp.csrf(t)}, "code": {"000000"}, "next": {"/dash"}})
	if wrong.status != http.StatusBadRequest || !strings.Contains(wrong.body, "Invalid code.") {
		t.Fatalf("wrong code: %d\n%s", wrong.status, wrong.body)
	}
	p = b.post("/auth/page/mfa", url.Values{"csrf_token": {mp.csrf(t)}, "code": {totpNow(t, secret)}, "next": {"/dash"}}).expect(t, http.StatusSeeOther)
	if p.location() != "/dash" {
		t.Fatalf("after the code: %q", p.location())
	}
	b.get("/dash").expect(t, 200)
}

// refuseForged posts forged versions of one form (fields plus a token):
// no token, a wrong token, the token of another browser's cookie
// (foreign), and the right token (good) from another origin. Each must
// get 403, no redirect and no cookie.
func refuseForged(t *testing.T, b *formBrowser, foreign, path, good string, fields url.Values) {
	t.Helper()
	try := func(name string, token string, headers ...string) {
		t.Helper()
		f := url.Values{}
		for k, v := range fields {
			f[k] = v
		}
		if token != "" {
			f.Set("csrf_token", token)
		}
		p := b.post(path, f, headers...)
		if p.status != http.StatusForbidden || !strings.Contains(p.body, "The form expired") {
			t.Fatalf("%s %s: status %d, want 403\n%s", path, name, p.status, p.body)
		}
		if p.header.Get("Location") != "" || len((&http.Response{Header: p.header}).Cookies()) > 0 {
			t.Fatalf("%s %s: a refused form still set %q", path, name, p.header.Values("Set-Cookie"))
		}
	}
	try("without a token", "")
	try("with a wrong token", strings.Repeat("A", len(good)))
	try("with another browser's token", foreign)
	try("from another origin", good, "Origin: http://evil.example")
	try("from an opaque origin", good, "Origin: null")
}

func TestNextRefusesOpenRedirectsE2E(t *testing.T) {
	startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "", browserBody))
	mustCreateUser(t, userEmail, userPass, 0)
	evil := []string{
		"//evil.example", "/\\evil.example", "https://evil.example", "http:evil.example",
		"%2F%2Fevil.example", "/%2Fevil.example", "/%5Cevil.example", "%252F%252Fevil.example",
		"\t//evil.example", "/\t/evil.example", "javascript:alert(1)", "/%0d%0aLocation:%20//evil.example",
		"\\\\evil.example", "///evil.example", "evil.example",
	}
	for _, next := range evil {
		b := newFormBrowser(t)
		// The login form drops it from the page...
		p := b.get("/auth/page/login?next="+url.QueryEscape(next)).expect(t, 200)
		if !strings.Contains(p.body, `name="next" value="/"`) {
			t.Fatalf("next %q survived into the form", next)
		}
		// ... and from a crafted post.
		p = b.post("/auth/page/login", url.Values{"csrf_token": {p.csrf(t)}, "next": {next}, "email": {userEmail}, "password": {userPass}}).expect(t, http.StatusSeeOther)
		if p.location() != "/" {
			t.Fatalf("next %q: after login Location %q", next, p.location())
		}
		// Signed in, the login page and the refresh hop refuse it too.
		if loc := b.get("/auth/page/login?next="+url.QueryEscape(next)).expect(t, http.StatusSeeOther).location(); loc != "/" {
			t.Fatalf("next %q: signed-in login page Location %q", next, loc)
		}
		if loc := b.get("/auth/page/refresh?next="+url.QueryEscape(next)).expect(t, http.StatusSeeOther).location(); loc != "/" {
			t.Fatalf("next %q: refresh Location %q", next, loc)
		}
	}
}

func TestRefreshAndLogoutPagesE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", browserBody))
		mustCreateUser(t, userEmail, userPass, 0)
		b := newFormBrowser(t)
		b.loginForm("/dash", userEmail, userPass).expect(t, http.StatusSeeOther)
		b.get("/dash").expect(t, 200)
		oldRefresh := b.cookie("/auth/", "refresh_token")

		// Once the access token has expired, the guard sends the browser
		// through the refresh hop and back.
		advance(t, 31*time.Minute)
		p := b.get("/dash?a=1").expect(t, http.StatusFound)
		if p.location() != "/auth/page/refresh?next="+url.QueryEscape("/dash?a=1") {
			t.Fatalf("expired access: Location %q", p.location())
		}
		// An API request with the same expired cookie still gets 401 JSON.
		b.get("/dash", "Accept: application/json").expect(t, http.StatusUnauthorized)
		p = b.get(p.location()).expect(t, http.StatusSeeOther)
		if p.location() != "/dash?a=1" {
			t.Fatalf("after refresh: Location %q", p.location())
		}
		if b.cookie("/auth/", "refresh_token") == oldRefresh {
			t.Fatal("the refresh cookie did not rotate")
		}
		b.get("/dash?a=1").expect(t, 200)

		// The spent refresh token presented again once the hop's grace
		// for parallel navigations is over (refreshhop_e2e_test.go)
		// revokes the session, as on POST /refresh/: the hop clears the
		// cookies and goes to the login page.
		advance(t, hopGrace+time.Second)
		thief := newFormBrowser(t)
		thief.setCookie("refresh_token", oldRefresh)
		p = thief.get("/auth/page/refresh?next=%2Fdash").expect(t, http.StatusSeeOther)
		if p.location() != "/auth/page/login?ended=1&next=%2Fdash" {
			t.Fatalf("replayed refresh: Location %q", p.location())
		}
		advance(t, 31*time.Minute)
		if loc := b.get("/dash").expect(t, http.StatusFound).location(); loc != "/auth/page/refresh?next=%2Fdash" {
			t.Fatalf("Location %q", loc)
		}
		if loc := b.get("/auth/page/refresh?next=%2Fdash").expect(t, http.StatusSeeOther).location(); loc != "/auth/page/login?ended=1&next=%2Fdash" {
			t.Fatalf("revoked session refreshed: %q", loc)
		}
		if !strings.Contains(b.get("/auth/page/login?ended=1&next=%2Fdash").expect(t, 200).body, "Your session has ended.") {
			t.Fatal("no session-ended notice")
		}
		if b.cookie("/auth/", "refresh_token") != "" || b.cookie("/", "access_token") != "" {
			t.Fatal("a refused refresh left the cookies")
		}

		// A browser whose access cookie is gone and whose refresh cookie
		// the guard cannot see (scoped to the prefix) gets there through
		// the login page.
		owner := newFormBrowser(t)
		owner.loginForm("/dash", userEmail, userPass).expect(t, http.StatusSeeOther)
		scoped := newFormBrowser(t)
		u, _ := url.Parse(testBase + "/auth/")
		scoped.jar.SetCookies(u, []*http.Cookie{{Name: "refresh_token", Value: owner.cookie("/auth/", "refresh_token"), Path: "/auth/"}})
		p = scoped.get("/dash").expect(t, http.StatusFound)
		if p.location() != "/auth/page/login?next=%2Fdash" {
			t.Fatalf("no visible cookie: Location %q", p.location())
		}
		p = scoped.get(p.location()).expect(t, http.StatusSeeOther)
		if p.location() != "/auth/page/refresh?next=%2Fdash" {
			t.Fatalf("login page with a refresh cookie: Location %q", p.location())
		}
		if loc := scoped.get(p.location()).expect(t, http.StatusSeeOther).location(); loc != "/dash" {
			t.Fatalf("scoped refresh: Location %q", loc)
		}
		scoped.get("/dash").expect(t, 200)

		// Logout ends the session on the server, not only in the browser.
		b.loginForm("/dash", userEmail, userPass).expect(t, http.StatusSeeOther)
		refresh := b.cookie("/auth/", "refresh_token")
		lp := b.get("/auth/page/logout").expect(t, 200)
		p = b.post("/auth/page/logout", url.Values{"csrf_token": {lp.csrf(t)}}).expect(t, http.StatusSeeOther)
		if p.location() != "/auth/page/login?logged_out=1" {
			t.Fatalf("after logout: %q", p.location())
		}
		if b.cookie("/auth/", "refresh_token") != "" || b.cookie("/", "access_token") != "" {
			t.Fatal("logout left the cookies")
		}
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, http.StatusUnauthorized)
		if !strings.Contains(b.get("/auth/page/login?logged_out=1").expect(t, 200).body, "You have been signed out.") {
			t.Fatal("no signed-out notice")
		}
	})
}

func TestPagesLoadNothingFromOtherOriginsE2E(t *testing.T) {
	startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", `mfa_totp_mode required
		site_name "Test"`, browserBody))
	mustCreateUser(t, userEmail, userPass, 0)
	b := newFormBrowser(t)
	var pages []page
	pages = append(pages, b.get("/auth/page/login").expect(t, 200))
	lp := pages[0]
	pages = append(pages, b.post("/auth/page/login", url.Values{"email": {userEmail}, "password": {userPass}}).expect(t, http.StatusForbidden))
	b.post("/auth/page/login", url.Values{"csrf_token": {lp.csrf(t)}, "email": {userEmail}, "password": {userPass}}).expect(t, http.StatusSeeOther)
	setup := b.get("/auth/page/mfa-setup").expect(t, 200)
	pages = append(pages, setup)
	secret := secretRE.FindStringSubmatch(setup.body)[1]
	pages = append(pages, b.post("/auth/page/mfa-setup", url.Values{"csrf_token": {setup.csrf(t)}, "code": {"12"}}).expect(t, http.StatusBadRequest))
	pages = append(pages, b.post("/auth/page/mfa-setup", url.Values{"csrf_token": {setup.csrf(t)}, "code": {totpNow(t, secret)}}).expect(t, 200))
	pages = append(pages, b.get("/auth/page/logout").expect(t, 200))
	b.post("/auth/page/logout", url.Values{"csrf_token": {lp.csrf(t)}}).expect(t, http.StatusSeeOther)
	b.loginForm("/", userEmail, userPass).expect(t, http.StatusSeeOther)
	pages = append(pages, b.get("/auth/page/mfa").expect(t, 200))
	pages = append(pages, b.get("/auth/page/mfa?recovery=1").expect(t, 200))
	anon := newFormBrowser(t)
	sp := anon.get("/auth/page/signup?next=%2Fdash").expect(t, 200)
	pages = append(pages, sp)
	pages = append(pages, anon.post("/auth/page/signup", url.Values{"csrf_token": {sp.csrf(t)}, "email": {"bad"}, "password1": {"x"}}).expect(t, http.StatusBadRequest))
	rp := anon.get("/auth/page/password-reset").expect(t, 200)
	pages = append(pages, rp)
	pages = append(pages, anon.post("/auth/page/password-reset", url.Values{"csrf_token": {rp.csrf(t)}, "email": {"bad"}}).expect(t, http.StatusBadRequest))
	pages = append(pages, anon.post("/auth/page/password-reset", url.Values{"csrf_token": {rp.csrf(t)}, "email": {"nobody@example.com"}}).expect(t, 200))

	for i, p := range pages {
		if p.header.Get("Content-Security-Policy") == "" {
			t.Errorf("page %d has no CSP", i)
		}
		for _, ref := range resourceRefs(t, p.body) {
			if strings.HasPrefix(ref, "data:image/svg+xml;base64,") {
				continue
			}
			if !strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "//") {
				t.Errorf("page %d refers to %q, not a path on this site", i, ref)
			}
		}
		if strings.Contains(p.body, "<script") || strings.Contains(p.body, " style=") {
			t.Errorf("page %d has a script or inline style the CSP would block", i)
		}
	}
}

// resourceRefs lists every src, href and action in an HTML document.
func resourceRefs(t *testing.T, doc string) []string {
	t.Helper()
	root, err := html.Parse(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				switch a.Key {
				case "src", "href", "action", "srcset", "formaction", "poster", "data":
					refs = append(refs, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(root)
	if len(refs) == 0 {
		t.Fatalf("no references found in:\n%s", doc)
	}
	return refs
}

// link is the href of the page's anchor with the text.
func (p page) link(t *testing.T, text string) string {
	t.Helper()
	m := regexp.MustCompile(`<a href="([^"]*)">` + regexp.QuoteMeta(text) + `</a>`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no link %q in page:\n%s", text, p.body)
	}
	return html.UnescapeString(m[1])
}

// signupForm is a filled-in sign-up form.
func signupForm(csrf, next, email, password string) url.Values {
	return url.Values{"csrf_token": {csrf}, "next": {next}, "email": {email}, "first_name": {"ada"}, "last_name": {"lovelace"}, "password1": {password}, "password2": {password}}
}

func TestSignupPageE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		startCaddy(t, caddyfile(store, "email_verification mandatory\n"+mailOptions(t), browserBody))
		b := newFormBrowser(t)
		lp := b.get("/auth/page/login?next=%2Fdash").expect(t, 200)
		href := lp.link(t, "Create an account")
		if !strings.HasPrefix(href, "/auth/page/signup?next=") {
			t.Fatalf("sign-up link %q", href)
		}
		sp := b.get(href).expect(t, 200)
		if !strings.Contains(sp.body, `name="next" value="/dash"`) {
			t.Fatalf("sign-up page lost next:\n%s", sp.body)
		}
		csrf := sp.csrf(t)

		// The endpoint's messages, shown by field, the entries kept.
		p := b.post("/auth/page/signup", url.Values{"csrf_token": {csrf}, "email": {"not-an-address"}, "first_name": {"J0hn"}, "last_name": {"Doe"}, "password1": {userPass}, "password2": {userPass}}).expect(t, http.StatusBadRequest)
		for _, want := range []string{"Enter a valid email address.", "Incorrect format", `value="not-an-address"`, `value="Doe"`, `class="field-error" id="email-error"`, `class="field-error" id="first_name-error"`} {
			if !strings.Contains(p.body, want) {
				t.Fatalf("refused sign-up lacks %q:\n%s", want, p.body)
			}
		}
		// The fields the endpoint requires are required here too.
		blank := signupForm(csrf, "/dash", uniqueEmail(t, "signup-blank"), userPass)
		blank.Set("first_name", " ")
		blank.Del("last_name")
		blank.Set("password2", "")
		p = b.post("/auth/page/signup", blank).expect(t, http.StatusBadRequest)
		for _, want := range []string{"This field may not be blank.", "This field is required.", `class="field-error" id="first_name-error"`, `class="field-error" id="last_name-error"`, `class="field-error" id="password2-error"`} {
			if !strings.Contains(p.body, want) {
				t.Fatalf("sign-up with blank fields lacks %q:\n%s", want, p.body)
			}
		}
		email := uniqueEmail(t, "signup-page")
		f := signupForm(csrf, "/dash", email, userPass)
		f.Set("password2", userPass+"x")
		if p := b.post("/auth/page/signup", f).expect(t, http.StatusBadRequest); !strings.Contains(p.body, "The two password fields didn&#39;t match.") {
			t.Fatalf("mismatch:\n%s", p.body)
		}

		// A good form: the verification mail, no session yet.
		p = b.post("/auth/page/signup", signupForm(csrf, "/dash", email, userPass)).expect(t, 200)
		if !strings.Contains(p.body, "Verification e-mail sent.") || b.cookie("/", "access_token") != "" {
			t.Fatalf("after sign-up:\n%s", p.body)
		}
		link := linkPath(t, waitMails(t, email, 1), "/auth/registration/verification/")
		if loc := b.get(link).expect(t, http.StatusFound).location(); loc != "/auth/registration/verified/" {
			t.Fatalf("confirmation link: Location %q", loc)
		}
		if loc := b.loginForm("/dash", email, userPass).expect(t, http.StatusSeeOther).location(); loc != "/dash" {
			t.Fatalf("login after confirmation: Location %q", loc)
		}
		b.get("/dash").expect(t, 200)

		// The address taken: the same page, and a note to its owner.
		other := newFormBrowser(t)
		again := other.post("/auth/page/signup", signupForm(other.get("/auth/page/signup").expect(t, 200).csrf(t), "/dash", email, userPass)).expect(t, 200)
		if again.body != p.body {
			t.Fatalf("a taken address answers differently:\n%s\n---\n%s", again.body, p.body)
		}
		waitMails(t, email, 2)
	})
}

func TestSignupPageSessionE2E(t *testing.T) {
	t.Run("verification none", func(t *testing.T) {
		startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "", browserBody))
		b := newFormBrowser(t)
		email := uniqueEmail(t, "signup-none")
		sp := b.get("/auth/page/signup?next=%2Fdash").expect(t, 200)
		p := b.post("/auth/page/signup", signupForm(sp.csrf(t), "/dash", email, userPass)).expect(t, http.StatusSeeOther)
		if p.location() != "/dash" || b.cookie("/", "access_token") == "" || b.cookie("/auth/", "refresh_token") == "" {
			t.Fatalf("after sign-up: Location %q, cookies %q", p.location(), p.header.Values("Set-Cookie"))
		}
		b.get("/dash").expect(t, 200)
		// Without verification a taken address is refused on its field.
		other := newFormBrowser(t)
		p = other.post("/auth/page/signup", signupForm(other.get("/auth/page/signup").expect(t, 200).csrf(t), "/dash", email, userPass)).expect(t, http.StatusBadRequest)
		if !strings.Contains(p.body, "A user is already registered with this e-mail address.") {
			t.Fatalf("taken address:\n%s", p.body)
		}
	})
	t.Run("mfa required", func(t *testing.T) {
		startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "mfa_totp_mode required", browserBody))
		b := newFormBrowser(t)
		sp := b.get("/auth/page/signup?next=%2Fdash").expect(t, 200)
		p := b.post("/auth/page/signup", signupForm(sp.csrf(t), "/dash", uniqueEmail(t, "signup-mfa"), userPass)).expect(t, http.StatusSeeOther)
		if p.location() != "/auth/page/mfa-setup?next=%2Fdash" || b.cookie("/", "access_token") != "" {
			t.Fatalf("required mode: Location %q, cookies %q", p.location(), p.header.Values("Set-Cookie"))
		}
		setup := b.get(p.location()).expect(t, 200)
		secret := secretRE.FindStringSubmatch(setup.body)
		if secret == nil {
			t.Fatalf("no secret on the setup page:\n%s", setup.body)
		}
		p = b.post("/auth/page/mfa-setup", url.Values{"csrf_token": {setup.csrf(t)}, "code": {totpNow(t, secret[1])}, "next": {"/dash"}}).expect(t, 200)
		if strings.Count(p.body, "<li><code>") != 10 {
			t.Fatalf("recovery codes page:\n%s", p.body)
		}
		b.get("/dash").expect(t, 200)
	})
}

func TestPasswordResetPageE2E(t *testing.T) {
	startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", mailOptions(t), browserBody))
	email := uniqueEmail(t, "reset-page")
	mustCreateUser(t, email, userPass, 0)
	b := newFormBrowser(t)
	href := b.get("/auth/page/login?next=%2Fdash").expect(t, 200).link(t, "Forgot your password?")
	if !strings.HasPrefix(href, "/auth/page/password-reset?next=") {
		t.Fatalf("reset link %q", href)
	}
	rp := b.get(href).expect(t, 200)
	csrf := rp.csrf(t)
	if p := b.post("/auth/page/password-reset", url.Values{"csrf_token": {csrf}, "email": {"a@x.com\r\nBcc: evil@x.com"}}).expect(t, http.StatusBadRequest); !strings.Contains(p.body, "Enter a valid email address.") {
		t.Fatalf("invalid address:\n%s", p.body)
	}
	nobody := uniqueEmail(t, "nobody")
	start := time.Now()
	unknown := b.post("/auth/page/password-reset", url.Values{"csrf_token": {csrf}, "next": {"/dash"}, "email": {nobody}}).expect(t, 200)
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("the page answered under the floor: %v", d)
	}
	start = time.Now()
	known := b.post("/auth/page/password-reset", url.Values{"csrf_token": {csrf}, "next": {"/dash"}, "email": {strings.ToUpper(email)}}).expect(t, 200)
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("the page answered under the floor: %v", d)
	}
	if known.body != unknown.body || !strings.Contains(known.body, "If an account exists for this address, a reset link has been sent.") {
		t.Fatalf("answers differ or lack the message:\n%s\n---\n%s", known.body, unknown.body)
	}
	linkPath(t, waitMails(t, email, 1), "/auth/password/reset/confirm/")
	noMoreMails(t, nobody, 0)
}

func TestNewPageFormsRefuseCSRFE2E(t *testing.T) {
	startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "email_verification optional\n"+mailOptions(t), browserBody))
	owner := uniqueEmail(t, "csrf-reset")
	mustCreateUser(t, owner, userPass, 0)
	foreign := newFormBrowser(t).get("/auth/page/login").expect(t, 200).csrf(t)
	b := newFormBrowser(t)

	fresh := uniqueEmail(t, "csrf-signup")
	good := b.get("/auth/page/signup").expect(t, 200).csrf(t)
	f := signupForm("", "/dash", fresh, userPass)
	f.Del("csrf_token")
	refuseForged(t, b, foreign, "/auth/page/signup", good, f)

	good = b.get("/auth/page/password-reset").expect(t, 200).csrf(t)
	refuseForged(t, b, foreign, "/auth/page/password-reset", good, url.Values{"email": {owner}})

	st, err := caddyauth.ActiveStore()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.UserByEmail(context.Background(), fresh); !errors.Is(err, account.ErrNotFound) {
		t.Fatalf("a refused sign-up created the account: %v", err)
	}
	noMoreMails(t, fresh, 0)
	noMoreMails(t, owner, 0)
}

func TestFormPageLinksFollowPolicyE2E(t *testing.T) {
	for _, c := range []struct {
		options string
		signup  bool
	}{
		{"", true},
		{"registration invitations", true},
		{"registration admin_managed", false},
		{"registration closed", false},
	} {
		t.Run(c.options, func(t *testing.T) {
			startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", c.options, browserBody))
			b := newFormBrowser(t)
			lp := b.get("/auth/page/login").expect(t, 200)
			if got := strings.Contains(lp.body, ">Create an account</a>"); got != c.signup {
				t.Fatalf("sign-up link shown: %v, want %v", got, c.signup)
			}
			lp.link(t, "Forgot your password?")
			b.get("/auth/page/password-reset").expect(t, 200)
			sp := b.get("/auth/page/signup")
			if (sp.status == 200) != c.signup {
				t.Fatalf("sign-up page: status %d, want it routed %v", sp.status, c.signup)
			}
			if !c.signup {
				// Nor can a post reach it.
				p := b.post("/auth/page/signup", signupForm(lp.csrf(t), "/", uniqueEmail(t, "closed"), userPass))
				if p.status == http.StatusSeeOther || p.status == 200 {
					t.Fatalf("closed sign-up page accepted a post: %d", p.status)
				}
			}
		})
	}
}

// The MFA page reads what a refusal means from its kind, not its words: a
// challenge that can no longer succeed (its attempts spent) sends the
// browser to sign in again, with the challenge cookie gone; a throttled
// code keeps the form and says how long to wait, in a person's words.
func TestMFAPageRefusalsE2E(t *testing.T) {
	t.Run("challenge spent", func(t *testing.T) {
		s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", mfaOptions("optional"), browserBody))
		s.enrolledUser(userEmail)
		b := newFormBrowser(t)
		p := b.loginForm("/dash", userEmail, mfaPass).expect(t, http.StatusSeeOther)
		mp := b.get(p.location()).expect(t, 200)
		for range 4 {
			wrong := b.post("/auth/page/mfa", url.Values{"csrf_token": {mp.csrf(t)}, "code": {"000000"}, "next": {"/dash"}}).expect(t, http.StatusBadRequest)
			if !strings.Contains(wrong.body, "Invalid code.") || !strings.Contains(wrong.body, `name="code"`) {
				t.Fatalf("a wrong code does not keep the form:\n%s", wrong.body)
			}
		}
		last := b.post("/auth/page/mfa", url.Values{"csrf_token": {mp.csrf(t)}, "code": {"000000"}, "next": {"/dash"}}).expect(t, http.StatusBadRequest)
		if !strings.Contains(last.body, "Sign in again") || !strings.Contains(last.body, "Too many failed attempts. Challenge invalidated.") || strings.Contains(last.body, `name="code"`) {
			t.Fatalf("the spent challenge's page:\n%s", last.body)
		}
		if b.cookie("/auth/page/", "jwt_allauth_mfa") != "" {
			t.Fatal("the spent challenge's cookie is still set")
		}
	})
	t.Run("throttled", func(t *testing.T) {
		s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", mfaOptions("optional", "throttle mfa_verify_ip 2 1m"), browserBody))
		s.enrolledUser(userEmail)
		b := newFormBrowser(t)
		p := b.loginForm("/dash", userEmail, mfaPass).expect(t, http.StatusSeeOther)
		mp := b.get(p.location()).expect(t, 200)
		for range 2 {
			b.post("/auth/page/mfa", url.Values{"csrf_token": {mp.csrf(t)}, "code": {"000000"}, "next": {"/dash"}}).expect(t, http.StatusBadRequest)
		}
		p = b.post("/auth/page/mfa", url.Values{"csrf_token": {mp.csrf(t)}, "code": {"000000"}, "next": {"/dash"}}).expect(t, http.StatusTooManyRequests)
		if !regexp.MustCompile(`Too many attempts\. Please wait [0-9]+ seconds? and try again\.`).MatchString(p.body) || !strings.Contains(p.body, `name="code"`) {
			t.Fatalf("the throttled page:\n%s", p.body)
		}
		if b.cookie("/auth/page/", "jwt_allauth_mfa") == "" {
			t.Fatal("a throttled code ended the challenge")
		}
	})
}
