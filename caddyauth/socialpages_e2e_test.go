package caddyauth_test

import (
	"encoding/base64"
	"fmt"
	"html"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"
)

// The browser's sign-in with a provider, at the HTTP level: the start
// under {prefix}/social/<provider>/login/, the attempt cookie, and the
// callback's answers, against a real OpenID provider on loopback.

// loginProvider is an OpenID provider on loopback (mockoidc) with a login
// page of its own in front of its authorize endpoint, as a real provider
// has: the page asks who signs in; its form queues that user in mockoidc and hands
// the request (all its parameters) on to mockoidc's authorize, which
// answers as it always does, with the code and the state back to the
// redirect URI. Its Cancel button answers `error=access_denied`.
//
// It listens on 127.0.0.1 but is addressed as http://localhost:<port>:
// another site than the test site at 127.0.0.1, so a browser coming back
// from it makes a cross-site navigation, as from a real provider.
type loginProvider struct {
	*mockoidc.MockOIDC
}

// loginSubject is the subject the provider gives the person signing in
// with email.
func loginSubject(email string) string { return "idp-" + email }

var idpLoginPage = template.Must(template.New("idp").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Example Identity Provider</title>
<style>body{font-family:sans-serif;background:#fff8e6;margin:4rem auto;max-width:24rem}
form{border:2px solid #b7791f;padding:1.5rem;border-radius:6px}label,input,button{display:block;margin:.5rem 0;width:100%}</style></head>
<body><h1>Example Identity Provider</h1><p>Sign in to continue to the site that sent you.</p>
<form method="post" action="{{.}}">
<label for="idp-email">E-mail</label><input id="idp-email" name="idp_email" type="email">
<button id="idp-submit" name="idp_action" value="signin">Sign in</button>
<button id="idp-cancel" name="idp_action" value="cancel">Cancel</button>
</form></body></html>`))

// namedListener is a listener that gives its address under another name.
type namedListener struct {
	net.Listener
	name namedAddr
}

func (l namedListener) Addr() net.Addr { return l.name }

type namedAddr string

func (namedAddr) Network() string  { return "tcp" }
func (a namedAddr) String() string { return string(a) }

func startLoginProvider(t *testing.T) *loginProvider {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := m.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != mockoidc.AuthorizationEndpoint {
				next.ServeHTTP(w, r)
				return
			}
			if r.Method != http.MethodPost {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				_ = idpLoginPage.Execute(w, r.URL.RequestURI())
				return
			}
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if r.Form.Get("idp_action") == "cancel" {
				back, err := url.Parse(r.Form.Get("redirect_uri"))
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				back.RawQuery = url.Values{"error": {"access_denied"}, "error_description": {"The user cancelled."}, "state": {r.Form.Get("state")}}.Encode()
				http.Redirect(w, r, back.String(), http.StatusFound)
				return
			}
			email := r.Form.Get("idp_email")
			m.QueueUser(&mockoidc.MockUser{Subject: loginSubject(email), Email: email, EmailVerified: true})
			next.ServeHTTP(w, r)
		})
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(namedListener{ln, namedAddr(fmt.Sprintf("localhost:%d", port))}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return &loginProvider{m}
}

// socialOption is the `social` option of the provider as `company`.
func (p *loginProvider) socialOption(t *testing.T) string {
	t.Helper()
	t.Setenv("JWT_ALLAUTH_TEST_SOCIAL_SECRET", p.ClientSecret)
	return fmt.Sprintf(`social company oidc %s {
			client_id %s
			client_secret {env.JWT_ALLAUTH_TEST_SOCIAL_SECRET}
			name "Company SSO"
		}`, p.Issuer(), p.ClientID)
}

// signIn plays the person at the provider's login page of authURL: it
// posts the page's form for email and returns where the provider sends
// the browser back.
func (p *loginProvider) signIn(t *testing.T, authURL, email string) *url.URL {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil || !strings.HasPrefix(authURL, p.AuthorizationEndpoint()+"?") {
		t.Fatalf("the start sent the browser to %q, not to the provider's %s", authURL, p.AuthorizationEndpoint())
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page, err := noFollow.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page.Body.Close()
	if page.StatusCode != http.StatusOK {
		t.Fatalf("the provider's login page: %d", page.StatusCode)
	}
	res, err := noFollow.PostForm(u.String(), url.Values{"idp_email": {email}, "idp_action": {"signin"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	back, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("the provider's authorize: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	return back
}

// socialAttempt is a started sign-in: the provider's URL and the
// attempt cookie.
type socialAttempt struct {
	authURL string
	cookie  *http.Cookie
}

// startSocial follows a button: GET the start with next.
func (s *site) startSocial(next string) socialAttempt {
	s.t.Helper()
	r := s.get("/auth/social/company/login/?next="+url.QueryEscape(next)).expect(s.t, http.StatusSeeOther)
	c, ok := r.cookie("jwt_allauth_social")
	if !ok {
		s.t.Fatalf("the start set no attempt cookie: %v", r.header)
	}
	return socialAttempt{authURL: r.header.Get("Location"), cookie: c}
}

// returnPath is the path and query of the provider's return.
func returnPath(t *testing.T, back *url.URL) string {
	t.Helper()
	if got := back.Scheme + "://" + back.Host + back.Path; got != testBase+"/auth/social/company/callback/" {
		t.Fatalf("the provider returned to %s", got)
	}
	return back.RequestURI()
}

// page expects an HTML page with status whose text contains want.
func (r reply) page(t *testing.T, status int, want string) reply {
	t.Helper()
	r.expect(t, status)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type %q, want a page; body: %s", ct, r.raw)
	}
	if r.header.Get("Content-Security-Policy") == "" {
		t.Fatal("the page has no Content-Security-Policy")
	}
	if !strings.Contains(string(r.raw), template.HTMLEscapeString(want)) {
		t.Fatalf("the page does not say %q:\n%s", want, r.raw)
	}
	return r
}

var refreshTo = regexp.MustCompile(`<meta http-equiv="refresh" content="0; url=([^"]*)">`)

// continuesTo is where the callback's page moves the browser on to: its
// refresh, which its Continue link repeats.
func (r reply) continuesTo(t *testing.T) string {
	t.Helper()
	r.expect(t, http.StatusOK)
	m := refreshTo.FindSubmatch(r.raw)
	if m == nil {
		t.Fatalf("the page does not move on:\n%s", r.raw)
	}
	if !strings.Contains(string(r.raw), `<a class="button" href="`+string(m[1])+`">Continue</a>`) {
		t.Fatalf("the page has no Continue link to %s:\n%s", m[1], r.raw)
	}
	return html.UnescapeString(string(m[1]))
}

// cleared reports whether r clears the attempt cookie.
func (r reply) cleared() bool {
	c, ok := r.cookie("jwt_allauth_social")
	return ok && c.MaxAge < 0
}

const msgAttemptInvalid = "This sign-in attempt is unknown or has expired: start again."

func TestSocialPagesE2E(t *testing.T) {
	p := startLoginProvider(t)
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", p.socialOption(t), browserBody))
	kept := func(a socialAttempt) string { return "Cookie: jwt_allauth_social=" + a.cookie.Value }

	t.Run("the start", func(t *testing.T) {
		a := s.startSocial("/docs/x?y=1")
		c := a.cookie
		if c.Path != "/auth/social/" || !c.HttpOnly || c.Secure || c.SameSite != http.SameSiteLaxMode || c.MaxAge != 600 {
			t.Fatalf("attempt cookie %+v: want Path=/auth/social/, HttpOnly, Lax (cookies are not Secure here), Max-Age=600", c)
		}
		state, next, _ := strings.Cut(c.Value, ".")
		if b, _ := base64.RawURLEncoding.DecodeString(next); string(b) != "/docs/x?y=1" {
			t.Fatalf("the cookie keeps next %q", b)
		}
		q, _ := url.Parse(a.authURL)
		if q.Query().Get("state") != state || q.Query().Get("redirect_uri") != testBase+"/auth/social/company/callback/" {
			t.Fatalf("authorization URL %s: want the cookie's state and the callback", a.authURL)
		}
		if q.Query().Get("code_challenge") == "" || q.Query().Get("nonce") == "" {
			t.Fatalf("authorization URL %s lacks PKCE or the nonce", a.authURL)
		}
	})

	t.Run("a new account, then next; the return once only", func(t *testing.T) {
		a := s.startSocial("/docs/x?y=1")
		back := returnPath(t, p.signIn(t, a.authURL, "new-"+randomHex(t, 4)+"@example.com"))
		r := s.get(back, kept(a))
		if loc := r.continuesTo(t); loc != "/docs/x?y=1" {
			t.Fatalf("signed in, sent to %q", loc)
		}
		if _, ok := r.cookie("access_token"); !ok || !r.cleared() {
			t.Fatalf("signed in without the session's cookie or without clearing the attempt: %v", r.header)
		}
		s.get(back, kept(a)).page(t, http.StatusBadRequest, msgAttemptInvalid)
	})

	t.Run("an unsafe next is replaced by /", func(t *testing.T) {
		for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example"} {
			a := s.startSocial(next)
			if _, enc, _ := strings.Cut(a.cookie.Value, "."); enc != base64.RawURLEncoding.EncodeToString([]byte("/")) {
				t.Fatalf("next %q kept as %q", next, enc)
			}
			back := returnPath(t, p.signIn(t, a.authURL, "safe-"+randomHex(t, 4)+"@example.com"))
			if loc := s.get(back, kept(a)).continuesTo(t); loc != "/" {
				t.Fatalf("next %q: sent to %q", next, loc)
			}
		}
	})

	t.Run("a return without the cookie, then with it", func(t *testing.T) {
		a := s.startSocial("/docs/y")
		back := returnPath(t, p.signIn(t, a.authURL, "nocookie-"+randomHex(t, 4)+"@example.com"))
		s.get(back).page(t, http.StatusBadRequest, msgAttemptInvalid)
		// Not spent by a browser that never started it.
		if loc := s.get(back, kept(a)).continuesTo(t); loc != "/docs/y" {
			t.Fatalf("sent to %q", loc)
		}
	})

	t.Run("the cookie of another attempt", func(t *testing.T) {
		first := s.startSocial("/first")
		second := s.startSocial("/second")
		back := returnPath(t, p.signIn(t, first.authURL, "foreign-"+randomHex(t, 4)+"@example.com"))
		r := s.get(back, kept(second)).page(t, http.StatusBadRequest, msgAttemptInvalid)
		if _, set := r.cookie("jwt_allauth_social"); set {
			t.Fatal("a foreign return touched the other attempt's cookie")
		}
		// Each attempt still comes back with its own cookie.
		if loc := s.get(back, kept(first)).continuesTo(t); loc != "/first" {
			t.Fatalf("first attempt: sent to %q", loc)
		}
		back2 := returnPath(t, p.signIn(t, second.authURL, "foreign2-"+randomHex(t, 4)+"@example.com"))
		if loc := s.get(back2, kept(second)).continuesTo(t); loc != "/second" {
			t.Fatalf("second attempt: sent to %q", loc)
		}
	})

	t.Run("a cookie whose next was changed", func(t *testing.T) {
		a := s.startSocial("/docs/z")
		state, _, _ := strings.Cut(a.cookie.Value, ".")
		back := returnPath(t, p.signIn(t, a.authURL, "changed-"+randomHex(t, 4)+"@example.com"))
		forged := "Cookie: jwt_allauth_social=" + state + "." + base64.RawURLEncoding.EncodeToString([]byte("/admin"))
		s.get(back, forged).page(t, http.StatusBadRequest, msgAttemptInvalid)
	})

	t.Run("the provider's form_post", func(t *testing.T) {
		a := s.startSocial("/posted")
		back := p.signIn(t, a.authURL, "posted-"+randomHex(t, 4)+"@example.com")
		form := back.Query().Encode()
		r := s.req(http.MethodPost, "/auth/social/company/callback/", form, "Content-Type: application/x-www-form-urlencoded", kept(a), "Origin: "+strings.TrimSuffix(p.Addr(), "/"))
		if loc := r.continuesTo(t); loc != "/posted" {
			t.Fatalf("sent to %q", loc)
		}
	})

	t.Run("the provider refuses", func(t *testing.T) {
		a := s.startSocial("/docs/x")
		state, _, _ := strings.Cut(a.cookie.Value, ".")
		r := s.get("/auth/social/company/callback/?error=access_denied&error_description=Call+0800+now&state="+state, kept(a))
		r.page(t, http.StatusForbidden, "The sign-in was cancelled at Company SSO, or Company SSO refused it.")
		if strings.Contains(string(r.raw), "0800") || !r.cleared() {
			t.Fatalf("the page shows the provider's description, or keeps the attempt: %v\n%s", r.header, r.raw)
		}
		if !strings.Contains(string(r.raw), `href="/auth/page/login?next=%2fdocs%2fx"`) {
			t.Fatalf("no way back to the sign-in page with next:\n%s", r.raw)
		}
	})

	t.Run("an address an account with a password has", func(t *testing.T) {
		email := uniqueEmail(t, "taken")
		mustCreateUser(t, email, userPass, 0)
		a := s.startSocial("/")
		back := returnPath(t, p.signIn(t, a.authURL, email))
		s.get(back, kept(a)).page(t, http.StatusConflict, "An account already uses this e-mail address")
	})

	t.Run("an unknown provider", func(t *testing.T) {
		s.get("/auth/social/nobody/login/").page(t, http.StatusNotFound, "This provider is not configured.")
	})
}

// A provider that cannot be reached gets the 503 page.
func TestSocialPagesProviderDownE2E(t *testing.T) {
	opts := fmt.Sprintf(`social down oidc http://127.0.0.1:%s/oidc {
			client_id c
		}`, freePort())
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", opts, browserBody))
	r := s.get("/auth/social/down/login/?next=/x").page(t, http.StatusServiceUnavailable, "The service is temporarily unavailable.")
	if _, set := r.cookie("jwt_allauth_social"); set {
		t.Fatal("an attempt cookie for a provider that cannot be reached")
	}
	login := s.get("/auth/page/login").expect(t, http.StatusOK)
	if !strings.Contains(string(login.raw), `href="/auth/social/down/login/?next=%2f"`) || !strings.Contains(string(login.raw), "Sign in with down") {
		t.Fatalf("the login page has no button for the provider:\n%s", login.raw)
	}
}

// With the pages off, the browser's flow is not served; the JSON flows
// stay.
func TestSocialPagesOffE2E(t *testing.T) {
	p := startLoginProvider(t)
	body := strings.Replace(browserBody, "prefix /auth", "prefix /auth\n\t\tpages off", 1)
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", p.socialOption(t), body))
	s.get("/auth/social/company/login/").expect(t, http.StatusNotFound)
	s.get("/auth/social/company/callback/?state=x&code=y").expect(t, http.StatusNotFound)
	s.get("/auth/social/providers/").expect(t, http.StatusOK)
}
