package account

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/otpcode"
)

// Passkeys is WebAuthn: registering passkeys to a signed-in account (or
// in the required-mode bootstrap), naming and removing them, a passkey as
// the second factor of a login challenge, and passwordless sign-in with a
// discoverable passkey. The ceremony checks come through a WebAuthn the
// adapter gives; each ceremony's challenge is kept in the token table as
// its SHA-256, for a few minutes, and spent by its answer.
type Passkeys struct{ *core }

// PasskeyMode is the realm's passkey policy.
type PasskeyMode string

// Passkey modes.
const (
	PasskeysOff          PasskeyMode = "off"
	PasskeysSecondFactor PasskeyMode = "second_factor"
	PasskeysPasswordless PasskeyMode = "passwordless" // includes second_factor
)

// PasskeyUser is an account as a WebAuthn ceremony sees it: its opaque
// handle, its names, and its registered passkeys.
type PasskeyUser struct {
	Handle            []byte
	Name, DisplayName string
	Passkeys          []Passkey
}

// WebAuthn makes a relying party's ceremony options and checks their
// answers; responses are the browser's JSON (credential.toJSON()). Its
// errors are ErrPasskeyInvalid, ErrPasskeyUserVerification and
// ErrPasskeyCounter (returned with the credential as asserted).
type WebAuthn interface {
	RegistrationOptions(u PasskeyUser, challenge []byte, discoverable bool) ([]byte, error)
	VerifyRegistration(u PasskeyUser, challenge, response []byte) (Passkey, error)
	AssertionOptions(allowed []Passkey, challenge []byte, requireUV bool) ([]byte, error)
	// ChallengeOf and AssertionIDs read a response without checking it,
	// to find its ceremony and its account.
	ChallengeOf(response []byte) ([]byte, error)
	AssertionIDs(response []byte) (credentialID, userHandle []byte, err error)
	VerifyAssertion(u PasskeyUser, challenge, response []byte, requireUV bool) (Passkey, error)
}

// Errors a WebAuthn returns.
var (
	ErrPasskeyInvalid          = errors.New("the passkey's answer did not verify")
	ErrPasskeyUserVerification = errors.New("the passkey did not verify its user")
	ErrPasskeyCounter          = errors.New("the passkey's signature counter went backwards")
)

// Purposes of the passkey ceremonies' rows: the SHA-256 of the challenge.
const (
	purposePasskeyRegister = "passkey_register"
	purposePasskeyAssert   = "passkey_assert" // second factor of a login challenge
	purposePasskeyLogin    = "passkey_login"  // passwordless, no account yet
)

// Messages of the passkey flows.
const (
	msgPasskeysOff       = "Passkeys are not enabled."
	msgPasswordlessOff   = "Passwordless sign-in is not enabled."
	msgCeremonyInvalid   = "This passkey request is unknown or has expired: start again."
	msgPasskeyInvalid    = "The passkey could not be verified."
	msgPasskeyNoUV       = "The passkey did not verify you (PIN or biometrics required)."
	msgPasskeyTaken      = "This passkey is registered already."
	msgPasskeyNotFound   = "Not found."
	msgPasskeyName       = "Ensure this field has no more than 64 characters."
	msgNoPasskeys        = "No passkey is registered for this account."
	msgLastFactor        = "Multi-factor authentication is required: this is the account's last second factor."
	maxPasskeyNameLength = 64
)

// passkeyTTL is how long a ceremony may take: the MFA challenges'.
func (rl *Passkeys) passkeyTTL() time.Duration { return rl.policy.MFAChallengeTTL }

// Available reports whether passkeys are served: a relying party is
// configured and the policy does not turn them off.
func (rl *Passkeys) Available() bool { return rl.enabled() == nil }

func (rl *Passkeys) enabled() error {
	if rl.webauthn == nil || rl.policy.Passkeys == PasskeysOff {
		return refuse(Forbidden, msgPasskeysOff)
	}
	return nil
}

// handle is the account's WebAuthn user handle: a keyed hash of its id,
// so the handle tells nothing of the account to whoever reads it.
func (rl *Passkeys) handle(userID int64) []byte {
	return []byte(rl.keyedHash("webauthn-user", strconv.FormatInt(userID, 10)))
}

func (rl *Passkeys) passkeyUser(ctx context.Context, st Store, u User) (PasskeyUser, error) {
	keys, err := st.Passkeys(ctx, u.ID)
	if err != nil {
		return PasskeyUser{}, err
	}
	name := strings.TrimSpace(u.FirstName + " " + u.LastName)
	if name == "" {
		name = u.Email
	}
	return PasskeyUser{Handle: rl.handle(u.ID), Name: u.Email, DisplayName: name, Passkeys: keys}, nil
}

// ceremony stores a new ceremony of purpose for userID (0: none yet),
// bound to bind (the login challenge's row of a second factor, else ""),
// and returns its challenge.
func (rl *Passkeys) ceremony(ctx context.Context, purpose string, userID int64, bind string) ([]byte, error) {
	challenge := make([]byte, 32)
	if _, err := rl.rand.Read(challenge); err != nil {
		return nil, err
	}
	_, err := rl.store.CreateToken(ctx, Token{UserID: userID, Purpose: purpose, Token: linkDigest(string(challenge) + bind), Created: rl.now()})
	return challenge, err
}

// spendCeremony spends, through st, the live ceremony of purpose that
// response answers, and returns its challenge and row; a response to no
// live ceremony (unknown, spent, expired, or bound to something else than
// bind) is ErrNotFound. One statement:
// of concurrent answers to one ceremony, one spends it.
func (rl *Passkeys) spendCeremony(ctx context.Context, st Store, purpose, bind string, response []byte) ([]byte, Token, error) {
	challenge, err := rl.webauthn.ChallengeOf(response)
	if err != nil || len(challenge) == 0 {
		return nil, Token{}, ErrNotFound
	}
	row, err := st.ConsumeToken(ctx, purpose, linkDigest(string(challenge)+bind), rl.now().Add(-rl.passkeyTTL()))
	return challenge, row, err
}

// passkeyFactor reports whether the user has registered passkeys
// (enrolled) and whether one of them may sign in (usable). A locked
// passkey is still enrolled: its lock does not take the account's second
// factor away, so the gate keeps asking for one (the recovery codes).
func (rl *core) passkeyFactor(ctx context.Context, userID int64) (enrolled, usable bool, err error) {
	if rl.webauthn == nil || rl.policy.Passkeys == PasskeysOff {
		return false, false, nil
	}
	keys, err := rl.store.Passkeys(ctx, userID)
	for _, k := range keys {
		usable = usable || !k.Locked
	}
	return len(keys) > 0, usable, err
}

// PasskeyEnrolment is a registration call: who (as for TOTP, an
// Enrolment: a bearer or a setup challenge, and the password for an old
// session), and, to finish, the name and the browser's response.
type PasskeyEnrolment struct {
	Enrolment
	Name     string
	Response []byte
}

// RegisterBegin starts registering a passkey (POST
// {prefix}/mfa/webauthn/register/begin/): the creation options, with the
// account's passkeys excluded. It asks what a TOTP setup asks.
func (rl *Passkeys) RegisterBegin(ctx context.Context, o Origin, in PasskeyEnrolment) ([]byte, error) {
	ctx = withOrigin(ctx, o)
	e, err := rl.enrolee(ctx, in)
	if err != nil {
		return nil, err
	}
	pu, err := rl.passkeyUser(ctx, rl.store, e.user)
	if err != nil {
		return nil, err
	}
	challenge, err := rl.ceremony(ctx, purposePasskeyRegister, e.user.ID, "")
	if err != nil {
		return nil, err
	}
	return rl.webauthn.RegistrationOptions(pu, challenge, rl.policy.Passkeys == PasskeysPasswordless)
}

// enrolee is who a registration is for, let through as a TOTP enrolment
// is (MFA.subject, MFA.allowed).
func (rl *Passkeys) enrolee(ctx context.Context, in PasskeyEnrolment) (Enrolee, error) {
	if err := rl.throttle(ctx, throttlePasskeyIP, rl.clientKey(originOf(ctx).IP)); err != nil {
		return Enrolee{}, err
	}
	if in.Refused != nil {
		return Enrolee{}, in.Refused
	}
	e, err := rl.mfa.subject(ctx, in.Enrolment)
	if err != nil {
		return Enrolee{}, err
	}
	if err := rl.enabled(); err != nil {
		return Enrolee{}, err
	}
	return e, rl.mfa.allowed(ctx, in.Enrolment, e)
}

// Registered is a registered passkey, the recovery codes made with it
// (when the account had none), and, in the required-mode bootstrap, the
// session it opened.
type Registered struct {
	Passkey Passkey
	Activation
}

// RegisterFinish checks the browser's answer to a registration (POST
// {prefix}/mfa/webauthn/register/finish/) and stores the passkey under
// name. An account without recovery codes gets them now; with a setup
// challenge in required mode the bootstrap's session opens, as TOTP
// activation does.
func (rl *Passkeys) RegisterFinish(ctx context.Context, o Origin, in PasskeyEnrolment) (Registered, error) {
	ctx = withOrigin(ctx, o)
	e, err := rl.enrolee(ctx, in)
	if err != nil {
		return Registered{}, err
	}
	if err := in.Invalid.errOf("name", "credential"); err != nil {
		return Registered{}, err
	}
	name := strings.TrimSpace(in.Name)
	if name == "" {
		name = "Passkey"
	}
	if utf8.RuneCountInString(name) > maxPasskeyNameLength {
		return Registered{}, fieldError("name", msgPasskeyName)
	}
	if len(in.Response) == 0 {
		return Registered{}, fieldError("credential", "This field is required.")
	}
	codes, hashes, err := otpcode.NewRecoveryCodes(rl.rand)
	if err != nil {
		return Registered{}, err
	}
	// The ceremony is spent first, on its own: an answer that fails
	// below does not leave it open for another try.
	challenge, row, err := rl.spendCeremony(ctx, rl.store, purposePasskeyRegister, "", in.Response)
	if errors.Is(err, ErrNotFound) || (err == nil && row.UserID != e.user.ID) {
		return Registered{}, refuse(Invalid, msgCeremonyInvalid)
	}
	if err != nil {
		return Registered{}, err
	}
	openSession := e.ch != nil && rl.policy.MFA == MFARequired
	var out Registered
	err = rl.store.InTx(ctx, func(tx Store) error {
		cur, err := tx.UserForUpdate(ctx, e.user.ID)
		if err != nil {
			return err
		}
		pu, err := rl.passkeyUser(ctx, tx, cur)
		if err != nil {
			return err
		}
		pk, err := rl.webauthn.VerifyRegistration(pu, challenge, in.Response)
		if err != nil {
			return passkeyRefusal(err)
		}
		pk.UserID, pk.Name, pk.Created = cur.ID, name, rl.now()
		if pk.ID, err = tx.CreatePasskey(ctx, pk); err != nil {
			if errors.Is(err, ErrConflict) {
				return refuse(Invalid, msgPasskeyTaken)
			}
			return err
		}
		out.Passkey = pk
		n, err := tx.CountRecoveryCodes(ctx, cur.ID)
		if err != nil {
			return err
		}
		if n == 0 {
			if _, err := tx.DeleteAuthenticators(ctx, cur.ID, authRecoveryCodes); err != nil {
				return err
			}
			if _, err := tx.CreateAuthenticator(ctx, Authenticator{UserID: cur.ID, Type: authRecoveryCodes, CreatedAt: rl.now()}); err != nil {
				return err
			}
			if err := tx.ReplaceRecoveryCodes(ctx, cur.ID, hashes); err != nil {
				return err
			}
			out.Codes = codes
		}
		if e.ch != nil {
			if _, err := tx.ConsumeToken(ctx, purposeMFASetupChallenge, e.ch.Token, time.Time{}); err != nil {
				return err
			}
		}
		if !openSession {
			return nil
		}
		out.Opened = true
		out.Pair, err = rl.mfa.openBootstrapSession(ctx, tx, &cur, *e.ch, o.IP)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		// The setup challenge was spent by a concurrent activation.
		return Registered{}, errNotAuthenticated()
	}
	if err != nil {
		return Registered{}, err
	}
	rl.audit(ctx, auditPasskeyAdded, e.user.ID, slog.Int64("passkey_id", out.Passkey.ID))
	return out, nil
}

// passkeyRefusal is the answer to a WebAuthn verdict.
func passkeyRefusal(err error) error {
	switch {
	case errors.Is(err, ErrPasskeyUserVerification):
		return refuse(Invalid, msgPasskeyNoUV)
	case errors.Is(err, ErrPasskeyInvalid), errors.Is(err, ErrPasskeyCounter):
		return refuse(Invalid, msgPasskeyInvalid)
	}
	return err
}

// List returns the caller's passkeys.
func (rl *Passkeys) List(ctx context.Context, access string) ([]Passkey, error) {
	c, err := rl.sessions.Check(ctx, access, false)
	if err != nil {
		return nil, err
	}
	if err := rl.enabled(); err != nil {
		return nil, err
	}
	return rl.store.Passkeys(ctx, c.NumericUserID())
}

// Rename names the caller's passkey id (PATCH
// {prefix}/mfa/webauthn/<id>/); the session must be live.
func (rl *Passkeys) Rename(ctx context.Context, o Origin, access string, id int64, name string) error {
	ctx = withOrigin(ctx, o)
	c, err := rl.sessions.LiveAccess(ctx, access)
	if err != nil {
		return err
	}
	if err := rl.enabled(); err != nil {
		return err
	}
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return fieldError("name", "This field may not be blank.")
	case utf8.RuneCountInString(name) > maxPasskeyNameLength:
		return fieldError("name", msgPasskeyName)
	}
	ok, err := rl.store.RenamePasskey(ctx, c.NumericUserID(), id, name)
	switch {
	case err != nil:
		return err
	case !ok:
		return refuse(NotFound, msgPasskeyNotFound)
	}
	rl.audit(ctx, auditPasskeyRenamed, c.NumericUserID(), slog.Int64("passkey_id", id))
	return nil
}

// Delete removes the caller's passkey id (DELETE
// {prefix}/mfa/webauthn/<id>/); the session must be live and have proved
// itself recently, or the password is given. In required mode the
// account's last usable second factor stays: a passkey that is not
// locked, with no other such passkey and no TOTP beside it. A locked
// passkey signs in no more, so it is never that factor and may always go.
func (rl *Passkeys) Delete(ctx context.Context, o Origin, in Enrolment, id int64) error {
	ctx = withOrigin(ctx, o)
	c, err := rl.sessions.LiveAccess(ctx, in.Access)
	if err != nil {
		return err
	}
	if err := rl.enabled(); err != nil {
		return err
	}
	u, err := rl.store.UserByID(ctx, c.NumericUserID())
	if err != nil {
		return userGone(err)
	}
	if err := rl.reauthenticate(ctx, c, u, in.Password); err != nil {
		return err
	}
	if err := rl.deleteKey(ctx, u.ID, id, true); err != nil {
		return err
	}
	rl.audit(ctx, auditPasskeyRemoved, u.ID, slog.Int64("passkey_id", id))
	return nil
}

// deleteKey removes, in one transaction with the user's row locked, the
// user's passkey id; with keepLast, in required mode, not the account's
// last usable second factor. Removing the last factor removes the
// recovery codes too.
func (rl *Passkeys) deleteKey(ctx context.Context, userID, id int64, keepLast bool) error {
	return rl.store.InTx(ctx, func(tx Store) error {
		if _, err := tx.UserForUpdate(ctx, userID); err != nil {
			return err
		}
		keys, err := tx.Passkeys(ctx, userID)
		if err != nil {
			return err
		}
		var target *Passkey
		usable := 0
		for i, k := range keys {
			if k.ID == id {
				target = &keys[i]
			}
			if !k.Locked {
				usable++
			}
		}
		if target == nil {
			return refuse(NotFound, msgPasskeyNotFound)
		}
		auths, err := tx.Authenticators(ctx, userID)
		if err != nil {
			return err
		}
		totp := false
		for _, a := range auths {
			totp = totp || a.Type == authTOTP
		}
		if keepLast && rl.policy.MFA == MFARequired && !target.Locked && usable == 1 && !totp {
			return refuse(Invalid, msgLastFactor)
		}
		if _, err := tx.DeletePasskeys(ctx, userID, id); err != nil {
			return err
		}
		if totp || len(keys) > 1 {
			return nil
		}
		// The last factor gone: its fallback codes go with it, as when
		// TOTP is turned off, so none outlives the factor it stood in for.
		_, err = tx.DeleteAuthenticators(ctx, userID, authRecoveryCodes)
		return err
	})
}

// SecondFactorBegin starts a passkey answer to a login challenge (POST
// {prefix}/mfa/webauthn/begin/): the request options for the account's
// passkeys. The challenge is checked as a verification checks it (the
// mfa_verify_ip throttle, the challenge, the lockout).
func (rl *Passkeys) SecondFactorBegin(ctx context.Context, o Origin, challengeID string) ([]byte, error) {
	ctx = withOrigin(ctx, o)
	if err := rl.enabled(); err != nil {
		return nil, err
	}
	ch, err := rl.challenges.loginChallenge(ctx, challengeID, o.IP)
	if err != nil {
		return nil, err
	}
	keys, err := rl.store.Passkeys(ctx, ch.UserID)
	if err != nil {
		return nil, err
	}
	var usable []Passkey
	for _, k := range keys {
		if !k.Locked {
			usable = append(usable, k)
		}
	}
	if len(usable) == 0 {
		return nil, refuse(Invalid, msgNoPasskeys)
	}
	challenge, err := rl.ceremony(ctx, purposePasskeyAssert, ch.UserID, ch.Token)
	if err != nil {
		return nil, err
	}
	return rl.webauthn.AssertionOptions(usable, challenge, false)
}

// verifyPasskeyChallenge completes a login challenge with a passkey's
// assertion, counted as every second-factor check is (completeChallenge):
// a wrong assertion is a failure towards the challenge's and the user's
// limits. With passkeys off it is refused before anything is counted.
func (rl *Challenges) verifyPasskeyChallenge(ctx context.Context, challengeID string, response []byte, ip string) (TokenPair, error) {
	if err := rl.passkeys.enabled(); err != nil {
		return TokenPair{}, err
	}
	ch, err := rl.loginChallenge(ctx, challengeID, ip)
	if err != nil {
		return TokenPair{}, err
	}
	pk := rl.passkeys
	return rl.completeChallenge(ctx, ch, factor{spend: func(tx Store) (bool, error) {
		challenge, row, err := pk.spendCeremony(ctx, tx, purposePasskeyAssert, ch.Token, response)
		if errors.Is(err, ErrNotFound) || (err == nil && row.UserID != ch.UserID) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return pk.assert(ctx, tx, ch.UserID, challenge, response, false)
	}}, msgPasskeyInvalid, ip)
}

// assert checks, through tx, an assertion of a passkey of userID against
// challenge and records its use; false for one that does not verify, or
// whose credential is not the user's or is locked. A counter that went
// backwards locks the passkey (audited). A valid assertion without the
// user verification requireUV asks for is refused, as a refusal.
func (rl *Passkeys) assert(ctx context.Context, tx Store, userID int64, challenge, response []byte, requireUV bool) (bool, error) {
	credID, _, err := rl.webauthn.AssertionIDs(response)
	if err != nil {
		return false, nil
	}
	key, err := tx.PasskeyByCredentialID(ctx, credID)
	if errors.Is(err, ErrNotFound) || (err == nil && (key.UserID != userID || key.Locked)) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	u, err := tx.UserByID(ctx, userID)
	if err != nil {
		return false, err
	}
	pu, err := rl.passkeyUser(ctx, tx, u)
	if err != nil {
		return false, err
	}
	used, err := rl.webauthn.VerifyAssertion(pu, challenge, response, requireUV)
	switch {
	case errors.Is(err, ErrPasskeyCounter):
		if err := tx.LockPasskey(ctx, key.ID); err != nil {
			return false, err
		}
		rl.metrics.Lockout("passkey")
		rl.audit(ctx, auditPasskeyLocked, userID, slog.Int64("passkey_id", key.ID))
		return false, nil
	case errors.Is(err, ErrPasskeyUserVerification):
		// Reported only for an assertion valid in every other way, to
		// its holder: the refusal says what to do.
		return false, refuse(Unauthenticated, msgPasskeyNoUV)
	case err != nil && IsRefusal(passkeyRefusal(err)):
		return false, nil
	case err != nil:
		return false, err
	case !bytes.Equal(used.CredentialID, key.CredentialID):
		return false, nil
	}
	return tx.UsePasskey(ctx, key.ID, key.SignCount, used.SignCount, rl.now())
}

// LoginBegin starts a passwordless sign-in (POST
// {prefix}/passkey/login/begin/): request options for a discoverable
// passkey that verifies its user. It counts towards passkey_ip, not
// login_ip: the login page starts one per view for autofill, and a
// start proves nothing (the finish counts as a login).
func (rl *Passkeys) LoginBegin(ctx context.Context, o Origin) ([]byte, error) {
	ctx = withOrigin(ctx, o)
	if err := rl.passwordless(); err != nil {
		return nil, err
	}
	if err := rl.throttle(ctx, throttlePasskeyIP, rl.clientKey(o.IP)); err != nil {
		return nil, err
	}
	challenge, err := rl.ceremony(ctx, purposePasskeyLogin, 0, "")
	if err != nil {
		return nil, err
	}
	return rl.webauthn.AssertionOptions(nil, challenge, true)
}

func (rl *Passkeys) passwordless() error {
	if err := rl.enabled(); err != nil {
		return err
	}
	if rl.policy.Passkeys != PasskeysPasswordless {
		return refuse(Forbidden, msgPasswordlessOff)
	}
	return nil
}

// LoginFinish completes a passwordless sign-in (POST
// {prefix}/passkey/login/finish/): the ceremony is spent, the passkey
// named by the answer must be the account's (its user handle too), must
// verify its user and must not be locked; a user-verified passkey is a
// second factor by itself, so the session opens without the MFA gate.
// Unknown passkeys and wrong answers are refused alike, as logins are;
// a right answer without user verification is told so.
func (rl *Passkeys) LoginFinish(ctx context.Context, o Origin, response []byte) (Step, error) {
	ctx = withOrigin(ctx, o)
	if err := rl.passwordless(); err != nil {
		return Step{}, err
	}
	if err := rl.throttle(ctx, throttleLoginIP, rl.clientKey(o.IP)); err != nil {
		rl.metrics.Login(ResultThrottled)
		return Step{}, err
	}
	failed := func(userID int64, reason string) {
		rl.metrics.Login(ResultFailure)
		rl.audit(ctx, auditLoginFailed, userID, slog.String("reason", reason), slog.String("method", "passkey"))
	}
	// The ceremony is spent first, on its own: of concurrent answers one
	// goes on, and an answer that fails does not leave it open.
	challenge, _, err := rl.spendCeremony(ctx, rl.store, purposePasskeyLogin, "", response)
	if errors.Is(err, ErrNotFound) {
		failed(0, "ceremony")
		return Step{}, refuse(Invalid, msgCeremonyInvalid)
	}
	if err != nil {
		return Step{}, err
	}
	var pair TokenPair
	var userID int64
	err = rl.store.InTx(ctx, func(tx Store) error {
		credID, handle, err := rl.webauthn.AssertionIDs(response)
		if err != nil {
			return refuse(Unauthenticated, msgPasskeyInvalid)
		}
		key, err := tx.PasskeyByCredentialID(ctx, credID)
		if errors.Is(err, ErrNotFound) || (err == nil && !bytes.Equal(handle, rl.handle(key.UserID))) {
			return refuse(Unauthenticated, msgPasskeyInvalid)
		}
		if err != nil {
			return err
		}
		userID = key.UserID
		u, err := tx.UserForUpdate(ctx, key.UserID)
		if err != nil {
			return err
		}
		ok, err := rl.assert(ctx, tx, u.ID, challenge, response, true)
		switch {
		case err != nil:
			return err
		case !ok:
			// The lock of a cloned passkey, if any, is kept: the refusal
			// is not an error of the transaction.
			return nil
		case !u.IsActive:
			return refuse(Unauthenticated, MsgNoActiveAccount)
		case rl.policy.EmailVerification == VerifyMandatory && !u.EmailVerified:
			return refuseCode(Unauthenticated, "User email is not verified", "email_not_verified")
		}
		if _, err := tx.DeleteUserTokens(ctx, u.ID, purposeMFAAttempt); err != nil {
			return err
		}
		if err := tx.SetLastLogin(ctx, u.ID, rl.now()); err != nil {
			return err
		}
		pair, err = rl.openSession(ctx, tx, u, o.IP)
		return err
	})
	switch {
	case IsRefusal(err):
		failed(userID, "passkey")
		return Step{}, err
	case err != nil:
		rl.metrics.Login(ResultError)
		return Step{}, err
	case pair.Access == "":
		failed(userID, "passkey")
		return Step{}, refuse(Unauthenticated, msgPasskeyInvalid)
	}
	rl.metrics.Login(ResultSuccess)
	rl.audit(ctx, auditLoginSucceeded, userID, slog.String("method", "passkey"))
	return Step{Pair: pair}, nil
}

// UserPasskeys lists the passkeys of the account with this address (the
// command line's list).
func (rl *Users) UserPasskeys(ctx context.Context, email string) ([]Passkey, error) {
	u, err := rl.lookup(ctx, email)
	if err != nil {
		return nil, err
	}
	return rl.store.Passkeys(ctx, u.ID)
}

// RemovePasskey removes the passkey id of the account with this address,
// as an administrator does from the command line (a lost device): unlike
// Delete, even the last factor in required mode, whose owner then meets
// the setup bootstrap at the next sign-in.
func (rl *Users) RemovePasskey(ctx context.Context, email string, id int64) error {
	u, err := rl.lookup(ctx, email)
	if err != nil {
		return err
	}
	err = rl.passkeys.deleteKey(ctx, u.ID, id, false)
	var r *Refusal
	if errors.As(err, &r) && r.Kind == NotFound {
		return fmt.Errorf("%s has no passkey %d (see list-passkeys)", u.Email, id)
	}
	if err != nil {
		return err
	}
	rl.audit(ctx, auditPasskeyRemoved, u.ID, slog.Int64("passkey_id", id), slog.String("by", "command_line"))
	return nil
}
