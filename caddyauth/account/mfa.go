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

// Messages of the MFA endpoints (mfa-totp-spec.txt, behaviour.md §5).
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

// Challenges is the second step of a login: the MFA gate after the
// password, the login challenges it opens, the checks of TOTP and
// recovery codes against them, and the failure limits and lockout those
// checks count towards.
type Challenges struct{ *core }

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

// gate runs after the first factor. It returns a Step that is not
// Pending when the user may have a session now, else the second step: a
// login challenge for a user with TOTP, or, in required mode, the setup
// bootstrap (login, password reset and invitation set-password answer it
// instead of tokens; sign-up builds its own, see signupOutcome). A
// locked out user is refused.
func (rl *Challenges) gate(ctx context.Context, u User) (Step, error) {
	if rl.policy.MFA == MFADisabled {
		return Step{}, nil
	}
	hasTOTP, err := rl.mfa.hasTOTP(ctx, u.ID)
	if err != nil {
		return Step{}, err
	}
	if !hasTOTP {
		if rl.policy.MFA == MFARequired {
			id, err := rl.newChallenge(ctx, rl.store, u, purposeMFASetupChallenge)
			return Step{SetupChallenge: id}, err
		}
		return Step{}, nil
	}
	// Login words the lockout as a DRF throttle, the wait in the message.
	if wait, err := rl.lockout(ctx, rl.store, u.ID); err != nil || wait > 0 {
		if err != nil {
			return Step{}, err
		}
		return Step{}, errThrottled(msgLockedOut, wait)
	}
	id, err := rl.newChallenge(ctx, rl.store, u, purposeMFALoginChallenge)
	return Step{Challenge: id}, err
}

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

// spendTOTP compares code with secret and, when it matches, moves the
// user's last accepted step to its step; false means a wrong code or one
// already used in its step (replay).
func (rl *Challenges) spendTOTP(ctx context.Context, tx Store, userID int64, secret, code string) (bool, error) {
	step, ok := otpcode.MatchTOTP(secret, code, rl.now(), rl.policy.TOTPSkew)
	if !ok {
		return false, nil
	}
	return tx.AdvanceTOTPStep(ctx, userID, step, rl.now())
}

// recentFailures returns the user's MFA failures inside the lockout
// window, oldest first, as st sees them.
func (rl *Challenges) recentFailures(ctx context.Context, st Store, userID int64) ([]Token, error) {
	return st.UserTokens(ctx, userID, purposeMFAAttempt, rl.now().Add(-rl.policy.MFALockout))
}

// lockoutSeconds returns how long, in whole seconds (at least 1), the user
// stays locked out given their failures inside the window: until the
// oldest of the last mfa_max_attempts leaves it. 0 means not locked out.
func (rl *Challenges) lockoutSeconds(failures []Token) int {
	limit := rl.policy.MFAUserMax
	if limit <= 0 || len(failures) < limit {
		return 0
	}
	oldest := failures[len(failures)-limit].Created
	wait := oldest.Add(rl.policy.MFALockout).Sub(rl.now())
	return max(1, int((wait+time.Second-1)/time.Second))
}

// lockout returns how long the user stays locked out of MFA, 0 when they
// are not, as st sees it.
func (rl *Challenges) lockout(ctx context.Context, st Store, userID int64) (int, error) {
	failures, err := rl.recentFailures(ctx, st, userID)
	if err != nil {
		return 0, err
	}
	return rl.lockoutSeconds(failures), nil
}

// errMFALockedOut is the lockout refusal of the MFA flows: the bare
// message and the wait, as the reference words it there (login words it
// as a DRF throttle instead, see gate).
func errMFALockedOut(wait int) *Refusal {
	e := refuse(Throttled, msgLockedOut).because(ErrChallengeDead)
	e.RetryAfter = wait
	return e
}

// checkLockout refuses while the user is locked out of MFA, as st
// sees it.
func (rl *Challenges) checkLockout(ctx context.Context, st Store, userID int64) error {
	wait, err := rl.lockout(ctx, st, userID)
	if err != nil || wait == 0 {
		return err
	}
	return errMFALockedOut(wait)
}

// mfaCheck is one check of a second-factor code that counts towards the
// MFA limits: whose it is, the login challenge it is made against (nil
// for regeneration, where what keys the failure row instead) and the
// answer to a wrong code.
type mfaCheck struct {
	userID int64
	ch     *Token
	what   string
	wrong  string
}

// countedCheck makes one check of a second-factor code: in one
// transaction that locks the user's row before it reads the limits and
// keeps it until the outcome is written, it refuses a challenge that is no
// longer live or whose budget is spent and a user locked out, then
// compare compares (and spends) the code; a right one runs done with the
// locked user, a wrong one is recorded as a failure (recordFailure) and
// answered. Every check of one user, on this node or another, waits for
// the one before it, so however many arrive at once, at most
// mfa_challenge_max_attempts codes are compared for one challenge and at
// most mfa_max_attempts for the user in the window, each answered as if
// it had come alone. The order of the refusals is the reference's
// (challenge, lockout); callers check the same before, outside the
// lock, so that a refusal that needs no lock waits for none. ErrNotFound
// means the user or the challenge is gone.
func (rl *Challenges) countedCheck(ctx context.Context, c mfaCheck, compare func(tx Store) (bool, error), done func(tx Store, u User) error) error {
	var wrong error
	failed, locked := false, false
	err := rl.store.InTx(ctx, func(tx Store) error {
		wrong, failed, locked = nil, false, false
		// The user's row is locked first, as every transaction that locks
		// it does, so that none waits for another in a cycle.
		u, err := tx.UserForUpdate(ctx, c.userID)
		if err != nil {
			return err
		}
		if c.ch != nil {
			if _, err := tx.FindToken(ctx, purposeMFALoginChallenge, c.ch.Token, rl.now().Add(-rl.policy.MFAChallengeTTL)); err != nil {
				return err
			}
		}
		if err := rl.checkLockout(ctx, tx, c.userID); err != nil {
			return err
		}
		if limit := rl.policy.MFAChallengeMax; limit > 0 && c.ch != nil {
			n, err := tx.CountTokens(ctx, purposeMFAAttempt, c.ch.Token, c.ch.Created)
			if err != nil {
				return err
			}
			// Reached only when the limit is lower than when those
			// failures were answered (a reload, or another node's
			// configuration): the failure that reaches it ends the
			// challenge in its own transaction.
			if n >= limit {
				if _, err := tx.DeleteToken(ctx, purposeMFALoginChallenge, c.ch.Token); err != nil {
					return err
				}
				wrong = refuse(Invalid, msgChallengeExhausted).because(ErrChallengeDead)
				return nil
			}
		}
		ok, err := compare(tx)
		if err != nil {
			return err
		}
		if ok {
			return done(tx, u)
		}
		failed = true
		wrong, locked, err = rl.recordFailure(ctx, tx, c)
		return err
	})
	if err != nil || !failed {
		if err == nil {
			err = wrong
		}
		return err
	}
	rl.mfaOutcome(ctx, c.userID, c.wrong, ResultFailure)
	if locked {
		rl.mfaLockedOut(ctx, c.userID)
	}
	// Failures that can no longer count are purged here, not only by the
	// background purge, so the table cannot grow under a steady attack
	// between two purges (behaviour.md F10). Outside the lock: the rows
	// are other users' too.
	if _, err := rl.store.PurgeTokens(ctx, purposeMFAAttempt, rl.now().Add(-rl.attemptRetention())); err != nil {
		return err
	}
	return wrong
}

// recordFailure writes, through tx, one failed check c against the user
// and, with a challenge, against it, and returns the answer: the lockout when
// this failure locks the user out (every live login challenge of the
// user dies; locked is true), the invalidation message when it spends the
// challenge's budget (the challenge dies), else c.wrong. Without a
// challenge (regeneration) there is no challenge budget and the row is
// keyed by c.what, so it counts only towards the user's.
func (rl *Challenges) recordFailure(ctx context.Context, tx Store, c mfaCheck) (answer error, locked bool, err error) {
	key := c.what
	if c.ch != nil {
		key = c.ch.Token
	}
	if _, err := tx.CreateToken(ctx, Token{UserID: c.userID, Purpose: purposeMFAAttempt, Token: key, Created: rl.now()}); err != nil {
		return nil, false, err
	}
	failures, err := rl.recentFailures(ctx, tx, c.userID)
	if err != nil {
		return nil, false, err
	}
	if wait := rl.lockoutSeconds(failures); wait > 0 {
		if _, err := tx.DeleteUserTokens(ctx, c.userID, purposeMFALoginChallenge); err != nil {
			return nil, false, err
		}
		return errMFALockedOut(wait), true, nil
	}
	if limit := rl.policy.MFAChallengeMax; limit > 0 && c.ch != nil {
		n, err := tx.CountTokens(ctx, purposeMFAAttempt, c.ch.Token, c.ch.Created)
		if err != nil {
			return nil, false, err
		}
		if n >= limit {
			if _, err := tx.DeleteToken(ctx, purposeMFALoginChallenge, c.ch.Token); err != nil {
				return nil, false, err
			}
			return refuse(Invalid, msgChallengeExhausted).because(ErrChallengeDead), false, nil
		}
	}
	return refuse(Invalid, c.wrong), false, nil
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
		// An account disabled since the setup began gets no session.
		if !cur.IsActive {
			return refuse(Unauthenticated, MsgNoActiveAccount)
		}
		if err := tx.SetLastLogin(ctx, cur.ID, now); err != nil {
			return err
		}
		pair, err = rl.openSession(ctx, tx, cur, ip)
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

// loginChallenge counts the client address ip towards the mfa_verify_ip
// throttle, then finds and checks the challenge of a verify call: the
// order of checks is the reference's (body, challenge, lockout).
func (rl *Challenges) loginChallenge(ctx context.Context, id, ip string) (Token, error) {
	if err := rl.throttle(ctx, throttleMFAVerifyIP, rl.clientKey(ip)); err != nil {
		return Token{}, err
	}
	ch, err := rl.findChallenge(ctx, purposeMFALoginChallenge, id)
	if errors.Is(err, ErrNotFound) {
		return Token{}, refuse(Invalid, msgChallengeInvalid).because(ErrChallengeDead)
	}
	if err != nil {
		return Token{}, err
	}
	return ch, rl.checkLockout(ctx, rl.store, ch.UserID)
}

// verifyTOTPChallenge completes a login challenge with a TOTP code. Each
// time step is accepted once per user: the last accepted step is stored
// and only moves forward, so a code cannot be replayed, on this node or
// another, before or after a restart. The client address ip counts
// towards the mfa_verify_ip throttle first.
func (rl *Challenges) verifyTOTPChallenge(ctx context.Context, challengeID, code, ip string) (TokenPair, error) {
	ch, err := rl.loginChallenge(ctx, challengeID, ip)
	if err != nil {
		return TokenPair{}, err
	}
	secret, err := rl.mfa.userTOTPSecret(ctx, ch.UserID)
	if err != nil {
		return TokenPair{}, err
	}
	return rl.completeChallenge(ctx, ch, func(tx Store) (bool, error) {
		return rl.spendTOTP(ctx, tx, ch.UserID, secret, code)
	}, msgInvalidCode, ip)
}

// verifyRecoveryChallenge completes a login challenge with a recovery
// code, spending it. The client address ip counts towards the
// mfa_verify_ip throttle first, as for a TOTP code.
func (rl *Challenges) verifyRecoveryChallenge(ctx context.Context, challengeID, code, ip string) (TokenPair, error) {
	ch, err := rl.loginChallenge(ctx, challengeID, ip)
	if err != nil {
		return TokenPair{}, err
	}
	n, err := rl.store.CountRecoveryCodes(ctx, ch.UserID)
	if err != nil {
		return TokenPair{}, err
	}
	if n == 0 {
		return TokenPair{}, refuse(Invalid, msgNoRecoveryCodes)
	}
	normalised, wellFormed := otpcode.NormaliseRecoveryCode(code)
	return rl.completeChallenge(ctx, ch, func(tx Store) (bool, error) {
		if !wellFormed {
			return false, nil
		}
		return tx.ConsumeRecoveryCode(ctx, ch.UserID, otpcode.HashRecoveryCode(normalised), rl.now())
	}, msgInvalidRecovery, ip)
}

// completeChallenge checks a second factor against the login challenge ch
// as one counted check (countedCheck): spend compares the factor and
// spends it (false for a wrong or already spent one, a failure). A right
// one spends the challenge, clears the user's failures and opens the
// session, in the same transaction, so nothing is consumed unless all is;
// a challenge spent meanwhile is invalid.
func (rl *Challenges) completeChallenge(ctx context.Context, ch Token, spend func(tx Store) (bool, error), wrong, ip string) (TokenPair, error) {
	var pair TokenPair
	err := rl.countedCheck(ctx, mfaCheck{userID: ch.UserID, ch: &ch, wrong: wrong}, spend, func(tx Store, u User) error {
		if _, err := tx.ConsumeToken(ctx, purposeMFALoginChallenge, ch.Token, time.Time{}); err != nil {
			return err
		}
		// Unlike the reference (behaviour.md 9.10), an account disabled
		// since the first factor gets no session; it is refused in login's
		// words, and nothing is spent.
		if !u.IsActive {
			return refuse(Unauthenticated, MsgNoActiveAccount)
		}
		// The failures before this success: the lock makes them all
		// settled ones, at most the limits' worth.
		if _, err := tx.DeleteUserTokens(ctx, u.ID, purposeMFAAttempt); err != nil {
			return err
		}
		if err := tx.SetLastLogin(ctx, u.ID, rl.now()); err != nil {
			return err
		}
		var err error
		pair, err = rl.openSession(ctx, tx, u, ip)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return TokenPair{}, refuse(Invalid, msgChallengeInvalid).because(ErrChallengeDead)
	}
	if err != nil {
		return TokenPair{}, err
	}
	rl.mfaOutcome(ctx, ch.UserID, wrong, ResultSuccess)
	return pair, nil
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

// SecondFactor is a second factor for a login challenge: the challenge
// id, the code (a TOTP code, or a recovery code with Recovery), and the
// body as decoded.
type SecondFactor struct {
	Form
	Challenge, Code string
	Recovery        bool
}

// Verify completes a login challenge (POST {prefix}/mfa/verify/ with a
// TOTP code, {prefix}/mfa/verify-recovery/ with a recovery code, which is
// spent) and opens the session.
func (rl *Challenges) Verify(ctx context.Context, o Origin, in SecondFactor) (TokenPair, error) {
	ctx = withOrigin(ctx, o)
	if err := rl.mfa.enabled(); err != nil {
		return TokenPair{}, err
	}
	if err := in.err(); err != nil {
		return TokenPair{}, err
	}
	if in.Recovery {
		return rl.verifyRecoveryChallenge(ctx, in.Challenge, in.Code, o.IP)
	}
	return rl.verifyTOTPChallenge(ctx, in.Challenge, in.Code, o.IP)
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
	if err := rl.liveSession(ctx, c); err != nil {
		return err
	}
	u, err := rl.store.UserByID(ctx, c.NumericUserID())
	if err != nil {
		return userGone(err)
	}
	ok, err := rl.checkPassword(ctx, u, in.Password, "mfa_deactivate")
	if err != nil {
		return err
	}
	if !ok {
		return refuse(Invalid, msgInvalidPassword)
	}
	n, err := rl.store.DeleteAuthenticators(ctx, u.ID)
	if err != nil {
		return err
	}
	if n == 0 {
		return refuse(Invalid, msgTOTPNotActivated)
	}
	return nil
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
	err = rl.challenges.countedCheck(ctx, check, func(tx Store) (bool, error) {
		return rl.challenges.spendTOTP(ctx, tx, uid, secret, in.Code)
	}, func(tx Store, _ User) error {
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
