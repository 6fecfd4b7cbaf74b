package caddyauth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"
)

// auditDetails counts audit lines by event, and by event and each of the
// fields that tell its kind ("session_revoked/logout",
// "password_changed/reset").
func auditDetails(lines []map[string]any) map[string]int {
	n := map[string]int{}
	for _, l := range lines {
		ev, _ := l["event"].(string)
		n[ev]++
		for _, k := range []string{"reason", "method", "how", "endpoint"} {
			if v, ok := l[k].(string); ok {
				n[ev+"/"+v]++
			}
		}
	}
	return n
}

// expectAudit fails unless the lines written since the mark counts have
// grown by exactly want (and nothing else has changed), then returns the
// new counts.
func expectAudit(t *testing.T, audit func() []map[string]any, before map[string]int, what string, want ...string) map[string]int {
	t.Helper()
	now := auditDetails(audit())
	grew := map[string]int{}
	for k, v := range now {
		if d := v - before[k]; d != 0 {
			grew[k] = d
		}
	}
	wanted := map[string]int{}
	for _, w := range want {
		wanted[w]++
		if ev, _, ok := strings.Cut(w, "/"); ok {
			wanted[ev]++
		}
	}
	if fmt.Sprint(sorted(grew)) != fmt.Sprint(sorted(wanted)) {
		t.Fatalf("%s: audit lines %v, want %v", what, sorted(grew), sorted(wanted))
	}
	return now
}

func sorted(m map[string]int) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return out
}

// Every event README lists is written where it happens, one line each,
// with the user and never the address or a password.
func TestAuditEventsE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		opts := mfaOptions("optional", "registration invitations", "mfa_max_attempts 3", "session_lifetime 24h", "leeway 30s", mailOptions(t))
		cf, audit := withAuditLog(t, caddyfile(store, opts, browserBody))
		s := startCaddy(t, cf)
		email := uniqueEmail(t, "audited")
		u := mustCreateUser(t, email, userPass, 1000)
		n := auditDetails(audit())

		s.post("/auth/login/", map[string]string{"email": email, "password": "not-the-password"}).expect(t, 401)
		n = expectAudit(t, audit, n, "wrong password", "login_failed/credentials")
		access, refresh := s.login(email, userPass)
		n = expectAudit(t, audit, n, "login", "login_succeeded")

		s.post("/auth/logout/", nil, bearer(access), refreshCookie(refresh)).expect(t, 200)
		n = expectAudit(t, audit, n, "logout", "session_revoked/logout")

		b := newFormBrowser(t)
		b.loginForm("/", email, userPass).expect(t, http.StatusSeeOther)
		lp := b.get("/auth/page/logout").expect(t, 200)
		b.post("/auth/page/logout", url.Values{"csrf_token": {lp.csrf(t)}}).expect(t, http.StatusSeeOther)
		n = expectAudit(t, audit, n, "page login and logout", "login_succeeded", "session_revoked/logout")

		s.login(email, userPass)
		access, _ = s.login(email, userPass)
		s.post("/auth/logout-all/", nil, bearer(access)).expect(t, 200)
		n = expectAudit(t, audit, n, "logout-all", "login_succeeded", "login_succeeded", "session_revoked/logout_all")

		access, _ = s.login(email, userPass)
		s.post("/auth/password/change/", map[string]string{"old_password": userPass, "new_password1": newPass, "new_password2": newPass}, bearer(access)).expect(t, 200)
		n = expectAudit(t, audit, n, "password change", "login_succeeded", "password_changed/change", "session_revoked/password_change")

		s.post("/auth/password/reset/", map[string]string{"email": email}).expect(t, 200)
		r := s.get(linkPath(t, waitMails(t, email, 1), "/auth/password/reset/confirm/")).expect(t, 302)
		s.post("/auth/password/reset/set-new/", newPasswords(userPass), capabilityHeaders(t, r, "password_reset_access_token")...).expect(t, 200)
		n = expectAudit(t, audit, n, "password reset", "password_changed/reset", "session_revoked/password_reset")

		invitee := uniqueEmail(t, "invitee")
		access, refresh = s.login(email, userPass)
		s.post("/auth/registration/user-register/", map[string]any{"email": invitee, "role": 0}, bearer(access)).expect(t, 201)
		r = s.get(linkPath(t, waitMails(t, invitee, 1), "/auth/registration/verification/")).expect(t, 302)
		s.post("/auth/registration/set-password/", newPasswords(newPass), capabilityHeaders(t, r, "set_password_access_token")...).expect(t, 200)
		n = expectAudit(t, audit, n, "set-password", "login_succeeded", "password_changed/set")

		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 200)
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, http.StatusUnauthorized)
		n = expectAudit(t, audit, n, "refresh reuse", "session_revoked/refresh_not_whitelisted")

		// An enrolment's password check, then MFA.
		access, _ = s.login(email, userPass)
		advance(t, 11*time.Minute)
		s.post("/auth/mfa/setup/", map[string]string{"password": "not-the-password"}, bearer(access)).expect(t, http.StatusBadRequest)
		n = expectAudit(t, audit, n, "enrolment with a wrong password", "login_succeeded", "password_check_failed/reauthenticate")
		secret := s.post("/auth/mfa/setup/", map[string]string{"password": userPass}, bearer(access)).expect(t, 200).str("secret")
		s.post("/auth/mfa/activate/", map[string]string{"code": totpNow(t, secret), "password": userPass}, bearer(access)).expect(t, 200)
		n = expectAudit(t, audit, n, "enrolment")
		nextStep(t)
		ch := s.challenge(email)
		s.verify(ch, wrongCode(t, secret)).expect(t, 400)
		s.verify(ch, totpNow(t, secret)).expect(t, 200)
		n = expectAudit(t, audit, n, "second factor", "login_succeeded", "mfa_failed/totp", "mfa_succeeded/totp")
		ch = s.challenge(email)
		for range 2 {
			s.verify(ch, wrongCode(t, secret)).expect(t, 400)
		}
		s.verify(ch, wrongCode(t, secret)).expect(t, http.StatusTooManyRequests)
		n = expectAudit(t, audit, n, "lockout", "login_succeeded", "mfa_failed/totp", "mfa_failed/totp", "mfa_failed/totp", "mfa_lockout")

		// Sessions the refresh finds over: past session_lifetime (the
		// refresh token expires with the session, so only within the
		// leeway), or of an account disabled behind the server's back.
		advance(t, 16*time.Minute) // the lockout's window
		nextStep(t)
		r = s.verify(s.challenge(email), totpNow(t, secret)).expect(t, 200)
		_, refresh = r.session(t, false)
		advance(t, 24*time.Hour+10*time.Second)
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, http.StatusUnauthorized)
		n = expectAudit(t, audit, n, "session lifetime", "login_succeeded", "mfa_succeeded/totp", "session_revoked/session_lifetime")
		nextStep(t)
		r = s.verify(s.challenge(email), totpNow(t, secret)).expect(t, 200)
		_, refresh = r.session(t, false)
		if _, err := storeDB(t).ExecContext(context.Background(), `UPDATE users SET is_active = FALSE WHERE id = $1`, u.ID); err != nil {
			t.Fatal(err)
		}
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, http.StatusUnauthorized)
		expectAudit(t, audit, n, "disabled account", "login_succeeded", "mfa_succeeded/totp", "session_revoked/user_inactive")

		for _, l := range audit() {
			line := fmt.Sprint(l)
			for _, secret := range []string{email, invitee, userPass, newPass, "not-the-password"} {
				if strings.Contains(line, secret) {
					t.Fatalf("audit line carries %q: %s", secret, line)
				}
			}
			if l["event"] != "login_failed" && l["user_id"] == nil {
				t.Fatalf("audit line without the user: %v", l)
			}
		}
	})
}
