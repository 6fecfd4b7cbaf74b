package account

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/otpcode"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/secretbox"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// Authenticator types.
const (
	authTOTP          = "totp"
	authRecoveryCodes = "recovery_codes"
)

// Messages of the MFA endpoints, in the reference's words.
const (
	MsgMFADisabled        = "MFA TOTP is disabled."
	msgMFARequired        = "MFA TOTP is required and cannot be disabled."
	msgSetupNotInitiated  = "Setup not initiated."
	MsgTOTPActivated      = "TOTP already activated."
	msgTOTPNotActivated   = "TOTP not activated."
	msgInvalidCode        = "Invalid code."
	msgInvalidRecovery    = "Invalid recovery code."
	msgNoRecoveryCodes    = "Recovery codes not available."
	msgChallengeInvalid   = "Challenge expired or invalid."
	msgChallengeExhausted = "Too many failed attempts. Challenge invalidated."
	msgLockedOut          = "Too many failed MFA attempts. Try again later."
)

// MFA is TOTP: its setup and activation, the recovery codes and the
// list of a user's factors.
type MFA struct{ *core }

// challengeDigest is how a challenge id is kept in the token table: its
// SHA-256 (as for link secrets), so a read of the database does not hand
// out live challenges.
func challengeDigest(id string) string { return linkDigest(id) }

// newChallenge stores a challenge of purpose for u and returns its id.
func (rl *core) newChallenge(ctx context.Context, st Store, u User, purpose string) (string, error) {
	id, err := tokens.NewID(rl.rand)
	if err != nil {
		return "", err
	}
	_, err = st.CreateToken(ctx, Token{UserID: u.ID, Purpose: purpose, Token: challengeDigest(id), Created: rl.now()})
	return id, err
}

// findChallenge returns the live challenge row of purpose with this id.
func (rl *core) findChallenge(ctx context.Context, purpose, id string) (Token, error) {
	if id == "" {
		return Token{}, ErrNotFound
	}
	return rl.store.FindToken(ctx, purpose, challengeDigest(id), rl.now().Add(-rl.policy.MFAChallengeTTL))
}

// totpAD binds a sealed TOTP secret to its user's authenticator row, and
// pendingAD a pending one to its user's setup row, so a sealed value copied
// to another row does not open.
func totpAD(userID int64) []byte { return []byte("totp:" + strconv.FormatInt(userID, 10)) }

func pendingAD(userID int64) []byte { return []byte("totp-pending:" + strconv.FormatInt(userID, 10)) }

func (rl *MFA) hasTOTP(ctx context.Context, userID int64) (bool, error) {
	auths, err := rl.store.Authenticators(ctx, userID)
	if err != nil {
		return false, err
	}
	for _, a := range auths {
		if a.Type == authTOTP {
			return true, nil
		}
	}
	return false, nil
}

func (rl *MFA) totpAuthenticator(ctx context.Context, userID int64) (Authenticator, error) {
	auths, err := rl.store.Authenticators(ctx, userID)
	if err != nil {
		return Authenticator{}, err
	}
	for _, a := range auths {
		if a.Type == authTOTP {
			return a, nil
		}
	}
	return Authenticator{}, ErrNotFound
}

// userTOTPSecret returns the user's TOTP secret. A user without a TOTP
// authenticator is told it is not activated.
func (rl *MFA) userTOTPSecret(ctx context.Context, userID int64) (string, error) {
	auth, err := rl.totpAuthenticator(ctx, userID)
	if errors.Is(err, ErrNotFound) {
		return "", refuse(Invalid, msgTOTPNotActivated)
	}
	if err != nil {
		return "", err
	}
	secret, err := rl.secrets.Open(auth.Data, totpAD(auth.UserID))
	return string(secret), err
}

// TOTPSetup is a new pending TOTP secret as the user is shown it: the
// secret, its provisioning URI and the URI as a QR code (SVG).
type TOTPSetup struct {
	Secret, URI, QR string
}

// beginTOTPSetup stores a new pending secret for u (replacing any earlier
// one) and returns it with its provisioning URI and QR code (SVG).
func (rl *MFA) beginTOTPSetup(ctx context.Context, u User, issuer string) (TOTPSetup, error) {
	if has, err := rl.hasTOTP(ctx, u.ID); err != nil || has {
		if err != nil {
			return TOTPSetup{}, err
		}
		return TOTPSetup{}, refuse(Invalid, MsgTOTPActivated).because(ErrTOTPActive)
	}
	secret, err := otpcode.NewTOTPSecret(rl.rand)
	if err != nil {
		return TOTPSetup{}, err
	}
	sealed, err := rl.secrets.Seal([]byte(secret), pendingAD(u.ID), rl.rand)
	if err != nil {
		return TOTPSetup{}, err
	}
	if _, err := rl.store.ReplaceToken(ctx, Token{UserID: u.ID, Purpose: purposeMFASetupSecret, Token: base64.StdEncoding.EncodeToString(sealed), Created: rl.now()}); err != nil {
		return TOTPSetup{}, err
	}
	uri := otpcode.ProvisioningURI(issuer, u.Email, secret)
	qr, err := otpcode.QRSVG(uri)
	if err != nil {
		return TOTPSetup{}, err
	}
	return TOTPSetup{Secret: secret, URI: uri, QR: qr}, nil
}

// totpIssuerFor applies the issuer priority: totp_issuer when set
// non-empty ("JWT-Allauth" when absent); when set empty, site_name, else
// the request host.
func (rl *MFA) totpIssuerFor(o Origin) string {
	if rl.policy.TOTPIssuer != "" {
		return rl.policy.TOTPIssuer
	}
	if rl.policy.SiteName != "" {
		return rl.policy.SiteName
	}
	host := o.Host
	if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	return host
}

// pendingSecret returns the user's live pending TOTP secret.
func (rl *MFA) pendingSecret(ctx context.Context, userID int64) (string, error) {
	rows, err := rl.store.UserTokens(ctx, userID, purposeMFASetupSecret, rl.now().Add(-rl.policy.MFAChallengeTTL))
	if err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", ErrNotFound
	}
	sealed, err := base64.StdEncoding.DecodeString(rows[len(rows)-1].Token)
	if err != nil {
		return "", err
	}
	secret, err := rl.secrets.Open(sealed, pendingAD(userID))
	return string(secret), err
}

// Activation is the outcome of a TOTP activation: the new recovery codes
// and, when it opened the session the required-mode bootstrap held back,
// that session.
type Activation struct {
	Codes  []string
	Opened bool
	Pair   TokenPair
}

// activateTOTP turns u's pending secret into the TOTP authenticator when
// code is its current code, with a fresh set of recovery codes. ch is the
// setup challenge the caller came with, if any. Under mandatory
// verification a setup challenge exists only for a confirmed address (a
// sign-up's is held back until then, see confirmAddress), so the session
// it opens is a full one.
func (rl *MFA) activateTOTP(ctx context.Context, u User, ch *Token, code, ip string) (Activation, error) {
	secret, err := rl.pendingSecret(ctx, u.ID)
	if errors.Is(err, ErrNotFound) {
		return Activation{}, refuse(Invalid, msgSetupNotInitiated)
	}
	if err != nil {
		return Activation{}, err
	}
	step, ok := otpcode.MatchTOTP(secret, code, rl.now(), rl.policy.TOTPSkew)
	if !ok {
		return Activation{}, refuse(Invalid, msgInvalidCode)
	}
	codes, hashes, err := otpcode.NewRecoveryCodes(rl.rand)
	if err != nil {
		return Activation{}, err
	}
	sealed, err := rl.secrets.Seal([]byte(secret), totpAD(u.ID), rl.rand)
	if err != nil {
		return Activation{}, err
	}
	openSession := ch != nil && rl.policy.MFA == MFARequired
	var pair TokenPair
	now := rl.now()
	err = rl.store.InTx(ctx, func(tx Store) error {
		// The row as it is now, locked first (as every transaction that
		// locks it does): the session below carries it.
		cur, err := tx.UserForUpdate(ctx, u.ID)
		if err != nil {
			return err
		}
		if _, err := tx.CreateAuthenticator(ctx, Authenticator{UserID: u.ID, Type: authTOTP, Data: sealed, LastStep: step, CreatedAt: now}); err != nil {
			return err
		}
		if _, err := tx.DeleteAuthenticators(ctx, u.ID, authRecoveryCodes); err != nil {
			return err
		}
		if _, err := tx.CreateAuthenticator(ctx, Authenticator{UserID: u.ID, Type: authRecoveryCodes, CreatedAt: now}); err != nil {
			return err
		}
		if err := tx.ReplaceRecoveryCodes(ctx, u.ID, hashes); err != nil {
			return err
		}
		if _, err := tx.DeleteUserTokens(ctx, u.ID, purposeMFASetupSecret); err != nil {
			return err
		}
		if ch != nil {
			if _, err := tx.ConsumeToken(ctx, purposeMFASetupChallenge, ch.Token, time.Time{}); err != nil {
				return err
			}
		}
		if !openSession {
			return nil
		}
		pair, err = rl.openBootstrapSession(ctx, tx, &cur, *ch, ip)
		return err
	})
	switch {
	case errors.Is(err, ErrConflict):
		return Activation{}, refuse(Invalid, MsgTOTPActivated).because(ErrTOTPActive)
	case errors.Is(err, ErrNotFound):
		// The setup challenge was spent by a concurrent activation.
		return Activation{}, errNotAuthenticated()
	case err != nil:
		return Activation{}, err
	}
	return Activation{Codes: codes, Opened: openSession, Pair: pair}, nil
}

// openBootstrapSession opens, through tx, the session the required-mode
// bootstrap held back once u (locked) has enrolled a factor with the
// setup challenge ch: the links held back with ch are written first. An
// account disabled since the setup began gets none.
func (rl *MFA) openBootstrapSession(ctx context.Context, tx Store, u *User, ch Token, ip string) (TokenPair, error) {
	if !u.IsActive {
		return TokenPair{}, refuse(Unauthenticated, MsgNoActiveAccount)
	}
	if err := rl.social.completePendingLinks(ctx, tx, u, ch); err != nil {
		return TokenPair{}, err
	}
	if err := tx.SetLastLogin(ctx, u.ID, rl.now()); err != nil {
		return TokenPair{}, err
	}
	return rl.openSession(ctx, tx, *u, ip)
}

// ErrTOTPActive is the reason of a refusal to set up TOTP for a user who
// has it already.
var ErrTOTPActive = errors.New("TOTP already activated")

// enabled refuses every MFA flow when MFA is disabled.
func (rl *MFA) enabled() error {
	if rl.policy.MFA == MFADisabled {
		return refuse(Forbidden, MsgMFADisabled)
	}
	return nil
}

// Enrolee is who a TOTP setup or activation is for: a user, and the setup
// challenge they came with, if any.
type Enrolee struct {
	user User
	ch   *Token
}

// Email is the enrolee's address, shown next to the QR code.
func (e Enrolee) Email() string { return e.user.Email }

// Enrolment is a setup or activation call of the JSON API: the bearer
// access token and the setup challenge id (either may be ""), the current
// password (optional, see reauthenticate), and the body as decoded.
type Enrolment struct {
	Form
	Access, SetupChallenge, Password string
}

// subject finds who an enrolment is for: the bearer of a valid access
// token of a live session, or, without one, the owner of a live setup
// challenge named in the body.
func (rl *MFA) subject(ctx context.Context, in Enrolment) (Enrolee, error) {
	var uid int64
	if in.Access != "" {
		c, err := rl.sessions.LiveAccess(ctx, in.Access)
		if err != nil {
			return Enrolee{}, err
		}
		uid = c.NumericUserID()
	}
	// Not a string: refused like any wrong type, not ignored.
	if err := in.Invalid.errOf("setup_challenge_id"); err != nil {
		return Enrolee{}, err
	}
	var ch *Token
	if in.SetupChallenge != "" {
		t, err := rl.findChallenge(ctx, purposeMFASetupChallenge, in.SetupChallenge)
		switch {
		case errors.Is(err, ErrNotFound):
			if uid == 0 {
				return Enrolee{}, errNotAuthenticated()
			}
		case err != nil:
			return Enrolee{}, err
		case uid != 0 && t.UserID != uid:
			return Enrolee{}, errNotAuthenticated()
		default:
			ch, uid = &t, t.UserID
		}
	}
	if uid == 0 {
		return Enrolee{}, errNotAuthenticated()
	}
	u, err := rl.store.UserByID(ctx, uid)
	if errors.Is(err, ErrNotFound) || (err == nil && !u.IsActive) {
		return Enrolee{}, errTokenNotValid(MsgTokenInvalid)
	}
	return Enrolee{user: u, ch: ch}, err
}

// allowed lets an enrolment through: one with a setup challenge needs
// nothing more, else the bearer (already verified live) must have proved
// itself recently or give the current password (reauthenticate).
func (rl *MFA) allowed(ctx context.Context, in Enrolment, e Enrolee) error {
	if e.ch != nil {
		return nil
	}
	if err := in.Invalid.errOf("password"); err != nil {
		return err
	}
	c, err := rl.sessions.Check(ctx, in.Access, false)
	if err != nil {
		return err
	}
	return rl.reauthenticate(ctx, c, e.user, in.Password)
}

// Setup begins a TOTP setup (POST {prefix}/mfa/setup/): a new pending
// secret, replacing any earlier one, with its provisioning URI and QR
// code.
func (rl *MFA) Setup(ctx context.Context, o Origin, in Enrolment) (TOTPSetup, error) {
	ctx = withOrigin(ctx, o)
	if in.Refused != nil {
		return TOTPSetup{}, in.Refused
	}
	e, err := rl.subject(ctx, in)
	if err != nil {
		return TOTPSetup{}, err
	}
	if err := rl.enabled(); err != nil {
		return TOTPSetup{}, err
	}
	if err := rl.allowed(ctx, in, e); err != nil {
		return TOTPSetup{}, err
	}
	return rl.beginTOTPSetup(ctx, e.user, rl.totpIssuerFor(o))
}

// Activate turns the pending secret into the user's TOTP authenticator
// when code is its current code (POST {prefix}/mfa/activate/), with a
// fresh set of recovery codes. With a setup challenge in required mode it
// also opens the session the bootstrap held back.
func (rl *MFA) Activate(ctx context.Context, o Origin, in Enrolment, code string) (Activation, error) {
	ctx = withOrigin(ctx, o)
	if in.Refused != nil {
		return Activation{}, in.Refused
	}
	e, err := rl.subject(ctx, in)
	if err != nil {
		return Activation{}, err
	}
	if err := rl.enabled(); err != nil {
		return Activation{}, err
	}
	if err := in.Invalid.errOf("code"); err != nil {
		return Activation{}, err
	}
	if err := rl.allowed(ctx, in, e); err != nil {
		return Activation{}, err
	}
	return rl.activateTOTP(ctx, e.user, e.ch, code, o.IP)
}

// PageEnrolee is who the setup page is for: the holder of the setup
// challenge setupChallenge (required mode, straight after the password),
// else the signed-in user of the access token, who must have signed in
// recently (the page has no password field: an old session signs in
// again, refused as Forbidden).
func (rl *MFA) PageEnrolee(ctx context.Context, setupChallenge, access string) (Enrolee, error) {
	if err := rl.enabled(); err != nil {
		return Enrolee{}, err
	}
	var uid int64
	var ch *Token
	if setupChallenge != "" {
		t, err := rl.findChallenge(ctx, purposeMFASetupChallenge, setupChallenge)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Enrolee{}, err
		}
		if err == nil {
			ch, uid = &t, t.UserID
		}
	}
	if uid == 0 {
		c, err := rl.sessions.LiveAccess(ctx, access)
		if err != nil {
			return Enrolee{}, err
		}
		if !rl.sessions.RecentlyAuthenticated(c) {
			return Enrolee{}, errReauthRequired()
		}
		uid = c.NumericUserID()
	}
	u, err := rl.store.UserByID(ctx, uid)
	if errors.Is(err, ErrNotFound) || (err == nil && !u.IsActive) {
		return Enrolee{}, errNotAuthenticated()
	}
	return Enrolee{user: u, ch: ch}, err
}

// ShowSetup is the pending secret the setup page shows e: the one already
// pending, so a reload shows the same QR code, else a new one. A user who
// has TOTP is refused with ErrTOTPActive.
func (rl *MFA) ShowSetup(ctx context.Context, o Origin, e Enrolee) (TOTPSetup, error) {
	ctx = withOrigin(ctx, o)
	if has, err := rl.hasTOTP(ctx, e.user.ID); err != nil || has {
		if err != nil {
			return TOTPSetup{}, err
		}
		return TOTPSetup{}, refuse(Invalid, MsgTOTPActivated).because(ErrTOTPActive)
	}
	secret, err := rl.pendingSecret(ctx, e.user.ID)
	switch {
	case err == nil:
		uri := otpcode.ProvisioningURI(rl.totpIssuerFor(o), e.user.Email, secret)
		qr, err := otpcode.QRSVG(uri)
		if err != nil {
			return TOTPSetup{}, err
		}
		return TOTPSetup{Secret: secret, URI: uri, QR: qr}, nil
	case errors.Is(err, ErrNotFound) || errors.Is(err, secretbox.ErrOpen):
		return rl.beginTOTPSetup(ctx, e.user, rl.totpIssuerFor(o))
	default:
		return TOTPSetup{}, err
	}
}

// ActivateFor is Activate for the setup page's enrolee.
func (rl *MFA) ActivateFor(ctx context.Context, o Origin, e Enrolee, code string) (Activation, error) {
	return rl.activateTOTP(withOrigin(ctx, o), e.user, e.ch, code, o.IP)
}

// Deactivate removes the caller's TOTP and recovery codes with their
// password (POST {prefix}/mfa/deactivate/, optional mode only).
func (rl *MFA) Deactivate(ctx context.Context, o Origin, access string, in PasswordProof) error {
	ctx = withOrigin(ctx, o)
	c, err := rl.sessions.Check(ctx, access, false)
	if err != nil {
		return err
	}
	if err := rl.enabled(); err != nil {
		return err
	}
	if rl.policy.MFA == MFARequired {
		return refuse(Forbidden, msgMFARequired)
	}
	if err := in.err(); err != nil {
		return err
	}
	u, err := rl.sessions.liveCaller(ctx, c)
	if err != nil {
		return err
	}
	ok, err := rl.checkPassword(ctx, u, in.Password, "mfa_deactivate")
	if err != nil {
		return err
	}
	if !ok {
		return refuse(Invalid, msgInvalidPassword)
	}
	// TOTP goes; the recovery codes go with it unless passkeys remain,
	// whose fallback they are (read under the user's lock, as a passkey's
	// removal reads TOTP).
	return rl.store.InTx(ctx, func(tx Store) error {
		if _, err := tx.UserForUpdate(ctx, u.ID); err != nil {
			return err
		}
		keys, err := tx.Passkeys(ctx, u.ID)
		if err != nil {
			return err
		}
		n, err := tx.DeleteAuthenticators(ctx, u.ID, authTOTP)
		switch {
		case err != nil:
			return err
		case n == 0:
			return refuse(Invalid, msgTOTPNotActivated)
		case len(keys) > 0:
			return nil
		}
		_, err = tx.DeleteAuthenticators(ctx, u.ID, authRecoveryCodes)
		return err
	})
}

// PasswordProof is a body that carries the caller's current password.
type PasswordProof struct {
	Form
	Password string
}

// Authenticators lists the caller's factors, oldest first (GET
// {prefix}/mfa/authenticators/).
func (rl *MFA) Authenticators(ctx context.Context, access string) ([]Authenticator, error) {
	c, err := rl.sessions.Check(ctx, access, false)
	if err != nil {
		return nil, err
	}
	if err := rl.enabled(); err != nil {
		return nil, err
	}
	return rl.store.Authenticators(ctx, c.NumericUserID())
}

// CodeProof is a body that carries a TOTP code.
type CodeProof struct {
	Form
	Code string
}

// RegenerateRecovery replaces the caller's recovery codes by a new set,
// given a current TOTP code (POST {prefix}/mfa/recovery-codes/regenerate/).
// A wrong (or replayed) code counts against the user's budget, as on
// verify; there is no challenge to invalidate.
func (rl *MFA) RegenerateRecovery(ctx context.Context, o Origin, access string, in CodeProof) ([]string, error) {
	ctx = withOrigin(ctx, o)
	c, err := rl.sessions.Check(ctx, access, false)
	if err != nil {
		return nil, err
	}
	if err := rl.enabled(); err != nil {
		return nil, err
	}
	if err := in.err(); err != nil {
		return nil, err
	}
	if err := rl.liveSession(ctx, c); err != nil {
		return nil, err
	}
	uid := c.NumericUserID()
	if err := rl.challenges.checkLockout(ctx, rl.store, uid); err != nil {
		return nil, err
	}
	secret, err := rl.userTOTPSecret(ctx, uid)
	if err != nil {
		return nil, err
	}
	codes, hashes, err := otpcode.NewRecoveryCodes(rl.rand)
	if err != nil {
		return nil, err
	}
	check := mfaCheck{userID: uid, what: "recovery-codes/regenerate", wrong: msgInvalidCode}
	err = rl.challenges.countedCheck(ctx, check, rl.challenges.totpFactor(ctx, uid, secret, in.Code), func(tx Store, _ User) error {
		if _, err := tx.DeleteAuthenticators(ctx, uid, authRecoveryCodes); err != nil {
			return err
		}
		if _, err := tx.CreateAuthenticator(ctx, Authenticator{UserID: uid, Type: authRecoveryCodes, CreatedAt: rl.now()}); err != nil {
			return err
		}
		return tx.ReplaceRecoveryCodes(ctx, uid, hashes)
	})
	if err != nil {
		return nil, userGone(err)
	}
	return codes, nil
}

// ResealTOTP seals every TOTP secret of st that opens under old again
// under box, one authenticator per statement, and drops the pending
// setups (sealed under old too: they live minutes, their users start
// again). Secrets already sealed under box are left alone, so running it
// twice changes nothing; unreadable counts those that open under neither.
func ResealTOTP(ctx context.Context, st Store, old, box *secretbox.Box, rand io.Reader) (resealed, unreadable int, err error) {
	auths, err := st.TOTPAuthenticators(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, a := range auths {
		ad := totpAD(a.UserID)
		secret, err := old.Open(a.Data, ad)
		if err != nil {
			if _, err := box.Open(a.Data, ad); err != nil {
				unreadable++
			}
			continue
		}
		sealed, err := box.Seal(secret, ad, rand)
		if err != nil {
			return 0, 0, err
		}
		ok, err := st.SwapAuthenticatorData(ctx, a.ID, a.Data, sealed)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			resealed++
		}
	}
	if _, err := st.PurgeTokens(ctx, purposeMFASetupSecret, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		return 0, 0, err
	}
	return resealed, unreadable, nil
}
