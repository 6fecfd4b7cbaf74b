package account_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// The flows of the password reset by mailed link and of the password
// change, run on a real core (internal/coretest). RequestReset waits a
// real floor of half a second, so the tests that call it run in parallel.

// requestReset asks for a reset link for email and returns the newest
// reset mail to to and whether a new one was sent.
func requestReset(t *testing.T, rl *coretest.Realm, email, to string) (account.Mail, bool) {
	t.Helper()
	before := mailCount(rl, account.MailPasswordReset, to)
	if err := rl.Passwords.RequestReset(context.Background(), origin, email, account.Form{}); err != nil {
		t.Fatalf("reset request for %q: %v", email, err)
	}
	m, _ := rl.Outbox.Last(account.MailPasswordReset, to)
	return m, mailCount(rl, account.MailPasswordReset, to) > before
}

// resetLink is the uid and secret of a reset mail's link,
// {site}/password/reset/confirm/<uid>/<secret>/.
func resetLink(t *testing.T, m account.Mail) (uid, secret string) {
	t.Helper()
	rest, ok := strings.CutPrefix(m.Data.Link, origin.Site+"/password/reset/confirm/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] != "" {
		t.Fatalf("reset link %q", m.Data.Link)
	}
	return parts[0], parts[1]
}

// resetCapability requests a reset for u, follows the mailed link and
// returns the capability's claims.
func resetCapability(t *testing.T, rl *coretest.Realm, u account.User) tokens.Claims {
	t.Helper()
	m, sent := requestReset(t, rl, u.Email, u.Email)
	if !sent {
		t.Fatalf("no reset mail to %s", u.Email)
	}
	uid, secret := resetLink(t, m)
	c, err := rl.Passwords.FollowResetLink(context.Background(), origin, uid, secret)
	if err != nil {
		t.Fatal(err)
	}
	return parseCapability(t, rl, c.Token, account.PurposePassResetAccess)
}

func newPassword(p string) account.NewPassword {
	return account.NewPassword{Password1: p, Password2: p}
}

func TestPasswordReset(t *testing.T) {
	t.Parallel()
	rl := coretest.New(t, account.Config{})
	ctx := context.Background()
	u := createUser(t, rl, "jane@example.com", pw1, account.RoleUser)
	a := login(t, rl, u.Email, pw1).Pair
	b := login(t, rl, u.Email, pw1).Pair

	// An unknown address gets the same answer after the same floor, and
	// no mail. The two requests wait their floors side by side.
	var unknownTook time.Duration
	unknownDone := make(chan error, 1)
	go func() {
		start := time.Now()
		err := rl.Passwords.RequestReset(ctx, origin, "nobody@example.com", account.Form{})
		unknownTook = time.Since(start)
		unknownDone <- err
	}()
	m, sent := requestReset(t, rl, " JANE@example.com", u.Email)
	if err := <-unknownDone; err != nil {
		t.Fatalf("unknown address: %v", err)
	}
	if unknownTook < 500*time.Millisecond {
		t.Fatalf("the answer for an unknown address came after %s, before the floor", unknownTook)
	}
	if n := mailCount(rl, account.MailPasswordReset, "nobody@example.com"); n != 0 || len(rl.Outbox.Mails()) != 1 {
		t.Fatalf("mails %+v, want only jane's", rl.Outbox.Mails())
	}
	if !sent || m.Data.Expires != "1 hour" || m.Data.SiteName != "auth.example.com" {
		t.Fatalf("reset mail %+v", m)
	}
	uid, secret := resetLink(t, m)
	if want := base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(u.ID, 10))); uid != want {
		t.Fatalf("uid %q, want %q", uid, want)
	}
	cp, err := rl.Passwords.FollowResetLink(ctx, origin, uid, secret)
	if err != nil {
		t.Fatal(err)
	}
	if cp.TTL != rl.Config().AccessTTL || cp.JTI == "" {
		t.Fatalf("capability %+v", cp)
	}
	if _, err := rl.Passwords.FollowResetLink(ctx, origin, uid, secret); !errors.Is(err, account.ErrLinkInvalid) {
		t.Fatalf("second use of the link: %v, want ErrLinkInvalid", err)
	}
	if _, err := rl.Passwords.ParseCapability(cp.Token, account.PurposePassSetAccess); !errors.Is(err, account.ErrNoCapability) {
		t.Fatalf("reset capability as a set-password one: %v", err)
	}
	c := parseCapability(t, rl, cp.Token, account.PurposePassResetAccess)
	if c.ForUser != u.ID {
		t.Fatalf("capability for user %d, want %d", c.ForUser, u.ID)
	}

	// Refused bodies do not spend the capability.
	_, err = rl.Passwords.SetNew(ctx, origin, c, account.NewPassword{Password1: pw2, Password2: pw1})
	wantFields(t, err, account.FieldErrors{"new_password2": {msgSetMismatch}})
	_, err = rl.Passwords.SetNew(ctx, origin, c, newPassword("Sh0rt!"))
	wantFields(t, err, account.FieldErrors{"new_password2": {msgTooShort}})

	done, err := rl.Passwords.SetNew(ctx, origin, c, newPassword(pw2))
	if err != nil {
		t.Fatal(err)
	}
	if done.Detail != "Password reset." || done.Pending() || done.Pair.Access == "" {
		t.Fatalf("reset = %+v, want a session", done)
	}
	liveClaims(t, rl, done.Pair.Access)
	wantSessionEnded(t, rl, a.Access)
	wantSessionEnded(t, rl, b.Access)
	if _, err := rl.Sessions.Refresh(ctx, origin, a.Refresh, 0); err == nil {
		t.Fatal("a session from before the reset still refreshes")
	}
	_, err = rl.Passwords.SetNew(ctx, origin, c, newPassword(pw1))
	wantTokenNotValid(t, err)

	if r := refusal(t, loginErr(rl, u.Email, pw1), account.Unauthenticated); r.Code != "incorrect_credentials" {
		t.Fatalf("old password: %+v", r)
	}
	login(t, rl, u.Email, pw2)
	if ev := rl.Audit.Events("password_changed"); len(ev) != 1 || ev[0].Attrs["how"] != "reset" || ev[0].Attrs["user_id"] != strconv.FormatInt(u.ID, 10) {
		t.Fatalf("password_changed audit %+v", ev)
	}
	// The refresh refused above is audited as well.
	if ev := rl.Audit.Events("session_revoked"); len(ev) != 2 || ev[0].Attrs["reason"] != "password_reset" || ev[1].Attrs["reason"] != "refresh_not_whitelisted" {
		t.Fatalf("session_revoked audit %+v", ev)
	}
}

func TestPasswordResetOnlyForUsableAccounts(t *testing.T) {
	t.Parallel()
	rl := coretest.New(t, account.Config{Registration: account.RegistrationAdminManaged})
	ctx := context.Background()
	createUser(t, rl, "staff@example.com", pw1, account.RoleStaff)
	createUser(t, rl, "gone@example.com", pw1, account.RoleUser)
	staff := login(t, rl, "staff@example.com", pw1).Pair.Access
	if err := rl.Signup.Invite(ctx, origin, staff, account.Invitee{Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rl.Users.Disable(ctx, "gone@example.com"); err != nil {
		t.Fatal(err)
	}
	emails := []string{"ada@example.com", "gone@example.com"}
	errs := race(len(emails), func(i int) error {
		return rl.Passwords.RequestReset(ctx, origin, emails[i], account.Form{})
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("reset request for %s: %v", emails[i], err)
		}
	}
	for _, m := range rl.Outbox.Mails() {
		if m.Kind == account.MailPasswordReset {
			t.Fatalf("a reset link was mailed to %s", m.To)
		}
	}
}

func TestPasswordResetLinkExpiry(t *testing.T) {
	t.Parallel()
	rl := coretest.New(t, account.Config{})
	ctx := context.Background()
	u := createUser(t, rl, "jane@example.com", pw1, account.RoleUser)
	m1, _ := requestReset(t, rl, u.Email, u.Email)
	m2, sent := requestReset(t, rl, u.Email, u.Email)
	if !sent {
		t.Fatal("no second reset mail")
	}
	uid1, secret1 := resetLink(t, m1)
	uid2, secret2 := resetLink(t, m2)
	if secret1 == secret2 {
		t.Fatal("both requests mailed the same link")
	}
	if _, err := rl.Passwords.FollowResetLink(ctx, origin, uid1, secret1); !errors.Is(err, account.ErrLinkInvalid) {
		t.Fatalf("superseded link: %v, want ErrLinkInvalid", err)
	}
	rl.Clock.Advance(rl.Config().PasswordResetTTL + time.Second)
	if _, err := rl.Passwords.FollowResetLink(ctx, origin, uid2, secret2); !errors.Is(err, account.ErrLinkInvalid) {
		t.Fatalf("expired link: %v, want ErrLinkInvalid", err)
	}
}

func TestResetCapabilityExpiry(t *testing.T) {
	t.Parallel()
	rl := coretest.New(t, account.Config{})
	ctx := context.Background()
	u := createUser(t, rl, "jane@example.com", pw1, account.RoleUser)
	m, _ := requestReset(t, rl, u.Email, u.Email)
	uid, secret := resetLink(t, m)
	// Still good just before the link expires.
	rl.Clock.Advance(rl.Config().PasswordResetTTL - time.Minute)
	cp, err := rl.Passwords.FollowResetLink(ctx, origin, uid, secret)
	if err != nil {
		t.Fatal(err)
	}
	c := parseCapability(t, rl, cp.Token, account.PurposePassResetAccess)
	rl.Clock.Advance(rl.Config().AccessTTL + time.Second)
	if _, err := rl.Passwords.ParseCapability(cp.Token, account.PurposePassResetAccess); !errors.Is(err, account.ErrNoCapability) {
		t.Fatalf("expired capability: %v, want ErrNoCapability", err)
	}
	_, err = rl.Passwords.SetNew(ctx, origin, c, newPassword(pw2))
	wantTokenNotValid(t, err)
	if cur := userByEmail(t, rl, u.Email); cur.PasswordHash != u.PasswordHash {
		t.Fatal("an expired capability changed the password")
	}
}

func TestPasswordResetWithTOTP(t *testing.T) {
	t.Parallel()
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional})
	ctx := context.Background()
	u := createUser(t, rl, "jane@example.com", pw1, account.RoleUser)
	before := login(t, rl, u.Email, pw1).Pair
	_, secret := enrolTOTP(t, rl, account.Enrolment{Access: before.Access})

	c := resetCapability(t, rl, u)
	done, err := rl.Passwords.SetNew(ctx, origin, c, newPassword(pw2))
	if err != nil {
		t.Fatal(err)
	}
	if done.Challenge == "" || done.Pair.Access != "" || done.Pair.Refresh != "" {
		t.Fatalf("reset of a TOTP user = %+v, want a login challenge and no session", done)
	}
	wantSessionEnded(t, rl, before.Access)
	// A confirmed address keeps its factors.
	if auths, err := rl.Store.Authenticators(ctx, u.ID); err != nil || len(auths) != 2 {
		t.Fatalf("authenticators %+v, %v; want TOTP and recovery codes", auths, err)
	}
	pair, err := rl.Challenges.Verify(ctx, origin, account.SecondFactor{Challenge: done.Challenge, Code: nextCode(t, rl, secret)})
	if err != nil {
		t.Fatal(err)
	}
	liveClaims(t, rl, pair.Access)
}

func TestPasswordResetOfUnconfirmedAddress(t *testing.T) {
	t.Parallel()
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional, EmailVerification: account.VerifyOptional})
	ctx := context.Background()
	out, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw1))
	if err != nil {
		t.Fatal(err)
	}
	enrolTOTP(t, rl, account.Enrolment{Access: out.Pair.Access})
	u := userByEmail(t, rl, "jane@example.com")
	if u.EmailVerified {
		t.Fatal("address verified before any link")
	}

	c := resetCapability(t, rl, u)
	done, err := rl.Passwords.SetNew(ctx, origin, c, newPassword(pw2))
	if err != nil {
		t.Fatal(err)
	}
	if done.Pending() || done.Pair.Access == "" {
		t.Fatalf("reset = %+v, want a session: the factors set up before the address was proved are gone", done)
	}
	if cur := userByEmail(t, rl, u.Email); !cur.EmailVerified {
		t.Fatal("the reset link did not confirm the address")
	}
	if auths, err := rl.Store.Authenticators(ctx, u.ID); err != nil || len(auths) != 0 {
		t.Fatalf("authenticators %+v, %v; want none", auths, err)
	}
	wantSessionEnded(t, rl, out.Pair.Access)
	if c := liveClaims(t, rl, done.Pair.Access); !c.EmailVerified {
		t.Fatal("session after the reset without email_verified")
	}
	ev := rl.Audit.Events("unconfirmed_setup_removed")
	if len(ev) != 1 || ev[0].Attrs["authenticators"] != "2" || ev[0].Attrs["sessions"] != "1" {
		t.Fatalf("unconfirmed_setup_removed audit %+v", ev)
	}
}

func TestPasswordResetConfirmsUnderMandatory(t *testing.T) {
	t.Parallel()
	rl := coretest.New(t, account.Config{EmailVerification: account.VerifyMandatory})
	ctx := context.Background()
	if _, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw1)); err != nil {
		t.Fatal(err)
	}
	key := confirmationKey(t, onlyMail(t, rl, account.MailEmailConfirmation, "jane@example.com"))
	u := userByEmail(t, rl, "jane@example.com")
	c := resetCapability(t, rl, u)
	done, err := rl.Passwords.SetNew(ctx, origin, c, newPassword(pw2))
	if err != nil {
		t.Fatal(err)
	}
	if done.Pending() || done.Pair.Access == "" {
		t.Fatalf("reset = %+v, want a session", done)
	}
	if cur := userByEmail(t, rl, u.Email); !cur.EmailVerified {
		t.Fatal("the reset link did not confirm the address")
	}
	login(t, rl, u.Email, pw2)
	// The credential change ended the pending confirmation link.
	if _, err := rl.Signup.FollowLink(ctx, origin, key); !errors.Is(err, account.ErrLinkInvalid) {
		t.Fatalf("confirmation link after the reset: %v, want ErrLinkInvalid", err)
	}
}

func TestResetCapabilityRace(t *testing.T) {
	t.Parallel()
	rl := coretest.New(t, account.Config{})
	ctx := context.Background()
	u := createUser(t, rl, "jane@example.com", pw1, account.RoleUser)
	c := resetCapability(t, rl, u)
	results := make([]account.Done, 20)
	errs := race(len(results), func(i int) error {
		var err error
		results[i], err = rl.Passwords.SetNew(ctx, origin, c, newPassword(racePassword(i)))
		return err
	})
	winner := oneWinner(t, errs)
	liveClaims(t, rl, results[winner].Pair.Access)
	login(t, rl, u.Email, racePassword(winner))
}

func TestPasswordChange(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	ctx := context.Background()
	u := createUser(t, rl, "jane@example.com", pw1, account.RoleUser)
	a := login(t, rl, u.Email, pw1).Pair
	b := login(t, rl, u.Email, pw1).Pair
	change := func(access, old, new1, new2 string) (account.TokenPair, error) {
		return rl.Passwords.Change(ctx, origin, access, account.PasswordChange{
			NewPassword: account.NewPassword{Password1: new1, Password2: new2}, Old: old,
		})
	}
	const wrongOld = "Your old password was entered incorrectly. Please enter it again."

	_, err := change("", pw1, pw2, pw2)
	if refusal(t, err, account.Unauthenticated); !errors.Is(err, account.ErrNoCredentials) {
		t.Fatalf("no access token: %v", err)
	}
	_, err = change(a.Access, "Wr0ng-password", pw2, pw2)
	wantFields(t, err, account.FieldErrors{"old_password": {wrongOld}})
	_, err = change(a.Access, pw1, pw2, pw1)
	wantFields(t, err, account.FieldErrors{"new_password2": {msgSetMismatch}})
	_, err = change(a.Access, pw1, "Sh0rt!", "Sh0rt!")
	wantFields(t, err, account.FieldErrors{"new_password2": {msgTooShort}})
	_, err = change(a.Access, "Wr0ng-password", pw2, pw1)
	wantFields(t, err, account.FieldErrors{"old_password": {wrongOld}, "new_password2": {msgSetMismatch}})
	if ev := rl.Audit.Events("password_check_failed"); len(ev) != 2 || ev[0].Attrs["endpoint"] != "password_change" {
		t.Fatalf("password_check_failed audit %+v", ev)
	}
	if cur := userByEmail(t, rl, u.Email); cur.PasswordHash != u.PasswordHash {
		t.Fatal("a refused change saved a password")
	}
	liveClaims(t, rl, a.Access)

	pair, err := change(a.Access, pw1, pw2, pw2)
	if err != nil {
		t.Fatal(err)
	}
	if c := liveClaims(t, rl, pair.Access); c.NumericUserID() != u.ID {
		t.Fatalf("new session for user %d", c.NumericUserID())
	}
	if _, err := rl.Sessions.Refresh(ctx, origin, pair.Refresh, 0); err != nil {
		t.Fatalf("the new session does not refresh: %v", err)
	}
	if ev := rl.Audit.Events("password_changed"); len(ev) != 1 || ev[0].Attrs["how"] != "change" {
		t.Fatalf("password_changed audit %+v", ev)
	}
	if ev := rl.Audit.Events("session_revoked"); len(ev) != 1 || ev[0].Attrs["reason"] != "password_change" {
		t.Fatalf("session_revoked audit %+v", ev)
	}
	// Every session before the change ends, the caller's as well.
	wantSessionEnded(t, rl, a.Access)
	wantSessionEnded(t, rl, b.Access)
	_, err = change(b.Access, pw2, pw1, pw1)
	if refusal(t, err, account.Unauthenticated); !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("change from an ended session: %v", err)
	}
	if r := refusal(t, loginErr(rl, u.Email, pw1), account.Unauthenticated); r.Code != "incorrect_credentials" {
		t.Fatalf("old password: %+v", r)
	}
	login(t, rl, u.Email, pw2)
}

func TestChangeNamesNeedsLiveSession(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	ctx := context.Background()
	u := createUser(t, rl, "jane@example.com", pw1, account.RoleUser)
	access := login(t, rl, u.Email, pw1).Pair.Access
	c := liveClaims(t, rl, access)

	p, err := rl.Users.ChangeNames(ctx, c, account.NameChange{FirstName: "Grace", SetFirstName: true})
	if err != nil {
		t.Fatal(err)
	}
	if p != (account.Profile{Email: u.Email, FirstName: "Grace"}) {
		t.Fatalf("profile %+v", p)
	}
	_, err = rl.Users.ChangeNames(ctx, c, account.NameChange{FirstName: "X", SetFirstName: true, LastName: strings.Repeat("h", 151), SetLastName: true})
	wantFields(t, err, account.FieldErrors{"last_name": {"Ensure this field has no more than 150 characters."}})
	if cur := userByEmail(t, rl, u.Email); cur.FirstName != "Grace" || cur.LastName != "" {
		t.Fatalf("stored names %q %q", cur.FirstName, cur.LastName)
	}

	if err := rl.Sessions.LogoutAll(ctx, origin, access); err != nil {
		t.Fatal(err)
	}
	_, err = rl.Users.ChangeNames(ctx, c, account.NameChange{LastName: "Hopper", SetLastName: true})
	if refusal(t, err, account.Unauthenticated); !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("change after logout-all: %v, want ErrSessionEnded", err)
	}
	if cur := userByEmail(t, rl, u.Email); cur.LastName != "" {
		t.Fatalf("last name %q saved after logout-all", cur.LastName)
	}
	if err := rl.Sessions.LogoutAll(ctx, origin, access); !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("second logout-all: %v, want ErrSessionEnded", err)
	}
}
