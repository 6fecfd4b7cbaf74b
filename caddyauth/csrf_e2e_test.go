package caddyauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth"
)

// secureCaddyfile is the test Caddyfile with Secure cookies, as in
// production (the harness's default is cookie_insecure for plain HTTP).
func secureCaddyfile(store, options, body string) string {
	return strings.Replace(caddyfile(store, options, body), "cookie_insecure", "", 1)
}

// hostOnly fails unless c meets the `__Host-` rules: Secure, Path=/, no
// Domain.
func hostOnly(t *testing.T, c *http.Cookie) {
	t.Helper()
	if !strings.HasPrefix(c.Name, "__Host-") || !c.Secure || c.Path != "/" || c.Domain != "" {
		t.Fatalf("cookie %s: %+v, want __Host-, Secure, Path=/ and no Domain", c.Name, c)
	}
}

// TestCookiePrefixesE2E: with Secure cookies the CSRF and access-token
// cookies are named `__Host-…`, and the guard reads only that name (an
// unprefixed cookie could be planted by a sibling subdomain); with
// cookie_insecure they keep their plain names.
func TestCookiePrefixesE2E(t *testing.T) {
	store := "store sqlite " + t.TempDir() + "/a.db"
	s := startCaddy(t, secureCaddyfile(store, "", browserBody))
	mustCreateUser(t, userEmail, userPass, 0)

	p := s.get("/auth/page/login", acceptHTML).expect(t, 200)
	csrf, ok := p.cookie("__Host-jwt_allauth_csrf")
	if !ok {
		t.Fatalf("CSRF cookie: %q", p.header.Values("Set-Cookie"))
	}
	hostOnly(t, csrf)
	r := loginPage(t, s, userEmail, userPass)
	access, ok := r.cookie("__Host-access_token")
	if !ok {
		t.Fatalf("access cookie: %q", r.header.Values("Set-Cookie"))
	}
	hostOnly(t, access)
	if _, plain := r.cookie("access_token"); plain {
		t.Fatal("an unprefixed access cookie was set too")
	}
	if got := s.get("/page", acceptHTML, "Cookie: __Host-access_token="+access.Value).expect(t, 200); !strings.HasPrefix(string(got.raw), "page user=") {
		t.Fatalf("guard with the prefixed cookie: %q", got.raw)
	}
	s.get("/page", acceptHTML, "Cookie: access_token="+access.Value).expect(t, http.StatusFound)

	// access_cookie names keep the prefix rule.
	s.reload(secureCaddyfile(store, "access_cookie app_session", browserBody))
	r = loginPage(t, s, userEmail, userPass)
	if c, ok := r.cookie("__Host-app_session"); !ok {
		t.Fatalf("renamed access cookie: %q", r.header.Values("Set-Cookie"))
	} else {
		hostOnly(t, c)
	}

	// Plain HTTP for local testing: no prefix (a browser would refuse it
	// without Secure).
	s.reload(caddyfile(store, "", browserBody))
	p = s.get("/auth/page/login", acceptHTML).expect(t, 200)
	if _, ok := p.cookie("jwt_allauth_csrf"); !ok {
		t.Fatalf("insecure CSRF cookie: %q", p.header.Values("Set-Cookie"))
	}
	r = loginPage(t, s, userEmail, userPass)
	if c, ok := r.cookie("access_token"); !ok || c.Secure {
		t.Fatalf("insecure access cookie: %q", r.header.Values("Set-Cookie"))
	}
}

// TestPagesCSRFOnlyIssuedCookiesE2E: a form token is accepted only with a
// CSRF cookie the server issued. A cookie of someone else's choosing
// (planted through a sibling subdomain) with the token that matches it is
// refused, and the page replaces such a cookie instead of adopting it.
func TestPagesCSRFOnlyIssuedCookiesE2E(t *testing.T) {
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "", browserBody))
	mustCreateUser(t, userEmail, userPass, 0)
	post := func(cookie, token string) reply {
		t.Helper()
		form := url.Values{"csrf_token": {token}, "email": {userEmail}, "password": {userPass}, "next": {"/"}}
		return s.post("/auth/page/login", form.Encode(), acceptHTML, "Content-Type: application/x-www-form-urlencoded", "Cookie: jwt_allauth_csrf="+cookie)
	}

	for _, planted := range []string{
		strings.Repeat("A", 43),                                 // the shape of a bare nonce
		strings.Repeat("A", 43) + "." + strings.Repeat("B", 43), // a nonce and a forged MAC
	} {
		token, err := caddyauth.CSRFTokenFor(planted)
		if err != nil {
			t.Fatal(err)
		}
		if r := post(planted, token); r.status != http.StatusForbidden {
			t.Fatalf("planted cookie %q with its token: status %d, want 403", planted, r.status)
		}
		// The login page does not adopt it: it issues its own.
		p := s.get("/auth/page/login", acceptHTML, "Cookie: jwt_allauth_csrf="+planted).expect(t, 200)
		c, ok := p.cookie("jwt_allauth_csrf")
		if !ok || c.Value == planted {
			t.Fatalf("the page kept the planted cookie: %q", p.header.Values("Set-Cookie"))
		}
		if m := csrfRE.FindStringSubmatch(string(p.raw)); m == nil || m[1] == token {
			t.Fatal("the page handed out the planted cookie's token")
		}
	}

	// An issued cookie and its token work; the same token with another
	// issued cookie does not.
	p := s.get("/auth/page/login", acceptHTML).expect(t, 200)
	issued, _ := p.cookie("jwt_allauth_csrf")
	token := csrfRE.FindStringSubmatch(string(p.raw))[1]
	other, _ := s.get("/auth/page/login", acceptHTML).expect(t, 200).cookie("jwt_allauth_csrf")
	if r := post(other.Value, token); r.status != http.StatusForbidden {
		t.Fatalf("another cookie's token: status %d", r.status)
	}
	post(issued.Value, token).expect(t, http.StatusSeeOther)
	// A second cookie of the name (a parent domain can add one when there
	// is no prefix) does not hide the issued one.
	post(strings.Repeat("A", 43)+"; jwt_allauth_csrf="+issued.Value, token).expect(t, http.StatusSeeOther)
	// The page keeps an issued cookie.
	p = s.get("/auth/page/login?logged_out=1", acceptHTML, "Cookie: jwt_allauth_csrf="+issued.Value).expect(t, 200)
	if _, set := p.cookie("jwt_allauth_csrf"); set || csrfRE.FindStringSubmatch(string(p.raw))[1] != token {
		t.Fatalf("an issued cookie was replaced: %q", p.header.Values("Set-Cookie"))
	}
}

// TestCapabilityCSRFBoundE2E: the csrftoken of a password-reset link is
// the one issued with that link's capability. A planted csrftoken echoed
// in X-CSRFToken, or the csrftoken of someone else's link, is refused
// (and spends nothing); the issued one works, even beside a planted one.
func TestCapabilityCSRFBoundE2E(t *testing.T) {
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", mailOptions(t), defaultBody))
	victim, attacker := uniqueEmail(t, "victim"), uniqueEmail(t, "attacker")
	mustCreateUser(t, victim, userPass, 0)
	mustCreateUser(t, attacker, userPass, 0)
	follow := func(email string) reply {
		t.Helper()
		s.post("/auth/password/reset/", map[string]string{"email": email}).expect(t, 200)
		return s.get(linkPath(t, waitMails(t, email, 1), "/auth/password/reset/confirm/")).expect(t, 302)
	}
	vr, ar := follow(victim), follow(attacker)
	capc, _ := vr.cookie("password_reset_access_token")
	issued, _ := vr.cookie("csrftoken")
	foreign, _ := ar.cookie("csrftoken")
	set := func(csrf string) reply {
		t.Helper()
		return s.post("/auth/password/reset/set-new/", newPasswords(newPass),
			"Cookie: password_reset_access_token="+capc.Value+"; csrftoken="+csrf, "X-CSRFToken: "+csrf)
	}
	for name, csrf := range map[string]string{
		"planted":        strings.Repeat("x", 43),
		"another link's": foreign.Value,
	} {
		if r := set(csrf); r.status != http.StatusForbidden || r.str("detail") != "CSRF Failed: CSRF token incorrect." {
			t.Fatalf("%s csrftoken: %d %s", name, r.status, r.raw)
		}
	}
	// A planted csrftoken sent before the issued one does not hide it.
	r := s.post("/auth/password/reset/set-new/", newPasswords(newPass),
		"Cookie: password_reset_access_token="+capc.Value+"; csrftoken="+foreign.Value+"; csrftoken="+issued.Value, "X-CSRFToken: "+issued.Value).expect(t, 200)
	if r.str("detail") != "Password reset." {
		t.Fatalf("issued csrftoken: %s", r.raw)
	}
	s.login(victim, newPass)
}
