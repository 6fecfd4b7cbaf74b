package account_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
)

// The deletion of an account by its owner and by the command line
// (deletion.go), and the export of what is stored (export.go).

// deleteAccount deletes the account of the bearer of access.
func deleteAccount(rl *coretest.Realm, access, pw, code string) error {
	return rl.Users.Delete(ctx, origin, access, account.Deletion{Password: pw, Code: code})
}

// wantGone wants no account under id and email, and the audit line of
// its deletion by by.
func wantGone(t *testing.T, rl *coretest.Realm, u account.User, by string) {
	t.Helper()
	if _, err := rl.Store.UserByID(ctx, u.ID); !errors.Is(err, account.ErrNotFound) {
		t.Fatalf("user %d after deletion: %v", u.ID, err)
	}
	lines := rl.Audit.Events("account_deleted")
	if len(lines) != 1 || lines[0].Attrs["user_id"] != strconv.FormatInt(u.ID, 10) || lines[0].Attrs["by"] != by {
		t.Fatalf("account_deleted lines %+v, want one of user %d by %s", lines, u.ID, by)
	}
}

func TestDeleteAccountPassword(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	other := signIn(t, rl, "ada@example.com")

	wantFields(t, deleteAccount(rl, p.Access, "", ""), account.FieldErrors{"password": {"This field is required."}})
	err := deleteAccount(rl, p.Access, "wrong password", "")
	wantRefusal(t, err, account.Invalid, "Invalid password.", "")
	if n := len(rl.Audit.Events("password_check_failed")); n != 1 {
		t.Fatalf("%d password_check_failed lines, want 1", n)
	}
	if _, err := rl.Store.UserByID(ctx, u.ID); err != nil {
		t.Fatalf("the account after refusals: %v", err)
	}
	// No token, no deletion.
	wantRefusal(t, deleteAccount(rl, "", password, ""), account.Unauthenticated, account.MsgNoCredentials, "")

	if err := deleteAccount(rl, p.Access, password, ""); err != nil {
		t.Fatal(err)
	}
	wantGone(t, rl, u, "self")
	// Every session is gone: the other one refreshes no more.
	if _, err := rl.Sessions.Refresh(ctx, origin, other.Refresh, 0); err == nil {
		t.Fatal("a session of the deleted account refreshed")
	}
	if live(t, rl, claimsOf(t, rl, other.Access, "access").Session) {
		t.Fatal("a session of the deleted account is live")
	}
	// Again: the token's account is gone.
	wantRefusal(t, deleteAccount(rl, p.Access, password, ""), account.Unauthenticated, "Session is no longer active.", "token_not_valid")

	// The address is free: a new account takes it, with a new id.
	again := newUser(t, rl, "ada@example.com")
	if again.ID == u.ID {
		t.Fatalf("the new account reuses the id %d", u.ID)
	}
	signIn(t, rl, "ada@example.com")
}

func TestDeleteAccountTOTP(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	secret, codes, spent := enrol(t, rl, p.Access)

	// The code is asked for, then checked: a wrong one, a spent one and
	// a recovery code (TOTP accounts give a TOTP code) are refused and
	// count against the user's MFA budget.
	wantFields(t, deleteAccount(rl, p.Access, password, ""), account.FieldErrors{
		"code": {"This account has a second factor: send a current code in the `code` field."}})
	wantRefusal(t, deleteAccount(rl, p.Access, password, spent), account.Invalid, msgInvalidCode, "")
	rl.Clock.Advance(totpStep)
	code := totp(t, rl, secret)
	wantRefusal(t, deleteAccount(rl, p.Access, password, wrongCode(code)), account.Invalid, msgInvalidCode, "")
	wantRefusal(t, deleteAccount(rl, p.Access, password, codes[0]), account.Invalid, msgInvalidCode, "")
	if n := failures(t, rl, u.ID); n != 3 {
		t.Fatalf("%d MFA failures recorded, want 3", n)
	}
	// The password is checked before the code is compared.
	wantRefusal(t, deleteAccount(rl, p.Access, "wrong password", code), account.Invalid, "Invalid password.", "")
	if n := failures(t, rl, u.ID); n != 3 {
		t.Fatalf("%d MFA failures recorded after a wrong password, want 3", n)
	}

	if err := deleteAccount(rl, p.Access, password, code); err != nil {
		t.Fatal(err)
	}
	wantGone(t, rl, u, "self")
	for _, check := range []struct {
		what string
		n    func() (int, error)
	}{
		{"recovery codes", func() (int, error) { return rl.Store.CountRecoveryCodes(ctx, u.ID) }},
		{"authenticators", func() (int, error) { a, err := rl.Store.Authenticators(ctx, u.ID); return len(a), err }},
		{"MFA failures", func() (int, error) {
			r, err := rl.Store.UserTokens(ctx, u.ID, attemptPurpose, time.Time{})
			return len(r), err
		}},
	} {
		if n, err := check.n(); err != nil || n != 0 {
			t.Fatalf("%s of the deleted account: %d, %v", check.what, n, err)
		}
	}
}

func TestDeleteAccountLockedOut(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional, MFAUserMax: 2})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	secret, _, _ := enrol(t, rl, p.Access)
	rl.Clock.Advance(totpStep)
	code := totp(t, rl, secret)
	wantRefusal(t, deleteAccount(rl, p.Access, password, wrongCode(code)), account.Invalid, msgInvalidCode, "")
	wantRefusal(t, deleteAccount(rl, p.Access, password, wrongCode(code)), account.Throttled, msgLockedOut, "")
	// Locked out, the right code deletes nothing.
	wantRefusal(t, deleteAccount(rl, p.Access, password, code), account.Throttled, msgLockedOut, "")
	if _, err := rl.Store.UserByID(ctx, u.ID); err != nil {
		t.Fatalf("the locked out account: %v", err)
	}
}

func TestDeleteAccountPasskeyRecoveryCode(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, ReauthWindow: 10 * time.Minute})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	reg := register(t, rl, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access}}, newSoftKey(t), "Laptop")
	if len(reg.Codes) == 0 {
		t.Fatal("no recovery codes with the first passkey")
	}
	wantFields(t, deleteAccount(rl, p.Access, password, ""), account.FieldErrors{
		"code": {"This account has a second factor: send a current code in the `code` field."}})
	wantRefusal(t, deleteAccount(rl, p.Access, password, "AAAA-BBBB-CCCC"), account.Invalid, "Invalid recovery code.", "")
	if n := failures(t, rl, u.ID); n != 1 {
		t.Fatalf("%d MFA failures recorded, want 1", n)
	}
	if err := deleteAccount(rl, p.Access, password, reg.Codes[0]); err != nil {
		t.Fatal(err)
	}
	wantGone(t, rl, u, "self")
	if keys := passkeysOf(t, rl, u.ID); len(keys) != 0 {
		t.Fatalf("passkeys of the deleted account: %+v", keys)
	}
}

func TestDeleteAccountWithoutPassword(t *testing.T) {
	rl := coretest.New(t, account.Config{ReauthWindow: 10 * time.Minute})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	// As a social-only account is: no usable password.
	if err := rl.Store.SetPasswordHash(ctx, u.ID, ""); err != nil {
		t.Fatal(err)
	}
	// Past the window the session proves nothing; a password proves
	// nothing either.
	rl.Clock.Advance(11 * time.Minute)
	wantRefusal(t, deleteAccount(rl, p.Access, "", ""), account.Forbidden, account.MsgReauthRequired, "reauthentication_required")
	wantRefusal(t, deleteAccount(rl, p.Access, password, ""), account.Forbidden, account.MsgReauthRequired, "reauthentication_required")
	if _, err := rl.Store.UserByID(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	// A session opened within the window deletes it.
	rl.Clock.Advance(-11 * time.Minute)
	if err := deleteAccount(rl, p.Access, "", ""); err != nil {
		t.Fatal(err)
	}
	wantGone(t, rl, u, "self")
}

func TestDeleteAccountEndedSession(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	if err := rl.Sessions.LogoutAll(ctx, origin, p.Access); err != nil {
		t.Fatal(err)
	}
	err := deleteAccount(rl, p.Access, password, "")
	if !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("deletion from an ended session: %v", err)
	}
	if _, err := rl.Store.UserByID(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
}

// Concurrent deletions of one account, each with the same current code:
// one deletes it, the others find it gone. The account has no usable
// password (its recent session is the proof), so the race is the
// transactions', not the password hasher's queue.
func TestDeleteAccountRace(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional, ReauthWindow: 10 * time.Minute})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	secret, _, _ := enrol(t, rl, p.Access)
	if err := rl.Store.SetPasswordHash(ctx, u.ID, ""); err != nil {
		t.Fatal(err)
	}
	rl.Clock.Advance(totpStep)
	code := totp(t, rl, secret)

	errs := race(raceN, func(int) error { return deleteAccount(rl, p.Access, "", code) })
	deleted := 0
	for _, err := range errs {
		if err == nil {
			deleted++
			continue
		}
		var r *account.Refusal
		if !errors.As(err, &r) || r.Kind != account.Unauthenticated {
			t.Fatalf("a losing deletion: %v, want the refusal of a gone account", err)
		}
	}
	if deleted != 1 {
		t.Fatalf("%d deletions succeeded, want 1 (%v)", deleted, errs)
	}
	wantGone(t, rl, u, "self")
	if n := len(rl.Audit.Events("mfa_failed")); n != 0 {
		t.Fatalf("%d mfa_failed lines from the losers", n)
	}
}

func TestDeleteUserCommandLine(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	enrol(t, rl, p.Access)
	if _, err := rl.Users.DeleteByEmail(ctx, "nobody@example.com"); err == nil {
		t.Fatal("deleted an unknown address")
	}
	got, err := rl.Users.DeleteByEmail(ctx, " ADA@example.com ")
	if err != nil || got.ID != u.ID {
		t.Fatalf("delete-user: %+v, %v", got, err)
	}
	wantGone(t, rl, u, "admin_cli")
	if _, err := rl.Sessions.Refresh(ctx, origin, p.Refresh, 0); err == nil {
		t.Fatal("a session of the deleted account refreshed")
	}
}

func TestExportUser(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional})
	u := newUser(t, rl, "ada@example.com")
	p := signInFrom(t, rl, laptop, "ada@example.com")
	enrol(t, rl, p.Access)
	if _, err := rl.Store.CreateSocialAccount(ctx, account.SocialAccount{UserID: u.ID, Provider: "github", UID: "4242", Created: rl.Clock.Now()}); err != nil {
		t.Fatal(err)
	}

	ex, err := rl.Users.Export(ctx, "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if ex.ID != u.ID || ex.Email != u.Email || !ex.HasUsablePassword || !ex.IsActive || ex.LastLogin == nil {
		t.Fatalf("export %+v", ex)
	}
	if len(ex.SocialAccounts) != 1 || ex.SocialAccounts[0].Provider != "github" || ex.SocialAccounts[0].UID != "4242" {
		t.Fatalf("links %+v", ex.SocialAccounts)
	}
	if len(ex.Sessions) != 1 || ex.Sessions[0].IP != laptop.IP || ex.Sessions[0].UserAgent != laptopUA {
		t.Fatalf("sessions %+v", ex.Sessions)
	}
	var types []string
	for _, a := range ex.Authenticators {
		types = append(types, a.Type)
	}
	wantStrings(t, "authenticators", types, "totp", "recovery_codes")
	if ex.RecoveryCodesUnused != 10 {
		t.Fatalf("%d unused recovery codes exported, want 10", ex.RecoveryCodesUnused)
	}
}
