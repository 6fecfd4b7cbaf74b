package account_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/softkey"
)

// The flows of passkeys.go and the passkey paths of challenges.go, with
// no browser: a software authenticator (virtualwebauthn) answers the
// core's options as a browser at coretest.PasskeyOrigin would, and the
// core checks the answers with the realm's real relying party.

const (
	msgPasskeyInvalid  = "The passkey could not be verified."
	msgPasskeyNoUV     = "The passkey did not verify you (PIN or biometrics required)."
	msgCeremony        = "This passkey request is unknown or has expired: start again."
	msgPasskeyTaken    = "This passkey is registered already."
	msgNotFound        = "Not found."
	msgPasskeysOff     = "Passkeys are not enabled."
	msgPasswordlessOff = "Passwordless sign-in is not enabled."
	msgNoPasskeys      = "No passkey is registered for this account."
	msgLastFactor      = "Multi-factor authentication is required: this is the account's last second factor."
	msgNameTooLong     = "Ensure this field has no more than 64 characters."
)

var passkeyPage = virtualwebauthn.RelyingParty{ID: coretest.PasskeyRPID, Name: coretest.PasskeyRPID, Origin: coretest.PasskeyOrigin}

// newSoftKey is a software authenticator with a new passkey, on the
// realm's page.
func newSoftKey(t *testing.T) *softkey.Key { return softkey.New(t, passkeyPage) }

// passkeyRealm is a core with WebAuthn and cfg; the per-address throttles
// that every call here counts towards are out of the way.
func passkeyRealm(t *testing.T, cfg account.Config) *coretest.Realm {
	t.Helper()
	if cfg.Throttles == nil {
		cfg.Throttles = map[string]account.Throttle{
			"login_ip":      {Limit: 10000, Window: time.Minute},
			"mfa_verify_ip": {Limit: 10000, Window: time.Minute},
			"passkey_ip":    {Limit: 10000, Window: time.Minute},
		}
	}
	return coretest.New(t, cfg, coretest.WithWebAuthn)
}

// register registers k through in (begin and finish) under name.
func register(t *testing.T, rl *coretest.Realm, in account.PasskeyEnrolment, k *softkey.Key, name string) account.Registered {
	t.Helper()
	options, err := rl.Passkeys.RegisterBegin(ctx, origin, in)
	if err != nil {
		t.Fatalf("register begin: %v", err)
	}
	in.Name, in.Response = name, k.Attest(t, options)
	reg, err := rl.Passkeys.RegisterFinish(ctx, origin, in)
	if err != nil {
		t.Fatalf("register finish: %v", err)
	}
	return reg
}

// passkeyUser is a new signed-in user with one passkey, k.
func passkeyUser(t *testing.T, rl *coretest.Realm, email string) (account.User, account.TokenPair, *softkey.Key) {
	t.Helper()
	u := newUser(t, rl, email)
	p := signIn(t, rl, email)
	k := newSoftKey(t)
	register(t, rl, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access}}, k, "Laptop")
	return u, p, k
}

// secondFactorOptions begins a passkey answer to the login challenge ch.
func secondFactorOptions(t *testing.T, rl *coretest.Realm, ch string) []byte {
	t.Helper()
	options, err := rl.Passkeys.SecondFactorBegin(ctx, origin, ch)
	if err != nil {
		t.Fatalf("second factor begin: %v", err)
	}
	return options
}

// verifyPasskey completes ch with the assertion response.
func verifyPasskey(rl *coretest.Realm, ch string, response []byte) (account.TokenPair, error) {
	return rl.Challenges.Verify(ctx, origin, account.SecondFactor{Challenge: ch, Passkey: response})
}

// loginOptions begins a passwordless sign-in.
func loginOptions(t *testing.T, rl *coretest.Realm) []byte {
	t.Helper()
	options, err := rl.Passkeys.LoginBegin(ctx, origin)
	if err != nil {
		t.Fatalf("login begin: %v", err)
	}
	return options
}

// passkeysOf are the user's stored passkeys.
func passkeysOf(t *testing.T, rl *coretest.Realm, id int64) []account.Passkey {
	t.Helper()
	keys, err := rl.Store.Passkeys(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// wantKind wants err to be a refusal of kind.
func wantKind(t *testing.T, err error, kind account.Kind) {
	t.Helper()
	var r *account.Refusal
	if !errors.As(err, &r) || r.Kind != kind {
		t.Fatalf("got %v, want a refusal of kind %d", err, kind)
	}
}

// wantAudit wants one line per passkey id of event, for user id.
func wantAudit(t *testing.T, rl *coretest.Realm, event string, userID int64, passkeyIDs ...int64) {
	t.Helper()
	ev := rl.Audit.Events(event)
	var got []string
	for _, r := range ev {
		if r.Attrs["user_id"] != strconv.FormatInt(userID, 10) {
			t.Fatalf("%s line %+v, want user %d", event, r, userID)
		}
		got = append(got, r.Attrs["passkey_id"])
	}
	var want []string
	for _, id := range passkeyIDs {
		want = append(want, strconv.FormatInt(id, 10))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s lines for passkeys %q, want %q", event, got, want)
	}
}

func TestPasskeyRegister(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, Passkeys: account.PasskeysPasswordless, ReauthWindow: 10 * time.Minute})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	byAccess := account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access}}

	options, err := rl.Passkeys.RegisterBegin(ctx, origin, byAccess)
	if err != nil {
		t.Fatal(err)
	}
	// Passwordless needs a discoverable credential; the handle is no
	// account id.
	opts, _ := virtualwebauthn.ParseAttestationOptions(string(options))
	if !strings.Contains(string(options), `"residentKey":"required"`) || opts.UserName != "ada@example.com" ||
		len(opts.UserID) != 64 || len(opts.ExcludeCredentials) != 0 || len(opts.Challenge) != 32 {
		t.Fatalf("creation options %s", options)
	}
	laptop := newSoftKey(t)
	reg, err := rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: byAccess.Enrolment, Name: "  Laptop ", Response: laptop.Attest(t, options)})
	if err != nil {
		t.Fatal(err)
	}
	if reg.Passkey.ID == 0 || reg.Passkey.Name != "Laptop" || reg.Passkey.UserID != u.ID || len(reg.Codes) != 10 || reg.Opened || reg.Pair.Access != "" {
		t.Fatalf("registered %+v", reg)
	}
	// Recovery codes come with the first factor, as with TOTP.
	wantStrings(t, "authenticators", authenticatorTypes(t, rl, p.Access), "recovery_codes")
	if n := recoveryLeft(t, rl, u.ID); n != 10 {
		t.Fatalf("%d recovery codes stored, want 10", n)
	}
	wantAudit(t, rl, "passkey_added", u.ID, reg.Passkey.ID)

	// The next registration excludes the first passkey; an authenticator
	// that ignores it is refused, and a blank name is "Passkey".
	options, err = rl.Passkeys.RegisterBegin(ctx, origin, byAccess)
	if err != nil {
		t.Fatal(err)
	}
	if opts, _ := virtualwebauthn.ParseAttestationOptions(string(options)); !slices.Equal(opts.ExcludeCredentials, []string{laptop.CredentialID()}) {
		t.Fatalf("excluded %q, want the laptop's %q", opts.ExcludeCredentials, laptop.CredentialID())
	}
	_, err = rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: byAccess.Enrolment, Response: laptop.Attest(t, options)})
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	phone := newSoftKey(t)
	second := register(t, rl, byAccess, phone, " ")
	if second.Passkey.Name != "Passkey" || second.Codes != nil {
		t.Fatalf("second passkey %+v, want the default name and no new codes", second)
	}
	if n := recoveryLeft(t, rl, u.ID); n != 10 {
		t.Fatalf("%d recovery codes after a second passkey", n)
	}
	keys, err := rl.Passkeys.List(ctx, p.Access)
	if err != nil || len(keys) != 2 || keys[0].Name != "Laptop" || keys[1].Name != "Passkey" {
		t.Fatalf("list %+v, %v", keys, err)
	}

	// Another account cannot register the same credential.
	newUser(t, rl, "bob@example.com")
	bob := signIn(t, rl, "bob@example.com")
	stolen := *laptop
	options, err = rl.Passkeys.RegisterBegin(ctx, origin, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: bob.Access}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: bob.Access}, Response: stolen.Attest(t, options)})
	wantRefusal(t, err, account.Invalid, msgPasskeyTaken, "")

	// Names: at most 64 characters (not bytes).
	options, err = rl.Passkeys.RegisterBegin(ctx, origin, byAccess)
	if err != nil {
		t.Fatal(err)
	}
	response := newSoftKey(t).Attest(t, options)
	_, err = rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: byAccess.Enrolment, Name: strings.Repeat("é", 65), Response: response})
	wantFields(t, err, account.FieldErrors{"name": {msgNameTooLong}})
	_, err = rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: byAccess.Enrolment, Name: "x"})
	wantFields(t, err, account.FieldErrors{"credential": {"This field is required."}})
	reg, err = rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: byAccess.Enrolment, Name: strings.Repeat("é", 64), Response: response})
	if err != nil || reg.Passkey.Name != strings.Repeat("é", 64) {
		t.Fatalf("a 64-character name: %+v, %v", reg.Passkey, err)
	}
}

// Registering asks what a TOTP setup asks: a live session that signed in
// within the reauthentication window, or the current password.
func TestPasskeyRegisterReauth(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, ReauthWindow: 10 * time.Minute})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	byAccess := account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access}}
	withPassword := account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access, Password: password}}

	// A ceremony begun in the window cannot be finished after it.
	options, err := rl.Passkeys.RegisterBegin(ctx, origin, byAccess)
	if err != nil {
		t.Fatal(err)
	}
	k := newSoftKey(t)
	response := k.Attest(t, options)
	rl.Clock.Advance(4 * time.Minute)
	if _, err := rl.Passkeys.RegisterBegin(ctx, origin, byAccess); err != nil {
		t.Fatalf("inside the window: %v", err)
	}
	rl.Clock.Advance(6*time.Minute + time.Second)
	_, err = rl.Passkeys.RegisterBegin(ctx, origin, byAccess)
	wantRefusal(t, err, account.Forbidden, account.MsgReauthRequired, "reauthentication_required")
	_, err = rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: byAccess.Enrolment, Response: response})
	wantRefusal(t, err, account.Forbidden, account.MsgReauthRequired, "reauthentication_required")
	_, err = rl.Passkeys.RegisterBegin(ctx, origin, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access, Password: "wrong password"}})
	wantRefusal(t, err, account.Invalid, "Invalid password.", "")
	if n := len(passkeysOf(t, rl, u.ID)); n != 0 {
		t.Fatalf("%d passkeys after refusals", n)
	}

	// The password stands in for a recent sign-in.
	reg := register(t, rl, withPassword, k, "Laptop")
	wantAudit(t, rl, "passkey_added", u.ID, reg.Passkey.ID)

	// No session, no registration.
	if err := rl.Sessions.LogoutAll(ctx, origin, p.Access); err != nil {
		t.Fatal(err)
	}
	_, err = rl.Passkeys.RegisterBegin(ctx, origin, withPassword)
	wantKind(t, err, account.Unauthenticated)
	_, err = rl.Passkeys.RegisterBegin(ctx, origin, account.PasskeyEnrolment{})
	wantRefusal(t, err, account.Unauthenticated, account.MsgNoCredentials, "")
}

// In required mode the bootstrap may register a passkey instead of TOTP:
// the session opens and the recovery codes are written, and the passkey
// answers the next login's challenge.
func TestPasskeyRequiredBootstrap(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFARequired})
	u := newUser(t, rl, "ada@example.com")
	sc := login(t, rl, "ada@example.com", password).SetupChallenge
	if sc == "" {
		t.Fatal("no setup challenge")
	}
	bySetup := account.PasskeyEnrolment{Enrolment: account.Enrolment{SetupChallenge: sc}}
	k := newSoftKey(t)
	options, err := rl.Passkeys.RegisterBegin(ctx, origin, bySetup)
	if err != nil {
		t.Fatal(err)
	}
	// An answer that names no ceremony leaves it and the setup challenge
	// for a retry.
	_, err = rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: bySetup.Enrolment, Response: []byte(`{"id":"x"}`)})
	wantRefusal(t, err, account.Invalid, msgCeremony, "")
	reg, err := rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: bySetup.Enrolment, Name: "Key", Response: k.Attest(t, options)})
	if err != nil {
		t.Fatal(err)
	}
	if !reg.Opened || len(reg.Codes) != 10 {
		t.Fatalf("bootstrap registration %+v, want a session and 10 codes", reg)
	}
	wantSession(t, rl, reg.Pair, nil, u.ID)
	if n := recoveryLeft(t, rl, u.ID); n != 10 {
		t.Fatalf("%d recovery codes stored", n)
	}
	if ll := stored(t, rl, u.ID).LastLogin; ll.IsZero() {
		t.Fatal("no last_login after the bootstrap")
	}
	// The setup challenge is spent.
	_, err = rl.Passkeys.RegisterBegin(ctx, origin, bySetup)
	wantRefusal(t, err, account.Unauthenticated, account.MsgNoCredentials, "")

	step := login(t, rl, "ada@example.com", password)
	if step.Challenge == "" || step.SetupChallenge != "" || !slices.Equal(step.Methods.Names(), []string{"recovery_codes", "webauthn"}) {
		t.Fatalf("login of a passkey-only account: %+v (methods %q)", step, step.Methods.Names())
	}
	pair, err := verifyPasskey(rl, step.Challenge, k.Assert(t, secondFactorOptions(t, rl, step.Challenge)))
	wantSession(t, rl, pair, err, u.ID)
}

// A ceremony answers once, within the MFA challenge lifetime, for the
// account it was begun for.
func TestPasskeyCeremonySingleUse(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, Passkeys: account.PasskeysPasswordless, MFAChallengeTTL: 5 * time.Minute})
	u, p, k := passkeyUser(t, rl, "ada@example.com")
	byAccess := account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access}}

	// Registration: spent, expired, another account's.
	options, err := rl.Passkeys.RegisterBegin(ctx, origin, byAccess)
	if err != nil {
		t.Fatal(err)
	}
	k2 := newSoftKey(t)
	in := account.PasskeyEnrolment{Enrolment: byAccess.Enrolment, Response: k2.Attest(t, options)}
	if _, err := rl.Passkeys.RegisterFinish(ctx, origin, in); err != nil {
		t.Fatal(err)
	}
	in.Response = newSoftKey(t).Attest(t, options)
	_, err = rl.Passkeys.RegisterFinish(ctx, origin, in)
	wantRefusal(t, err, account.Invalid, msgCeremony, "")

	options, err = rl.Passkeys.RegisterBegin(ctx, origin, byAccess)
	if err != nil {
		t.Fatal(err)
	}
	in.Response = newSoftKey(t).Attest(t, options)
	rl.Clock.Advance(5*time.Minute + time.Second)
	_, err = rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access, Password: password}, Response: in.Response})
	wantRefusal(t, err, account.Invalid, msgCeremony, "")

	newUser(t, rl, "bob@example.com")
	bob := signIn(t, rl, "bob@example.com")
	options, err = rl.Passkeys.RegisterBegin(ctx, origin, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: bob.Access}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access, Password: password}, Response: newSoftKey(t).Attest(t, options)})
	wantRefusal(t, err, account.Invalid, msgCeremony, "")
	if n := len(passkeysOf(t, rl, u.ID)); n != 2 {
		t.Fatalf("%d passkeys, want 2", n)
	}

	// Passwordless: spent, expired.
	options = loginOptions(t, rl)
	response := k.Assert(t, options)
	if _, err := rl.Passkeys.LoginFinish(ctx, origin, response); err != nil {
		t.Fatal(err)
	}
	_, err = rl.Passkeys.LoginFinish(ctx, origin, response)
	wantRefusal(t, err, account.Invalid, msgCeremony, "")
	_, err = rl.Passkeys.LoginFinish(ctx, origin, k.Assert(t, options))
	wantRefusal(t, err, account.Invalid, msgCeremony, "")
	options = loginOptions(t, rl)
	rl.Clock.Advance(5*time.Minute + time.Second)
	_, err = rl.Passkeys.LoginFinish(ctx, origin, k.Assert(t, options))
	wantRefusal(t, err, account.Invalid, msgCeremony, "")

	// Second factor: a spent or expired ceremony is a wrong answer, counted.
	ch := challenge(t, rl, "ada@example.com")
	options = secondFactorOptions(t, rl, ch)
	rl.Clock.Advance(5*time.Minute + time.Second)
	ch = challenge(t, rl, "ada@example.com")
	_, err = verifyPasskey(rl, ch, k.Assert(t, options))
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	response = k.Assert(t, secondFactorOptions(t, rl, ch))
	pair, err := verifyPasskey(rl, ch, response)
	wantSession(t, rl, pair, err, u.ID)
	ch = challenge(t, rl, "ada@example.com")
	_, err = verifyPasskey(rl, ch, response)
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	if n := failures(t, rl, u.ID); n != 1 {
		t.Fatalf("%d failures, want the replay's", n)
	}
	// A passwordless ceremony is no second factor's.
	_, err = verifyPasskey(rl, ch, k.Assert(t, loginOptions(t, rl)))
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	if n := failures(t, rl, u.ID); n != 2 {
		t.Fatalf("%d failures, want 2", n)
	}
}

// passkeys off (or no relying party): every passkey call is refused, the
// passkey answer of a login challenge included; second_factor refuses
// passwordless sign-in.
func TestPasskeysOff(t *testing.T) {
	for name, rl := range map[string]*coretest.Realm{
		"off":              passkeyRealm(t, account.Config{MFA: account.MFAOptional, Passkeys: account.PasskeysOff}),
		"no relying party": coretest.New(t, account.Config{MFA: account.MFAOptional}),
	} {
		t.Run(name, func(t *testing.T) {
			u := newUser(t, rl, "ada@example.com")
			p := signIn(t, rl, "ada@example.com")
			if rl.Passkeys.Available() {
				t.Fatal("passkeys available")
			}
			byAccess := account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access}}
			_, err := rl.Passkeys.RegisterBegin(ctx, origin, byAccess)
			wantRefusal(t, err, account.Forbidden, msgPasskeysOff, "")
			_, err = rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: byAccess.Enrolment, Response: []byte("{}")})
			wantRefusal(t, err, account.Forbidden, msgPasskeysOff, "")
			_, err = rl.Passkeys.List(ctx, p.Access)
			wantRefusal(t, err, account.Forbidden, msgPasskeysOff, "")
			err = rl.Passkeys.Rename(ctx, origin, p.Access, 1, "x")
			wantRefusal(t, err, account.Forbidden, msgPasskeysOff, "")
			err = rl.Passkeys.Delete(ctx, origin, account.Enrolment{Access: p.Access}, 1)
			wantRefusal(t, err, account.Forbidden, msgPasskeysOff, "")
			_, err = rl.Passkeys.LoginBegin(ctx, origin)
			wantRefusal(t, err, account.Forbidden, msgPasskeysOff, "")
			_, err = rl.Passkeys.LoginFinish(ctx, origin, []byte("{}"))
			wantRefusal(t, err, account.Forbidden, msgPasskeysOff, "")

			enrol(t, rl, p.Access)
			ch := challenge(t, rl, "ada@example.com")
			_, err = rl.Passkeys.SecondFactorBegin(ctx, origin, ch)
			wantRefusal(t, err, account.Forbidden, msgPasskeysOff, "")
			_, err = verifyPasskey(rl, ch, []byte("{}"))
			wantRefusal(t, err, account.Forbidden, msgPasskeysOff, "")
			if n := failures(t, rl, u.ID); n != 0 {
				t.Fatalf("%d failures counted with passkeys off", n)
			}
		})
	}

	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, Passkeys: account.PasskeysSecondFactor})
	if !rl.Passkeys.Available() {
		t.Fatal("second_factor: passkeys not available")
	}
	_, err := rl.Passkeys.LoginBegin(ctx, origin)
	wantRefusal(t, err, account.Forbidden, msgPasswordlessOff, "")
	_, err = rl.Passkeys.LoginFinish(ctx, origin, []byte("{}"))
	wantRefusal(t, err, account.Forbidden, msgPasswordlessOff, "")
	// second_factor asks for no discoverable credential.
	newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	options, err := rl.Passkeys.RegisterBegin(ctx, origin, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access}})
	if err != nil || !strings.Contains(string(options), `"residentKey":"preferred"`) {
		t.Fatalf("second_factor creation options %s, %v", options, err)
	}
}

func TestPasskeyRename(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, ReauthWindow: 10 * time.Minute})
	u, p, _ := passkeyUser(t, rl, "ada@example.com")
	_, bob, _ := passkeyUser(t, rl, "bob@example.com")
	id := passkeysOf(t, rl, u.ID)[0].ID

	err := rl.Passkeys.Rename(ctx, origin, p.Access, id, "  ")
	wantFields(t, err, account.FieldErrors{"name": {"This field may not be blank."}})
	err = rl.Passkeys.Rename(ctx, origin, p.Access, id, strings.Repeat("é", 65))
	wantFields(t, err, account.FieldErrors{"name": {msgNameTooLong}})
	err = rl.Passkeys.Rename(ctx, origin, bob.Access, id, "Mine now")
	wantRefusal(t, err, account.NotFound, msgNotFound, "")
	err = rl.Passkeys.Rename(ctx, origin, p.Access, id+1000, "Gone")
	wantRefusal(t, err, account.NotFound, msgNotFound, "")
	if err := rl.Passkeys.Rename(ctx, origin, p.Access, id, " Work laptop "); err != nil {
		t.Fatal(err)
	}
	if got := passkeysOf(t, rl, u.ID)[0].Name; got != "Work laptop" {
		t.Fatalf("name %q", got)
	}
	// Renaming needs a live session, not a recent sign-in.
	rl.Clock.Advance(20 * time.Minute)
	if err := rl.Passkeys.Rename(ctx, origin, p.Access, id, "Old laptop"); err != nil {
		t.Fatalf("rename in an old session: %v", err)
	}
}

func TestPasskeyDelete(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, ReauthWindow: 10 * time.Minute})
	u, p, _ := passkeyUser(t, rl, "ada@example.com")
	_, bob, _ := passkeyUser(t, rl, "bob@example.com")
	id := passkeysOf(t, rl, u.ID)[0].ID

	err := rl.Passkeys.Delete(ctx, origin, account.Enrolment{Access: bob.Access}, id)
	wantRefusal(t, err, account.NotFound, msgNotFound, "")
	rl.Clock.Advance(10*time.Minute + time.Second)
	err = rl.Passkeys.Delete(ctx, origin, account.Enrolment{Access: p.Access}, id)
	wantRefusal(t, err, account.Forbidden, account.MsgReauthRequired, "reauthentication_required")
	err = rl.Passkeys.Delete(ctx, origin, account.Enrolment{Access: p.Access, Password: "wrong password"}, id)
	wantRefusal(t, err, account.Invalid, "Invalid password.", "")
	if n := len(passkeysOf(t, rl, u.ID)); n != 1 {
		t.Fatalf("%d passkeys after refusals", n)
	}
	// In optional mode the last factor may go.
	if err := rl.Passkeys.Delete(ctx, origin, account.Enrolment{Access: p.Access, Password: password}, id); err != nil {
		t.Fatal(err)
	}
	if n := len(passkeysOf(t, rl, u.ID)); n != 0 {
		t.Fatalf("%d passkeys after the deletion", n)
	}
	wantAudit(t, rl, "passkey_removed", u.ID, id)
	err = rl.Passkeys.Delete(ctx, origin, account.Enrolment{Access: p.Access, Password: password}, id)
	wantRefusal(t, err, account.NotFound, msgNotFound, "")
}

// In required mode the account's last usable second factor stays; TOTP
// beside it lets the passkey go, and a locked passkey is no factor.
func TestPasskeyDeleteRequired(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFARequired})
	u := newUser(t, rl, "ada@example.com")
	sc := login(t, rl, "ada@example.com", password).SetupChallenge
	k := newSoftKey(t)
	reg := register(t, rl, account.PasskeyEnrolment{Enrolment: account.Enrolment{SetupChallenge: sc}}, k, "Key")
	p := reg.Pair
	id := reg.Passkey.ID

	err := rl.Passkeys.Delete(ctx, origin, account.Enrolment{Access: p.Access}, id)
	wantRefusal(t, err, account.Invalid, msgLastFactor, "")

	// A second passkey, locked by a counter regression: the first is
	// still the last factor; the locked one may go.
	k2 := newSoftKey(t)
	id2 := register(t, rl, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access}}, k2, "Clone").Passkey.ID
	ch := challenge(t, rl, "ada@example.com")
	options := secondFactorOptions(t, rl, ch)
	if _, err := verifyPasskey(rl, ch, k2.Signed(t, options, 5)); err != nil {
		t.Fatal(err)
	}
	ch = challenge(t, rl, "ada@example.com")
	_, err = verifyPasskey(rl, ch, k2.Signed(t, secondFactorOptions(t, rl, ch), 3))
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	if keys := passkeysOf(t, rl, u.ID); len(keys) != 2 || !keys[1].Locked {
		t.Fatalf("passkeys %+v, want the second locked", keys)
	}
	err = rl.Passkeys.Delete(ctx, origin, account.Enrolment{Access: p.Access}, id)
	wantRefusal(t, err, account.Invalid, msgLastFactor, "")
	if err := rl.Passkeys.Delete(ctx, origin, account.Enrolment{Access: p.Access}, id2); err != nil {
		t.Fatalf("deleting a locked passkey: %v", err)
	}

	// With TOTP beside it, the passkey may go.
	enrol(t, rl, p.Access)
	if err := rl.Passkeys.Delete(ctx, origin, account.Enrolment{Access: p.Access}, id); err != nil {
		t.Fatal(err)
	}
	if n := len(passkeysOf(t, rl, u.ID)); n != 0 {
		t.Fatalf("%d passkeys left", n)
	}
	wantAudit(t, rl, "passkey_removed", u.ID, id2, id)
}

// A passkey answers a login challenge as a TOTP code does: the gate names
// it among the methods, the right assertion opens the session, and every
// wrong one is a counted failure.
func TestPasskeySecondFactor(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, MFAUserMax: 100})
	u, _, k := passkeyUser(t, rl, "ada@example.com")
	_, _, bobKey := passkeyUser(t, rl, "bob@example.com")

	step := login(t, rl, "ada@example.com", password)
	if step.Challenge == "" || step.Pair.Access != "" || !slices.Equal(step.Methods.Names(), []string{"recovery_codes", "webauthn"}) {
		t.Fatalf("login of a passkey-only account: %+v (methods %q)", step, step.Methods.Names())
	}
	ch := step.Challenge

	_, err := rl.Passkeys.SecondFactorBegin(ctx, origin, "0123456789abcdef0123456789abcdef")
	wantDead(t, err, msgChallenge)
	_, err = rl.Passkeys.SecondFactorBegin(ctx, origin, "")
	wantDead(t, err, msgChallenge)
	options := secondFactorOptions(t, rl, ch)
	if opts, _ := virtualwebauthn.ParseAssertionOptions(string(options)); !slices.Equal(opts.AllowCredentials, []string{k.CredentialID()}) ||
		opts.RelyingPartyID != coretest.PasskeyRPID || !strings.Contains(string(options), `"userVerification":"preferred"`) {
		t.Fatalf("request options %s", options)
	}

	// Wrong answers: a forged signature, another user's passkey, garbage,
	// a credential answering for another account's handle.
	_, err = verifyPasskey(rl, ch, k.Forger(t).Assert(t, options))
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	_, err = verifyPasskey(rl, ch, bobKey.Assert(t, secondFactorOptions(t, rl, ch)))
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	_, err = verifyPasskey(rl, ch, []byte(`{"response":{}}`))
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	swapped := *k
	swapped.Auth.Options.UserHandle = bobKey.Auth.Options.UserHandle
	_, err = verifyPasskey(rl, ch, swapped.Assert(t, secondFactorOptions(t, rl, ch)))
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	if n := failures(t, rl, u.ID); n != 4 {
		t.Fatalf("%d failures, want 4", n)
	}
	wantStrings(t, "mfa_failed", methods(rl, "mfa_failed"), "webauthn", "webauthn", "webauthn", "webauthn")

	before := rl.Clock.Now().Truncate(time.Second)
	rl.Clock.Advance(time.Second)
	pair, err := verifyPasskey(rl, ch, k.Signed(t, secondFactorOptions(t, rl, ch), 7))
	wantSession(t, rl, pair, err, u.ID)
	if n := failures(t, rl, u.ID); n != 0 {
		t.Fatalf("%d failures left after a success", n)
	}
	key := passkeysOf(t, rl, u.ID)[0]
	if key.SignCount != 7 || !key.LastUsed.After(before) || key.Locked {
		t.Fatalf("passkey after use %+v", key)
	}
	if ll := stored(t, rl, u.ID).LastLogin; ll.Before(before) {
		t.Fatalf("last_login %v", ll)
	}
	wantStrings(t, "mfa_succeeded", methods(rl, "mfa_succeeded"), "webauthn")
	// The challenge is spent.
	_, err = rl.Passkeys.SecondFactorBegin(ctx, origin, ch)
	wantDead(t, err, msgChallenge)

	// TOTP beside it: all three methods.
	enrol(t, rl, pair.Access)
	if step := login(t, rl, "ada@example.com", password); !slices.Equal(step.Methods.Names(), []string{"totp", "recovery_codes", "webauthn"}) {
		t.Fatalf("methods %q", step.Methods.Names())
	}
	// An account with TOTP only has no passkey to answer with.
	newUser(t, rl, "cy@example.com")
	enrol(t, rl, signIn(t, rl, "cy@example.com").Access)
	_, err = rl.Passkeys.SecondFactorBegin(ctx, origin, challenge(t, rl, "cy@example.com"))
	wantRefusal(t, err, account.Invalid, msgNoPasskeys, "")
}

// Wrong assertions count towards the challenge's budget and the user's
// lockout, in the reference's words.
func TestPasskeySecondFactorLimits(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, MFAChallengeMax: 3, MFAUserMax: 5, MFALockout: 15 * time.Minute})
	u, _, k := passkeyUser(t, rl, "ada@example.com")
	forged := k.Forger(t)

	ch := challenge(t, rl, "ada@example.com")
	for range 2 {
		_, err := verifyPasskey(rl, ch, forged.Assert(t, secondFactorOptions(t, rl, ch)))
		wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	}
	options := secondFactorOptions(t, rl, ch)
	_, err := verifyPasskey(rl, ch, forged.Assert(t, options))
	wantDead(t, err, msgExhausted)
	_, err = verifyPasskey(rl, ch, k.Assert(t, options))
	wantDead(t, err, msgChallenge)
	_, err = rl.Passkeys.SecondFactorBegin(ctx, origin, ch)
	wantDead(t, err, msgChallenge)

	// The user's limit: 5 failures over challenges lock the account's MFA
	// out; every live challenge dies, logins and passkey answers wait.
	ch1, ch2 := challenge(t, rl, "ada@example.com"), challenge(t, rl, "ada@example.com")
	_, err = verifyPasskey(rl, ch1, forged.Assert(t, secondFactorOptions(t, rl, ch1)))
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	options = secondFactorOptions(t, rl, ch2)
	_, err = verifyPasskey(rl, ch1, forged.Assert(t, secondFactorOptions(t, rl, ch1)))
	r := wantRefusal(t, err, account.Throttled, msgLockedOut, "")
	if r.RetryAfter < 1 || r.RetryAfter > 900 {
		t.Fatalf("RetryAfter %d", r.RetryAfter)
	}
	if ev := rl.Audit.Events("mfa_lockout"); len(ev) != 1 || ev[0].Attrs["user_id"] != strconv.FormatInt(u.ID, 10) {
		t.Fatalf("mfa_lockout lines %+v", ev)
	}
	_, err = verifyPasskey(rl, ch2, k.Assert(t, options))
	wantDead(t, err, msgChallenge)
	_, err = rl.Sessions.Login(ctx, origin, "ada@example.com", password)
	wantKind(t, err, account.Throttled)

	rl.Clock.Advance(15*time.Minute + time.Second)
	ch = challenge(t, rl, "ada@example.com")
	pair, err := verifyPasskey(rl, ch, k.Assert(t, secondFactorOptions(t, rl, ch)))
	wantSession(t, rl, pair, err, u.ID)
}

// A counter that goes backwards is a cloned authenticator: the passkey is
// locked (audited) and answers no login, second factor or passwordless;
// the account keeps asking for a second factor (its recovery codes).
func TestPasskeyCounterRegression(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, Passkeys: account.PasskeysPasswordless, MFAUserMax: 100})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	k := newSoftKey(t)
	codes := register(t, rl, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access}}, k, "Laptop").Codes
	step, err := rl.Passkeys.LoginFinish(ctx, origin, k.Signed(t, loginOptions(t, rl), 5))
	wantSession(t, rl, step.Pair, err, u.ID)

	// The same counter again: the clone's mark.
	ch := challenge(t, rl, "ada@example.com")
	_, err = verifyPasskey(rl, ch, k.Signed(t, secondFactorOptions(t, rl, ch), 5))
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	key := passkeysOf(t, rl, u.ID)[0]
	if !key.Locked || key.SignCount != 5 {
		t.Fatalf("passkey %+v, want it locked at 5", key)
	}
	wantAudit(t, rl, "passkey_locked", u.ID, key.ID)
	if n := failures(t, rl, u.ID); n != 1 {
		t.Fatalf("%d failures, want 1", n)
	}

	// A higher counter does not unlock it.
	_, err = rl.Passkeys.LoginFinish(ctx, origin, k.Signed(t, loginOptions(t, rl), 50))
	wantRefusal(t, err, account.Unauthenticated, msgPasskeyInvalid, "")
	_, err = verifyPasskey(rl, ch, k.Signed(t, []byte(`{"publicKey":{"challenge":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}`), 60))
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	_, err = rl.Passkeys.SecondFactorBegin(ctx, origin, ch)
	wantRefusal(t, err, account.Invalid, msgNoPasskeys, "")

	// The gate still asks for a second factor: the recovery codes.
	step = login(t, rl, "ada@example.com", password)
	if step.Challenge == "" || !slices.Equal(step.Methods.Names(), []string{"recovery_codes"}) {
		t.Fatalf("login with a locked passkey: %+v (methods %q)", step, step.Methods.Names())
	}
	if keys, err := rl.Passkeys.List(ctx, p.Access); err != nil || len(keys) != 1 || !keys[0].Locked {
		t.Fatalf("list %+v, %v", keys, err)
	}
	if len(rl.Audit.Events("passkey_locked")) != 1 {
		t.Fatal("the lock audited twice")
	}
	pair, err := verifyRecovery(rl, step.Challenge, codes[0])
	wantSession(t, rl, pair, err, u.ID)
}

// Passwordless sign-in: a discoverable passkey that verifies its user
// opens a session by itself, for an account that may sign in.
func TestPasskeyPasswordless(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, Passkeys: account.PasskeysPasswordless, EmailVerification: account.VerifyMandatory})
	u, p, k := passkeyUser(t, rl, "ada@example.com")
	bob, _, bobKey := passkeyUser(t, rl, "bob@example.com")
	enrol(t, rl, p.Access) // TOTP does not stop a passkey sign-in

	options := loginOptions(t, rl)
	if opts, _ := virtualwebauthn.ParseAssertionOptions(string(options)); len(opts.AllowCredentials) != 0 ||
		!strings.Contains(string(options), `"userVerification":"required"`) {
		t.Fatalf("request options %s", options)
	}
	before := rl.Clock.Now().Truncate(time.Second)
	step, err := rl.Passkeys.LoginFinish(ctx, origin, k.Assert(t, options))
	if step.Pending() {
		t.Fatalf("step %+v, want a session", step)
	}
	wantSession(t, rl, step.Pair, err, u.ID)
	if ll := stored(t, rl, u.ID).LastLogin; ll.Before(before) {
		t.Fatalf("last_login %v", ll)
	}
	if ev := rl.Audit.Events("login_succeeded"); ev[len(ev)-1].Attrs["method"] != "passkey" || ev[len(ev)-1].Attrs["user_id"] != strconv.FormatInt(u.ID, 10) {
		t.Fatalf("login_succeeded line %+v", ev[len(ev)-1])
	}

	// No user verification.
	unverified := *k
	unverified.Auth.Options.UserNotVerified = true
	_, err = rl.Passkeys.LoginFinish(ctx, origin, unverified.Assert(t, loginOptions(t, rl)))
	wantRefusal(t, err, account.Unauthenticated, msgPasskeyNoUV, "")
	// A passkey never registered; a forged signature; another account's
	// handle.
	_, err = rl.Passkeys.LoginFinish(ctx, origin, newSoftKey(t).Assert(t, loginOptions(t, rl)))
	wantRefusal(t, err, account.Unauthenticated, msgPasskeyInvalid, "")
	_, err = rl.Passkeys.LoginFinish(ctx, origin, k.Forger(t).Assert(t, loginOptions(t, rl)))
	wantRefusal(t, err, account.Unauthenticated, msgPasskeyInvalid, "")
	swapped := *k
	swapped.Auth.Options.UserHandle = bobKey.Auth.Options.UserHandle
	_, err = rl.Passkeys.LoginFinish(ctx, origin, swapped.Assert(t, loginOptions(t, rl)))
	wantRefusal(t, err, account.Unauthenticated, msgPasskeyInvalid, "")
	noHandle := *k
	noHandle.Auth.Options.UserHandle = nil
	_, err = rl.Passkeys.LoginFinish(ctx, origin, noHandle.Assert(t, loginOptions(t, rl)))
	wantRefusal(t, err, account.Unauthenticated, msgPasskeyInvalid, "")
	_, err = rl.Passkeys.LoginFinish(ctx, origin, []byte(`{}`))
	wantRefusal(t, err, account.Invalid, msgCeremony, "")

	// The account's state, as a password login judges it.
	if err := rl.Store.SetEmailVerified(ctx, bob.ID, false); err != nil {
		t.Fatal(err)
	}
	_, err = rl.Passkeys.LoginFinish(ctx, origin, bobKey.Assert(t, loginOptions(t, rl)))
	wantRefusal(t, err, account.Unauthenticated, "User email is not verified", "email_not_verified")
	if _, err := rl.Users.Disable(ctx, "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	_, err = rl.Passkeys.LoginFinish(ctx, origin, bobKey.Assert(t, loginOptions(t, rl)))
	wantRefusal(t, err, account.Unauthenticated, account.MsgNoActiveAccount, "")
	var failed []string
	for _, r := range rl.Audit.Events("login_failed") {
		failed = append(failed, r.Attrs["method"])
	}
	wantStrings(t, "login_failed methods", failed, "passkey", "passkey", "passkey", "passkey", "passkey", "passkey", "passkey", "passkey")
	// Nothing of this counted against the second factor.
	if n := failures(t, rl, u.ID); n != 0 {
		t.Fatalf("%d MFA failures", n)
	}
}

// reset-mfa removes the passkeys with the other factors.
func TestPasskeyResetMFA(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional})
	u, p, _ := passkeyUser(t, rl, "ada@example.com")
	enrol(t, rl, p.Access)
	if _, err := rl.Users.ResetMFA(ctx, "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	if n := len(passkeysOf(t, rl, u.ID)); n != 0 {
		t.Fatalf("%d passkeys after reset-mfa", n)
	}
	signIn(t, rl, "ada@example.com")
}

// One passwordless answer posted at once by many: its ceremony is spent
// once, so exactly one session.
func TestPasskeyPasswordlessRace(t *testing.T) {
	rl := passkeyRealm(t, account.Config{Passkeys: account.PasskeysPasswordless})
	u, _, k := passkeyUser(t, rl, "ada@example.com")
	response := k.Assert(t, loginOptions(t, rl))
	steps := make([]account.Step, raceN)
	errs := race(raceN, func(i int) (err error) {
		steps[i], err = rl.Passkeys.LoginFinish(ctx, origin, response)
		return err
	})
	won := 0
	for i, err := range errs {
		if err == nil {
			wantSession(t, rl, steps[i].Pair, nil, u.ID)
			won++
			continue
		}
		wantRefusal(t, err, account.Invalid, msgCeremony, "")
	}
	if won != 1 {
		t.Fatalf("%d sessions from one ceremony, want 1", won)
	}
}

// One second-factor assertion posted at once by many: one session, the
// rest find the challenge spent, and none counts as a failure.
func TestPasskeySecondFactorRace(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, MFAUserMax: 3})
	u, _, k := passkeyUser(t, rl, "ada@example.com")
	ch := challenge(t, rl, "ada@example.com")
	response := k.Assert(t, secondFactorOptions(t, rl, ch))
	oneSessionWins(t, rl, u.ID, func() (account.TokenPair, error) { return verifyPasskey(rl, ch, response) })
}

// Registrations of different authenticators finishing one ceremony at
// once: one passkey.
func TestPasskeyRegisterRace(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional})
	u := newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	byAccess := account.Enrolment{Access: p.Access}
	options, err := rl.Passkeys.RegisterBegin(ctx, origin, account.PasskeyEnrolment{Enrolment: byAccess})
	if err != nil {
		t.Fatal(err)
	}
	responses := make([][]byte, raceN)
	for i := range responses {
		responses[i] = newSoftKey(t).Attest(t, options)
	}
	errs := race(raceN, func(i int) error {
		_, err := rl.Passkeys.RegisterFinish(ctx, origin, account.PasskeyEnrolment{Enrolment: byAccess, Response: responses[i]})
		return err
	})
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		wantRefusal(t, err, account.Invalid, msgCeremony, "")
	}
	if n := len(passkeysOf(t, rl, u.ID)); won != 1 || n != 1 {
		t.Fatalf("%d registrations succeeded, %d passkeys stored; want 1 and 1", won, n)
	}
	if n := len(rl.Audit.Events("passkey_added")); n != 1 {
		t.Fatalf("%d passkey_added lines", n)
	}
}

// The bootstrap of an account whose only passkey was locked, then
// removed (its recovery codes went with it), registers a passkey, opens
// the session and gives new codes.
func TestPasskeyBootstrapAfterLastFactorRemoved(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFARequired, MFAUserMax: 100})
	u := newUser(t, rl, "ada@example.com")
	k := newSoftKey(t)
	sc := login(t, rl, "ada@example.com", password).SetupChallenge
	reg := register(t, rl, account.PasskeyEnrolment{Enrolment: account.Enrolment{SetupChallenge: sc}}, k, "Key")
	ch := challenge(t, rl, "ada@example.com")
	if _, err := verifyPasskey(rl, ch, k.Signed(t, secondFactorOptions(t, rl, ch), 5)); err != nil {
		t.Fatal(err)
	}
	ch = challenge(t, rl, "ada@example.com")
	_, err := verifyPasskey(rl, ch, k.Signed(t, secondFactorOptions(t, rl, ch), 4))
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	pair, err := verifyRecovery(rl, ch, reg.Codes[0])
	wantSession(t, rl, pair, err, u.ID)
	if err := rl.Passkeys.Delete(ctx, origin, account.Enrolment{Access: pair.Access}, reg.Passkey.ID); err != nil {
		t.Fatalf("deleting the locked passkey: %v", err)
	}

	sc = login(t, rl, "ada@example.com", password).SetupChallenge
	if sc == "" {
		t.Fatal("no setup challenge for an account without a factor")
	}
	again := register(t, rl, account.PasskeyEnrolment{Enrolment: account.Enrolment{SetupChallenge: sc}}, newSoftKey(t), "New key")
	if !again.Opened || len(again.Codes) == 0 || slices.Contains(again.Codes, reg.Codes[1]) {
		t.Fatalf("bootstrap registration %+v, want a session and new codes", again)
	}
	wantSession(t, rl, again.Pair, nil, u.ID)
	if n := recoveryLeft(t, rl, u.ID); n != len(again.Codes) {
		t.Fatalf("%d recovery codes, want the %d new ones", n, len(again.Codes))
	}
	_, err = rl.Passkeys.RegisterBegin(ctx, origin, account.PasskeyEnrolment{Enrolment: account.Enrolment{SetupChallenge: sc}})
	wantRefusal(t, err, account.Unauthenticated, account.MsgNoCredentials, "")
}

// Turning TOTP off keeps the recovery codes while passkeys remain (they
// are the passkeys' fallback), and a passkey-only account has no TOTP to
// turn off.
func TestPasskeyDeactivateTOTP(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional})
	u, p, _ := passkeyUser(t, rl, "ada@example.com")
	codes := recoveryLeft(t, rl, u.ID)
	if codes == 0 {
		t.Fatal("a passkey registration made no recovery codes")
	}
	err := rl.MFA.Deactivate(ctx, origin, p.Access, account.PasswordProof{Password: password})
	wantRefusal(t, err, account.Invalid, "TOTP not activated.", "")
	if n := recoveryLeft(t, rl, u.ID); n != codes {
		t.Fatalf("%d recovery codes left, want %d", n, codes)
	}

	enrol(t, rl, p.Access)
	if err := rl.MFA.Deactivate(ctx, origin, p.Access, account.PasswordProof{Password: password}); err != nil {
		t.Fatal(err)
	}
	if n := recoveryLeft(t, rl, u.ID); n == 0 {
		t.Fatal("turning TOTP off removed the passkey's fallback codes")
	}
	if keys := passkeysOf(t, rl, u.ID); len(keys) != 1 {
		t.Fatalf("passkeys after turning TOTP off: %+v", keys)
	}
}

// A passkey a stranger registered to a sign-up of someone's address is
// gone once the owner's reset proves the address first, as TOTP is: it
// neither answers the owner's login challenge nor signs in without a
// password (the attack review's pre-hijacking case).
func TestPasskeyRemovedByFirstProofReset(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, EmailVerification: account.VerifyOptional, Passkeys: account.PasskeysPasswordless})
	out, err := rl.Signup.SignUp(ctx, origin, registrant("jane@example.com", pw1))
	if err != nil {
		t.Fatal(err)
	}
	stranger := newSoftKey(t)
	register(t, rl, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: out.Pair.Access}}, stranger, "Stranger")
	u := userByEmail(t, rl, "jane@example.com")

	done, err := rl.Passwords.SetNew(ctx, origin, resetCapability(t, rl, u), newPassword(pw2))
	if err != nil {
		t.Fatal(err)
	}
	if done.Pending() || done.Pair.Access == "" {
		t.Fatalf("reset = %+v, want a session: the stranger's passkey must not gate the owner", done)
	}
	if keys := passkeysOf(t, rl, u.ID); len(keys) != 0 {
		t.Fatalf("passkeys left after the owner's first proof: %+v", keys)
	}
	if _, err := rl.Passkeys.LoginFinish(ctx, origin, stranger.Assert(t, loginOptions(t, rl))); err == nil {
		t.Fatal("the stranger's passkey signed in after the owner's reset")
	}
	ev := rl.Audit.Events("unconfirmed_setup_removed")
	if len(ev) != 1 || ev[0].Attrs["passkeys"] != "1" {
		t.Fatalf("unconfirmed_setup_removed audit %+v", ev)
	}
}

// Removing an account's last factor removes its recovery codes too: no
// code outlives the factor it stood in for, and a later first factor
// comes with new ones.
func TestPasskeyDeleteLastFactorRemovesCodes(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional})
	u, p, _ := passkeyUser(t, rl, "ada@example.com")
	keys := passkeysOf(t, rl, u.ID)
	if err := rl.Passkeys.Delete(ctx, origin, account.Enrolment{Access: p.Access}, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	if n := recoveryLeft(t, rl, u.ID); n != 0 {
		t.Fatalf("%d recovery codes outlived the last factor", n)
	}
	reg := register(t, rl, account.PasskeyEnrolment{Enrolment: account.Enrolment{Access: p.Access}}, newSoftKey(t), "Phone")
	if len(reg.Codes) == 0 {
		t.Fatal("the next first factor came without recovery codes")
	}
}

// A second factor's ceremony belongs to the login challenge it was begun
// for: its answer at another challenge of the same user is a failure
// there, and the first challenge still takes its own answer.
func TestPasskeyCeremonyBoundToChallenge(t *testing.T) {
	rl := passkeyRealm(t, account.Config{MFA: account.MFAOptional, MFAUserMax: 100})
	u, _, k := passkeyUser(t, rl, "ada@example.com")
	first := challenge(t, rl, "ada@example.com")
	second := challenge(t, rl, "ada@example.com")
	answer := k.Assert(t, secondFactorOptions(t, rl, first))
	_, err := verifyPasskey(rl, second, answer)
	wantRefusal(t, err, account.Invalid, msgPasskeyInvalid, "")
	if n := failures(t, rl, u.ID); n != 1 {
		t.Fatalf("%d failures, want 1", n)
	}
	pair, err := verifyPasskey(rl, first, k.Assert(t, secondFactorOptions(t, rl, first)))
	wantSession(t, rl, pair, err, u.ID)
}
