package caddyauth_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sign-up pre-hijacking (DESIGN decision 12): nothing a stranger sets up
// with someone else's address before it is proven outlives the owner's
// proof, and a pending sign-up can neither be replaced nor told apart
// from a taken address.

func signupBody(email, password string) map[string]string {
	return map[string]string{"email": email, "password1": password, "password2": password, "first_name": "Ann", "last_name": "Lee"}
}

// confirmationLink waits for n mails to addr and returns the path of the
// one confirmation link among them.
func confirmationLink(t *testing.T, addr string, n int) string {
	t.Helper()
	waitMails(t, addr, n)
	var links []string
	for _, m := range mailsTo(t, addr) {
		full := fullMail(t, m.ID)
		if strings.Contains(full.Text, "/registration/verification/") {
			links = append(links, linkPath(t, full, "/auth/registration/verification/"))
		}
	}
	if len(links) != 1 {
		t.Fatalf("%d confirmation links among the %d mails to %s, want 1", len(links), n, addr)
	}
	return links[0]
}

// signupSession signs up (verification optional, MFA not required) with
// mfaPass and returns the session the sign-up opened.
func signupSession(t *testing.T, s *site, email string) (access, refresh string) {
	t.Helper()
	r := s.post("/auth/registration/", signupBody(email, mfaPass)).expect(t, 201)
	c, ok := r.cookie("refresh_token")
	if r.str("access") == "" || !ok {
		t.Fatalf("sign-up opened no session: %s", r.raw)
	}
	return r.str("access"), c.Value
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestSignupPendingKeptE2E: a second sign-up for an address whose first
// sign-up still waits for its link gets the first one's answer, changes
// nothing, and the address gets a note without any link of ours; once the
// link expired, a new sign-up replaces the old one.
func TestSignupPendingKeptE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "email_verification mandatory\n\t\tpassword_reset_request_url https://example.com/forgot/\n\t\t"+mailOptions(t), defaultBody))
		st := activeStore(t)
		ctx := context.Background()

		email := uniqueEmail(t, "pending")
		first := s.post("/auth/registration/", signupBody(email, userPass)).expect(t, 201).noSession(t)
		link := confirmationLink(t, email, 1)
		before, err := st.UserByEmail(ctx, email)
		if err != nil {
			t.Fatal(err)
		}

		second := s.post("/auth/registration/", signupBody(email, newPass)).expect(t, 201).noSession(t)
		if string(second.raw) != string(first.raw) {
			t.Fatalf("second sign-up %s, the first got %s", second.raw, first.raw)
		}
		note := waitMails(t, email, 2)
		if !strings.Contains(note.Subject, "waiting for confirmation") || !strings.Contains(note.Text, "https://example.com/forgot/") {
			t.Fatalf("pending note: %q\n%s", note.Subject, note.Text)
		}
		if strings.Contains(note.Text+note.HTML, testBase) || strings.Contains(note.Text+note.HTML, "/registration/verification/") {
			t.Fatalf("the pending note holds a link of the site:\n%s\n%s", note.Text, note.HTML)
		}
		after, err := st.UserByEmail(ctx, email)
		if err != nil {
			t.Fatal(err)
		}
		if after.ID != before.ID || after.PasswordHash != before.PasswordHash {
			t.Fatalf("the pending sign-up was replaced: %+v, was %+v", after, before)
		}
		// The first person's link and password still work; the second
		// password never does.
		s.get(link).expect(t, 302)
		s.login(email, userPass)
		s.post("/auth/login/", map[string]string{"email": email, "password": newPass}).expect(t, 401)

		// The note's way out for an owner who did not sign up: a reset by
		// mailed link takes the address over from the pending sign-up.
		squatted := uniqueEmail(t, "squatted")
		s.post("/auth/registration/", signupBody(squatted, userPass)).expect(t, 201)
		strangerLink := confirmationLink(t, squatted, 1)
		s.post("/auth/registration/", signupBody(squatted, newPass)).expect(t, 201)
		waitMails(t, squatted, 2)
		s.post("/auth/password/reset/", map[string]string{"email": squatted}).expect(t, 200)
		reset := linkPath(t, waitMails(t, squatted, 3), "/auth/password/reset/confirm/")
		hdrs := capabilityHeaders(t, s.get(reset).expect(t, 302), "password_reset_access_token")
		if r := s.post("/auth/password/reset/set-new/", newPasswords(newPass), hdrs...).expect(t, 200); r.str("access") == "" {
			t.Fatalf("owner's reset: %s", r.raw)
		}
		s.get(strangerLink).expect(t, 404)
		s.post("/auth/login/", map[string]string{"email": squatted, "password": userPass}).expect(t, 401)
		s.login(squatted, newPass)

		// Once the link expired (email_confirmation_ttl, 3 days), the
		// next sign-up replaces the abandoned one.
		stale := uniqueEmail(t, "stale")
		s.post("/auth/registration/", signupBody(stale, userPass)).expect(t, 201)
		staleLink := confirmationLink(t, stale, 1)
		advance(t, 3*24*time.Hour+time.Minute)
		r := s.post("/auth/registration/", signupBody(stale, newPass)).expect(t, 201)
		if string(r.raw) != string(first.raw) {
			t.Fatalf("sign-up after expiry: %s", r.raw)
		}
		fresh := waitMails(t, stale, 2)
		if strings.Contains(fresh.Subject, "waiting") {
			t.Fatalf("after expiry the address got %q, want a confirmation", fresh.Subject)
		}
		s.get(staleLink).expect(t, 404)
		s.get(linkPath(t, fresh, "/auth/registration/verification/")).expect(t, 302)
		s.login(stale, newPass)
		s.post("/auth/login/", map[string]string{"email": stale, "password": userPass}).expect(t, 401)
	})
}

// TestSignupMandatoryMFAOrderE2E: under mandatory verification with MFA
// required the order is sign up, confirm, then set up MFA. Before the
// link no session is opened (not even a disabled one) and the sign-up's
// setup challenge answers exactly like the random one of a taken
// address; from the confirmation on it works, for the challenge lifetime
// counted from then.
func TestSignupMandatoryMFAOrderE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "email_verification mandatory\n\t\tmfa_totp_mode required\n\t\t"+mailOptions(t), defaultBody))
		st := activeStore(t)
		ctx := context.Background()
		owner := mustCreateUser(t, uniqueEmail(t, "owner"), userPass, 0)
		want := []string{"detail", "mfa_setup_required", "setup_challenge_id"}

		email := uniqueEmail(t, "order")
		free := s.post("/auth/registration/", signupBody(email, userPass)).expect(t, 201).noSession(t)
		taken := s.post("/auth/registration/", signupBody(owner.Email, newPass)).expect(t, 201).noSession(t)
		pending := s.post("/auth/registration/", signupBody(email, newPass)).expect(t, 201).noSession(t)
		for _, r := range []reply{free, taken, pending} {
			if !slices.Equal(keys(r.body), want) || r.body["mfa_setup_required"] != true || !hex32.MatchString(r.str("setup_challenge_id")) || r.str("detail") != "Verification e-mail sent." {
				t.Fatalf("sign-up answer %s, want the bootstrap with detail", r.raw)
			}
		}
		u, err := st.UserByEmail(ctx, email)
		if err != nil {
			t.Fatal(err)
		}
		id := free.str("setup_challenge_id")

		// The reference's order (MFA before the link) gets nowhere, and
		// answers as for a taken address: same status, same body.
		for _, path := range []string{"/auth/mfa/setup/", "/auth/mfa/activate/"} {
			ask := func(id string) reply {
				return s.post(path, map[string]string{"setup_challenge_id": id, "code": "123456"})
			}
			a, b, c := ask(id), ask(taken.str("setup_challenge_id")), ask(pending.str("setup_challenge_id"))
			for _, r := range []reply{a, c} {
				if r.status != b.status || string(r.raw) != string(b.raw) {
					t.Fatalf("%s before confirmation: %d %s; a taken address gets %d %s", path, r.status, r.raw, b.status, b.raw)
				}
			}
			b.expect(t, 401).noSession(t)
		}
		if n := sessions(t, u.ID); n != 0 {
			t.Fatalf("%d sessions before the address was confirmed, want 0", n)
		}

		// Confirmed ten minutes later (twice the challenge lifetime): the
		// sign-up's challenge works from now on.
		advance(t, 10*time.Minute)
		s.get(confirmationLink(t, email, 2)).expect(t, 302)
		setup := s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": id}).expect(t, 200)
		act := s.post("/auth/mfa/activate/", map[string]string{"setup_challenge_id": id, "code": totpNow(t, setup.str("secret"))})
		access, refresh := act.session(t, false)
		recoveryCodes(t, act)
		if claims(t, access)["email_verified"] != true {
			t.Fatalf("access after confirmation: %v", claims(t, access))
		}
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 200)
		// The taken address's id still leads nowhere; login now asks for
		// the second factor.
		s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": taken.str("setup_challenge_id")}).expect(t, 401)
		if r := s.post("/auth/login/", map[string]string{"email": email, "password": userPass}).expect(t, 200).noSession(t); r.body["mfa_required"] != true {
			t.Fatalf("login after enrolment: %s", r.raw)
		}

		// An owner taking the address over by a reset gets a setup
		// challenge of their own; the stranger's held one never works.
		squatted := uniqueEmail(t, "squatted")
		held := s.post("/auth/registration/", signupBody(squatted, userPass)).expect(t, 201).str("setup_challenge_id")
		s.post("/auth/password/reset/", map[string]string{"email": squatted}).expect(t, 200)
		reset := linkPath(t, waitMails(t, squatted, 2), "/auth/password/reset/confirm/")
		hdrs := capabilityHeaders(t, s.get(reset).expect(t, 302), "password_reset_access_token")
		r := s.post("/auth/password/reset/set-new/", newPasswords(newPass), hdrs...).expect(t, 200).noSession(t)
		if r.body["mfa_setup_required"] != true || r.str("setup_challenge_id") == held {
			t.Fatalf("owner's reset: %s", r.raw)
		}
		s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": held}).expect(t, 401)
		s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": r.str("setup_challenge_id")}).expect(t, 200)
	})
}

// TestSignupNoSessionBeforeConfirmationE2E: the reference's order under
// mandatory verification with MFA required (set up and activate TOTP
// right after signing up) hands out no refresh token and writes no
// session row, disabled or not.
func TestSignupNoSessionBeforeConfirmationE2E(t *testing.T) {
	s := startCaddy(t, caddyfile(backends()[0].store(t), "email_verification mandatory\n\t\tmfa_totp_mode required\n\t\t"+mailOptions(t), defaultBody))
	email := uniqueEmail(t, "nosession")
	id := s.post("/auth/registration/", signupBody(email, userPass)).expect(t, 201).noSession(t).str("setup_challenge_id")
	if setup := s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": id}).noSession(t); setup.status == 200 {
		s.post("/auth/mfa/activate/", map[string]string{"setup_challenge_id": id, "code": totpNow(t, setup.str("secret"))}).noSession(t)
	}
	u, err := activeStore(t).UserByEmail(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	if n := sessions(t, u.ID); n != 0 {
		t.Fatalf("%d sessions before the address was confirmed, want 0", n)
	}
}

// TestResetFirstProofE2E: a stranger signs up with someone else's address
// (optional verification: the account works at once), enrols TOTP and
// holds a session. The owner's password reset by mailed link is the
// address's first proof: it confirms the address, removes the stranger's
// factors and sessions, and says so in the audit log. A creator who
// confirms by the sign-up's own link keeps what they set up.
func TestResetFirstProofE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf, auditLines := withAuditLog(t, caddyfile(store, mfaOptions("optional", "email_verification optional", mailOptions(t)), defaultBody))
		s := startCaddy(t, cf)
		st := activeStore(t)
		ctx := context.Background()

		// The stranger's account, factors and session.
		victim := uniqueEmail(t, "victim")
		strangerAccess, strangerRefresh := signupSession(t, s, victim)
		s.enrol(strangerAccess)
		strangerLink := confirmationLink(t, victim, 1)
		s.challenge(victim)

		// The owner resets the password by the mailed link.
		s.post("/auth/password/reset/", map[string]string{"email": victim}).expect(t, 200)
		reset := linkPath(t, waitMails(t, victim, 2), "/auth/password/reset/confirm/")
		hdrs := capabilityHeaders(t, s.get(reset).expect(t, 302), "password_reset_access_token")
		r := s.post("/auth/password/reset/set-new/", newPasswords(newPass), hdrs...).expect(t, 200)
		if r.str("detail") != "Password reset." || r.body["mfa_required"] != nil {
			t.Fatalf("reset of the unconfirmed address: %s", r.raw)
		}
		access, _ := r.session(t, false)
		if claims(t, access)["email_verified"] != true {
			t.Fatalf("the reset did not confirm the address: %v", claims(t, access))
		}
		if r := s.get("/auth/mfa/authenticators/", bearer(access)).expect(t, 200); len(r.list) != 0 {
			t.Fatalf("factors after the owner's reset: %s", r.raw)
		}
		u, err := st.UserByEmail(ctx, victim)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := st.CountRecoveryCodes(ctx, u.ID); err != nil || n != 0 {
			t.Fatalf("recovery codes after the owner's reset: %d %v", n, err)
		}
		s.post("/auth/refresh/", nil, refreshCookie(strangerRefresh)).expect(t, 401)
		s.get(strangerLink).expect(t, 404)
		// The stranger's access token is still unexpired (session_check
		// is off), but its session is gone: it can neither enrol a new
		// factor nor change the profile.
		s.post("/auth/mfa/setup/", nil, bearer(strangerAccess)).expect(t, 401)
		s.post("/auth/mfa/activate/", map[string]string{"code": "123456"}, bearer(strangerAccess)).expect(t, 401)
		s.req("PATCH", "/auth/user/", map[string]string{"first_name": "Hacked"}, bearer(strangerAccess)).expect(t, 401)
		s.post("/auth/login/", map[string]string{"email": victim, "password": mfaPass}).expect(t, 401)
		if r := s.post("/auth/login/", map[string]string{"email": victim, "password": newPass}).expect(t, 200); r.str("access") == "" {
			t.Fatalf("owner's login: %s", r.raw)
		}

		// A creator who confirms by the sign-up's link keeps their
		// factors and session, and a later reset removes nothing.
		creator := uniqueEmail(t, "creator")
		creatorAccess, creatorRefresh := signupSession(t, s, creator)
		s.enrol(creatorAccess)
		s.get(confirmationLink(t, creator, 1)).expect(t, 302)
		s.post("/auth/refresh/", nil, refreshCookie(creatorRefresh)).expect(t, 200)
		s.challenge(creator)
		s.post("/auth/password/reset/", map[string]string{"email": creator}).expect(t, 200)
		reset = linkPath(t, waitMails(t, creator, 2), "/auth/password/reset/confirm/")
		hdrs = capabilityHeaders(t, s.get(reset).expect(t, 302), "password_reset_access_token")
		r = s.post("/auth/password/reset/set-new/", newPasswords(newPass), hdrs...).expect(t, 200).noSession(t)
		if r.body["mfa_required"] != true {
			t.Fatalf("reset of a confirmed account with TOTP: %s", r.raw)
		}

		var removed []map[string]any
		for _, l := range auditLines() {
			if l["event"] == "unconfirmed_setup_removed" {
				removed = append(removed, l)
			}
		}
		if len(removed) != 1 || removed[0]["user_id"] != strconv.FormatInt(u.ID, 10) || removed[0]["authenticators"] != float64(2) || removed[0]["sessions"] != float64(1) {
			t.Fatalf("audit lines unconfirmed_setup_removed: %v", removed)
		}
	})
}
