package caddyauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// msgReauth is the 403 detail of an enrolment from an old session.
const msgReauth = "Recent authentication required: sign in again, or send your current password in the `password` field."

// sessionEnded checks the 401 of an access token whose session is over.
func sessionEnded(t *testing.T, what string, r reply) {
	t.Helper()
	if r.status != http.StatusUnauthorized || r.str("detail") != "Session is no longer active." || r.str("code") != "token_not_valid" {
		t.Fatalf("%s with the token of a revoked session: %d %s", what, r.status, r.raw)
	}
}

// Every endpoint that changes credentials, MFA or the profile refuses an
// access token whose session a password change ended, though
// session_check is off (the read endpoints still take it).
func TestStaleTokenCredentialEndpointsE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, mfaOptions("optional", "registration invitations"), defaultBody))
		mustCreateUser(t, userEmail, userPass, 1000)
		stale, _ := s.login(userEmail, userPass)
		r := s.post("/auth/password/change/", map[string]string{"old_password": userPass, "new_password1": newPass, "new_password2": newPass}, bearer(stale)).expect(t, 200)
		fresh := r.str("access")

		for _, c := range []struct {
			method, path string
			body         any
		}{
			{http.MethodPost, "/auth/password/change/", map[string]string{"old_password": newPass, "new_password1": userPass, "new_password2": userPass}},
			{http.MethodPatch, "/auth/user/", map[string]string{"first_name": "Mallory"}},
			{http.MethodPost, "/auth/mfa/setup/", nil},
			{http.MethodPost, "/auth/mfa/activate/", map[string]string{"code": "123456"}},
			{http.MethodPost, "/auth/mfa/deactivate/", map[string]string{"password": newPass}},
			{http.MethodPost, "/auth/mfa/recovery-codes/regenerate/", map[string]string{"code": "123456"}},
			{http.MethodPost, "/auth/logout-all/", nil},
			{http.MethodPost, "/auth/registration/user-register/", map[string]any{"email": "invitee@world.com", "role": 1000}},
		} {
			sessionEnded(t, c.method+" "+c.path, s.req(c.method, c.path, c.body, bearer(stale)))
		}
		if r := s.get("/auth/user/", bearer(stale)).expect(t, 200); r.str("first_name") != "" {
			t.Fatalf("the stale token changed the profile: %s", r.raw)
		}
		if n := len(s.get("/auth/mfa/authenticators/", bearer(fresh)).expect(t, 200).list); n != 0 {
			t.Fatalf("the stale token enrolled %d authenticators", n)
		}
		// The session the change opened is live and does all of it.
		s.req(http.MethodPatch, "/auth/user/", map[string]string{"first_name": "Alice"}, bearer(fresh)).expect(t, 200)
		s.post("/auth/mfa/setup/", nil, bearer(fresh)).expect(t, 200)
		s.post("/auth/logout-all/", nil, bearer(fresh)).expect(t, 200)
		sessionEnded(t, "PATCH /auth/user/ after logout-all", s.req(http.MethodPatch, "/auth/user/", map[string]string{"first_name": "Bob"}, bearer(fresh)))
	})
}

// Enrolling TOTP right after signing in needs nothing more (the
// reference's flow); past reauth_window it needs the password, which is
// checked; a refresh does not renew the proof; the required-mode bootstrap
// needs none.
func TestEnrolmentRecentAuthenticationE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, mfaOptions("optional"), defaultBody))

		// The reference flow: log in, set up, activate, no password.
		mustCreateUser(t, "prompt@world.com", mfaPass, 0)
		access, _ := s.login("prompt@world.com", mfaPass)
		s.enrol(access)

		mustCreateUser(t, userEmail, mfaPass, 0)
		access, refresh := s.login(userEmail, mfaPass)
		advance(t, 10*time.Minute+time.Second)
		for _, path := range []string{"/auth/mfa/setup/", "/auth/mfa/activate/"} {
			r := s.post(path, map[string]string{"code": "123456"}, bearer(access)).detail(t, http.StatusForbidden, msgReauth)
			if r.str("code") != "reauthentication_required" {
				t.Fatalf("%s: %s", path, r.raw)
			}
		}
		s.post("/auth/mfa/setup/", map[string]string{"password": "not-the-password"}, bearer(access)).detail(t, http.StatusBadRequest, "Invalid password.")
		s.post("/auth/mfa/setup/", map[string]any{"password": 12345678}, bearer(access)).expect(t, http.StatusBadRequest)
		if n := len(s.get("/auth/mfa/authenticators/", bearer(access)).expect(t, 200).list); n != 0 {
			t.Fatalf("%d authenticators after refused enrolments", n)
		}
		secret := s.post("/auth/mfa/setup/", map[string]string{"password": mfaPass}, bearer(access)).expect(t, 200).str("secret")
		s.post("/auth/mfa/activate/", map[string]string{"code": totpNow(t, secret)}, bearer(access)).detail(t, http.StatusForbidden, msgReauth)
		act := s.post("/auth/mfa/activate/", map[string]string{"code": totpNow(t, secret), "password": mfaPass}, bearer(access)).expect(t, 200)
		recoveryCodes(t, act)

		// A refresh keeps the session's time of proof.
		mustCreateUser(t, "later@world.com", mfaPass, 0)
		_, refresh = s.login("later@world.com", mfaPass)
		advance(t, 10*time.Minute+time.Second)
		r := s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 200)
		s.post("/auth/mfa/setup/", nil, bearer(r.str("access"))).detail(t, http.StatusForbidden, msgReauth)
		// Signing in again is a fresh proof.
		access, _ = s.login("later@world.com", mfaPass)
		s.enrol(access)

		// The setup page sends an old session to sign in again, and then
		// sets up.
		mustCreateUser(t, "page@world.com", mfaPass, 0)
		b := newFormBrowser(t)
		b.loginForm("/", "page@world.com", mfaPass).expect(t, http.StatusSeeOther)
		advance(t, 10*time.Minute+time.Second)
		loc := b.get("/auth/page/mfa-setup").expect(t, http.StatusSeeOther).location()
		if loc != "/auth/page/login?reauth=1&next="+url.QueryEscape("/auth/page/mfa-setup") {
			t.Fatalf("setup page of an old session: Location %q", loc)
		}
		p := b.get(loc).expect(t, 200)
		if !strings.Contains(p.body, "Please sign in again to continue.") {
			t.Fatalf("login page for a re-authentication:\n%s", p.body)
		}
		p = b.post("/auth/page/login", url.Values{"csrf_token": {p.csrf(t)}, "next": {"/auth/page/mfa-setup"}, "email": {"page@world.com"}, "password": {mfaPass}})
		if p.expect(t, http.StatusSeeOther).location() != "/auth/page/mfa-setup" {
			t.Fatalf("after signing in again: Location %q", p.location())
		}
		if !secretRE.MatchString(b.get("/auth/page/mfa-setup").expect(t, 200).body) {
			t.Fatal("no setup after signing in again")
		}
	})
}

// In required mode the bootstrap's setup challenge is the proof, however
// long the user takes within its lifetime.
func TestEnrolmentBootstrapNeedsNoPasswordE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, mfaOptions("required", "mfa_challenge_ttl 30m", "reauth_window 1m"), defaultBody))
		mustCreateUser(t, userEmail, mfaPass, 0)
		ch := s.bootstrap(userEmail)
		advance(t, 2*time.Minute)
		secret := s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": ch}).expect(t, 200).str("secret")
		r := s.post("/auth/mfa/activate/", map[string]string{"setup_challenge_id": ch, "code": totpNow(t, secret)}).expect(t, 200)
		recoveryCodes(t, r)
		if r.str("access") == "" {
			t.Fatalf("bootstrap activation opened no session: %s", r.raw)
		}
	})
}

// A password sent to enrol is checked like every password of a signed-in
// user: its failures count towards the address's login failures, checked
// before any hash, so once they are spent even the right password is
// refused.
func TestEnrolmentPasswordThrottledE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, mfaOptions("optional", "throttle login_email 2 15m"), defaultBody))
		mustCreateUser(t, userEmail, mfaPass, 0)
		access, _ := s.login(userEmail, mfaPass)
		advance(t, 10*time.Minute+time.Second)
		for range 2 {
			s.post("/auth/mfa/setup/", map[string]string{"password": "not-the-password"}, bearer(access)).detail(t, http.StatusBadRequest, "Invalid password.")
		}
		r := s.post("/auth/mfa/setup/", map[string]string{"password": mfaPass}, bearer(access)).expect(t, http.StatusTooManyRequests)
		if r.header.Get("Retry-After") == "" {
			t.Fatalf("throttled enrolment without Retry-After: %v", r.header)
		}
	})
}
