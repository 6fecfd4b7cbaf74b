package caddyauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
)

const newPass = "N3w-Pasw0rd-42"

// capabilityHeaders are the Cookie and X-CSRFToken headers a browser
// sends after following a link that set the capability cookie.
func capabilityHeaders(t *testing.T, r reply, cookie string) []string {
	t.Helper()
	capc, ok := r.cookie(cookie)
	if !ok || !capc.HttpOnly || capc.SameSite != http.SameSiteLaxMode || capc.Path != "/auth/" || capc.Value == "" {
		t.Fatalf("capability cookie %s: %+v (%v)", cookie, capc, r.header)
	}
	csrf, ok := r.cookie("csrftoken")
	if !ok || csrf.HttpOnly || csrf.Path != "/" || len(csrf.Value) < 32 {
		t.Fatalf("csrf cookie: %+v", csrf)
	}
	return []string{
		"Cookie: " + cookie + "=" + capc.Value + "; csrftoken=" + csrf.Value,
		"X-CSRFToken: " + csrf.Value,
	}
}

func newPasswords(p string) map[string]string {
	return map[string]string{"new_password1": p, "new_password2": p}
}

// totpCode computes the current RFC 6238 code of a base32 secret on the
// realm's clock.
func totpCode(t *testing.T, secret string) string {
	t.Helper()
	now, err := caddyauth.Now()
	if err != nil {
		t.Fatal(err)
	}
	return coretest.TOTPCode(t, secret, now)
}

func TestPasswordResetE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, mailOptions(t), defaultBody))
		email := uniqueEmail(t, "reset")
		u := mustCreateUser(t, email, userPass, 0)
		_, oldRefresh := s.login(email, userPass)
		_, oldRefresh2 := s.login(email, userPass)

		// W1: validation, then the same answer for known and unknown.
		s.post("/auth/password/reset/", map[string]string{}).expect(t, 400)
		r := s.post("/auth/password/reset/", map[string]string{"email": " "}).expect(t, 400)
		if r.fieldMsg("email") != "This field may not be blank." {
			t.Fatalf("blank: %s", r.raw)
		}
		r = s.post("/auth/password/reset/", map[string]string{"email": "a@x.com\r\nBcc: evil@x.com"}).expect(t, 400)
		if r.fieldMsg("email") != "Enter a valid email address." {
			t.Fatalf("CRLF address: %s", r.raw)
		}
		start := time.Now()
		unknown := s.post("/auth/password/reset/", map[string]string{"email": uniqueEmail(t, "nobody")}).expect(t, 200)
		if time.Since(start) < 500*time.Millisecond {
			t.Fatalf("reset answered under the floor: %v", time.Since(start))
		}
		known := s.post("/auth/password/reset/", map[string]string{"email": strings.ToUpper(email)}).expect(t, 200)
		if string(known.raw) != string(unknown.raw) || known.str("detail") != "Password reset e-mail has been sent." {
			t.Fatalf("answers differ: %s / %s", known.raw, unknown.raw)
		}
		m := waitMails(t, email, 1)
		first := linkPath(t, m, "/auth/password/reset/confirm/")
		// Only the link's digest is stored.
		st, err := caddyauth.ActiveStore()
		if err != nil {
			t.Fatal(err)
		}
		rows, err := st.UserTokens(context.Background(), u.ID, "PASS_RESET", time.Time{})
		if err != nil || len(rows) != 1 {
			t.Fatalf("PASS_RESET rows: %v %v", rows, err)
		}
		secret := strings.Split(strings.Trim(first, "/"), "/")[5]
		sum := sha256.Sum256([]byte(secret))
		if rows[0].Token != hex.EncodeToString(sum[:]) {
			t.Fatalf("stored %q, want the SHA-256 of the link secret", rows[0].Token)
		}

		// W3/P8: a newer link kills the older one.
		s.post("/auth/password/reset/", map[string]string{"email": email}).expect(t, 200)
		link := linkPath(t, waitMails(t, email, 2), "/auth/password/reset/confirm/")
		if link == first {
			t.Fatal("the second link is the first one")
		}
		r = s.get(first).expect(t, 200)
		if _, ok := r.cookie("password_reset_access_token"); ok || !strings.Contains(string(r.raw), "Invalid link") {
			t.Fatalf("superseded link: %v %s", r.header, r.raw)
		}

		// W2: the link sets the capability and lands on the built-in form.
		r = s.get(link, bearer("garbage")).expect(t, 302)
		if loc := r.header.Get("Location"); loc != "/auth/password/reset/default/" {
			t.Fatalf("Location %q", loc)
		}
		hdrs := capabilityHeaders(t, r, "password_reset_access_token")
		c, _ := r.cookie("password_reset_access_token")
		if cl := claims(t, c.Value); cl["one_time_permission"] != "PASS_RESET_ACCESS" || cl["for_user"] != float64(u.ID) || cl["user_id"] != nil {
			t.Fatalf("capability claims: %v", cl)
		}
		s.get(link).expect(t, 200) // single use
		page := s.get("/auth/password/reset/default/", hdrs[0]).expect(t, 200)
		if !strings.Contains(string(page.raw), `data-endpoint="/auth/password/reset/set-new/"`) ||
			!strings.Contains(page.header.Get("Content-Security-Policy"), "script-src 'nonce-") {
			t.Fatalf("form page: %v %s", page.header, page.raw)
		}
		if !strings.Contains(string(s.get("/auth/password/reset/default/").expect(t, 200).raw), "Invalid link") {
			t.Fatal("the form page without the cookie is not the invalid-link page")
		}

		// W5/W7: no cookie 401, no CSRF header 403; neither spends it,
		// and neither does a password the policy refuses.
		r = s.post("/auth/password/reset/set-new/", newPasswords(newPass)).expect(t, 401)
		if r.header.Get("WWW-Authenticate") != "Cookie" {
			t.Fatalf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
		}
		s.post("/auth/password/reset/set-new/", newPasswords(newPass), hdrs[0]).expect(t, 403)
		s.post("/auth/password/reset/set-new/", newPasswords(newPass), hdrs[0], "X-CSRFToken: wrong").expect(t, 403)
		r = s.post("/auth/password/reset/set-new/", map[string]string{"new_password1": newPass, "new_password2": newPass + "x"}, hdrs...).expect(t, 400)
		if r.fieldMsg("new_password2") != "The two password fields didn’t match." {
			t.Fatalf("mismatch: %s", r.raw)
		}
		r = s.post("/auth/password/reset/set-new/", newPasswords("short"), hdrs...).expect(t, 400)
		if !strings.Contains(string(r.raw), "This password is too short.") {
			t.Fatalf("short: %s", r.raw)
		}
		r = s.post("/auth/password/reset/set-new/", newPasswords(newPass), hdrs...).expect(t, 200)
		if r.str("detail") != "Password reset." || r.str("access") == "" {
			t.Fatalf("set-new: %s", r.raw)
		}
		newRefresh, ok := r.cookie("refresh_token")
		if !ok || !newRefresh.HttpOnly {
			t.Fatalf("no refresh cookie: %v", r.header)
		}
		r = s.post("/auth/password/reset/set-new/", newPasswords(newPass+"2"), hdrs...).expect(t, 401)
		if r.str("code") != "token_not_valid" {
			t.Fatalf("reuse: %s", r.raw)
		}

		// Old password refused, new accepted; older sessions revoked.
		s.post("/auth/login/", map[string]string{"email": email, "password": userPass}).expect(t, 401)
		s.login(email, newPass)
		for _, old := range []string{oldRefresh, oldRefresh2} {
			s.post("/auth/refresh/", nil, refreshCookie(old)).expect(t, 401)
		}
		s.post("/auth/refresh/", nil, refreshCookie(newRefresh.Value)).expect(t, 200)
		noMoreMails(t, email, 2)
	})
}

func TestPasswordResetHostHeaderE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf := strings.Replace(caddyfile(store, mailOptions(t), defaultBody), "http://127.0.0.1:"+testPort+" {", "http://:"+testPort+" {", 1)
		s := startCaddy(t, cf)
		email := uniqueEmail(t, "host")
		mustCreateUser(t, email, userPass, 0)
		s.post("/auth/password/reset/", map[string]string{"email": email},
			"Host: evil.example", "X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https").expect(t, 200)
		m := waitMails(t, email, 1)
		if strings.Contains(m.Text, "evil") || strings.Contains(m.HTML, "evil") {
			t.Fatalf("the Host header reached the mail:\n%s", m.Text)
		}
		linkPath(t, m, "/auth/password/reset/confirm/")
	})
}

func TestPasswordResetSMTPDownE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		down := "127.0.0.1:" + freePort() // nothing listens there
		opts := "mail smtp " + down + " {\n\t\t\tfrom no-reply@example.com\n\t\t\ttls none\n\t\t}"
		s := startCaddy(t, caddyfile(store, opts, defaultBody))
		email := uniqueEmail(t, "down")
		mustCreateUser(t, email, userPass, 0)
		known := s.post("/auth/password/reset/", map[string]string{"email": email}).expect(t, 200)
		unknown := s.post("/auth/password/reset/", map[string]string{"email": uniqueEmail(t, "nobody")}).expect(t, 200)
		if string(known.raw) != string(unknown.raw) {
			t.Fatalf("answers differ: %s / %s", known.raw, unknown.raw)
		}
	})
}

func TestPasswordChangeE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		mustCreateUser(t, userEmail, userPass, 0)
		access, refresh := s.login(userEmail, userPass)
		_, other := s.login(userEmail, userPass)

		s.post("/auth/password/change/", map[string]string{}).expect(t, 401)
		s.get("/auth/password/change/", bearer(access)).expect(t, 405)
		r := s.post("/auth/password/change/", map[string]string{}, bearer(access)).expect(t, 400)
		for _, f := range []string{"old_password", "new_password1", "new_password2"} {
			if r.fieldMsg(f) != "This field is required." {
				t.Fatalf("empty body: %s", r.raw)
			}
		}
		body := map[string]string{"old_password": "wrong-one", "new_password1": newPass, "new_password2": newPass}
		r = s.post("/auth/password/change/", body, bearer(access)).expect(t, 400)
		if r.fieldMsg("old_password") != "Your old password was entered incorrectly. Please enter it again." {
			t.Fatalf("wrong old: %s", r.raw)
		}
		body["old_password"] = userPass
		body["new_password2"] = strings.Repeat("a", 129)
		r = s.post("/auth/password/change/", body, bearer(access)).expect(t, 400)
		if r.fieldMsg("new_password2") != "Ensure this field has no more than 128 characters." {
			t.Fatalf("long: %s", r.raw)
		}
		body["new_password2"] = newPass
		r = s.post("/auth/password/change/", body, bearer(access)).expect(t, 200)
		if r.str("detail") != "New password has been saved." || r.str("access") == "" {
			t.Fatalf("change: %s", r.raw)
		}
		c, ok := r.cookie("refresh_token")
		if !ok {
			t.Fatal("no replacement session")
		}
		for _, old := range []string{refresh, other} {
			r = s.post("/auth/refresh/", nil, refreshCookie(old)).expect(t, 401)
			if r.str("code") != "token_not_valid" {
				t.Fatalf("old session: %s", r.raw)
			}
		}
		s.post("/auth/refresh/", nil, refreshCookie(c.Value)).expect(t, 200)
		s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}).expect(t, 401)
		s.login(userEmail, newPass)
	})
}

func TestSignupMandatoryE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "email_verification mandatory\n"+mailOptions(t), defaultBody))
		email := uniqueEmail(t, "signup")
		body := map[string]string{"email": email, "password1": userPass, "password2": userPass, "first_name": "  john   paul ", "last_name": "smith"}

		// G1, G2, G3, G4, G13: validation.
		r := s.post("/auth/registration/", map[string]string{}).expect(t, 400)
		for _, f := range []string{"email", "password1", "password2", "first_name", "last_name"} {
			if r.fieldMsg(f) != "This field is required." {
				t.Fatalf("empty body, %s: %s", f, r.raw)
			}
		}
		bad := func(field, value, want, msgField string) {
			t.Helper()
			b := map[string]string{}
			for k, v := range body {
				b[k] = v
			}
			b[field] = value
			if field == "password1" {
				b["password2"] = value
			}
			r := s.post("/auth/registration/", b).expect(t, 400)
			if r.fieldMsg(msgField) != want {
				t.Fatalf("%s=%q: %s", field, value, r.raw)
			}
		}
		bad("password1", "password", "This password is too common.", "password1")
		bad("password1", "short$", "This password is too short. It must contain at least 8 characters.", "password1")
		bad("email", "invalid_email", "Enter a valid email address.", "email")
		bad("first_name", "J0hn", "Incorrect format", "first_name")
		bad("password2", userPass+"x", "The two password fields didn't match.", "non_field_errors")
		s.get("/auth/registration/").expect(t, 405)

		// G5: 201 without tokens, one mail; login refused until the link.
		r = s.post("/auth/registration/", body).expect(t, 201)
		if string(r.raw) != `{"detail":"Verification e-mail sent."}` {
			t.Fatalf("sign-up: %s", r.raw)
		}
		if _, ok := r.cookie("refresh_token"); ok {
			t.Fatal("sign-up set a refresh cookie")
		}
		r = s.post("/auth/login/", map[string]string{"email": email, "password": userPass}).expect(t, 401)
		if r.str("code") != "email_not_verified" {
			t.Fatalf("unverified login: %s", r.raw)
		}
		link := linkPath(t, waitMails(t, email, 1), "/auth/registration/verification/")
		r = s.get(link).expect(t, 302)
		if loc := r.header.Get("Location"); loc != "/auth/registration/verified/" {
			t.Fatalf("Location %q", loc)
		}
		s.get(link).expect(t, 404) // single use
		if !strings.Contains(string(s.get("/auth/registration/verified/").expect(t, 200).raw), "confirmed") {
			t.Fatal("verified page")
		}
		access, _ := s.login(email, userPass)
		r = s.get("/auth/user/", bearer(access)).expect(t, 200)
		if r.str("first_name") != "John Paul" || r.str("last_name") != "Smith" {
			t.Fatalf("names: %s", r.raw)
		}

		// G6: the taken address answers the same; its owner gets a note
		// without a confirmation link, and the account is untouched.
		body["password1"], body["password2"] = newPass, newPass
		r = s.post("/auth/registration/", body).expect(t, 201)
		if string(r.raw) != `{"detail":"Verification e-mail sent."}` {
			t.Fatalf("hidden conflict: %s", r.raw)
		}
		m := waitMails(t, email, 2)
		if !strings.Contains(m.Subject, "already have an account") || strings.Contains(m.Text, "/registration/verification/") {
			t.Fatalf("account-exists mail: %q\n%s", m.Subject, m.Text)
		}
		s.login(email, userPass)
		s.post("/auth/login/", map[string]string{"email": email, "password": newPass}).expect(t, 401)

		// G7: two sign-ups for an unconfirmed address, both 201, two mails,
		// one account: the first, kept while its link works
		// (TestSignupPendingKeptE2E).
		pending := uniqueEmail(t, "pending")
		body["email"] = pending
		s.post("/auth/registration/", body).expect(t, 201)
		s.post("/auth/registration/", body).expect(t, 201)
		s.get(confirmationLink(t, pending, 2)).expect(t, 302)
		s.login(pending, newPass)
	})
}

func TestSignupOptionalAndNoneE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "email_verification optional\n"+mailOptions(t), defaultBody))
		email := uniqueEmail(t, "optional")
		body := map[string]string{"email": email, "password1": userPass, "password2": userPass, "first_name": "Ana", "last_name": "Núñez"}
		r := s.post("/auth/registration/", body).expect(t, 201)
		c, ok := r.cookie("refresh_token")
		if !ok || r.str("access") == "" || claims(t, r.str("access"))["email_verified"] != false {
			t.Fatalf("optional sign-up: %s %v", r.raw, r.header)
		}
		r = s.post("/auth/registration/", body).expect(t, 400)
		if r.fieldMsg("email") != "A user is already registered with this e-mail address." {
			t.Fatalf("taken: %s", r.raw)
		}
		link := linkPath(t, waitMails(t, email, 1), "/auth/registration/verification/")
		s.get(link).expect(t, 302)
		// The claim flips at the next refresh.
		r = s.post("/auth/refresh/", nil, refreshCookie(c.Value)).expect(t, 200)
		if claims(t, r.str("access"))["email_verified"] != true {
			t.Fatalf("email_verified after the link: %v", claims(t, r.str("access")))
		}
	})
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		body := map[string]string{"email": "none@world.com", "password1": userPass, "password2": userPass, "first_name": "Ana", "last_name": "Smith"}
		r := s.post("/auth/registration/", body).expect(t, 201)
		if claims(t, r.str("access"))["email_verified"] != true {
			t.Fatalf("none: %s", r.raw)
		}
		// No verification route without verification or invitations.
		s.get("/auth/registration/verification/abc/").expect(t, 404)
	})
}

func TestSignupMFARequiredE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "email_verification mandatory\nmfa_totp_mode required\n"+mailOptions(t), defaultBody))
		email := uniqueEmail(t, "mfa")
		body := map[string]string{"email": email, "password1": userPass, "password2": userPass, "first_name": "Ana", "last_name": "Smith"}
		r := s.post("/auth/registration/", body).expect(t, 201)
		if r.body["mfa_setup_required"] != true || len(r.str("setup_challenge_id")) != 32 || r.str("detail") != "Verification e-mail sent." || r.body["access"] != nil {
			t.Fatalf("bootstrap: %s", r.raw)
		}
		// The challenge works once the address is confirmed
		// (TestSignupMandatoryMFAOrderE2E).
		id := r.str("setup_challenge_id")
		s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": id}).expect(t, 401)
		link := linkPath(t, waitMails(t, email, 1), "/auth/registration/verification/")
		s.get(link).expect(t, 302)
		s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": id}).expect(t, 200)
		// Q6: a taken address gets the same shape, leading nowhere.
		r = s.post("/auth/registration/", body).expect(t, 201)
		if r.body["mfa_setup_required"] != true || len(r.str("setup_challenge_id")) != 32 || r.str("detail") != "Verification e-mail sent." {
			t.Fatalf("hidden bootstrap: %s", r.raw)
		}
		s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": r.str("setup_challenge_id")}).expect(t, 401)
	})
}

func TestInvitationMFARequiredE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "registration admin_managed\nemail_verification mandatory\nmfa_totp_mode required\n"+mailOptions(t), defaultBody))
		mustCreateUser(t, "staff@world.com", userPass, 1000)
		mustCreateUser(t, "super@world.com", userPass, 900)
		mustCreateUser(t, "plain@world.com", userPass, 0)
		staff := adminAccess(t, s, "staff@world.com")
		super := adminAccess(t, s, "super@world.com")
		plain := adminAccess(t, s, "plain@world.com")
		email := uniqueEmail(t, "invitee")

		// I1: no sign-up in admin_managed mode.
		s.post("/auth/registration/", map[string]string{"email": email}).expect(t, 404)
		// I2: who may invite, and what.
		s.post("/auth/registration/user-register/", map[string]any{"email": email, "role": 0}).expect(t, 401)
		s.post("/auth/registration/user-register/", map[string]any{"email": email, "role": 0}, bearer(plain)).expect(t, 403)
		r := s.post("/auth/registration/user-register/", map[string]any{"email": email, "role": 1000}, bearer(super)).expect(t, 400)
		if r.fieldMsg("role") != "You cannot grant a role higher than your own." {
			t.Fatalf("role rule: %s", r.raw)
		}
		s.post("/auth/registration/user-register/", map[string]any{"email": email}, bearer(staff)).expect(t, 400)
		r = s.post("/auth/registration/user-register/", map[string]any{"email": "plain@world.com", "role": 0}, bearer(staff)).expect(t, 400)
		if r.fieldMsg("email") != "A user is already registered with this e-mail address." {
			t.Fatalf("taken: %s", r.raw)
		}
		// I3: a second invitation replaces the first.
		s.post("/auth/registration/user-register/", map[string]any{"email": email, "role": 300}, bearer(staff)).expect(t, 201)
		r = s.post("/auth/registration/user-register/", map[string]any{"email": email, "role": 300, "first_name": "ana"}, bearer(staff)).expect(t, 201)
		if string(r.raw) != `{}` {
			t.Fatalf("invite: %s", r.raw)
		}
		m := waitMails(t, email, 2)
		link := linkPath(t, m, "/auth/registration/verification/")
		r = s.get(link).expect(t, 302)
		if loc := r.header.Get("Location"); loc != "/auth/registration/set-password/default/" {
			t.Fatalf("Location %q", loc)
		}
		hdrs := capabilityHeaders(t, r, "set_password_access_token")
		s.get("/auth/registration/set-password/default/", hdrs[0]).expect(t, 200)
		s.post("/auth/registration/set-password/", newPasswords(newPass), hdrs[0]).expect(t, 403)

		// Q10: set-password answers with the bootstrap, no tokens.
		r = s.post("/auth/registration/set-password/", newPasswords(newPass), hdrs...).expect(t, 200)
		if r.body["mfa_setup_required"] != true || r.str("detail") != "Password set. Please configure MFA to complete registration." || r.body["access"] != nil {
			t.Fatalf("set-password: %s", r.raw)
		}
		if _, ok := r.cookie("refresh_token"); ok {
			t.Fatal("set-password set a refresh cookie")
		}
		id := r.str("setup_challenge_id")
		r = s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": id}).expect(t, 200)
		code := totpCode(t, r.str("secret"))
		r = s.post("/auth/mfa/activate/", map[string]string{"setup_challenge_id": id, "code": code}).expect(t, 200)
		if r.str("access") == "" || claims(t, r.str("access"))["role"] != float64(300) {
			t.Fatalf("activate: %s", r.raw)
		}
		if _, ok := r.cookie("refresh_token"); !ok {
			t.Fatal("activate set no refresh cookie")
		}
		// The invitation is spent; login now asks for the second factor.
		s.get(link).expect(t, 404)
		r = s.post("/auth/login/", map[string]string{"email": email, "password": newPass}).expect(t, 200)
		if r.body["mfa_required"] != true {
			t.Fatalf("login: %s", r.raw)
		}
	})
}

// adminAccess logs a store-created user in and returns an access token;
// in MFA required mode it goes through the setup bootstrap first.
func adminAccess(t *testing.T, s *site, email string) string {
	t.Helper()
	r := s.post("/auth/login/", map[string]string{"email": email, "password": userPass}).expect(t, 200)
	if r.str("access") != "" {
		return r.str("access")
	}
	id := r.str("setup_challenge_id")
	if id == "" {
		t.Fatalf("login: %s", r.raw)
	}
	r = s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": id}).expect(t, 200)
	r = s.post("/auth/mfa/activate/", map[string]string{"setup_challenge_id": id, "code": totpCode(t, r.str("secret"))}).expect(t, 200)
	return r.str("access")
}

func TestInvitationOpenSignupE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "registration invitations\ninvite_roles 1000 300\n"+mailOptions(t), defaultBody))
		mustCreateUser(t, "custom@world.com", userPass, 300)
		mustCreateUser(t, "super@world.com", userPass, 900)
		custom, _ := s.login("custom@world.com", userPass)
		super, _ := s.login("super@world.com", userPass)
		// invite_roles leaves superusers out; a custom role grants itself
		// or 0 only.
		s.post("/auth/registration/user-register/", map[string]any{"email": uniqueEmail(t, "x"), "role": 0}, bearer(super)).expect(t, 403)
		s.post("/auth/registration/user-register/", map[string]any{"email": uniqueEmail(t, "x"), "role": 900}, bearer(custom)).expect(t, 400)
		email := uniqueEmail(t, "invited")
		s.post("/auth/registration/user-register/", map[string]any{"email": email, "role": 300}, bearer(custom)).expect(t, 201)
		link := linkPath(t, waitMails(t, email, 1), "/auth/registration/verification/")
		// A public sign-up does not take an invited address.
		r := s.post("/auth/registration/", map[string]string{"email": email, "password1": userPass, "password2": userPass, "first_name": "A", "last_name": "B"}).expect(t, 400)
		if r.fieldMsg("email") == "" {
			t.Fatalf("sign-up over an invitation: %s", r.raw)
		}
		hdrs := capabilityHeaders(t, s.get(link).expect(t, 302), "set_password_access_token")
		r = s.post("/auth/registration/set-password/", newPasswords(newPass), hdrs...).expect(t, 200)
		if r.str("detail") != "Password set." || r.str("access") == "" {
			t.Fatalf("set-password: %s", r.raw)
		}
		s.login(email, newPass)
	})
}

// race runs fn n times at once and returns the statuses and replies.
func race(n int, fn func(i int) (reply, error)) ([]int, []error, []reply) {
	statuses := make([]int, n)
	errs := make([]error, n)
	replies := make([]reply, n)
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startGate
			r, err := fn(i)
			statuses[i], errs[i], replies[i] = r.status, err, r
		}()
	}
	close(startGate)
	wg.Wait()
	return statuses, errs, replies
}

// exactlyOne fails unless exactly one status is win and all others lose.
func exactlyOne(t *testing.T, statuses []int, errs []error, win, lose int) {
	t.Helper()
	wins := 0
	for i, st := range statuses {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		switch st {
		case win:
			wins++
		case lose:
		default:
			t.Fatalf("unexpected status %d among %v", st, statuses)
		}
	}
	if wins != 1 {
		t.Fatalf("%d successes, want exactly 1: %v", wins, statuses)
	}
}

func TestSingleUseRacesE2E(t *testing.T) {
	const n = 20
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "registration invitations\nemail_verification mandatory\n"+mailOptions(t), defaultBody))

		// One verification link.
		email := uniqueEmail(t, "race-verify")
		s.post("/auth/registration/", map[string]string{"email": email, "password1": userPass, "password2": userPass, "first_name": "A", "last_name": "B"}).expect(t, 201)
		link := linkPath(t, waitMails(t, email, 1), "/auth/registration/verification/")
		st, errs, _ := race(n, func(int) (reply, error) { return s.try(http.MethodGet, link, nil) })
		exactlyOne(t, st, errs, 302, 404)

		// One reset capability.
		s.post("/auth/password/reset/", map[string]string{"email": email}).expect(t, 200)
		link = linkPath(t, waitMails(t, email, 2), "/auth/password/reset/confirm/")
		hdrs := capabilityHeaders(t, s.get(link).expect(t, 302), "password_reset_access_token")
		st, errs, _ = race(n, func(i int) (reply, error) {
			return s.try(http.MethodPost, "/auth/password/reset/set-new/", newPasswords(fmt.Sprintf("%s-%d", newPass, i)), hdrs...)
		})
		exactlyOne(t, st, errs, 200, 401)

		// One invitation: 20 clicks, then 20 set-password calls, each
		// with the capability its click got.
		mustCreateUser(t, "staff@world.com", userPass, 1000)
		staff, _ := s.login("staff@world.com", userPass)
		invitee := uniqueEmail(t, "race-invite")
		s.post("/auth/registration/user-register/", map[string]any{"email": invitee, "role": 0}, bearer(staff)).expect(t, 201)
		link = linkPath(t, waitMails(t, invitee, 1), "/auth/registration/verification/")
		st, errs, replies := race(n, func(int) (reply, error) { return s.try(http.MethodGet, link, nil) })
		caps := make([][]string, n)
		for i := range st {
			if errs[i] != nil || st[i] != 302 {
				t.Fatalf("invitation click %d: %d %v", i, st[i], errs[i])
			}
			caps[i] = capabilityHeaders(t, replies[i], "set_password_access_token")
		}
		st, errs, _ = race(n, func(i int) (reply, error) {
			return s.try(http.MethodPost, "/auth/registration/set-password/", newPasswords(fmt.Sprintf("%s-%d", newPass, i)), caps[i]...)
		})
		exactlyOne(t, st, errs, 200, 401)
	})
}

// TestResendAndThrottlesE2E: a new confirmation link on request (the old
// one dies), the same answer for any address, and the sign-up, reset and
// resend throttles per address, alike for unknown and existing ones.
func TestResendAndThrottlesE2E(t *testing.T) {
	s := startCaddy(t, caddyfile(backends()[0].store(t), "email_verification mandatory\n"+mailOptions(t)+
		"\n\t\tthrottle verification_resend_email 2 1m\n\t\tthrottle password_reset_email 5 1m\n\t\tthrottle registration_email 3 5m", defaultBody))
	email := uniqueEmail(t, "resend")
	body := map[string]string{"email": email, "password1": userPass, "password2": userPass, "first_name": "Ann", "last_name": "Lee"}
	s.post("/auth/registration/", body).expect(t, 201)
	first := linkPath(t, waitMails(t, email, 1), "/auth/registration/verification/")

	r := s.post("/auth/registration/resend-email/", map[string]string{"email": strings.ToUpper(email)}).expect(t, 200)
	if string(r.raw) != `{"detail":"ok"}` {
		t.Fatalf("resend: %s", r.raw)
	}
	second := linkPath(t, waitMails(t, email, 2), "/auth/registration/verification/")
	if second == first {
		t.Fatal("resend mailed the same link")
	}
	s.get(first).expect(t, 404)
	s.get(second).expect(t, 302)
	// Confirmed now: the answer stays the same, no mail goes out; a third
	// request for the address within the minute is throttled.
	s.post("/auth/registration/resend-email/", map[string]string{"email": email}).expect(t, 200)
	s.post("/auth/registration/resend-email/", map[string]string{"email": email}).expect(t, 429)
	unknown := uniqueEmail(t, "nobody")
	if r := s.post("/auth/registration/resend-email/", map[string]string{"email": unknown}).expect(t, 200); string(r.raw) != `{"detail":"ok"}` {
		t.Fatalf("unknown address: %s", r.raw)
	}
	noMoreMails(t, email, 2)
	noMoreMails(t, unknown, 0)

	// Reset requests: the sixth for one address is refused, known or not.
	for _, addr := range []string{email, unknown} {
		for i := 0; i < 5; i++ {
			s.post("/auth/password/reset/", map[string]string{"email": addr}).expect(t, 200)
		}
		r := s.post("/auth/password/reset/", map[string]string{"email": addr}).expect(t, 429)
		if !strings.HasPrefix(r.str("detail"), "Request was throttled.") || r.header.Get("Retry-After") == "" {
			t.Fatalf("reset throttle: %s %v", r.raw, r.header)
		}
	}
	// Sign-ups for one address: the fourth is refused.
	other := uniqueEmail(t, "signups")
	body["email"] = other
	for i := 0; i < 3; i++ {
		s.post("/auth/registration/", body).expect(t, 201)
	}
	s.post("/auth/registration/", body).expect(t, 429)
}
