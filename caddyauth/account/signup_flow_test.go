package account_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// The flows of sign-up, address confirmation and invitation, run on a
// real core (internal/coretest) with no HTTP around them. Shared helpers
// of these tests and of passwords_flow_test.go are at the end; origin is
// in sessions_flow_test.go.

const (
	pw1 = "Val1dPasw0rd"
	pw2 = "An0ther-Secret"

	msgEmailTaken      = "A user is already registered with this e-mail address."
	msgTooShort        = "This password is too short. It must contain at least 8 characters."
	msgSetMismatch     = "The two password fields didn’t match." // typographic apostrophe (Django's SetPasswordForm)
	msgSignupMismatch  = "The two password fields didn't match." // straight apostrophe (allauth's sign-up)
	msgRoleAboveCaller = "You cannot grant a role higher than your own."
)

func registrant(email, password string) account.Registrant {
	return account.Registrant{Email: email, Password1: password, Password2: password, FirstName: "Jane", LastName: "Doe"}
}

func TestSignUpWithoutVerification(t *testing.T) {
	rl := coretest.New(t, account.Config{EmailVerification: account.VerifyNone})
	ctx := context.Background()
	in := account.Registrant{Email: "  Jane@Example.COM ", Password1: pw1, Password2: pw1, FirstName: "jane", LastName: "van  der   BERG"}
	out, err := rl.Signup.SignUp(ctx, origin, in)
	if err != nil {
		t.Fatal(err)
	}
	if out.MailSent || out.Pending() || out.Pair.Access == "" || out.Pair.Refresh == "" {
		t.Fatalf("sign-up = %+v, want a session and no mail", out)
	}
	if ms := rl.Outbox.Mails(); len(ms) != 0 {
		t.Fatalf("mails %+v, want none", ms)
	}
	u := userByEmail(t, rl, "jane@example.com")
	if !u.EmailVerified || !u.IsActive || u.Role != account.RoleUser || u.PasswordHash == "" || u.LastLogin.IsZero() {
		t.Fatalf("stored user %+v", u)
	}
	if u.FirstName != "Jane" || u.LastName != "Van Der Berg" {
		t.Fatalf("names stored as %q %q", u.FirstName, u.LastName)
	}
	c := liveClaims(t, rl, out.Pair.Access)
	if c.NumericUserID() != u.ID || !c.EmailVerified {
		t.Fatalf("access claims %+v for user %d", c, u.ID)
	}
	login(t, rl, "jane@example.com", pw1)
}

func TestSignUpOptionalVerification(t *testing.T) {
	rl := coretest.New(t, account.Config{EmailVerification: account.VerifyOptional})
	ctx := context.Background()
	out, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw1))
	if err != nil {
		t.Fatal(err)
	}
	if !out.MailSent || out.Pending() || out.Pair.Access == "" {
		t.Fatalf("sign-up = %+v, want a session and a mail", out)
	}
	ms := rl.Outbox.Mails()
	if len(ms) != 1 || ms[0].Kind != account.MailEmailConfirmation || ms[0].To != "jane@example.com" {
		t.Fatalf("mails %+v, want one confirmation to jane", ms)
	}
	if d := ms[0].Data; d.Expires != "3 days" || d.SiteName != "auth.example.com" || d.Email != "jane@example.com" {
		t.Fatalf("mail data %+v", d)
	}
	if u := userByEmail(t, rl, "jane@example.com"); u.EmailVerified {
		t.Fatal("address verified before its link was followed")
	}
	if c := liveClaims(t, rl, out.Pair.Access); c.EmailVerified {
		t.Fatal("email_verified claim set before confirmation")
	}
	// Optional verification blocks nothing.
	login(t, rl, "jane@example.com", pw1)

	f, err := rl.Signup.FollowLink(ctx, origin, confirmationKey(t, ms[0]))
	if err != nil || f.Capability != nil {
		t.Fatalf("follow = %+v, %v; want confirmed without a capability", f, err)
	}
	if u := userByEmail(t, rl, "jane@example.com"); !u.EmailVerified {
		t.Fatal("address not verified by its link")
	}
	// The claim follows at the next refresh of the sign-up's session.
	pair, err := rl.Sessions.Refresh(ctx, origin, out.Pair.Refresh, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c := liveClaims(t, rl, pair.Access); !c.EmailVerified {
		t.Fatal("email_verified claim not set after confirmation and refresh")
	}
}

func TestSignUpMandatoryVerification(t *testing.T) {
	rl := coretest.New(t, account.Config{EmailVerification: account.VerifyMandatory})
	ctx := context.Background()
	out, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw1))
	if err != nil {
		t.Fatal(err)
	}
	if out != (account.SignedUp{MailSent: true}) {
		t.Fatalf("sign-up = %+v, want only MailSent", out)
	}
	u := userByEmail(t, rl, "jane@example.com")
	if u.EmailVerified || !u.LastLogin.IsZero() {
		t.Fatalf("stored user %+v: want unverified, never logged in", u)
	}
	m := onlyMail(t, rl, account.MailEmailConfirmation, "jane@example.com")

	r := refusal(t, loginErr(rl, "jane@example.com", pw1), account.Unauthenticated)
	if r.Code != "email_not_verified" {
		t.Fatalf("login before confirmation: %+v", r)
	}
	if _, err := rl.Signup.FollowLink(ctx, origin, confirmationKey(t, m)); err != nil {
		t.Fatal(err)
	}
	if u := userByEmail(t, rl, "jane@example.com"); !u.EmailVerified {
		t.Fatal("address not verified by its link")
	}
	login(t, rl, "jane@example.com", pw1)
}

func TestSignUpTakenAddressRefused(t *testing.T) {
	for _, mode := range []account.Verification{account.VerifyNone, account.VerifyOptional} {
		t.Run(string(mode), func(t *testing.T) {
			rl := coretest.New(t, account.Config{EmailVerification: mode})
			ctx := context.Background()
			owner := createUser(t, rl, "owner@example.com", pw1, account.RoleUser)
			_, err := rl.Signup.SignUp(ctx, origin, registrant(" OWNER@example.com", pw2))
			wantFields(t, err, account.FieldErrors{"email": {msgEmailTaken}})
			if ms := rl.Outbox.Mails(); len(ms) != 0 {
				t.Fatalf("mails %+v, want none", ms)
			}
			if u := userByEmail(t, rl, owner.Email); u.ID != owner.ID || u.PasswordHash != owner.PasswordHash {
				t.Fatalf("owner changed: %+v", u)
			}
			if n := userCount(t, rl); n != 1 {
				t.Fatalf("%d users, want 1", n)
			}
		})
	}
	t.Run("optional, unconfirmed but signed in", func(t *testing.T) {
		// The first sign-up opened a session: the account was used, so it
		// holds its address although it is not confirmed.
		rl := coretest.New(t, account.Config{EmailVerification: account.VerifyOptional})
		ctx := context.Background()
		if _, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw1)); err != nil {
			t.Fatal(err)
		}
		_, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw2))
		wantFields(t, err, account.FieldErrors{"email": {msgEmailTaken}})
		if n := mailCount(rl, account.MailEmailConfirmation, "jane@example.com"); n != 1 {
			t.Fatalf("%d confirmation mails, want 1", n)
		}
	})
}

func TestSignUpTakenAddressHiddenUnderMandatory(t *testing.T) {
	const forgot = "https://auth.example.com/forgot"
	rl := coretest.New(t, account.Config{EmailVerification: account.VerifyMandatory, PasswordResetRequestURL: forgot})
	ctx := context.Background()
	owner := createUser(t, rl, "owner@example.com", pw1, account.RoleUser)

	taken, err := rl.Signup.SignUp(ctx, origin, registrant("Owner@Example.com", pw2))
	if err != nil {
		t.Fatalf("taken address: %v, want the answer of a free one", err)
	}
	free, err := rl.Signup.SignUp(ctx, origin, registrant("free@example.com", pw2))
	if err != nil {
		t.Fatal(err)
	}
	if taken != free || free != (account.SignedUp{MailSent: true}) {
		t.Fatalf("taken %+v, free %+v: want the same answer", taken, free)
	}
	m := onlyMail(t, rl, account.MailAccountExists, owner.Email)
	if m.Data.Link != "" || m.Data.ResetRequestURL != forgot {
		t.Fatalf("account-exists mail data %+v", m.Data)
	}
	if n := mailCount(rl, account.MailEmailConfirmation, owner.Email); n != 0 {
		t.Fatalf("the owner got %d confirmation mails", n)
	}
	onlyMail(t, rl, account.MailEmailConfirmation, "free@example.com")
	if u := userByEmail(t, rl, owner.Email); u.PasswordHash != owner.PasswordHash || !u.EmailVerified {
		t.Fatalf("owner changed: %+v", u)
	}
	if n := userCount(t, rl); n != 2 {
		t.Fatalf("%d users, want the owner and the free sign-up", n)
	}
}

func TestSignUpPendingKept(t *testing.T) {
	rl := coretest.New(t, account.Config{EmailVerification: account.VerifyMandatory})
	ctx := context.Background()
	first, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw1))
	if err != nil {
		t.Fatal(err)
	}
	before := userByEmail(t, rl, "jane@example.com")
	link := onlyMail(t, rl, account.MailEmailConfirmation, "jane@example.com")

	in := registrant("jane@example.com", pw2)
	in.FirstName = "Mallory"
	second, err := rl.Signup.SignUp(ctx, origin, in)
	if err != nil {
		t.Fatal(err)
	}
	if second != first {
		t.Fatalf("second sign-up %+v, first %+v: want the same answer", second, first)
	}
	note := onlyMail(t, rl, account.MailSignupPending, "jane@example.com")
	if note.Data.Link != "" || note.Data.Expires != "3 days" {
		t.Fatalf("pending note data %+v", note.Data)
	}
	if n := mailCount(rl, account.MailEmailConfirmation, "jane@example.com"); n != 1 {
		t.Fatalf("%d confirmation mails, want only the first", n)
	}
	if after := userByEmail(t, rl, "jane@example.com"); after != before {
		t.Fatalf("pending sign-up changed: %+v, was %+v", after, before)
	}

	if _, err := rl.Signup.FollowLink(ctx, origin, confirmationKey(t, link)); err != nil {
		t.Fatal(err)
	}
	login(t, rl, "jane@example.com", pw1)
	if r := refusal(t, loginErr(rl, "jane@example.com", pw2), account.Unauthenticated); r.Code != "incorrect_credentials" {
		t.Fatalf("second sign-up's password: %+v", r)
	}
}

func TestSignUpAbandonedReplaced(t *testing.T) {
	rl := coretest.New(t, account.Config{EmailVerification: account.VerifyMandatory})
	ctx := context.Background()
	if _, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw1)); err != nil {
		t.Fatal(err)
	}
	old := userByEmail(t, rl, "jane@example.com")
	oldKey := confirmationKey(t, onlyMail(t, rl, account.MailEmailConfirmation, "jane@example.com"))

	rl.Clock.Advance(rl.Config().EmailConfirmationTTL + time.Second)
	if _, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw2)); err != nil {
		t.Fatal(err)
	}
	if n := mailCount(rl, account.MailSignupPending, "jane@example.com"); n != 0 {
		t.Fatal("an abandoned sign-up was treated as pending")
	}
	newKey := confirmationKey(t, lastMail(t, rl, account.MailEmailConfirmation, "jane@example.com"))
	if newKey == oldKey {
		t.Fatal("the new sign-up was mailed the old link")
	}
	cur := userByEmail(t, rl, "jane@example.com")
	if cur.ID == old.ID {
		t.Fatal("the abandoned account was kept")
	}
	if _, err := rl.Store.UserByID(ctx, old.ID); !errors.Is(err, account.ErrNotFound) {
		t.Fatalf("abandoned account: %v, want it deleted", err)
	}
	if _, err := rl.Signup.FollowLink(ctx, origin, oldKey); !errors.Is(err, account.ErrLinkInvalid) {
		t.Fatalf("old link: %v, want ErrLinkInvalid", err)
	}
	if _, err := rl.Signup.FollowLink(ctx, origin, newKey); err != nil {
		t.Fatal(err)
	}
	login(t, rl, "jane@example.com", pw2)
	if r := refusal(t, loginErr(rl, "jane@example.com", pw1), account.Unauthenticated); r.Code != "incorrect_credentials" {
		t.Fatalf("abandoned sign-up's password: %+v", r)
	}
}

func TestSignUpFieldErrors(t *testing.T) {
	// Most cases are for one address: its throttle is off.
	rl := coretest.New(t, account.Config{Throttles: map[string]account.Throttle{"registration_email": {}}})
	ctx := context.Background()
	bodyRefused := &account.Refusal{Kind: account.Invalid, Detail: "JSON parse error"}
	with := func(change func(*account.Registrant)) account.Registrant {
		in := registrant("jane.doe@example.com", pw1)
		change(&in)
		return in
	}
	setPassword := func(p string) func(*account.Registrant) {
		return func(in *account.Registrant) { in.Password1, in.Password2 = p, p }
	}
	for _, tc := range []struct {
		name string
		in   account.Registrant
		want account.FieldErrors
	}{
		{"invalid email", with(func(in *account.Registrant) { in.Email = "jane.example.com" }),
			account.FieldErrors{"email": {account.MsgInvalidEmail}}},
		{"display name", with(func(in *account.Registrant) { in.Email = "Jane <jane@example.com>" }),
			account.FieldErrors{"email": {account.MsgInvalidEmail}}},
		{"email too long", with(func(in *account.Registrant) { in.Email = strings.Repeat("a", 89) + "@example.com" }),
			account.FieldErrors{"email": {"Ensure this field has no more than 100 characters."}}},
		{"names", with(func(in *account.Registrant) { in.FirstName, in.LastName = "J4ne", "Doe!" }),
			account.FieldErrors{"first_name": {"Incorrect format"}, "last_name": {"Incorrect format"}}},
		{"short password", with(setPassword("Sh0rt!")),
			account.FieldErrors{"password1": {msgTooShort}}},
		{"common password", with(setPassword("password123")),
			account.FieldErrors{"password1": {"This password is too common."}}},
		{"numeric password", with(setPassword("4815162342719")),
			account.FieldErrors{"password1": {"This password is entirely numeric."}}},
		{"password like the address", with(setPassword("janedoe1")),
			account.FieldErrors{"password1": {"The password is too similar to the email."}}},
		{"everything at once", account.Registrant{Email: "nope", Password1: "short", Password2: "short", FirstName: "J4ne"},
			account.FieldErrors{"email": {account.MsgInvalidEmail}, "password1": {msgTooShort}, "first_name": {"Incorrect format"}}},
		{"decoding errors kept", with(func(in *account.Registrant) {
			in.Invalid = account.FieldErrors{"password2": {"This field is required."}}
			in.LastName = "D0e"
		}), account.FieldErrors{"password2": {"This field is required."}, "last_name": {"Incorrect format"}}},
		{"mismatch", with(func(in *account.Registrant) { in.Password2 = pw2 }),
			account.FieldErrors{"non_field_errors": {msgSignupMismatch}}},
		// As Django REST framework: the cross-field check runs only once
		// every field is valid.
		{"mismatch after a field error", with(func(in *account.Registrant) { in.Password2, in.FirstName = pw2, "J4ne" }),
			account.FieldErrors{"first_name": {"Incorrect format"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rl.Signup.SignUp(ctx, origin, tc.in)
			wantFields(t, err, tc.want)
		})
	}
	t.Run("body refused", func(t *testing.T) {
		in := registrant("jane@example.com", pw1)
		in.Refused = bodyRefused
		if _, err := rl.Signup.SignUp(ctx, origin, in); err != bodyRefused {
			t.Fatalf("got %v, want the body's refusal", err)
		}
	})
	if n := userCount(t, rl); n != 0 {
		t.Fatalf("%d users created by refused sign-ups", n)
	}
	if ms := rl.Outbox.Mails(); len(ms) != 0 {
		t.Fatalf("mails %+v sent for refused sign-ups", ms)
	}
}

func TestSignUpMFARequired(t *testing.T) {
	t.Run("no verification", func(t *testing.T) {
		rl := coretest.New(t, account.Config{MFA: account.MFARequired, EmailVerification: account.VerifyNone})
		ctx := context.Background()
		out, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw1))
		if err != nil {
			t.Fatal(err)
		}
		if out.SetupChallenge == "" || out.Pair.Access != "" || out.Pair.Refresh != "" || out.MailSent {
			t.Fatalf("sign-up = %+v, want only a setup challenge", out)
		}
		act, _ := enrolTOTP(t, rl, account.Enrolment{SetupChallenge: out.SetupChallenge})
		if !act.Opened || act.Pair.Access == "" || len(act.Codes) != 10 {
			t.Fatalf("activation = %+v, want the session and 10 codes", act)
		}
		liveClaims(t, rl, act.Pair.Access)
	})
	t.Run("mandatory verification", func(t *testing.T) {
		rl := coretest.New(t, account.Config{MFA: account.MFARequired, EmailVerification: account.VerifyMandatory})
		ctx := context.Background()
		out, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw1))
		if err != nil {
			t.Fatal(err)
		}
		if out.SetupChallenge == "" || out.Pair.Access != "" || !out.MailSent {
			t.Fatalf("sign-up = %+v, want a setup challenge and a mail", out)
		}
		// Held back until the address is confirmed.
		_, err = rl.MFA.Setup(ctx, origin, account.Enrolment{SetupChallenge: out.SetupChallenge})
		refusal(t, err, account.Unauthenticated)
		m := onlyMail(t, rl, account.MailEmailConfirmation, "jane@example.com")
		if _, err := rl.Signup.FollowLink(ctx, origin, confirmationKey(t, m)); err != nil {
			t.Fatal(err)
		}
		act, _ := enrolTOTP(t, rl, account.Enrolment{SetupChallenge: out.SetupChallenge})
		if !act.Opened || act.Pair.Access == "" {
			t.Fatalf("activation = %+v, want the session", act)
		}
		if c := liveClaims(t, rl, act.Pair.Access); !c.EmailVerified {
			t.Fatal("session of a confirmed address without email_verified")
		}
	})
	t.Run("hidden conflict", func(t *testing.T) {
		rl := coretest.New(t, account.Config{MFA: account.MFARequired, EmailVerification: account.VerifyMandatory})
		ctx := context.Background()
		createUser(t, rl, "owner@example.com", pw1, account.RoleUser)
		out, err := rl.Signup.SignUp(ctx, origin, registrant("owner@example.com", pw2))
		if err != nil {
			t.Fatal(err)
		}
		if out.SetupChallenge == "" || out.Pair.Access != "" || !out.MailSent {
			t.Fatalf("sign-up = %+v, want the shape of a new account", out)
		}
		_, err = rl.MFA.Setup(ctx, origin, account.Enrolment{SetupChallenge: out.SetupChallenge})
		refusal(t, err, account.Unauthenticated)
		onlyMail(t, rl, account.MailAccountExists, "owner@example.com")
	})
}

func TestConfirmationLink(t *testing.T) {
	rl := coretest.New(t, account.Config{EmailVerification: account.VerifyMandatory})
	ctx := context.Background()
	key := signUpPending(t, rl, "jane@example.com", pw1)
	for _, bad := range []string{"", "not-a-key", key + "x", strings.Repeat("k", 129)} {
		if _, err := rl.Signup.FollowLink(ctx, origin, bad); !errors.Is(err, account.ErrLinkInvalid) {
			t.Fatalf("key %q: %v, want ErrLinkInvalid", bad, err)
		}
	}
	// Still good just before it expires.
	rl.Clock.Advance(rl.Config().EmailConfirmationTTL - time.Minute)
	if _, err := rl.Signup.FollowLink(ctx, origin, key); err != nil {
		t.Fatal(err)
	}
	if u := userByEmail(t, rl, "jane@example.com"); !u.EmailVerified {
		t.Fatal("address not verified")
	}
	if _, err := rl.Signup.FollowLink(ctx, origin, key); !errors.Is(err, account.ErrLinkInvalid) {
		t.Fatalf("second use: %v, want ErrLinkInvalid", err)
	}
}

func TestConfirmationLinkExpires(t *testing.T) {
	rl := coretest.New(t, account.Config{EmailVerification: account.VerifyMandatory})
	ctx := context.Background()
	key := signUpPending(t, rl, "jane@example.com", pw1)
	rl.Clock.Advance(rl.Config().EmailConfirmationTTL + time.Second)
	if _, err := rl.Signup.FollowLink(ctx, origin, key); !errors.Is(err, account.ErrLinkInvalid) {
		t.Fatalf("expired link: %v, want ErrLinkInvalid", err)
	}
	if u := userByEmail(t, rl, "jane@example.com"); u.EmailVerified {
		t.Fatal("an expired link verified the address")
	}
}

func TestResendConfirmation(t *testing.T) {
	rl := coretest.New(t, account.Config{EmailVerification: account.VerifyMandatory})
	ctx := context.Background()
	if _, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw1)); err != nil {
		t.Fatal(err)
	}
	verified := createUser(t, rl, "kept@example.com", pw1, account.RoleUser)
	oldKey := confirmationKey(t, onlyMail(t, rl, account.MailEmailConfirmation, "jane@example.com"))

	if err := rl.Signup.Resend(ctx, origin, " JANE@example.com", account.Form{}); err != nil {
		t.Fatal(err)
	}
	if n := mailCount(rl, account.MailEmailConfirmation, "jane@example.com"); n != 2 {
		t.Fatalf("%d confirmation mails, want 2", n)
	}
	newKey := confirmationKey(t, lastMail(t, rl, account.MailEmailConfirmation, "jane@example.com"))
	if newKey == oldKey {
		t.Fatal("resend mailed the same link")
	}
	if _, err := rl.Signup.FollowLink(ctx, origin, oldKey); !errors.Is(err, account.ErrLinkInvalid) {
		t.Fatalf("old link after resend: %v, want ErrLinkInvalid", err)
	}
	if _, err := rl.Signup.FollowLink(ctx, origin, newKey); err != nil {
		t.Fatal(err)
	}

	sent := len(rl.Outbox.Mails())
	for _, email := range []string{"nobody@example.com", verified.Email, "jane@example.com"} {
		if err := rl.Signup.Resend(ctx, origin, email, account.Form{}); err != nil {
			t.Fatalf("resend for %s: %v, want the same silent success", email, err)
		}
	}
	if ms := rl.Outbox.Mails(); len(ms) != sent {
		t.Fatalf("mails %+v sent for unknown or verified addresses", ms[sent:])
	}
	err := rl.Signup.Resend(ctx, origin, "jane", account.Form{})
	wantFields(t, err, account.FieldErrors{"email": {account.MsgInvalidEmail}})
}

func TestRegistrationThrottles(t *testing.T) {
	// Mismatched passwords are refused after the throttles and before any
	// hashing, so the requests below cost nothing but are counted.
	mismatch := func(email string) account.Registrant {
		in := registrant(email, pw1)
		in.Password2 = pw2
		return in
	}
	counted := func(t *testing.T, rl *coretest.Realm, o account.Origin, email string) {
		t.Helper()
		_, err := rl.Signup.SignUp(context.Background(), o, mismatch(email))
		wantFields(t, err, account.FieldErrors{"non_field_errors": {msgSignupMismatch}})
	}
	throttled := func(t *testing.T, rl *coretest.Realm, o account.Origin, email string, window time.Duration) {
		t.Helper()
		_, err := rl.Signup.SignUp(context.Background(), o, mismatch(email))
		r := refusal(t, err, account.Throttled)
		if !errors.Is(err, account.ErrRequestThrottled) || r.RetryAfter < 1 || r.RetryAfter > int(window/time.Second) ||
			!strings.HasPrefix(r.Detail, "Request was throttled. Expected available in ") {
			t.Fatalf("throttled sign-up: %+v", r)
		}
	}
	t.Run("per address", func(t *testing.T) {
		rl := coretest.New(t, account.Config{Throttles: map[string]account.Throttle{"registration_email": {Limit: 2, Window: time.Minute}}})
		counted(t, rl, origin, "jane@example.com")
		counted(t, rl, origin, "jane@example.com")
		throttled(t, rl, origin, "jane@example.com", time.Minute)
		throttled(t, rl, origin, " Jane@EXAMPLE.com", time.Minute)
		counted(t, rl, origin, "other@example.com")
		rl.Clock.Advance(time.Minute + time.Second)
		counted(t, rl, origin, "jane@example.com")
	})
	t.Run("per client", func(t *testing.T) {
		rl := coretest.New(t, account.Config{Throttles: map[string]account.Throttle{"registration_ip": {Limit: 1, Window: time.Minute}}})
		other := origin
		other.IP = "198.51.100.7"
		counted(t, rl, origin, "jane@example.com")
		throttled(t, rl, origin, "other@example.com", time.Minute)
		counted(t, rl, other, "other@example.com")
	})
}

func TestInvitePermission(t *testing.T) {
	rl := coretest.New(t, account.Config{Registration: account.RegistrationInvitations, EmailVerification: account.VerifyMandatory})
	ctx := context.Background()
	createUser(t, rl, "user@example.com", pw1, account.RoleUser)
	createUser(t, rl, "staff@example.com", pw1, account.RoleStaff)
	plain := login(t, rl, "user@example.com", pw1).Pair.Access
	staff := login(t, rl, "staff@example.com", pw1).Pair.Access

	err := rl.Signup.Invite(ctx, origin, "", account.Invitee{Email: "new@example.com"})
	if r := refusal(t, err, account.Unauthenticated); !errors.Is(err, account.ErrNoCredentials) {
		t.Fatalf("no access token: %+v", r)
	}
	// The permission is decided before the body is judged.
	for _, in := range []account.Invitee{{Email: "new@example.com"}, {Email: "bad", Role: -1}} {
		err := rl.Signup.Invite(ctx, origin, plain, in)
		if r := refusal(t, err, account.Forbidden); r.Detail != account.MsgPermissionDenied {
			t.Fatalf("plain user: %+v", r)
		}
	}
	if n := userCount(t, rl); n != 2 || len(rl.Outbox.Mails()) != 0 {
		t.Fatalf("refused invitations left %d users and mails %+v", n, rl.Outbox.Mails())
	}
	if err := rl.Signup.Invite(ctx, origin, staff, account.Invitee{Email: "new@example.com"}); err != nil {
		t.Fatal(err)
	}
	onlyMail(t, rl, account.MailInvitation, "new@example.com")
}

func TestInviteRoles(t *testing.T) {
	t.Run("staff and superuser", func(t *testing.T) {
		rl := coretest.New(t, account.Config{Registration: account.RegistrationInvitations})
		ctx := context.Background()
		createUser(t, rl, "staff@example.com", pw1, account.RoleStaff)
		createUser(t, rl, "super@example.com", pw1, account.RoleSuperuser)
		staff := login(t, rl, "staff@example.com", pw1).Pair.Access
		super := login(t, rl, "super@example.com", pw1).Pair.Access

		for _, tc := range []struct {
			name   string
			access string
			in     account.Invitee
			want   account.FieldErrors
		}{
			{"superuser grants staff", super, account.Invitee{Email: "a@example.com", Role: account.RoleStaff},
				account.FieldErrors{"role": {msgRoleAboveCaller}}},
			{"negative role", staff, account.Invitee{Email: "a@example.com", Role: -1},
				account.FieldErrors{"role": {"Ensure this value is greater than or equal to 0."}}},
			{"role too large", staff, account.Invitee{Email: "a@example.com", Role: 32768},
				account.FieldErrors{"role": {"Ensure this value is less than or equal to 32767."}}},
			{"every field at once", super, account.Invitee{Email: "bad", Role: account.RoleStaff, LastName: "D0e"},
				account.FieldErrors{"email": {account.MsgInvalidEmail}, "role": {msgRoleAboveCaller}, "last_name": {"Incorrect format"}}},
			{"confirmed address", staff, account.Invitee{Email: "Super@example.com"},
				account.FieldErrors{"email": {msgEmailTaken}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantFields(t, rl.Signup.Invite(ctx, origin, tc.access, tc.in), tc.want)
			})
		}
		if n := userCount(t, rl); n != 2 || len(rl.Outbox.Mails()) != 0 {
			t.Fatalf("refused invitations left %d users and mails %+v", n, rl.Outbox.Mails())
		}
		for _, g := range []struct {
			access, email string
			role          int
		}{
			{super, "s@example.com", account.RoleSuperuser},
			{super, "u@example.com", 300},
			{staff, "t@example.com", account.RoleStaff},
		} {
			if err := rl.Signup.Invite(ctx, origin, g.access, account.Invitee{Email: g.email, Role: g.role}); err != nil {
				t.Fatalf("invite %s as %d: %v", g.email, g.role, err)
			}
			if u := userByEmail(t, rl, g.email); u.Role != g.role || u.PasswordHash != "" || u.EmailVerified {
				t.Fatalf("invited %+v", u)
			}
			onlyMail(t, rl, account.MailInvitation, g.email)
		}
	})
	t.Run("custom role", func(t *testing.T) {
		rl := coretest.New(t, account.Config{Registration: account.RegistrationAdminManaged, InviteRoles: []int{300}})
		ctx := context.Background()
		createUser(t, rl, "lead@example.com", pw1, 300)
		createUser(t, rl, "staff@example.com", pw1, account.RoleStaff)
		lead := login(t, rl, "lead@example.com", pw1).Pair.Access
		staff := login(t, rl, "staff@example.com", pw1).Pair.Access
		// Staff is not among invite_roles here.
		refusal(t, rl.Signup.Invite(ctx, origin, staff, account.Invitee{Email: "a@example.com"}), account.Forbidden)
		wantFields(t, rl.Signup.Invite(ctx, origin, lead, account.Invitee{Email: "a@example.com", Role: account.RoleSuperuser}),
			account.FieldErrors{"role": {msgRoleAboveCaller}})
		wantFields(t, rl.Signup.Invite(ctx, origin, lead, account.Invitee{Email: "a@example.com", Role: 200}),
			account.FieldErrors{"role": {msgRoleAboveCaller}})
		for i, role := range []int{300, account.RoleUser} {
			email := []string{"a@example.com", "b@example.com"}[i]
			if err := rl.Signup.Invite(ctx, origin, lead, account.Invitee{Email: email, Role: role}); err != nil {
				t.Fatalf("role %d: %v", role, err)
			}
		}
	})
}

func TestInvitationFlow(t *testing.T) {
	rl := coretest.New(t, account.Config{Registration: account.RegistrationInvitations, EmailVerification: account.VerifyMandatory})
	ctx := context.Background()
	createUser(t, rl, "staff@example.com", pw1, account.RoleStaff)
	staff := login(t, rl, "staff@example.com", pw1).Pair.Access

	in := account.Invitee{Email: "Ada@Example.com", Role: account.RoleUser, FirstName: "ada", LastName: "lovelace"}
	if err := rl.Signup.Invite(ctx, origin, staff, in); err != nil {
		t.Fatal(err)
	}
	m := onlyMail(t, rl, account.MailInvitation, "ada@example.com")
	key := confirmationKey(t, m)
	u := userByEmail(t, rl, "ada@example.com")
	if u.PasswordHash != "" || u.EmailVerified || u.FirstName != "Ada" || u.LastName != "Lovelace" || !u.IsActive {
		t.Fatalf("invited user %+v", u)
	}

	f1, err := rl.Signup.FollowLink(ctx, origin, key)
	if err != nil || f1.Capability == nil {
		t.Fatalf("follow = %+v, %v; want a capability", f1, err)
	}
	if f1.Capability.TTL != rl.Config().AccessTTL {
		t.Fatalf("capability TTL %s", f1.Capability.TTL)
	}
	if u := userByEmail(t, rl, "ada@example.com"); !u.EmailVerified {
		t.Fatal("following the invitation did not confirm the address")
	}
	// The link works again until the password is set; each use
	// supersedes the capability before.
	f2, err := rl.Signup.FollowLink(ctx, origin, key)
	if err != nil || f2.Capability == nil {
		t.Fatalf("second follow = %+v, %v; want a capability", f2, err)
	}
	c1 := parseCapability(t, rl, f1.Capability.Token, account.PurposePassSetAccess)
	c2 := parseCapability(t, rl, f2.Capability.Token, account.PurposePassSetAccess)
	_, err = rl.Signup.SetPassword(ctx, origin, c1, account.NewPassword{Password1: pw2, Password2: pw2})
	wantTokenNotValid(t, err)
	for _, raw := range []string{"", "garbage", f2.Capability.Token} {
		_, err := rl.Passwords.ParseCapability(raw, account.PurposePassResetAccess)
		if refusal(t, err, account.Unauthenticated); !errors.Is(err, account.ErrNoCapability) {
			t.Fatalf("capability %q as a reset capability: %v", raw, err)
		}
	}

	// A refused body does not spend the capability.
	_, err = rl.Signup.SetPassword(ctx, origin, c2, account.NewPassword{Password1: pw2, Password2: pw1})
	wantFields(t, err, account.FieldErrors{"new_password2": {msgSetMismatch}})
	done, err := rl.Signup.SetPassword(ctx, origin, c2, account.NewPassword{Password1: pw2, Password2: pw2})
	if err != nil {
		t.Fatal(err)
	}
	if done.Detail != "Password set." || done.Pending() || done.Pair.Access == "" {
		t.Fatalf("set password = %+v, want a session", done)
	}
	if c := liveClaims(t, rl, done.Pair.Access); c.NumericUserID() != u.ID || !c.EmailVerified || c.Role != account.RoleUser {
		t.Fatalf("session claims %+v", c)
	}
	_, err = rl.Signup.SetPassword(ctx, origin, c2, account.NewPassword{Password1: pw1, Password2: pw1})
	wantTokenNotValid(t, err)
	if _, err := rl.Signup.FollowLink(ctx, origin, key); !errors.Is(err, account.ErrLinkInvalid) {
		t.Fatalf("invitation link after the password was set: %v, want ErrLinkInvalid", err)
	}
	login(t, rl, "ada@example.com", pw2)
	wantFields(t, rl.Signup.Invite(ctx, origin, staff, in), account.FieldErrors{"email": {msgEmailTaken}})
}

func TestInvitationReplacesPending(t *testing.T) {
	rl := coretest.New(t, account.Config{Registration: account.RegistrationAdminManaged})
	ctx := context.Background()
	createUser(t, rl, "staff@example.com", pw1, account.RoleStaff)
	staff := login(t, rl, "staff@example.com", pw1).Pair.Access
	if err := rl.Signup.Invite(ctx, origin, staff, account.Invitee{Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	first := userByEmail(t, rl, "ada@example.com")
	oldKey := confirmationKey(t, onlyMail(t, rl, account.MailInvitation, "ada@example.com"))
	if err := rl.Signup.Invite(ctx, origin, staff, account.Invitee{Email: "ada@example.com", Role: 300}); err != nil {
		t.Fatal(err)
	}
	if n := mailCount(rl, account.MailInvitation, "ada@example.com"); n != 2 {
		t.Fatalf("%d invitation mails, want 2", n)
	}
	newKey := confirmationKey(t, lastMail(t, rl, account.MailInvitation, "ada@example.com"))
	if u := userByEmail(t, rl, "ada@example.com"); u.ID == first.ID || u.Role != 300 {
		t.Fatalf("re-invited user %+v, first was %d", u, first.ID)
	}
	if n := userCount(t, rl); n != 2 {
		t.Fatalf("%d users, want staff and one invitee", n)
	}
	if _, err := rl.Signup.FollowLink(ctx, origin, oldKey); !errors.Is(err, account.ErrLinkInvalid) {
		t.Fatalf("superseded invitation: %v, want ErrLinkInvalid", err)
	}
	if f, err := rl.Signup.FollowLink(ctx, origin, newKey); err != nil || f.Capability == nil {
		t.Fatalf("new invitation: %+v, %v", f, err)
	}
}

func TestInvitationMFARequired(t *testing.T) {
	rl := coretest.New(t, account.Config{
		Registration: account.RegistrationAdminManaged, MFA: account.MFARequired, EmailVerification: account.VerifyMandatory,
	})
	ctx := context.Background()
	createUser(t, rl, "staff@example.com", pw1, account.RoleStaff)
	step := login(t, rl, "staff@example.com", pw1)
	if step.SetupChallenge == "" {
		t.Fatalf("staff login = %+v, want the setup bootstrap", step)
	}
	act, _ := enrolTOTP(t, rl, account.Enrolment{SetupChallenge: step.SetupChallenge})
	staff := act.Pair.Access
	if err := rl.Signup.Invite(ctx, origin, staff, account.Invitee{Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	f, err := rl.Signup.FollowLink(ctx, origin, confirmationKey(t, onlyMail(t, rl, account.MailInvitation, "ada@example.com")))
	if err != nil || f.Capability == nil {
		t.Fatalf("follow = %+v, %v", f, err)
	}
	c := parseCapability(t, rl, f.Capability.Token, account.PurposePassSetAccess)
	done, err := rl.Signup.SetPassword(ctx, origin, c, account.NewPassword{Password1: pw2, Password2: pw2})
	if err != nil {
		t.Fatal(err)
	}
	if done.SetupChallenge == "" || done.Pair.Access != "" || done.Detail != "Password set. Please configure MFA to complete registration." {
		t.Fatalf("set password = %+v, want the setup bootstrap", done)
	}
	act, _ = enrolTOTP(t, rl, account.Enrolment{SetupChallenge: done.SetupChallenge})
	if !act.Opened || act.Pair.Access == "" {
		t.Fatalf("activation = %+v, want the session", act)
	}
}

func TestInvitationReservesAddress(t *testing.T) {
	rl := coretest.New(t, account.Config{Registration: account.RegistrationInvitations, EmailVerification: account.VerifyMandatory})
	ctx := context.Background()
	createUser(t, rl, "staff@example.com", pw1, account.RoleStaff)
	staff := login(t, rl, "staff@example.com", pw1).Pair.Access
	if err := rl.Signup.Invite(ctx, origin, staff, account.Invitee{Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	invited := userByEmail(t, rl, "ada@example.com")
	key := confirmationKey(t, onlyMail(t, rl, account.MailInvitation, "ada@example.com"))

	// A live invitation holds its address: the sign-up is answered as for
	// a free one, and the invitee is left as it was.
	out, err := rl.Signup.SignUp(ctx, origin, registrant("ada@example.com", pw1))
	if err != nil || out != (account.SignedUp{MailSent: true}) {
		t.Fatalf("sign-up for an invited address = %+v, %v", out, err)
	}
	if u := userByEmail(t, rl, "ada@example.com"); u != invited {
		t.Fatalf("invitee changed by a sign-up: %+v", u)
	}
	if n := mailCount(rl, account.MailEmailConfirmation, "ada@example.com"); n != 0 {
		t.Fatal("a sign-up for an invited address was mailed a confirmation link")
	}

	// Once the invitation has expired, a sign-up takes the address over.
	rl.Clock.Advance(rl.Config().EmailConfirmationTTL + time.Second)
	if _, err := rl.Signup.SignUp(ctx, origin, registrant("ada@example.com", pw1)); err != nil {
		t.Fatal(err)
	}
	if u := userByEmail(t, rl, "ada@example.com"); u.ID == invited.ID || u.PasswordHash == "" {
		t.Fatalf("after the invitation expired: %+v, invitee was %d", u, invited.ID)
	}
	onlyMail(t, rl, account.MailEmailConfirmation, "ada@example.com")
	if _, err := rl.Signup.FollowLink(ctx, origin, key); !errors.Is(err, account.ErrLinkInvalid) {
		t.Fatalf("expired invitation: %v, want ErrLinkInvalid", err)
	}
}

func TestSignUpRace(t *testing.T) {
	// Few callers: each hashes a password, under one client and address.
	const n = 4
	t.Run("address refused", func(t *testing.T) {
		rl := coretest.New(t, account.Config{EmailVerification: account.VerifyNone})
		outs := make([]account.SignedUp, n)
		errs := race(n, func(i int) error {
			var err error
			outs[i], err = rl.Signup.SignUp(context.Background(), origin, registrant("jane@example.com", racePassword(i)))
			return err
		})
		winner := -1
		for i, err := range errs {
			if err == nil {
				if winner >= 0 {
					t.Fatalf("sign-ups %d and %d both succeeded", winner, i)
				}
				winner = i
				continue
			}
			wantFields(t, err, account.FieldErrors{"email": {msgEmailTaken}})
		}
		if winner < 0 {
			t.Fatalf("no sign-up succeeded: %v", errs)
		}
		liveClaims(t, rl, outs[winner].Pair.Access)
		if c := userCount(t, rl); c != 1 {
			t.Fatalf("%d users for one address", c)
		}
		login(t, rl, "jane@example.com", racePassword(winner))
	})
	t.Run("hidden", func(t *testing.T) {
		rl := coretest.New(t, account.Config{EmailVerification: account.VerifyMandatory})
		outs := make([]account.SignedUp, n)
		errs := race(n, func(i int) error {
			var err error
			outs[i], err = rl.Signup.SignUp(context.Background(), origin, registrant("jane@example.com", racePassword(i)))
			return err
		})
		for i, err := range errs {
			if err != nil || outs[i] != (account.SignedUp{MailSent: true}) {
				t.Fatalf("sign-up %d = %+v, %v; want the answer of a new account", i, outs[i], err)
			}
		}
		if c := userCount(t, rl); c != 1 {
			t.Fatalf("%d users for one address", c)
		}
		onlyMail(t, rl, account.MailEmailConfirmation, "jane@example.com")
	})
}

func TestConfirmationLinkRace(t *testing.T) {
	rl := coretest.New(t, account.Config{EmailVerification: account.VerifyMandatory})
	ctx := context.Background()
	key := signUpPending(t, rl, "jane@example.com", pw1)
	errs := race(20, func(int) error {
		_, err := rl.Signup.FollowLink(ctx, origin, key)
		return err
	})
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, account.ErrLinkInvalid):
			t.Errorf("a loser got %v, want ErrLinkInvalid", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d followed the link, want 1", won, len(errs))
	}
	if u := userByEmail(t, rl, "jane@example.com"); !u.EmailVerified {
		t.Fatal("address not verified")
	}
}

func TestSetPasswordRace(t *testing.T) {
	rl := coretest.New(t, account.Config{Registration: account.RegistrationAdminManaged})
	ctx := context.Background()
	createUser(t, rl, "staff@example.com", pw1, account.RoleStaff)
	staff := login(t, rl, "staff@example.com", pw1).Pair.Access
	if err := rl.Signup.Invite(ctx, origin, staff, account.Invitee{Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	f, err := rl.Signup.FollowLink(ctx, origin, confirmationKey(t, onlyMail(t, rl, account.MailInvitation, "ada@example.com")))
	if err != nil || f.Capability == nil {
		t.Fatalf("follow = %+v, %v", f, err)
	}
	c := parseCapability(t, rl, f.Capability.Token, account.PurposePassSetAccess)
	errs := race(20, func(i int) error {
		p := racePassword(i)
		_, err := rl.Signup.SetPassword(ctx, origin, c, account.NewPassword{Password1: p, Password2: p})
		return err
	})
	winner := oneWinner(t, errs)
	login(t, rl, "ada@example.com", racePassword(winner))
}

// Helpers shared with passwords_flow_test.go.

func createUser(t *testing.T, rl *coretest.Realm, email, password string, role int) account.User {
	t.Helper()
	u, err := rl.Users.Create(context.Background(), email, password, role)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func userByEmail(t *testing.T, rl *coretest.Realm, email string) account.User {
	t.Helper()
	u, err := rl.Store.UserByEmail(context.Background(), email)
	if err != nil {
		t.Fatalf("user %s: %v", email, err)
	}
	return u
}

// signUpPending signs email up under a verification mode that mails a
// link and returns the link's key.
func signUpPending(t *testing.T, rl *coretest.Realm, email, password string) string {
	t.Helper()
	if _, err := rl.Signup.SignUp(context.Background(), origin, registrant(email, password)); err != nil {
		t.Fatal(err)
	}
	return confirmationKey(t, onlyMail(t, rl, account.MailEmailConfirmation, email))
}

func userCount(t *testing.T, rl *coretest.Realm) int {
	t.Helper()
	us, err := rl.Store.ListUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(us)
}

func loginErr(rl *coretest.Realm, email, password string) error {
	_, err := rl.Sessions.Login(context.Background(), origin, email, password)
	return err
}

// login signs in and returns where that led; it fails the test on a
// refusal.
func login(t *testing.T, rl *coretest.Realm, email, password string) account.Step {
	t.Helper()
	step, err := rl.Sessions.Login(context.Background(), origin, email, password)
	if err != nil {
		t.Fatalf("login %s: %v", email, err)
	}
	if !step.Pending() && step.Pair.Access == "" {
		t.Fatalf("login %s: no session and no second step", email)
	}
	return step
}

// liveClaims checks that access verifies and its session is live, and
// returns its claims.
func liveClaims(t *testing.T, rl *coretest.Realm, access string) tokens.Claims {
	t.Helper()
	c, err := rl.Sessions.LiveAccess(context.Background(), access)
	if err != nil {
		t.Fatalf("access token of a live session: %v", err)
	}
	return c
}

func wantSessionEnded(t *testing.T, rl *coretest.Realm, access string) {
	t.Helper()
	_, err := rl.Sessions.LiveAccess(context.Background(), access)
	if refusal(t, err, account.Unauthenticated); !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("session: %v, want ErrSessionEnded", err)
	}
}

func parseCapability(t *testing.T, rl *coretest.Realm, raw, permission string) tokens.Claims {
	t.Helper()
	c, err := rl.Passwords.ParseCapability(raw, permission)
	if err != nil {
		t.Fatalf("capability: %v", err)
	}
	return c
}

// refusal checks that err is a refusal of kind and returns it.
func refusal(t *testing.T, err error, kind account.Kind) *account.Refusal {
	t.Helper()
	var r *account.Refusal
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want a refusal", err)
	}
	if r.Kind != kind {
		t.Fatalf("refusal %+v of kind %d, want %d", r, r.Kind, kind)
	}
	return r
}

// wantFields checks that err refuses exactly the messages want.
func wantFields(t *testing.T, err error, want account.FieldErrors) {
	t.Helper()
	r := refusal(t, err, account.Invalid)
	if !reflect.DeepEqual(r.Fields, want) {
		t.Fatalf("fields %q, want %q", r.Fields, want)
	}
}

// wantTokenNotValid checks that err refuses a capability that no longer
// works.
func wantTokenNotValid(t *testing.T, err error) {
	t.Helper()
	if r := refusal(t, err, account.Unauthenticated); r.Code != "token_not_valid" || r.Detail != account.MsgTokenInvalid {
		t.Fatalf("refusal %+v, want token_not_valid", r)
	}
}

func mailCount(rl *coretest.Realm, kind, to string) int {
	n := 0
	for _, m := range rl.Outbox.Mails() {
		if m.Kind == kind && m.To == to {
			n++
		}
	}
	return n
}

func lastMail(t *testing.T, rl *coretest.Realm, kind, to string) account.Mail {
	t.Helper()
	m, ok := rl.Outbox.Last(kind, to)
	if !ok {
		t.Fatalf("no %s mail to %s in %+v", kind, to, rl.Outbox.Mails())
	}
	return m
}

// onlyMail is the one mail of kind to to; there must be exactly one.
func onlyMail(t *testing.T, rl *coretest.Realm, kind, to string) account.Mail {
	t.Helper()
	if n := mailCount(rl, kind, to); n != 1 {
		t.Fatalf("%d %s mails to %s, want 1", n, kind, to)
	}
	return lastMail(t, rl, kind, to)
}

// confirmationKey is the key of a confirmation or invitation mail's link,
// {site}/registration/verification/<key>/.
func confirmationKey(t *testing.T, m account.Mail) string {
	t.Helper()
	rest, ok := strings.CutPrefix(m.Data.Link, origin.Site+"/registration/verification/")
	key, slash := strings.CutSuffix(rest, "/")
	if !ok || !slash || key == "" || strings.Contains(key, "/") {
		t.Fatalf("%s mail link %q", m.Kind, m.Data.Link)
	}
	return key
}

// nextCode moves the clock to the start of the next TOTP step (so a code
// is never a replay, nor computed on one side of a step's end and checked
// on the other) and returns the code of secret then.
func nextCode(t *testing.T, rl *coretest.Realm, secret string) string {
	t.Helper()
	const step = 30 * time.Second
	rem := time.Duration(rl.Clock.Now().UnixNano() % int64(step))
	rl.Clock.Advance(step - rem + time.Second)
	return coretest.TOTPCode(t, secret, rl.Clock.Now())
}

// enrolTOTP sets up and activates TOTP for the enrolment in, and returns
// the activation and the secret.
func enrolTOTP(t *testing.T, rl *coretest.Realm, in account.Enrolment) (account.Activation, string) {
	t.Helper()
	ctx := context.Background()
	setup, err := rl.MFA.Setup(ctx, origin, in)
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	act, err := rl.MFA.Activate(ctx, origin, in, nextCode(t, rl, setup.Secret))
	if err != nil {
		t.Fatalf("activate: %v", err)
	}
	return act, setup.Secret
}

// race runs f(0) … f(n-1) at once, released together, and returns their
// errors by index.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

func racePassword(i int) string { return "Race-pass-" + string(rune('a'+i)) + "-x9" }

// oneWinner checks that exactly one of errs is nil and every other one
// refuses a spent capability, and returns the winner's index.
func oneWinner(t *testing.T, errs []error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				t.Fatalf("calls %d and %d both succeeded", winner, i)
			}
			winner = i
			continue
		}
		var r *account.Refusal
		if !errors.As(err, &r) || r.Kind != account.Unauthenticated || r.Code != "token_not_valid" {
			t.Errorf("call %d: %v, want a spent capability", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no call succeeded: %v", errs)
	}
	return winner
}

// The core refuses the registration flows a policy leaves out, whatever
// the web layer routes.
func TestRegistrationModesRefuseClosedFlows(t *testing.T) {
	ctx := context.Background()
	closed := coretest.New(t, account.Config{Registration: account.RegistrationClosed, EmailVerification: account.VerifyOptional})
	_, err := closed.Signup.SignUp(ctx, origin, account.Registrant{Email: "new@example.com", Password1: "Quiet-Harbor-7731", Password2: "Quiet-Harbor-7731", FirstName: "Ann", LastName: "Lee"})
	wantForbidden(t, err, "Sign-up is closed.")
	wantForbidden(t, closed.Signup.Resend(ctx, origin, "new@example.com", account.Form{}), "Sign-up is closed.")
	if _, err := closed.Store.UserByEmail(ctx, "new@example.com"); !errors.Is(err, account.ErrNotFound) {
		t.Fatalf("a closed sign-up created a user: %v", err)
	}
	if n := len(closed.Outbox.Mails()); n != 0 {
		t.Fatalf("%d mails sent", n)
	}
	open := coretest.New(t, account.Config{Registration: account.RegistrationOpen})
	wantForbidden(t, open.Signup.Invite(ctx, origin, "", account.Invitee{Email: "invitee@example.com"}), "Invitations are not part of this site's registration.")
}

func wantForbidden(t *testing.T, err error, detail string) {
	t.Helper()
	var r *account.Refusal
	if !errors.As(err, &r) || r.Kind != account.Forbidden || r.Detail != detail {
		t.Fatalf("got %v, want Forbidden %q", err, detail)
	}
}

// The command line's accounts get roles in the range invitations grant.
func TestUsersRoleRange(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	ctx := context.Background()
	for _, role := range []int{-1, 32768, 99999} {
		if _, err := rl.Users.Create(ctx, "r@example.com", pw1, role); err == nil || !strings.Contains(err.Error(), "is not a role") {
			t.Fatalf("create with role %d: %v", role, err)
		}
	}
	if _, err := rl.Store.UserByEmail(ctx, "r@example.com"); !errors.Is(err, account.ErrNotFound) {
		t.Fatalf("a refused role created the user: %v", err)
	}
	if _, err := rl.Users.Create(ctx, "r@example.com", pw1, 32767); err != nil {
		t.Fatal(err)
	}
	if _, err := rl.Users.SetRole(ctx, "r@example.com", 40000); err == nil {
		t.Fatal("set-role 40000 accepted")
	}
	if u, _ := rl.Store.UserByEmail(ctx, "r@example.com"); u.Role != 32767 {
		t.Fatalf("role %d after a refused set-role", u.Role)
	}
}

// Disabling an account kills what it had pending: after enabling it again
// no earlier login challenge or reset link works.
func TestDisableRevokesPending(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	ctx := context.Background()
	if _, err := rl.Users.Create(ctx, "d@example.com", pw1, account.RoleUser); err != nil {
		t.Fatal(err)
	}
	if err := rl.Passwords.RequestReset(ctx, origin, "d@example.com", account.Form{}); err != nil {
		t.Fatal(err)
	}
	m, ok := rl.Outbox.Last(account.MailPasswordReset, "d@example.com")
	if !ok {
		t.Fatal("no reset mail")
	}
	rest := strings.TrimSuffix(strings.TrimPrefix(m.Data.Link, origin.Site+"/password/reset/confirm/"), "/")
	uid, secret, _ := strings.Cut(rest, "/")
	if _, err := rl.Users.Disable(ctx, "d@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := rl.Users.Enable(ctx, "d@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := rl.Passwords.FollowResetLink(ctx, origin, uid, secret); !errors.Is(err, account.ErrLinkInvalid) {
		t.Fatalf("a reset link from before disable: %v", err)
	}
}
