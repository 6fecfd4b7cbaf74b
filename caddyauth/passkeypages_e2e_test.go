package caddyauth_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The passkey pages over HTTP, with the software authenticator of
// passkey_e2e_test.go answering for the browser: the begin endpoints'
// CSRF check and answers, the passkeys page signed out, signed in, and
// with a session too old for a change, and each ceremony ending as the
// page's other forms end (the session's cookies and next).

// ceremonyReply reads a begin endpoint's JSON answer.
func ceremonyReply(t *testing.T, p page) reply {
	t.Helper()
	r := reply{status: p.status, header: p.header, raw: []byte(p.body)}
	if err := json.Unmarshal(r.raw, &r.body); err != nil || !strings.HasPrefix(p.header.Get("Content-Type"), "application/json") {
		t.Fatalf("a begin endpoint answered %d %q: %s", p.status, p.header.Get("Content-Type"), p.body)
	}
	return r
}

// begin posts to a begin endpoint with the CSRF token csrf.
func (b *formBrowser) begin(path, csrf string, headers ...string) reply {
	b.t.Helper()
	return ceremonyReply(b.t, b.post(path, url.Values{"csrf_token": {csrf}}, headers...))
}

func TestPasskeyPagesE2E(t *testing.T) {
	startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", passkeyOptions, browserBody))
	email := uniqueEmail(t, "passkey-pages")
	mustCreateUser(t, email, userPass, 0)
	b := newFormBrowser(t)
	dev := newSoftKey(t)

	// Signed out, the passkeys page sends the browser to sign in and back;
	// the script's begin endpoint says where to go.
	p := b.get("/auth/page/passkeys").expect(t, http.StatusSeeOther)
	if p.location() != "/auth/page/login?next=%2Fauth%2Fpage%2Fpasskeys" {
		t.Fatalf("signed out: Location %q", p.location())
	}
	lp := b.get("/auth/page/login").expect(t, http.StatusOK)
	csrf := lp.csrf(t)
	if r := b.begin("/auth/page/passkey/register", csrf).expect(t, http.StatusUnauthorized); r.str("location") != "/auth/page/login?next=%2Fauth%2Fpage%2Fpasskeys" {
		t.Fatalf("register begin signed out: %s", r.raw)
	}

	// The login page of passwordless mode runs the script, and only then
	// allows scripts (from this site).
	if got := lp.header.Get("Content-Security-Policy"); !strings.HasSuffix(got, "; script-src 'self'; connect-src 'self'") || !strings.HasPrefix(got, "default-src 'none';") {
		t.Fatalf("login page CSP %q", got)
	}
	if !strings.Contains(lp.body, `<script src="/auth/page/passkey.js" defer></script>`) || !strings.Contains(lp.body, `autocomplete="username webauthn"`) {
		t.Fatalf("login page:\n%s", lp.body)
	}
	if got := b.get("/auth/page/logout").expect(t, 200).header.Get("Content-Security-Policy"); strings.Contains(got, "script-src") {
		t.Fatalf("the logout page allows scripts: %q", got)
	}
	js := b.get("/auth/page/passkey.js").expect(t, http.StatusOK)
	if !strings.HasPrefix(js.header.Get("Content-Type"), "text/javascript") || !strings.Contains(js.body, "parseRequestOptionsFromJSON") {
		t.Fatalf("the script: %q\n%s", js.header.Get("Content-Type"), js.body)
	}

	// The begin endpoints take the page's CSRF token, from this site,
	// in a form.
	for name, bad := range map[string]struct {
		csrf    string
		headers []string
	}{
		"no token":     {"", nil},
		"wrong token":  {"x" + csrf[1:], nil},
		"other origin": {csrf, []string{"Origin: http://evil.example"}},
	} {
		r := b.begin("/auth/page/passkey/login", bad.csrf, bad.headers...).expect(t, http.StatusForbidden)
		if !strings.Contains(r.str("detail"), "Reload it and try again.") || r.body["publicKey"] != nil {
			t.Fatalf("%s: %s", name, r.raw)
		}
	}
	if p := b.do(http.MethodPost, "/auth/page/passkey/login", nil, "Content-Type: application/json"); p.status != http.StatusUnsupportedMediaType {
		t.Fatalf("a JSON post: %d %s", p.status, p.body)
	}

	// Signed in with the password: the passkeys page lists none, and adds
	// one (the first second factor: recovery codes come with it).
	p = b.loginForm("/dash", email, userPass).expect(t, http.StatusSeeOther)
	p = b.get("/auth/page/passkeys").expect(t, http.StatusOK)
	if !strings.Contains(p.body, "You have no passkeys yet.") || !strings.Contains(p.header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("the passkeys page:\n%s", p.body)
	}
	csrf = p.csrf(t)
	opts := b.begin("/auth/page/passkey/register", csrf).expect(t, http.StatusOK)
	// The form without the token is refused, and adds nothing.
	cred := string(dev.Attest(t, opts.raw))
	b.post("/auth/page/passkeys", url.Values{"name": {"Laptop"}, "credential": {cred}}).expect(t, http.StatusForbidden)
	p = b.post("/auth/page/passkeys", url.Values{"csrf_token": {csrf}, "name": {"Laptop"}, "credential": {cred}}).expect(t, http.StatusOK)
	if !strings.Contains(p.body, `id="recovery-codes"`) || !strings.Contains(p.body, `href="/auth/page/passkeys?added=1"`) {
		t.Fatalf("after adding:\n%s", p.body)
	}
	p = b.get("/auth/page/passkeys?added=1").expect(t, http.StatusOK)
	if !strings.Contains(p.body, "Passkey added.") || !strings.Contains(p.body, `<strong class="passkey-name">Laptop</strong>`) || strings.Contains(p.body, "no passkeys") {
		t.Fatalf("the passkeys page after adding:\n%s", p.body)
	}
	m := regexp.MustCompile(`name="remove" value="([0-9]+)"`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no Remove form:\n%s", p.body)
	}
	id := m[1]
	// A form posted without the script's credential says why.
	if p := b.post("/auth/page/passkeys", url.Values{"csrf_token": {csrf}, "name": {"Phone"}}).expect(t, http.StatusBadRequest); !strings.Contains(p.body, "Your browser sent no passkey.") {
		t.Fatalf("a post without a credential:\n%s", p.body)
	}

	// Passwordless on the login page: the session's cookies and next, as
	// after a password.
	b.post("/auth/page/logout", url.Values{"csrf_token": {csrf}}).expect(t, http.StatusSeeOther)
	lp = b.get("/auth/page/login?next=%2Fdash%3Fx%3D1").expect(t, http.StatusOK)
	opts = b.begin("/auth/page/passkey/login", lp.csrf(t)).expect(t, http.StatusOK)
	answer := string(dev.Assert(t, opts.raw))
	p = b.post("/auth/page/login", url.Values{"csrf_token": {lp.csrf(t)}, "next": {"/dash?x=1"}, "credential": {answer}}).expect(t, http.StatusSeeOther)
	if p.location() != "/dash?x=1" || b.cookie("/", "access_token") == "" || b.cookie("/auth/", "refresh_token") == "" {
		t.Fatalf("after the passkey: Location %q, cookies %q %q", p.location(), b.cookie("/", "access_token"), b.cookie("/auth/", "refresh_token"))
	}
	if got := b.get("/dash?x=1").expect(t, http.StatusOK).body; !strings.HasPrefix(got, "page user=") {
		t.Fatalf("the protected page: %q", got)
	}
	// The same answer again: its ceremony is spent; the page says so.
	b.post("/auth/page/logout", url.Values{"csrf_token": {lp.csrf(t)}}).expect(t, http.StatusSeeOther)
	p = b.post("/auth/page/login", url.Values{"csrf_token": {lp.csrf(t)}, "next": {"/dash"}, "credential": {answer}}).expect(t, http.StatusBadRequest)
	if !strings.Contains(p.body, "This passkey request is unknown or has expired: start again.") || b.cookie("/", "access_token") != "" {
		t.Fatalf("a spent ceremony:\n%s", p.body)
	}

	// A password login: the MFA page offers the passkey and no TOTP form;
	// the passkey ends it as a code does.
	p = b.loginForm("/dash", email, userPass).expect(t, http.StatusSeeOther)
	if p.location() != "/auth/page/mfa?next=%2Fdash" {
		t.Fatalf("after the password: Location %q", p.location())
	}
	mp := b.get(p.location()).expect(t, http.StatusOK)
	if !strings.Contains(mp.body, "Use a passkey") || strings.Contains(mp.body, `id="code"`) || !strings.Contains(mp.header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("the MFA page:\n%s", mp.body)
	}
	opts = b.begin("/auth/page/passkey/mfa", mp.csrf(t)).expect(t, http.StatusOK)
	p = b.post("/auth/page/mfa", url.Values{"csrf_token": {mp.csrf(t)}, "next": {"/dash"}, "credential": {string(dev.Assert(t, opts.raw))}}).expect(t, http.StatusSeeOther)
	if p.location() != "/dash" || b.cookie("/", "access_token") == "" || b.cookie("/auth/page/", "jwt_allauth_mfa") != "" {
		t.Fatalf("after the passkey: Location %q", p.location())
	}

	// A session older than reauth_window signs in again before a change,
	// and comes back to the passkeys page; the passkey stays.
	advance(t, 11*time.Minute)
	p = b.get("/auth/page/passkeys").expect(t, http.StatusOK)
	csrf = p.csrf(t)
	reauth := "/auth/page/login?reauth=1&next=%2Fauth%2Fpage%2Fpasskeys"
	if r := b.begin("/auth/page/passkey/register", csrf).expect(t, http.StatusForbidden); r.str("location") != reauth {
		t.Fatalf("register begin from an old session: %s", r.raw)
	}
	if p := b.post("/auth/page/passkeys", url.Values{"csrf_token": {csrf}, "remove": {id}}).expect(t, http.StatusSeeOther); p.location() != reauth {
		t.Fatalf("remove from an old session: Location %q", p.location())
	}
	// Removing without the token is refused too.
	b.post("/auth/page/passkeys", url.Values{"remove": {id}}).expect(t, http.StatusForbidden)
	if !strings.Contains(b.get("/auth/page/passkeys").expect(t, http.StatusOK).body, "Laptop") {
		t.Fatal("a refused removal removed the passkey")
	}
	// Signed in again: removed.
	lp = b.get(reauth).expect(t, http.StatusOK)
	opts = b.begin("/auth/page/passkey/login", lp.csrf(t)).expect(t, http.StatusOK)
	p = b.post("/auth/page/login", url.Values{"csrf_token": {lp.csrf(t)}, "next": {"/auth/page/passkeys"}, "credential": {string(dev.Assert(t, opts.raw))}}).expect(t, http.StatusSeeOther)
	if p.location() != "/auth/page/passkeys" {
		t.Fatalf("after signing in again: Location %q", p.location())
	}
	p = b.post("/auth/page/passkeys", url.Values{"csrf_token": {csrf}, "remove": {id}}).expect(t, http.StatusSeeOther)
	if p.location() != "/auth/page/passkeys?removed=1" {
		t.Fatalf("remove: Location %q", p.location())
	}
	if p := b.get(p.location()).expect(t, http.StatusOK); !strings.Contains(p.body, "Passkey removed.") || !strings.Contains(p.body, "You have no passkeys yet.") {
		t.Fatalf("after removing:\n%s", p.body)
	}
}

// In second_factor mode the login page offers no passkey and allows no
// script; the MFA page's passkey and the passkeys page are there.
func TestPasskeyPagesSecondFactorE2E(t *testing.T) {
	startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", strings.Replace(passkeyOptions, "passkeys passwordless", "passkeys second_factor", 1), browserBody))
	b := newFormBrowser(t)
	lp := b.get("/auth/page/login").expect(t, http.StatusOK)
	if strings.Contains(lp.body, "passkey") || strings.Contains(lp.header.Get("Content-Security-Policy"), "script-src") {
		t.Fatalf("login page of second_factor mode (%q):\n%s", lp.header.Get("Content-Security-Policy"), lp.body)
	}
	if p := b.post("/auth/page/passkey/login", url.Values{"csrf_token": {lp.csrf(t)}}); p.status != http.StatusNotFound {
		t.Fatalf("passwordless begin in second_factor mode: %d %s", p.status, p.body)
	}
	if !strings.Contains(b.get("/auth/page/logout").expect(t, http.StatusOK).body, `href="/auth/page/passkeys"`) {
		t.Fatal("the sign-out page does not link the passkeys page")
	}
	b.get("/auth/page/passkeys").expect(t, http.StatusSeeOther)
}
