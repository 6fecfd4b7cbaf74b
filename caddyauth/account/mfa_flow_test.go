package account_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// The flows of mfa.go and reauth.go. The realm's TOTP skew is 0 (only
// the current step is accepted), and alignStep keeps every code of a test
// inside one step of the realm's clock.

const (
	totpStep = 30 * time.Second
	// attemptPurpose is the purpose of the rows recording failed MFA
	// codes (purposes.go).
	attemptPurpose = "mfa_login_attempt"
	msgInvalidCode = "Invalid code."
	msgChallenge   = "Challenge expired or invalid."
	msgExhausted   = "Too many failed attempts. Challenge invalidated."
	msgLockedOut   = "Too many failed MFA attempts. Try again later."
)

// alignStep moves the realm's clock to just past the start of the next
// TOTP step, so a code computed now stays current while the test runs.
func alignStep(rl *coretest.Realm) {
	into := time.Duration(rl.Clock.Now().UnixNano() % int64(totpStep))
	rl.Clock.Advance(totpStep - into + 100*time.Millisecond)
}

// totp is the code of secret at the realm's time.
func totp(t *testing.T, rl *coretest.Realm, secret string) string {
	t.Helper()
	return coretest.TOTPCode(t, secret, rl.Clock.Now())
}

// wrongCode is a six-digit code other than right.
func wrongCode(right string) string {
	return string('0'+(right[0]-'0'+1)%10) + right[1:]
}

// enrol sets up and activates TOTP for the bearer of access, a session
// opened just now, and returns the secret, the recovery codes and the
// code the activation spent (its step is used up).
func enrol(t *testing.T, rl *coretest.Realm, access string) (secret string, codes []string, spent string) {
	t.Helper()
	setup, err := rl.MFA.Setup(ctx, origin, account.Enrolment{Access: access})
	if err != nil {
		t.Fatal(err)
	}
	alignStep(rl)
	spent = totp(t, rl, setup.Secret)
	act, err := rl.MFA.Activate(ctx, origin, account.Enrolment{Access: access}, spent)
	if err != nil {
		t.Fatal(err)
	}
	return setup.Secret, act.Codes, spent
}

// challenge logs in with the right password and wants a login challenge.
func challenge(t *testing.T, rl *coretest.Realm, email string) string {
	t.Helper()
	step := login(t, rl, email, password)
	if step.Challenge == "" || step.SetupChallenge != "" || step.Pair.Access != "" {
		t.Fatalf("login %s: step %+v, want a login challenge only", email, step)
	}
	return step.Challenge
}

// verify completes challenge with a TOTP code.
func verify(rl *coretest.Realm, challenge, code string) (account.TokenPair, error) {
	return rl.Challenges.Verify(ctx, origin, account.SecondFactor{Challenge: challenge, Code: code})
}

// verifyRecovery completes challenge with a recovery code.
func verifyRecovery(rl *coretest.Realm, challenge, code string) (account.TokenPair, error) {
	return rl.Challenges.Verify(ctx, origin, account.SecondFactor{Challenge: challenge, Code: code, Recovery: true})
}

// wantSession wants a session of the user id.
func wantSession(t *testing.T, rl *coretest.Realm, p account.TokenPair, err error, id int64) {
	t.Helper()
	if err != nil {
		t.Fatalf("want a session: %v", err)
	}
	ac := claimsOf(t, rl, p.Access, tokens.TypeAccess)
	rc := claimsOf(t, rl, p.Refresh, tokens.TypeRefresh)
	if ac.UserID != strconv.FormatInt(id, 10) || rc.Session != ac.Session || !live(t, rl, ac.Session) {
		t.Fatalf("session of user %s (%s / %s), want a live one of user %d", ac.UserID, ac.Session, rc.Session, id)
	}
}

// wantDead wants the refusal of a challenge that can no longer succeed.
func wantDead(t *testing.T, err error, detail string) {
	t.Helper()
	wantRefusal(t, err, account.Invalid, detail, "")
	if !errors.Is(err, account.ErrChallengeDead) {
		t.Fatalf("%v, want ErrChallengeDead", err)
	}
}

// failures are the user's recorded MFA failures.
func failures(t *testing.T, rl *coretest.Realm, id int64) int {
	t.Helper()
	rows, err := rl.Store.UserTokens(ctx, id, attemptPurpose, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return len(rows)
}

func recoveryLeft(t *testing.T, rl *coretest.Realm, id int64) int {
	t.Helper()
	n, err := rl.Store.CountRecoveryCodes(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// methods are the method attributes of the audit lines of event.
func methods(rl *coretest.Realm, event string) []string {
	var out []string
	for _, r := range rl.Audit.Events(event) {
		out = append(out, r.Attrs["method"])
	}
	return out
}

func authenticatorTypes(t *testing.T, rl *coretest.Realm, access string) []string {
	t.Helper()
	auths, err := rl.MFA.Authenticators(ctx, access)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, a := range auths {
		types = append(types, a.Type)
	}
	slices.Sort(types)
	return types
}

func TestLoginMFAOptional(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com") // no TOTP yet: a session
	enrol(t, rl, p.Access)
	last := stored(t, rl, u.ID).LastLogin

	rl.Clock.Advance(time.Minute)
	challenge(t, rl, "ada@example.com")
	// The first factor alone is no login.
	if ll := stored(t, rl, u.ID).LastLogin; !ll.Equal(last) {
		t.Fatalf("last_login moved to %v on a pending login", ll)
	}
	ev := rl.Audit.Events("login_succeeded")
	if len(ev) != 2 || ev[0].Attrs["mfa_pending"] != "" || ev[1].Attrs["mfa_pending"] != "true" {
		t.Fatalf("login_succeeded lines %+v", ev)
	}
}

func TestLoginMFARequiredWithoutTOTP(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFARequired})
	u := newUser(t, rl, "ada@example.com")
	step := login(t, rl, "ada@example.com", password)
	if len(step.SetupChallenge) != 32 || step.Challenge != "" || step.Pair.Access != "" || step.Pair.Refresh != "" {
		t.Fatalf("step %+v, want a setup challenge only", step)
	}
	if ll := stored(t, rl, u.ID).LastLogin; !ll.IsZero() {
		t.Fatalf("last_login %v before the setup", ll)
	}
	// A setup challenge is no login challenge.
	_, err := verify(rl, step.SetupChallenge, "123456")
	wantDead(t, err, msgChallenge)
}

func TestMFADisabledRefuses(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	_, err := rl.MFA.Setup(ctx, origin, account.Enrolment{Access: p.Access})
	wantRefusal(t, err, account.Forbidden, account.MsgMFADisabled, "")
	_, err = rl.MFA.Activate(ctx, origin, account.Enrolment{Access: p.Access}, "123456")
	wantRefusal(t, err, account.Forbidden, account.MsgMFADisabled, "")
	_, err = rl.MFA.Authenticators(ctx, p.Access)
	wantRefusal(t, err, account.Forbidden, account.MsgMFADisabled, "")
	err = rl.MFA.Deactivate(ctx, origin, p.Access, account.PasswordProof{Password: password})
	wantRefusal(t, err, account.Forbidden, account.MsgMFADisabled, "")
	_, err = verify(rl, "0123456789abcdef0123456789abcdef", "123456")
	wantRefusal(t, err, account.Forbidden, account.MsgMFADisabled, "")
}

func TestMFASetupReauthAndActivate(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional, ReauthWindow: 10 * time.Minute})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	withAccess := account.Enrolment{Access: p.Access}
	withPassword := account.Enrolment{Access: p.Access, Password: password}

	// A session opened just now needs no password.
	s1, err := rl.MFA.Setup(ctx, origin, withAccess)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1.Secret) != 32 || !strings.HasPrefix(s1.URI, "otpauth://totp/JWT-Allauth:ada%40example.com?") ||
		!strings.Contains(s1.URI, "secret="+s1.Secret) || !strings.HasPrefix(s1.QR, "<svg") {
		t.Fatalf("setup %q, %q, QR %.20q", s1.Secret, s1.URI, s1.QR)
	}

	rl.Clock.Advance(10*time.Minute + time.Second)
	_, err = rl.MFA.Setup(ctx, origin, withAccess)
	wantRefusal(t, err, account.Forbidden, account.MsgReauthRequired, "reauthentication_required")
	_, err = rl.MFA.Activate(ctx, origin, withAccess, totp(t, rl, s1.Secret))
	wantRefusal(t, err, account.Forbidden, account.MsgReauthRequired, "reauthentication_required")
	_, err = rl.MFA.Setup(ctx, origin, account.Enrolment{Access: p.Access, Password: "wrong password"})
	wantRefusal(t, err, account.Invalid, "Invalid password.", "")
	if ev := rl.Audit.Events("password_check_failed"); len(ev) != 1 || ev[0].Attrs["endpoint"] != "reauthenticate" {
		t.Fatalf("password_check_failed lines %+v", ev)
	}

	// The current password stands in for a recent sign-in; a new setup
	// replaces the pending secret.
	s2, err := rl.MFA.Setup(ctx, origin, withPassword)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Secret == s1.Secret {
		t.Fatal("a second setup kept the pending secret")
	}
	alignStep(rl)
	if old, cur := totp(t, rl, s1.Secret), totp(t, rl, s2.Secret); old != cur {
		_, err = rl.MFA.Activate(ctx, origin, withPassword, old)
		wantRefusal(t, err, account.Invalid, msgInvalidCode, "")
	}
	_, err = rl.MFA.Activate(ctx, origin, account.Enrolment{Access: p.Access, Password: "wrong password"}, totp(t, rl, s2.Secret))
	wantRefusal(t, err, account.Invalid, "Invalid password.", "")
	if types := authenticatorTypes(t, rl, p.Access); len(types) != 0 {
		t.Fatalf("authenticators %q before the activation", types)
	}

	act, err := rl.MFA.Activate(ctx, origin, withPassword, totp(t, rl, s2.Secret))
	if err != nil {
		t.Fatal(err)
	}
	if len(act.Codes) != 10 || len(slices.Compact(slices.Sorted(slices.Values(act.Codes)))) != 10 {
		t.Fatalf("recovery codes %q, want 10 distinct", act.Codes)
	}
	if act.Opened || act.Pair.Access != "" {
		t.Fatalf("activation with an access token opened a session: %+v", act)
	}
	wantStrings(t, "authenticators", authenticatorTypes(t, rl, p.Access), "recovery_codes", "totp")
	if n := recoveryLeft(t, rl, u.ID); n != 10 {
		t.Fatalf("%d recovery codes stored, want 10", n)
	}
	// The pending secret is spent; TOTP is on.
	_, err = rl.MFA.Activate(ctx, origin, withPassword, totp(t, rl, s2.Secret))
	wantRefusal(t, err, account.Invalid, "Setup not initiated.", "")
	_, err = rl.MFA.Setup(ctx, origin, withPassword)
	wantRefusal(t, err, account.Invalid, account.MsgTOTPActivated, "")
	if !errors.Is(err, account.ErrTOTPActive) {
		t.Fatalf("%v, want ErrTOTPActive", err)
	}
}

func TestMFAVerifyTOTP(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	secret, _, spent := enrol(t, rl, p.Access)

	// The code the activation accepted does not open a session in the
	// same step.
	ch := challenge(t, rl, "ada@example.com")
	_, err := verify(rl, ch, spent)
	wantRefusal(t, err, account.Invalid, msgInvalidCode, "")

	rl.Clock.Advance(totpStep)
	code := totp(t, rl, secret)
	before := rl.Clock.Now().Truncate(time.Second)
	pair, err := verify(rl, ch, code)
	wantSession(t, rl, pair, err, u.ID)
	if ll := stored(t, rl, u.ID).LastLogin; ll.Before(before) {
		t.Fatalf("last_login %v, want the verification time", ll)
	}
	if n := failures(t, rl, u.ID); n != 0 {
		t.Fatalf("%d failures left after a success", n)
	}
	// The challenge is spent.
	_, err = verify(rl, ch, code)
	wantDead(t, err, msgChallenge)

	// The same code on a new challenge is a replay; the challenge survives it.
	ch2 := challenge(t, rl, "ada@example.com")
	_, err = verify(rl, ch2, code)
	wantRefusal(t, err, account.Invalid, msgInvalidCode, "")
	rl.Clock.Advance(totpStep)
	pair, err = verify(rl, ch2, totp(t, rl, secret))
	wantSession(t, rl, pair, err, u.ID)

	wantStrings(t, "mfa_succeeded", methods(rl, "mfa_succeeded"), "totp", "totp")
	wantStrings(t, "mfa_failed", methods(rl, "mfa_failed"), "totp", "totp")
}

func TestMFAVerifyRecovery(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	_, codes, _ := enrol(t, rl, p.Access)

	pair, err := verifyRecovery(rl, challenge(t, rl, "ada@example.com"), codes[0])
	wantSession(t, rl, pair, err, u.ID)
	if n := recoveryLeft(t, rl, u.ID); n != 9 {
		t.Fatalf("%d recovery codes left, want 9", n)
	}
	ch := challenge(t, rl, "ada@example.com")
	_, err = verifyRecovery(rl, ch, codes[0])
	wantRefusal(t, err, account.Invalid, "Invalid recovery code.", "")
	// Written in lower case, another code still works on the same challenge.
	pair, err = verifyRecovery(rl, ch, strings.ToLower(codes[1]))
	wantSession(t, rl, pair, err, u.ID)
	if n := recoveryLeft(t, rl, u.ID); n != 8 {
		t.Fatalf("%d recovery codes left, want 8", n)
	}
	wantStrings(t, "mfa_succeeded", methods(rl, "mfa_succeeded"), "recovery_code", "recovery_code")
	wantStrings(t, "mfa_failed", methods(rl, "mfa_failed"), "recovery_code")
}

func TestMFADeactivate(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	enrol(t, rl, p.Access)

	err := rl.MFA.Deactivate(ctx, origin, p.Access, account.PasswordProof{Password: "wrong password"})
	wantRefusal(t, err, account.Invalid, "Invalid password.", "")
	wantStrings(t, "authenticators", authenticatorTypes(t, rl, p.Access), "recovery_codes", "totp")

	if err := rl.MFA.Deactivate(ctx, origin, p.Access, account.PasswordProof{Password: password}); err != nil {
		t.Fatal(err)
	}
	if types := authenticatorTypes(t, rl, p.Access); len(types) != 0 {
		t.Fatalf("authenticators %q after deactivation", types)
	}
	if n := recoveryLeft(t, rl, u.ID); n != 0 {
		t.Fatalf("%d recovery codes left after deactivation", n)
	}
	err = rl.MFA.Deactivate(ctx, origin, p.Access, account.PasswordProof{Password: password})
	wantRefusal(t, err, account.Invalid, "TOTP not activated.", "")
	// Sessions stay, and a login needs the password only again.
	if _, err := rl.Sessions.LiveAccess(ctx, p.Access); err != nil {
		t.Fatalf("the session after deactivation: %v", err)
	}
	signIn(t, rl, "ada@example.com")
}

func TestMFARegenerateRecovery(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	secret, old, spent := enrol(t, rl, p.Access)

	// A spent or wrong code is refused, and counts against the user.
	_, err := rl.MFA.RegenerateRecovery(ctx, origin, p.Access, account.CodeProof{Code: spent})
	wantRefusal(t, err, account.Invalid, msgInvalidCode, "")
	rl.Clock.Advance(totpStep)
	code := totp(t, rl, secret)
	_, err = rl.MFA.RegenerateRecovery(ctx, origin, p.Access, account.CodeProof{Code: wrongCode(code)})
	wantRefusal(t, err, account.Invalid, msgInvalidCode, "")
	if n := failures(t, rl, u.ID); n != 2 {
		t.Fatalf("%d failures recorded, want 2", n)
	}

	fresh, err := rl.MFA.RegenerateRecovery(ctx, origin, p.Access, account.CodeProof{Code: code})
	if err != nil {
		t.Fatal(err)
	}
	if len(fresh) != 10 || slices.ContainsFunc(fresh, func(c string) bool { return slices.Contains(old, c) }) {
		t.Fatalf("new codes %q (old %q), want 10 new ones", fresh, old)
	}
	if n := recoveryLeft(t, rl, u.ID); n != 10 {
		t.Fatalf("%d recovery codes stored, want 10", n)
	}
	// The code is spent for its step.
	_, err = rl.MFA.RegenerateRecovery(ctx, origin, p.Access, account.CodeProof{Code: code})
	wantRefusal(t, err, account.Invalid, msgInvalidCode, "")

	ch := challenge(t, rl, "ada@example.com")
	_, err = verifyRecovery(rl, ch, old[0])
	wantRefusal(t, err, account.Invalid, "Invalid recovery code.", "")
	pair, err := verifyRecovery(rl, ch, fresh[0])
	wantSession(t, rl, pair, err, u.ID)
}

func TestMFARequiredBootstrap(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFARequired})
	u := newUser(t, rl, "ada@example.com")
	sc := login(t, rl, "ada@example.com", password).SetupChallenge
	if sc == "" {
		t.Fatal("no setup challenge")
	}
	bySetup := account.Enrolment{SetupChallenge: sc}

	setup, err := rl.MFA.Setup(ctx, origin, bySetup)
	if err != nil {
		t.Fatal(err)
	}
	alignStep(rl)
	code := totp(t, rl, setup.Secret)
	// A wrong code leaves the setup and its challenge for a retry.
	_, err = rl.MFA.Activate(ctx, origin, bySetup, wrongCode(code))
	wantRefusal(t, err, account.Invalid, msgInvalidCode, "")

	before := rl.Clock.Now().Truncate(time.Second)
	act, err := rl.MFA.Activate(ctx, origin, bySetup, code)
	if err != nil {
		t.Fatal(err)
	}
	if !act.Opened || len(act.Codes) != 10 {
		t.Fatalf("activation %+v, want a session and 10 codes", act)
	}
	wantSession(t, rl, act.Pair, nil, u.ID)
	if ll := stored(t, rl, u.ID).LastLogin; ll.Before(before) {
		t.Fatalf("last_login %v, want the activation time", ll)
	}

	// The setup challenge is spent.
	_, err = rl.MFA.Activate(ctx, origin, bySetup, code)
	wantRefusal(t, err, account.Unauthenticated, account.MsgNoCredentials, "")
	_, err = rl.MFA.Setup(ctx, origin, bySetup)
	wantRefusal(t, err, account.Unauthenticated, account.MsgNoCredentials, "")

	err = rl.MFA.Deactivate(ctx, origin, act.Pair.Access, account.PasswordProof{Password: password})
	wantRefusal(t, err, account.Forbidden, "MFA TOTP is required and cannot be disabled.", "")
	wantStrings(t, "authenticators", authenticatorTypes(t, rl, act.Pair.Access), "recovery_codes", "totp")

	rl.Clock.Advance(totpStep)
	pair, err := verify(rl, challenge(t, rl, "ada@example.com"), totp(t, rl, setup.Secret))
	wantSession(t, rl, pair, err, u.ID)
}

func TestMFAChallengeBudget(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional, MFAChallengeMax: 3, MFAUserMax: 10})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	secret, _, _ := enrol(t, rl, p.Access)
	rl.Clock.Advance(totpStep)
	right := totp(t, rl, secret)
	bad := wrongCode(right)

	ch := challenge(t, rl, "ada@example.com")
	for range 2 {
		_, err := verify(rl, ch, bad)
		wantRefusal(t, err, account.Invalid, msgInvalidCode, "")
	}
	// The failure that reaches the budget kills the challenge; the right
	// code cannot revive it and is not spent on it.
	_, err := verify(rl, ch, bad)
	wantDead(t, err, msgExhausted)
	_, err = verify(rl, ch, right)
	wantDead(t, err, msgChallenge)
	if n := failures(t, rl, u.ID); n != 3 {
		t.Fatalf("%d failures recorded, want 3", n)
	}
	if n := len(rl.Audit.Events("mfa_lockout")); n != 0 {
		t.Fatalf("%d mfa_lockout lines under the user's limit", n)
	}
	wantStrings(t, "mfa_failed", methods(rl, "mfa_failed"), "totp", "totp", "totp")

	pair, err := verify(rl, challenge(t, rl, "ada@example.com"), right)
	wantSession(t, rl, pair, err, u.ID)
	if n := failures(t, rl, u.ID); n != 0 {
		t.Fatalf("%d failures left after a success", n)
	}
}

func TestMFAUserLockout(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional, MFAUserMax: 3, MFALockout: 15 * time.Minute})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	secret, _, _ := enrol(t, rl, p.Access)
	rl.Clock.Advance(totpStep)
	right := totp(t, rl, secret)
	bad := wrongCode(right)

	ch1 := challenge(t, rl, "ada@example.com")
	ch2 := challenge(t, rl, "ada@example.com")
	for range 2 {
		_, err := verify(rl, ch1, bad)
		wantRefusal(t, err, account.Invalid, msgInvalidCode, "")
	}
	// The failures of all challenges count towards the user's limit.
	_, err := verify(rl, ch2, bad)
	r := wantRefusal(t, err, account.Throttled, msgLockedOut, "")
	if r.RetryAfter < 1 || r.RetryAfter > 900 || !errors.Is(err, account.ErrChallengeDead) {
		t.Fatalf("lockout: RetryAfter %d, %v", r.RetryAfter, err)
	}
	if ev := rl.Audit.Events("mfa_lockout"); len(ev) != 1 || ev[0].Attrs["user_id"] != strconv.FormatInt(u.ID, 10) {
		t.Fatalf("mfa_lockout lines %+v", ev)
	}
	// Every live login challenge died with it.
	for _, ch := range []string{ch1, ch2} {
		_, err := verify(rl, ch, right)
		wantDead(t, err, msgChallenge)
	}

	locked := func() *account.Refusal {
		t.Helper()
		_, err := rl.Sessions.Login(ctx, origin, "ada@example.com", password)
		var r *account.Refusal
		if !errors.As(err, &r) || r.Kind != account.Throttled || r.RetryAfter < 1 || r.RetryAfter > 900 {
			t.Fatalf("login while locked out: %v, want a Throttled refusal", err)
		}
		if want := fmt.Sprintf("%s Expected available in %d seconds.", msgLockedOut, r.RetryAfter); r.Detail != want {
			t.Fatalf("detail %q, want %q", r.Detail, want)
		}
		return r
	}
	wait := locked().RetryAfter
	if last := reasons(rl, "login_failed"); len(last) != 1 || last[0] != "mfa_locked" {
		t.Fatalf("login_failed reasons %q, want [mfa_locked]", last)
	}
	rl.Clock.Advance(time.Duration(wait-2) * time.Second)
	locked()
	rl.Clock.Advance(2 * time.Second)
	ch3 := challenge(t, rl, "ada@example.com")
	alignStep(rl)
	pair, err := verify(rl, ch3, totp(t, rl, secret))
	wantSession(t, rl, pair, err, u.ID)
}

// Concurrent checks of one login challenge with its right code: each
// check runs in a transaction that locks the user first and finds the
// challenge again (mfa.go, countedCheck), so the first spends it with the
// code's step and every later one finds it gone. Exactly one session, no
// failure recorded.
func TestMFAVerifyRace(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional, MFAUserMax: 3,
		Throttles: map[string]account.Throttle{"mfa_verify_ip": {Limit: 1000, Window: time.Minute}}})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	secret, _, _ := enrol(t, rl, p.Access)
	rl.Clock.Advance(totpStep)
	code := totp(t, rl, secret)
	ch := challenge(t, rl, "ada@example.com")

	oneSessionWins(t, rl, u.ID, func() (account.TokenPair, error) { return verify(rl, ch, code) })
	if n := len(rl.Audit.Events("mfa_failed")); n != 0 {
		t.Fatalf("%d mfa_failed lines", n)
	}
}

// The same code on two live challenges at once: the code's step is spent
// once for the user, so one session in all; the other challenge sees a
// replay (a wrong code), its twin challenge sees it spent.
func TestMFAVerifyRaceTwoChallenges(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional,
		Throttles: map[string]account.Throttle{"mfa_verify_ip": {Limit: 1000, Window: time.Minute}}})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	secret, _, _ := enrol(t, rl, p.Access)
	rl.Clock.Advance(totpStep)
	code := totp(t, rl, secret)
	chs := [2]string{challenge(t, rl, "ada@example.com"), challenge(t, rl, "ada@example.com")}

	pairs := make([]account.TokenPair, raceN)
	errs := race(raceN, func(i int) (err error) {
		pairs[i], err = verify(rl, chs[i%2], code)
		return err
	})
	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				t.Fatalf("goroutines %d and %d both opened a session", winner, i)
			}
			wantSession(t, rl, pairs[i], nil, u.ID)
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no session")
	}
	replays := 0
	for i, err := range errs {
		switch {
		case i == winner:
		case i%2 == winner%2:
			wantDead(t, err, msgChallenge)
		default:
			wantRefusal(t, err, account.Invalid, msgInvalidCode, "")
			replays++
		}
	}
	if n := failures(t, rl, u.ID); n != replays {
		t.Fatalf("%d failures recorded, want one per replay (%d)", n, replays)
	}
}

// oneSessionWins runs answer (one login challenge's answer) from raceN
// goroutines at once: exactly one gets userID's session, the others find
// the challenge spent, and no failure is recorded.
func oneSessionWins(t *testing.T, rl *coretest.Realm, userID int64, answer func() (account.TokenPair, error)) {
	t.Helper()
	pairs := make([]account.TokenPair, raceN)
	errs := race(raceN, func(i int) (err error) {
		pairs[i], err = answer()
		return err
	})
	won := 0
	for i, err := range errs {
		if err == nil {
			wantSession(t, rl, pairs[i], nil, userID)
			won++
			continue
		}
		wantDead(t, err, msgChallenge)
	}
	if won != 1 {
		t.Fatalf("%d sessions from one answer, want 1", won)
	}
	if n := failures(t, rl, userID); n != 0 {
		t.Fatalf("%d failures recorded", n)
	}
}

// lockWatch is a store that fails the test when a row of MFA failures is
// written or deleted, other than by the purge of expired ones, in a
// transaction that has not locked the user's row first: a check answers
// from the failures it read under that lock (countedCheck), so a write
// without it could change them between the read and the answer.
type lockWatch struct {
	account.Store
	t      testing.TB
	locked map[int64]bool // the users this transaction locked; nil outside one
}

func (s *lockWatch) InTx(ctx context.Context, fn func(tx account.Store) error) error {
	if s.locked != nil {
		return fn(s)
	}
	return s.Store.InTx(ctx, func(tx account.Store) error {
		return fn(&lockWatch{Store: tx, t: s.t, locked: map[int64]bool{}})
	})
}

func (s *lockWatch) UserForUpdate(ctx context.Context, id int64) (account.User, error) {
	u, err := s.Store.UserForUpdate(ctx, id)
	if err == nil {
		s.locked[id] = true
	}
	return u, err
}

func (s *lockWatch) check(op string, userID int64, purposes ...string) {
	if (len(purposes) == 0 || slices.Contains(purposes, attemptPurpose)) && !s.locked[userID] {
		s.t.Errorf("%s of user %d's MFA failures without the user's lock", op, userID)
	}
}

func (s *lockWatch) CreateToken(ctx context.Context, tk account.Token) (int64, error) {
	s.check("CreateToken", tk.UserID, tk.Purpose)
	return s.Store.CreateToken(ctx, tk)
}

func (s *lockWatch) CreateTokenWhile(ctx context.Context, tk account.Token, purpose, token string, notBefore time.Time) (int64, error) {
	s.check("CreateTokenWhile", tk.UserID, tk.Purpose)
	return s.Store.CreateTokenWhile(ctx, tk, purpose, token, notBefore)
}

func (s *lockWatch) DeleteUserTokens(ctx context.Context, userID int64, purposes ...string) (int, error) {
	s.check("DeleteUserTokens", userID, purposes...)
	return s.Store.DeleteUserTokens(ctx, userID, purposes...)
}

func (s *lockWatch) DeleteToken(ctx context.Context, purpose, token string) (int, error) {
	if purpose == attemptPurpose {
		s.t.Errorf("DeleteToken of MFA failures")
	}
	return s.Store.DeleteToken(ctx, purpose, token)
}

// Every flow that writes MFA failures or clears them does so under the
// user's lock: failed and right codes on a login challenge, a lockout,
// regeneration, the administrators' and the command line's reset.
func TestMFAFailuresWrittenUnderTheLock(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional, MFAUserMax: 4, MFAChallengeMax: 2},
		func(t testing.TB, d *account.Deps) { d.Store = &lockWatch{Store: d.Store, t: t} })
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	secret, codes, _ := enrol(t, rl, p.Access)
	rl.Clock.Advance(totpStep)
	right := totp(t, rl, secret)

	_, err := verify(rl, challenge(t, rl, "ada@example.com"), wrongCode(right))
	wantRefusal(t, err, account.Invalid, msgInvalidCode, "")
	pair, err := verifyRecovery(rl, challenge(t, rl, "ada@example.com"), codes[0])
	wantSession(t, rl, pair, err, u.ID)
	_, err = rl.MFA.RegenerateRecovery(ctx, origin, p.Access, account.CodeProof{Code: wrongCode(right)})
	wantRefusal(t, err, account.Invalid, msgInvalidCode, "")
	ch := challenge(t, rl, "ada@example.com")
	for _, want := range []string{msgInvalidCode, msgExhausted} {
		_, err = verify(rl, ch, wrongCode(right))
		wantRefusal(t, err, account.Invalid, want, "")
	}
	_, err = verify(rl, challenge(t, rl, "ada@example.com"), wrongCode(right))
	wantRefusal(t, err, account.Throttled, msgLockedOut, "")

	if _, err := rl.Users.ResetMFA(ctx, "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	if n := failures(t, rl, u.ID); n != 0 {
		t.Fatalf("%d failures after reset-mfa", n)
	}
	_, access := adminUser(t, rl, "admin@example.com", account.RoleSuperuser)
	p = signIn(t, rl, "ada@example.com")
	enrol(t, rl, p.Access)
	if err := rl.Admin.ResetMFA(ctx, origin, access, u.ID); err != nil {
		t.Fatal(err)
	}
}

// slowLock is a store whose UserForUpdate, while wait is set, moves the
// realm's clock on by wait before it locks: as if the check had waited
// that long for the user's lock. It counts the codes compared in the
// store (a TOTP step spent, a recovery code looked up).
type slowLock struct {
	account.Store
	rl       **coretest.Realm
	wait     time.Duration
	compared *int
}

func (s *slowLock) InTx(ctx context.Context, fn func(tx account.Store) error) error {
	return s.Store.InTx(ctx, func(tx account.Store) error {
		return fn(&slowLock{Store: tx, rl: s.rl, wait: s.wait, compared: s.compared})
	})
}

func (s *slowLock) AdvanceTOTPStep(ctx context.Context, userID, step int64, at time.Time) (bool, error) {
	*s.compared++
	return s.Store.AdvanceTOTPStep(ctx, userID, step, at)
}

func (s *slowLock) ConsumeRecoveryCode(ctx context.Context, userID int64, hash string, at time.Time) (bool, error) {
	*s.compared++
	return s.Store.ConsumeRecoveryCode(ctx, userID, hash, at)
}

func (s *slowLock) UserForUpdate(ctx context.Context, id int64) (account.User, error) {
	(*s.rl).Clock.Advance(s.wait)
	return s.Store.UserForUpdate(ctx, id)
}

// A login challenge that expires while its check waits for the user's
// lock is refused under it, to a right code as to a wrong one, before
// either is compared (so no timing tells them apart), and neither spends
// anything nor counts a failure.
func TestMFAChallengeExpiresWhileWaiting(t *testing.T) {
	var rl *coretest.Realm
	compared := 0
	slow := &slowLock{rl: &rl, compared: &compared}
	rl = coretest.New(t, account.Config{MFA: account.MFAOptional, MFAUserMax: 5, MFAChallengeMax: 3},
		func(t testing.TB, d *account.Deps) { slow.Store = d.Store; d.Store = slow })
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	secret, codes, _ := enrol(t, rl, p.Access)

	for _, tc := range []struct {
		name   string
		answer func(ch string) (account.TokenPair, error)
	}{
		{"right code", func(ch string) (account.TokenPair, error) { return verify(rl, ch, totp(t, rl, secret)) }},
		{"wrong code", func(ch string) (account.TokenPair, error) { return verify(rl, ch, wrongCode(totp(t, rl, secret))) }},
		{"recovery code", func(ch string) (account.TokenPair, error) { return verifyRecovery(rl, ch, codes[0]) }},
	} {
		alignStep(rl)
		ch := challenge(t, rl, "ada@example.com")
		slow.wait, compared = 6*time.Minute, 0 // the challenge lives 5
		_, err := tc.answer(ch)
		slow.wait = 0
		wantDead(t, err, msgChallenge)
		if n := failures(t, rl, u.ID); n != 0 {
			t.Fatalf("%s: %d failures recorded", tc.name, n)
		}
		if compared != 0 {
			t.Fatalf("%s: compared in the store %d times on a dead challenge", tc.name, compared)
		}
	}
	if n := recoveryLeft(t, rl, u.ID); n != len(codes) {
		t.Fatalf("%d recovery codes left, want all %d", n, len(codes))
	}
	alignStep(rl)
	pair, err := verifyRecovery(rl, challenge(t, rl, "ada@example.com"), codes[0])
	wantSession(t, rl, pair, err, u.ID)
}
