package caddyauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/otpcode"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// Authenticator types.
const (
	authTOTP          = "totp"
	authRecoveryCodes = "recovery_codes"
)

// Messages of the MFA endpoints (mfa-totp-spec.txt, behaviour.md §5).
const (
	msgMFADisabled        = "MFA TOTP is disabled."
	msgMFARequired        = "MFA TOTP is required and cannot be disabled."
	msgSetupNotInitiated  = "Setup not initiated."
	msgTOTPActivated      = "TOTP already activated."
	msgTOTPNotActivated   = "TOTP not activated."
	msgInvalidCode        = "Invalid code."
	msgInvalidRecovery    = "Invalid recovery code."
	msgNoRecoveryCodes    = "Recovery codes not available."
	msgChallengeInvalid   = "Challenge expired or invalid."
	msgChallengeExhausted = "Too many failed attempts. Challenge invalidated."
	msgLockedOut          = "Too many failed MFA attempts. Try again later."
)

// errChallengeDead is the kind of a refusal after which the login challenge
// can no longer succeed: it is unknown or expired, spent its attempts, or
// the user's lockout killed it. A page starts the sign-in over.
var errChallengeDead = errors.New("the MFA challenge can no longer succeed")

// challengeDigest is how a challenge id is kept in the token table: its
// SHA-256 (as for link secrets), so a read of the database does not hand
// out live challenges.
func challengeDigest(id string) string { return linkDigest(id) }

// newChallenge stores a challenge of purpose for u and returns its id.
func (rl *realm) newChallenge(ctx context.Context, st account.Store, u account.User, purpose string) (string, error) {
	id, err := tokens.NewID(rl.rand)
	if err != nil {
		return "", err
	}
	_, err = st.CreateToken(ctx, account.Token{UserID: u.ID, Purpose: purpose, Token: challengeDigest(id), Created: rl.now()})
	return id, err
}

// findChallenge returns the live challenge row of purpose with this id.
func (rl *realm) findChallenge(ctx context.Context, purpose, id string) (account.Token, error) {
	if id == "" {
		return account.Token{}, account.ErrNotFound
	}
	return rl.store.FindToken(ctx, purpose, challengeDigest(id), rl.now().Add(-rl.policy.mfaChallengeTTL))
}

// totpAD binds a sealed TOTP secret to its user's authenticator row, and
// pendingAD a pending one to its user's setup row, so a sealed value copied
// to another row does not open.
func totpAD(userID int64) []byte    { return []byte("totp:" + strconv.FormatInt(userID, 10)) }
func pendingAD(userID int64) []byte { return []byte("totp-pending:" + strconv.FormatInt(userID, 10)) }

// mfaBootstrap is the answer that sends a user without TOTP to set it up in
// required mode: login, password reset and invitation set-password return
// it (with extra fields, e.g. `detail`) instead of tokens; sign-up builds
// its own (signupOutcome).
func (rl *realm) mfaBootstrap(ctx context.Context, u account.User, extra map[string]any) (map[string]any, error) {
	id, err := rl.newChallenge(ctx, rl.store, u, purposeMFASetupChallenge)
	if err != nil {
		return nil, err
	}
	body := map[string]any{"mfa_setup_required": true, "setup_challenge_id": id}
	for k, v := range extra {
		body[k] = v
	}
	return body, nil
}

// mfaGate runs after the first factor. It returns nil when the user may
// have a session now, or the payload to answer instead: a login challenge
// for a user with TOTP, or the setup bootstrap in required mode. A locked
// out user gets 429.
func (rl *realm) mfaGate(ctx context.Context, u account.User) (map[string]any, error) {
	if rl.policy.mfaMode == mfaDisabled {
		return nil, nil
	}
	hasTOTP, err := rl.hasTOTP(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	if !hasTOTP {
		if rl.policy.mfaMode == mfaRequired {
			return rl.mfaBootstrap(ctx, u, nil)
		}
		return nil, nil
	}
	// Login words the lockout as a DRF throttle, the wait in the message.
	if wait, err := rl.lockout(ctx, rl.store, u.ID); err != nil || wait > 0 {
		if err != nil {
			return nil, err
		}
		return nil, errThrottled(msgLockedOut, wait)
	}
	id, err := rl.newChallenge(ctx, rl.store, u, purposeMFALoginChallenge)
	if err != nil {
		return nil, err
	}
	return map[string]any{"mfa_required": true, "challenge_id": id}, nil
}

func (rl *realm) hasTOTP(ctx context.Context, userID int64) (bool, error) {
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

func (rl *realm) totpAuthenticator(ctx context.Context, userID int64) (account.Authenticator, error) {
	auths, err := rl.store.Authenticators(ctx, userID)
	if err != nil {
		return account.Authenticator{}, err
	}
	for _, a := range auths {
		if a.Type == authTOTP {
			return a, nil
		}
	}
	return account.Authenticator{}, account.ErrNotFound
}

// userTOTPSecret returns the user's TOTP secret. A user without a TOTP
// authenticator is told it is not activated.
func (rl *realm) userTOTPSecret(ctx context.Context, userID int64) (string, error) {
	auth, err := rl.totpAuthenticator(ctx, userID)
	if errors.Is(err, account.ErrNotFound) {
		return "", errDetail(http.StatusBadRequest, msgTOTPNotActivated)
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
func (rl *realm) spendTOTP(ctx context.Context, tx account.Store, userID int64, secret, code string) (bool, error) {
	step, ok := otpcode.MatchTOTP(secret, code, rl.now(), rl.policy.totpSkew)
	if !ok {
		return false, nil
	}
	return tx.AdvanceTOTPStep(ctx, userID, step, rl.now())
}

// recentFailures returns the user's MFA failures inside the lockout
// window, oldest first, as st sees them.
func (rl *realm) recentFailures(ctx context.Context, st account.Store, userID int64) ([]account.Token, error) {
	return st.UserTokens(ctx, userID, purposeMFAAttempt, rl.now().Add(-rl.policy.mfaLockout))
}

// lockoutSeconds returns how long, in whole seconds (at least 1), the user
// stays locked out given their failures inside the window: until the
// oldest of the last mfa_max_attempts leaves it. 0 means not locked out.
func (rl *realm) lockoutSeconds(failures []account.Token) int {
	limit := rl.policy.mfaUserMax
	if limit <= 0 || len(failures) < limit {
		return 0
	}
	oldest := failures[len(failures)-limit].Created
	wait := oldest.Add(rl.policy.mfaLockout).Sub(rl.now())
	return max(1, int((wait+time.Second-1)/time.Second))
}

// lockout returns how long the user stays locked out of MFA, 0 when they
// are not, as st sees it.
func (rl *realm) lockout(ctx context.Context, st account.Store, userID int64) (int, error) {
	failures, err := rl.recentFailures(ctx, st, userID)
	if err != nil {
		return 0, err
	}
	return rl.lockoutSeconds(failures), nil
}

// errMFALockedOut is the 429 of the MFA endpoints: the bare message and
// Retry-After, as the reference words it there (login words it as a DRF
// throttle instead, see mfaGate).
func errMFALockedOut(wait int) *apiError {
	e := errDetail(http.StatusTooManyRequests, msgLockedOut).because(errChallengeDead)
	e.retryAfter = wait
	return e
}

// checkLockout answers 429 while the user is locked out of MFA, as st
// sees it.
func (rl *realm) checkLockout(ctx context.Context, st account.Store, userID int64) error {
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
	ch     *account.Token
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
func (rl *realm) countedCheck(ctx context.Context, c mfaCheck, compare func(tx account.Store) (bool, error), done func(tx account.Store, u account.User) error) error {
	var wrong error
	failed, locked := false, false
	err := rl.store.InTx(ctx, func(tx account.Store) error {
		wrong, failed, locked = nil, false, false
		// The user's row is locked first, as every transaction that locks
		// it does, so that none waits for another in a cycle.
		u, err := tx.UserForUpdate(ctx, c.userID)
		if err != nil {
			return err
		}
		if c.ch != nil {
			if _, err := tx.FindToken(ctx, purposeMFALoginChallenge, c.ch.Token, rl.now().Add(-rl.policy.mfaChallengeTTL)); err != nil {
				return err
			}
		}
		if err := rl.checkLockout(ctx, tx, c.userID); err != nil {
			return err
		}
		if limit := rl.policy.mfaChallengeMax; limit > 0 && c.ch != nil {
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
				wrong = errDetail(http.StatusBadRequest, msgChallengeExhausted).because(errChallengeDead)
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
	rl.mfaOutcome(ctx, c.userID, c.wrong, resultFailure)
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
// and, with a challenge, against it, and returns the answer: 429 when
// this failure locks the user out (every live login challenge of the
// user dies; locked is true), the invalidation message when it spends the
// challenge's budget (the challenge dies), else c.wrong. Without a
// challenge (regeneration) there is no challenge budget and the row is
// keyed by c.what, so it counts only towards the user's.
func (rl *realm) recordFailure(ctx context.Context, tx account.Store, c mfaCheck) (answer error, locked bool, err error) {
	key := c.what
	if c.ch != nil {
		key = c.ch.Token
	}
	if _, err := tx.CreateToken(ctx, account.Token{UserID: c.userID, Purpose: purposeMFAAttempt, Token: key, Created: rl.now()}); err != nil {
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
	if limit := rl.policy.mfaChallengeMax; limit > 0 && c.ch != nil {
		n, err := tx.CountTokens(ctx, purposeMFAAttempt, c.ch.Token, c.ch.Created)
		if err != nil {
			return nil, false, err
		}
		if n >= limit {
			if _, err := tx.DeleteToken(ctx, purposeMFALoginChallenge, c.ch.Token); err != nil {
				return nil, false, err
			}
			return errDetail(http.StatusBadRequest, msgChallengeExhausted).because(errChallengeDead), false, nil
		}
	}
	return errDetail(http.StatusBadRequest, c.wrong), false, nil
}

// mfaEnabled answers 403 when MFA is disabled.
func (h *Handler) mfaEnabled() error {
	if h.realm.policy.mfaMode == mfaDisabled {
		return errDetail(http.StatusForbidden, msgMFADisabled)
	}
	return nil
}

// mfaSubject finds who a setup or activation call is for: the bearer of a
// valid access token, or, without one, the owner of a live setup
// challenge named in the body. It also returns the challenge row, if any.
func (h *Handler) mfaSubject(r *http.Request, f *form) (account.User, *account.Token, error) {
	rl := h.realm
	ctx := r.Context()
	var uid int64
	if bearerToken(r) != "" {
		c, err := rl.liveAccess(ctx, bearerToken(r))
		if err != nil {
			return account.User{}, nil, err
		}
		uid = c.NumericUserID()
	}
	var ch *account.Token
	id := f.Str("setup_challenge_id", false, true)
	if err := f.err(); err != nil {
		// Not a string: refused like any wrong type, not ignored.
		return account.User{}, nil, err
	}
	if id != "" {
		t, err := rl.findChallenge(ctx, purposeMFASetupChallenge, id)
		switch {
		case errors.Is(err, account.ErrNotFound):
			if uid == 0 {
				return account.User{}, nil, errNotAuthenticated()
			}
		case err != nil:
			return account.User{}, nil, err
		case uid != 0 && t.UserID != uid:
			return account.User{}, nil, errNotAuthenticated()
		default:
			ch, uid = &t, t.UserID
		}
	}
	if uid == 0 {
		return account.User{}, nil, errNotAuthenticated()
	}
	u, err := rl.store.UserByID(ctx, uid)
	if errors.Is(err, account.ErrNotFound) || (err == nil && !u.IsActive) {
		return account.User{}, nil, errTokenNotValid(msgTokenInvalid)
	}
	return u, ch, err
}

// mfaSetup answers POST {prefix}/mfa/setup/: a new pending secret (it
// replaces any earlier one), its provisioning URI and a scannable QR code.
func (h *Handler) mfaSetup(w http.ResponseWriter, r *http.Request) error {
	f, err := readForm(w, r)
	if err != nil {
		return err
	}
	u, ch, err := h.mfaSubject(r, f)
	if err != nil {
		return err
	}
	if err := h.mfaEnabled(); err != nil {
		return err
	}
	if err := h.enrolmentAllowed(r, f, u, ch); err != nil {
		return err
	}
	setup, err := h.realm.beginTOTPSetup(r.Context(), u, h.realm.totpIssuerFor(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"secret": setup.secret, "provisioning_uri": setup.uri, "qr_code": setup.qr})
}

// totpSetup is a new pending TOTP secret as the user is shown it.
type totpSetup struct {
	secret, uri, qr string
}

// beginTOTPSetup stores a new pending secret for u (replacing any earlier
// one) and returns it with its provisioning URI and QR code (SVG).
func (rl *realm) beginTOTPSetup(ctx context.Context, u account.User, issuer string) (totpSetup, error) {
	if has, err := rl.hasTOTP(ctx, u.ID); err != nil || has {
		if err != nil {
			return totpSetup{}, err
		}
		return totpSetup{}, errDetail(http.StatusBadRequest, msgTOTPActivated)
	}
	secret, err := otpcode.NewTOTPSecret(rl.rand)
	if err != nil {
		return totpSetup{}, err
	}
	sealed, err := rl.secrets.Seal([]byte(secret), pendingAD(u.ID), rl.rand)
	if err != nil {
		return totpSetup{}, err
	}
	if _, err := rl.store.ReplaceToken(ctx, account.Token{UserID: u.ID, Purpose: purposeMFASetupSecret, Token: base64.StdEncoding.EncodeToString(sealed), Created: rl.now()}); err != nil {
		return totpSetup{}, err
	}
	uri := otpcode.ProvisioningURI(issuer, u.Email, secret)
	qr, err := otpcode.QRSVG(uri)
	if err != nil {
		return totpSetup{}, err
	}
	return totpSetup{secret: secret, uri: uri, qr: qr}, nil
}

// totpIssuerFor applies the issuer priority: totp_issuer when set
// non-empty ("JWT-Allauth" when absent); when set empty, site_name, else
// the request host.
func (rl *realm) totpIssuerFor(r *http.Request) string {
	if rl.policy.totpIssuer != "" {
		return rl.policy.totpIssuer
	}
	if rl.policy.siteName != "" {
		return rl.policy.siteName
	}
	host := r.Host
	if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	return host
}

// pendingSecret returns the user's live pending TOTP secret.
func (rl *realm) pendingSecret(ctx context.Context, userID int64) (string, error) {
	rows, err := rl.store.UserTokens(ctx, userID, purposeMFASetupSecret, rl.now().Add(-rl.policy.mfaChallengeTTL))
	if err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", account.ErrNotFound
	}
	sealed, err := base64.StdEncoding.DecodeString(rows[len(rows)-1].Token)
	if err != nil {
		return "", err
	}
	secret, err := rl.secrets.Open(sealed, pendingAD(userID))
	return string(secret), err
}

// codeField reads the `code` field: exactly 6 characters after trimming.
func codeField(f *form) string {
	code := f.Str("code", true, true)
	if code != "" && len(code) < 6 {
		f.Fail("code", "Ensure this field has at least 6 characters.")
	} else if len(code) > 6 {
		f.Fail("code", "Ensure this field has no more than 6 characters.")
	}
	return code
}

// mfaActivate answers POST {prefix}/mfa/activate/: the current code of the
// pending secret turns it into the user's TOTP authenticator and returns a
// fresh set of recovery codes. With a setup challenge in required mode it
// also opens the session the bootstrap held back.
func (h *Handler) mfaActivate(w http.ResponseWriter, r *http.Request) error {
	f, err := readForm(w, r)
	if err != nil {
		return err
	}
	u, ch, err := h.mfaSubject(r, f)
	if err != nil {
		return err
	}
	if err := h.mfaEnabled(); err != nil {
		return err
	}
	code := codeField(f)
	if err := f.err(); err != nil {
		return err
	}
	if err := h.enrolmentAllowed(r, f, u, ch); err != nil {
		return err
	}
	rl := h.realm
	act, err := rl.activateTOTP(r.Context(), u, ch, code, clientIP(r))
	if err != nil {
		return err
	}
	body := map[string]any{"success": true, "recovery_codes": act.codes}
	if !act.opened {
		return writeJSON(w, http.StatusOK, body)
	}
	return h.writeTokens(w, http.StatusOK, act.pair, body)
}

// activation is the outcome of a TOTP activation: the new recovery codes
// and, when it opened the session the required-mode bootstrap held back,
// that session.
type activation struct {
	codes  []string
	opened bool
	pair   tokenPair
}

// activateTOTP turns u's pending secret into the TOTP authenticator when
// code is its current code, with a fresh set of recovery codes. ch is the
// setup challenge the caller came with, if any. Under mandatory
// verification a setup challenge exists only for a confirmed address (a
// sign-up's is held back until then, see confirmAddress), so the session
// it opens is a full one.
func (rl *realm) activateTOTP(ctx context.Context, u account.User, ch *account.Token, code, ip string) (activation, error) {
	secret, err := rl.pendingSecret(ctx, u.ID)
	if errors.Is(err, account.ErrNotFound) {
		return activation{}, errDetail(http.StatusBadRequest, msgSetupNotInitiated)
	}
	if err != nil {
		return activation{}, err
	}
	step, ok := otpcode.MatchTOTP(secret, code, rl.now(), rl.policy.totpSkew)
	if !ok {
		return activation{}, errDetail(http.StatusBadRequest, msgInvalidCode)
	}
	codes, hashes, err := otpcode.NewRecoveryCodes(rl.rand)
	if err != nil {
		return activation{}, err
	}
	sealed, err := rl.secrets.Seal([]byte(secret), totpAD(u.ID), rl.rand)
	if err != nil {
		return activation{}, err
	}
	openSession := ch != nil && rl.policy.mfaMode == mfaRequired
	var pair tokenPair
	now := rl.now()
	err = rl.store.InTx(ctx, func(tx account.Store) error {
		// The row as it is now, locked first (as every transaction that
		// locks it does): the session below carries it.
		cur, err := tx.UserForUpdate(ctx, u.ID)
		if err != nil {
			return err
		}
		if _, err := tx.CreateAuthenticator(ctx, account.Authenticator{UserID: u.ID, Type: authTOTP, Data: sealed, LastStep: step, CreatedAt: now}); err != nil {
			return err
		}
		if _, err := tx.DeleteAuthenticators(ctx, u.ID, authRecoveryCodes); err != nil {
			return err
		}
		if _, err := tx.CreateAuthenticator(ctx, account.Authenticator{UserID: u.ID, Type: authRecoveryCodes, CreatedAt: now}); err != nil {
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
			return errDetail(http.StatusUnauthorized, msgNoActiveAccount)
		}
		if err := tx.SetLastLogin(ctx, cur.ID, now); err != nil {
			return err
		}
		pair, err = rl.openSession(ctx, tx, cur, true, ip)
		return err
	})
	switch {
	case errors.Is(err, account.ErrConflict):
		return activation{}, errDetail(http.StatusBadRequest, msgTOTPActivated)
	case errors.Is(err, account.ErrNotFound):
		// The setup challenge was spent by a concurrent activation.
		return activation{}, errNotAuthenticated()
	case err != nil:
		return activation{}, err
	}
	return activation{codes: codes, opened: openSession, pair: pair}, nil
}

// loginChallenge counts the client address ip towards the mfa_verify_ip
// throttle, then finds and checks the challenge of a verify call: the
// order of checks is the reference's (body, challenge, lockout).
func (rl *realm) loginChallenge(ctx context.Context, id, ip string) (account.Token, error) {
	if err := rl.throttle(ctx, throttleMFAVerifyIP, rl.clientKey(ip)); err != nil {
		return account.Token{}, err
	}
	ch, err := rl.findChallenge(ctx, purposeMFALoginChallenge, id)
	if errors.Is(err, account.ErrNotFound) {
		return account.Token{}, errDetail(http.StatusBadRequest, msgChallengeInvalid).because(errChallengeDead)
	}
	if err != nil {
		return account.Token{}, err
	}
	return ch, rl.checkLockout(ctx, rl.store, ch.UserID)
}

// mfaVerify answers POST {prefix}/mfa/verify/: a login challenge and the
// current TOTP code open the session.
func (h *Handler) mfaVerify(w http.ResponseWriter, r *http.Request) error {
	return h.verifyLoginChallenge(w, r, codeField, (*realm).verifyTOTPChallenge)
}

// mfaVerifyRecovery answers POST {prefix}/mfa/verify-recovery/: a login
// challenge and one unused recovery code open the session; the code is
// spent.
func (h *Handler) mfaVerifyRecovery(w http.ResponseWriter, r *http.Request) error {
	return h.verifyLoginChallenge(w, r, func(f *form) string {
		return f.Str("recovery_code", true, true)
	}, (*realm).verifyRecoveryChallenge)
}

// verifyLoginChallenge answers a verify call: the form's challenge_id and
// the second factor that readCode reads go to verify, and the session it
// opens is written out.
func (h *Handler) verifyLoginChallenge(w http.ResponseWriter, r *http.Request, readCode func(*form) string,
	verify func(rl *realm, ctx context.Context, challengeID, code, ip string) (tokenPair, error)) error {
	if err := h.mfaEnabled(); err != nil {
		return err
	}
	f, err := readForm(w, r)
	if err != nil {
		return err
	}
	id := f.Str("challenge_id", true, true)
	code := readCode(f)
	if err := f.err(); err != nil {
		return err
	}
	pair, err := verify(h.realm, r.Context(), id, code, clientIP(r))
	if err != nil {
		return err
	}
	return h.writeTokens(w, http.StatusOK, pair, nil)
}

// verifyTOTPChallenge completes a login challenge with a TOTP code. Each
// time step is accepted once per user: the last accepted step is stored
// and only moves forward, so a code cannot be replayed, on this node or
// another, before or after a restart. The client address ip counts
// towards the mfa_verify_ip throttle first.
func (rl *realm) verifyTOTPChallenge(ctx context.Context, challengeID, code, ip string) (tokenPair, error) {
	ch, err := rl.loginChallenge(ctx, challengeID, ip)
	if err != nil {
		return tokenPair{}, err
	}
	secret, err := rl.userTOTPSecret(ctx, ch.UserID)
	if err != nil {
		return tokenPair{}, err
	}
	return rl.completeChallenge(ctx, ch, func(tx account.Store) (bool, error) {
		return rl.spendTOTP(ctx, tx, ch.UserID, secret, code)
	}, msgInvalidCode, ip)
}

// verifyRecoveryChallenge completes a login challenge with a recovery
// code, spending it. The client address ip counts towards the
// mfa_verify_ip throttle first, as for a TOTP code.
func (rl *realm) verifyRecoveryChallenge(ctx context.Context, challengeID, code, ip string) (tokenPair, error) {
	ch, err := rl.loginChallenge(ctx, challengeID, ip)
	if err != nil {
		return tokenPair{}, err
	}
	n, err := rl.store.CountRecoveryCodes(ctx, ch.UserID)
	if err != nil {
		return tokenPair{}, err
	}
	if n == 0 {
		return tokenPair{}, errDetail(http.StatusBadRequest, msgNoRecoveryCodes)
	}
	normalised, wellFormed := otpcode.NormaliseRecoveryCode(code)
	return rl.completeChallenge(ctx, ch, func(tx account.Store) (bool, error) {
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
func (rl *realm) completeChallenge(ctx context.Context, ch account.Token, spend func(tx account.Store) (bool, error), wrong, ip string) (tokenPair, error) {
	var pair tokenPair
	err := rl.countedCheck(ctx, mfaCheck{userID: ch.UserID, ch: &ch, wrong: wrong}, spend, func(tx account.Store, u account.User) error {
		if _, err := tx.ConsumeToken(ctx, purposeMFALoginChallenge, ch.Token, time.Time{}); err != nil {
			return err
		}
		// Unlike the reference (behaviour.md 9.10), an account disabled
		// since the first factor gets no session; it is refused in login's
		// words, and nothing is spent.
		if !u.IsActive {
			return errDetail(http.StatusUnauthorized, msgNoActiveAccount)
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
		pair, err = rl.openSession(ctx, tx, u, true, ip)
		return err
	})
	if errors.Is(err, account.ErrNotFound) {
		return tokenPair{}, errDetail(http.StatusBadRequest, msgChallengeInvalid).because(errChallengeDead)
	}
	if err != nil {
		return tokenPair{}, err
	}
	rl.mfaOutcome(ctx, ch.UserID, wrong, resultSuccess)
	return pair, nil
}

// mfaDeactivate answers POST {prefix}/mfa/deactivate/: with the password,
// the user's TOTP and recovery codes are removed (optional mode only).
func (h *Handler) mfaDeactivate(w http.ResponseWriter, r *http.Request) error {
	c, err := h.authenticated(r)
	if err != nil {
		return err
	}
	if err := h.mfaEnabled(); err != nil {
		return err
	}
	rl := h.realm
	if rl.policy.mfaMode == mfaRequired {
		return errDetail(http.StatusForbidden, msgMFARequired)
	}
	f, err := readForm(w, r)
	if err != nil {
		return err
	}
	password := f.Str("password", true, false)
	if err := f.err(); err != nil {
		return err
	}
	ctx := r.Context()
	if err := rl.liveSession(ctx, c); err != nil {
		return err
	}
	u, err := rl.store.UserByID(ctx, c.NumericUserID())
	if errors.Is(err, account.ErrNotFound) {
		return errTokenNotValid(msgTokenInvalid)
	}
	if err != nil {
		return err
	}
	ok, err := rl.checkPassword(r, u, password, "mfa_deactivate")
	if err != nil {
		return err
	}
	if !ok {
		return errDetail(http.StatusBadRequest, "Invalid password.")
	}
	n, err := rl.store.DeleteAuthenticators(ctx, u.ID)
	if err != nil {
		return err
	}
	if n == 0 {
		return errDetail(http.StatusBadRequest, msgTOTPNotActivated)
	}
	return writeJSON(w, http.StatusOK, map[string]bool{"success": true})
}

// mfaAuthenticators answers GET {prefix}/mfa/authenticators/: the caller's
// factors, oldest first.
func (h *Handler) mfaAuthenticators(w http.ResponseWriter, r *http.Request) error {
	c, err := h.authenticated(r)
	if err != nil {
		return err
	}
	if err := h.mfaEnabled(); err != nil {
		return err
	}
	auths, err := h.realm.store.Authenticators(r.Context(), c.NumericUserID())
	if err != nil {
		return err
	}
	list := make([]map[string]any, 0, len(auths))
	for _, a := range auths {
		var lastUsed any
		if !a.LastUsedAt.IsZero() {
			lastUsed = a.LastUsedAt.UTC().Format(time.RFC3339Nano)
		}
		list = append(list, map[string]any{
			"id":           a.ID,
			"type":         a.Type,
			"created_at":   a.CreatedAt.UTC().Format(time.RFC3339Nano),
			"last_used_at": lastUsed,
		})
	}
	return writeJSON(w, http.StatusOK, list)
}

// mfaRegenerateRecovery answers POST {prefix}/mfa/recovery-codes/regenerate/:
// with a current TOTP code, a new set of recovery codes replaces the old.
func (h *Handler) mfaRegenerateRecovery(w http.ResponseWriter, r *http.Request) error {
	c, err := h.authenticated(r)
	if err != nil {
		return err
	}
	if err := h.mfaEnabled(); err != nil {
		return err
	}
	f, err := readForm(w, r)
	if err != nil {
		return err
	}
	code := codeField(f)
	if err := f.err(); err != nil {
		return err
	}
	rl := h.realm
	ctx := r.Context()
	if err := rl.liveSession(ctx, c); err != nil {
		return err
	}
	uid := c.NumericUserID()
	if err := rl.checkLockout(ctx, rl.store, uid); err != nil {
		return err
	}
	secret, err := rl.userTOTPSecret(ctx, uid)
	if err != nil {
		return err
	}
	codes, hashes, err := otpcode.NewRecoveryCodes(rl.rand)
	if err != nil {
		return err
	}
	// A wrong (or replayed) code counts against the user's budget, as on
	// verify; there is no challenge to invalidate.
	check := mfaCheck{userID: uid, what: "recovery-codes/regenerate", wrong: msgInvalidCode}
	err = rl.countedCheck(ctx, check, func(tx account.Store) (bool, error) {
		return rl.spendTOTP(ctx, tx, uid, secret, code)
	}, func(tx account.Store, _ account.User) error {
		if _, err := tx.DeleteAuthenticators(ctx, uid, authRecoveryCodes); err != nil {
			return err
		}
		if _, err := tx.CreateAuthenticator(ctx, account.Authenticator{UserID: uid, Type: authRecoveryCodes, CreatedAt: rl.now()}); err != nil {
			return err
		}
		return tx.ReplaceRecoveryCodes(ctx, uid, hashes)
	})
	if errors.Is(err, account.ErrNotFound) {
		// The account is gone.
		return errTokenNotValid(msgTokenInvalid)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
}
