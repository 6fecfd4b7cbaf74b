package account

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/otpcode"
)

// Challenges is the second step of a login: the MFA gate after the
// password, the login challenges it opens, the checks of TOTP and
// recovery codes against them, and the failure limits and lockout those
// checks count towards.
type Challenges struct{ *core }

// gate runs after the first factor. It returns a Step that is not
// Pending when the user may have a session now, else the second step: a
// login challenge for a user with TOTP or passkeys (locked ones too: the
// challenge then names the recovery codes only), or, in required mode, the setup
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
	hasPasskey, usablePasskey, err := rl.passkeyFactor(ctx, u.ID)
	if err != nil {
		return Step{}, err
	}
	if !hasTOTP && !hasPasskey {
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
	var methods Methods
	if hasTOTP {
		methods |= WithTOTP
	}
	if n, err := rl.store.CountRecoveryCodes(ctx, u.ID); err == nil && n > 0 {
		methods |= WithRecoveryCodes
	}
	if usablePasskey {
		methods |= WithPasskey
	}
	return Step{Challenge: id, Methods: methods}, err
}

// factor is a second-factor code as a counted check compares it (see
// countedCheck): spend compares it through the check's transaction and
// spends it when it is right (false for a wrong or already spent one).
// Hopeless says it was found wrong before the transaction, whatever the
// store holds (a TOTP code that matches no step of the window, a
// malformed recovery code): spend then returns false without a query.
type factor struct {
	spend    func(tx Store) (bool, error)
	hopeless bool
}

// totpFactor compares code with secret now, before the check's
// transaction, and returns the factor that spends it: a code that
// matches moves the user's last accepted step to its step, and is false
// when that step is already used (replay).
func (rl *Challenges) totpFactor(ctx context.Context, userID int64, secret, code string) factor {
	step, ok := otpcode.MatchTOTP(secret, code, rl.now(), rl.policy.TOTPSkew)
	return factor{hopeless: !ok, spend: func(tx Store) (bool, error) {
		if !ok {
			return false, nil
		}
		return tx.AdvanceTOTPStep(ctx, userID, step, rl.now())
	}}
}

// recoveryFactor is the factor of a recovery code: a well-formed one is
// looked up and spent, a malformed one is hopeless.
func (rl *Challenges) recoveryFactor(ctx context.Context, userID int64, code string) factor {
	normalised, wellFormed := otpcode.NormaliseRecoveryCode(code)
	return factor{hopeless: !wellFormed, spend: func(tx Store) (bool, error) {
		if !wellFormed {
			return false, nil
		}
		return tx.ConsumeRecoveryCode(ctx, userID, otpcode.HashRecoveryCode(normalised), rl.now())
	}}
}

// recentFailures returns when the user's newest MFA failures inside the
// lockout window were made, newest first, as st sees them: at most
// mfa_max_attempts of them however many the user has, none when there is
// no limit.
func (rl *Challenges) recentFailures(ctx context.Context, st Store, userID int64) ([]time.Time, error) {
	if rl.policy.MFAUserMax <= 0 {
		return nil, nil
	}
	return st.NewestTokens(ctx, userID, purposeMFAAttempt, rl.now().Add(-rl.policy.MFALockout), rl.policy.MFAUserMax)
}

// lockoutSeconds returns how long, in whole seconds (at least 1), the
// user stays locked out given recent, their newest failures (see
// recentFailures): until the oldest of the last mfa_max_attempts leaves
// the window. 0 means not locked out.
func (rl *Challenges) lockoutSeconds(recent []time.Time) int {
	limit := rl.policy.MFAUserMax
	if limit <= 0 || len(recent) < limit {
		return 0
	}
	wait := recent[limit-1].Add(rl.policy.MFALockout).Sub(rl.now())
	return max(1, int((wait+time.Second-1)/time.Second))
}

// lockout returns how long the user stays locked out of MFA, 0 when they
// are not, as st sees it.
func (rl *Challenges) lockout(ctx context.Context, st Store, userID int64) (int, error) {
	recent, err := rl.recentFailures(ctx, st, userID)
	if err != nil {
		return 0, err
	}
	return rl.lockoutSeconds(recent), nil
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
// compares (and spends) the factor f; a right one runs done with the
// locked user, a wrong one is recorded as a failure (recordFailure) and
// answered. Every check of one user, on this node or another, waits for
// the one before it, so however many arrive at once, at most
// mfa_challenge_max_attempts codes are compared for one challenge and at
// most mfa_max_attempts for the user in the window, each answered as if
// it had come alone. The order of the refusals is the reference's
// (challenge, lockout); callers check the same before, outside the
// lock, so that a refusal that needs no lock waits for none. ErrNotFound
// means the user or the challenge is gone.
//
// The user's lock is released at the commit, so a flush to disk there
// would hold every other check of the user for its duration: a hopeless
// factor's transaction, which can only write a failure (and end
// challenges), commits without one (Store.CommitUnflushed). That is
// asked before the lock is waited for, so it adds no round trip while the
// lock is held. Only a crash of the database server before its next
// flush can then lose what it wrote, which gives back one guess per
// failure lost.
func (rl *Challenges) countedCheck(ctx context.Context, c mfaCheck, f factor, done func(tx Store, u User) error) error {
	var wrong error
	failed, locked := false, false
	err := rl.store.InTx(ctx, func(tx Store) error {
		wrong, failed, locked = nil, false, false
		if f.hopeless {
			if err := tx.CommitUnflushed(ctx); err != nil {
				return err
			}
		}
		// The user's row is locked first, as every transaction that locks
		// it does, so that none waits for another in a cycle.
		u, err := tx.UserForUpdate(ctx, c.userID)
		if err != nil {
			return err
		}
		// What the limits stand at, read once: the lock keeps them so
		// until the outcome is written. Whether the challenge is still
		// live is asked before anything is compared or refused, the
		// challenge's refusal coming first, except for a hopeless
		// factor on its way to a failure: its failure row is written
		// only while the challenge is live (recordFailure), one round
		// trip less while the lock is held. A factor that could be right
		// is never compared against a dead challenge, so no answer's
		// timing tells a right code from a wrong one there.
		var counts failures
		if counts.recent, err = rl.recentFailures(ctx, tx, c.userID); err != nil {
			return err
		}
		if wait := rl.lockoutSeconds(counts.recent); wait > 0 {
			if err := rl.liveChallenge(ctx, tx, c); err != nil {
				return err
			}
			return errMFALockedOut(wait)
		}
		if !f.hopeless {
			if err := rl.liveChallenge(ctx, tx, c); err != nil {
				return err
			}
		}
		if limit := rl.policy.MFAChallengeMax; limit > 0 && c.ch != nil {
			n, err := tx.CountTokens(ctx, purposeMFAAttempt, c.ch.Token, c.ch.Created)
			if err != nil {
				return err
			}
			counts.onChallenge = n
			// Reached only when the limit is lower than when those
			// failures were answered (a reload, or another node's
			// configuration): the failure that reaches it ends the
			// challenge in its own transaction.
			if n >= limit {
				if f.hopeless {
					if err := rl.liveChallenge(ctx, tx, c); err != nil {
						return err
					}
				} else if err := tx.CommitUnflushed(ctx); err != nil {
					// As a hopeless factor's commit: this answer must
					// not take longer for a code that could be right.
					return err
				}
				if _, err := tx.DeleteToken(ctx, purposeMFALoginChallenge, c.ch.Token); err != nil {
					return err
				}
				wrong = refuse(Invalid, msgChallengeExhausted).because(ErrChallengeDead)
				return nil
			}
		}
		ok, err := f.spend(tx)
		if err != nil {
			return err
		}
		if ok {
			return done(tx, u)
		}
		failed = true
		wrong, locked, err = rl.recordFailure(ctx, tx, c, counts)
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
	// between two purges (the reference's scenario F10): at most once a
	// second per node, so that a flood of wrong codes does not pay a
	// second write for each. Outside the lock: the rows are other users'
	// too.
	if now := rl.now(); rl.attemptsPurged.due(now) {
		if _, err := rl.store.PurgeTokens(ctx, purposeMFAAttempt, now.Add(-rl.attemptRetention())); err != nil {
			return err
		}
	}
	return wrong
}

// challengeNotBefore is when the oldest login challenge still live was
// made (as findChallenge counts).
func (rl *Challenges) challengeNotBefore() time.Time {
	return rl.now().Add(-rl.policy.MFAChallengeTTL)
}

// liveChallenge returns ErrNotFound when the login challenge of c is no
// longer live, nil when it is or c has none.
func (rl *Challenges) liveChallenge(ctx context.Context, tx Store, c mfaCheck) error {
	if c.ch == nil {
		return nil
	}
	_, err := tx.FindToken(ctx, purposeMFALoginChallenge, c.ch.Token, rl.challengeNotBefore())
	return err
}

// failures are the counts a check is made against, read under the
// user's lock before the code is compared: the user's newest failures
// inside the lockout window (recentFailures) and, when the challenge has
// a budget, the failures against it.
type failures struct {
	recent      []time.Time
	onChallenge int
}

// recordFailure writes, through tx, one failed check c against the user
// and, with a challenge, against it, and returns the answer, worked out
// from f, what the limits stood at before (the user's lock keeps any
// other failure from being written meanwhile): the lockout when this
// failure locks the user out (every live login challenge of the user
// dies; locked is true), the invalidation message when it spends the
// challenge's budget (the challenge dies), else c.wrong. With a
// challenge the row is written only while the challenge is live,
// ErrNotFound otherwise. Without a challenge (regeneration) there is no
// challenge budget and the row is keyed by c.what, so it counts only
// towards the user's.
func (rl *Challenges) recordFailure(ctx context.Context, tx Store, c mfaCheck, f failures) (answer error, locked bool, err error) {
	now := rl.now()
	row := Token{UserID: c.userID, Purpose: purposeMFAAttempt, Token: c.what, Created: now}
	if c.ch != nil {
		row.Token = c.ch.Token
		_, err = tx.CreateTokenWhile(ctx, row, purposeMFALoginChallenge, c.ch.Token, rl.challengeNotBefore())
	} else {
		_, err = tx.CreateToken(ctx, row)
	}
	if err != nil {
		return nil, false, err
	}
	if wait := rl.lockoutSeconds(append([]time.Time{now}, f.recent...)); wait > 0 {
		if _, err := tx.DeleteUserTokens(ctx, c.userID, purposeMFALoginChallenge); err != nil {
			return nil, false, err
		}
		return errMFALockedOut(wait), true, nil
	}
	if limit := rl.policy.MFAChallengeMax; limit > 0 && c.ch != nil && f.onChallenge+1 >= limit {
		if _, err := tx.DeleteToken(ctx, purposeMFALoginChallenge, c.ch.Token); err != nil {
			return nil, false, err
		}
		return refuse(Invalid, msgChallengeExhausted).because(ErrChallengeDead), false, nil
	}
	return refuse(Invalid, c.wrong), false, nil
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
	return rl.completeChallenge(ctx, ch, rl.totpFactor(ctx, ch.UserID, secret, code), msgInvalidCode, ip)
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
	return rl.completeChallenge(ctx, ch, rl.recoveryFactor(ctx, ch.UserID, code), msgInvalidRecovery, ip)
}

// completeChallenge checks a second factor against the login challenge ch
// as one counted check of f (countedCheck). A right
// one spends the challenge, clears the user's failures and opens the
// session, in the same transaction, so nothing is consumed unless all is;
// a challenge spent meanwhile is invalid.
func (rl *Challenges) completeChallenge(ctx context.Context, ch Token, f factor, wrong, ip string) (TokenPair, error) {
	var pair TokenPair
	err := rl.countedCheck(ctx, mfaCheck{userID: ch.UserID, ch: &ch, wrong: wrong}, f, func(tx Store, u User) error {
		if _, err := tx.ConsumeToken(ctx, purposeMFALoginChallenge, ch.Token, rl.challengeNotBefore()); err != nil {
			return err
		}
		// Unlike the reference, an account disabled
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
		if err := rl.social.completePendingLinks(ctx, tx, &u, ch); err != nil {
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

// SecondFactor is a second factor for a login challenge: the challenge
// id, the code (a TOTP code, or a recovery code with Recovery), and the
// body as decoded.
type SecondFactor struct {
	Form
	Challenge, Code string
	Recovery        bool
	// Passkey is a passkey's assertion (the browser's JSON) instead of a
	// code.
	Passkey []byte
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
	if in.Passkey != nil {
		return rl.verifyPasskeyChallenge(ctx, in.Challenge, in.Passkey, o.IP)
	}
	if in.Recovery {
		return rl.verifyRecoveryChallenge(ctx, in.Challenge, in.Code, o.IP)
	}
	return rl.verifyTOTPChallenge(ctx, in.Challenge, in.Code, o.IP)
}

// onceASecond lets one caller in per second of the realm's clock, however
// many ask at once.
type onceASecond struct{ last atomic.Int64 }

// due reports whether a second has passed at now since the last caller it
// let in, or the clock was set back before that, and lets this one in
// when so: a clock set back does not hold the callers off until it is
// past the last one again.
func (o *onceASecond) due(now time.Time) bool {
	last, n := o.last.Load(), now.UnixNano()
	return (n-last >= int64(time.Second) || n < last) && o.last.CompareAndSwap(last, n)
}
