package account

import (
	"context"
	"errors"
	"log/slog"
)

// Step is where a proof of identity leads: the session, or a second step
// first.
type Step struct {
	// Pair is the session, when no second step is due.
	Pair TokenPair
	// Challenge is the id of a login challenge: a second factor is due.
	Challenge string
	// SetupChallenge is the id of a setup challenge: in MFA required mode,
	// TOTP must be set up before there is a session.
	SetupChallenge string
	// Methods are the second factors a login challenge may be answered
	// with.
	Methods Methods
}

// Methods is a set of second factors.
type Methods uint8

// Second factors of a login challenge.
const (
	WithTOTP Methods = 1 << iota
	WithRecoveryCodes
	WithPasskey
)

// Names are the set's factors as the API names them, in a fixed order.
func (m Methods) Names() []string {
	names := []string{}
	for _, f := range []struct {
		bit  Methods
		name string
	}{{WithTOTP, MethodTOTP}, {WithRecoveryCodes, "recovery_codes"}, {WithPasskey, MethodPasskey}} {
		if m&f.bit != 0 {
			names = append(names, f.name)
		}
	}
	return names
}

// Pending reports whether a second step is due, so there is no session.
func (s Step) Pending() bool { return s.Challenge != "" || s.SetupChallenge != "" }

// Login is every login by e-mail and password, JSON or HTML: the login
// throttles (before any hashing), the password, the account's state, the
// MFA gate, then the session, recording the login time. Each outcome is counted and audited here.
func (rl *Sessions) Login(ctx context.Context, o Origin, email, password string) (Step, error) {
	ctx = withOrigin(ctx, o)
	if err := rl.throttle(ctx, throttleLoginIP, rl.clientKey(o.IP)); err != nil {
		rl.loginFailed(ctx, email, 0, "throttled", err)
		return Step{}, err
	}
	failure, err := rl.countFailure(ctx, email)
	if err != nil {
		rl.loginFailed(ctx, email, 0, "throttled", err)
		return Step{}, err
	}
	u, err := rl.authenticate(ctx, NormalizeEmail(email), password, rl.hashOwners(ctx, email))
	rl.settle(ctx, failure, IsRefusal(err))
	if err != nil {
		rl.loginFailed(ctx, email, 0, "credentials", err)
		return Step{}, err
	}
	if rl.policy.EmailVerification == VerifyMandatory && !u.EmailVerified {
		rl.loginFailed(ctx, email, u.ID, "email_not_verified", nil)
		return Step{}, refuseCode(Unauthenticated, "User email is not verified", "email_not_verified")
	}
	if !u.IsActive {
		rl.loginFailed(ctx, email, u.ID, "inactive", nil)
		return Step{}, refuse(Unauthenticated, MsgNoActiveAccount)
	}
	if step, err := rl.challenges.gate(ctx, u); err != nil || step.Pending() {
		if err != nil {
			rl.loginFailed(ctx, u.Email, u.ID, "mfa_gate", err)
			return Step{}, err
		}
		rl.metrics.Login(ResultMFARequired)
		rl.audit(ctx, auditLoginSucceeded, u.ID, slog.Bool("mfa_pending", true))
		return step, nil
	}
	var pair TokenPair
	refused := ""
	err = rl.store.InTx(ctx, func(tx Store) error {
		// The row as it is now, locked until the session is open: an
		// account disabled, or a password changed, while this login waited
		// for a hashing slot gets no session.
		cur, err := tx.UserForUpdate(ctx, u.ID)
		switch {
		case errors.Is(err, ErrNotFound) || (err == nil && cur.PasswordHash != u.PasswordHash):
			refused = "credentials"
			return errBadCredentials()
		case err != nil:
			return err
		case !cur.IsActive:
			refused = "inactive"
			return refuse(Unauthenticated, MsgNoActiveAccount)
		}
		if err := tx.SetLastLogin(ctx, cur.ID, rl.now()); err != nil {
			return err
		}
		pair, err = rl.openSession(ctx, tx, cur, o.IP)
		return err
	})
	if refused != "" {
		rl.loginFailed(ctx, email, u.ID, refused, nil)
		return Step{}, err
	}
	if err != nil {
		rl.metrics.Login(ResultError)
		return Step{}, err
	}
	rl.metrics.Login(ResultSuccess)
	rl.audit(ctx, auditLoginSucceeded, u.ID)
	return Step{Pair: pair}, nil
}

func errBadCredentials() *Refusal {
	return refuseCode(Unauthenticated, "Incorrect credentials", "incorrect_credentials")
}

// loginFailed counts and audits a refused login. err decides the metric's
// result (throttled, locked, error for a failing dependency, else failure).
func (rl *Sessions) loginFailed(ctx context.Context, email string, userID int64, reason string, err error) {
	result := ResultFailure
	var refusal *Refusal
	switch {
	case err != nil && !errors.As(err, &refusal):
		rl.metrics.Login(ResultError)
		return // a failing dependency, logged where it is answered
	case reason == "throttled":
		result = ResultThrottled
	case refusal != nil && refusal.Kind == Throttled:
		result, reason = ResultLocked, "mfa_locked"
	}
	rl.metrics.Login(result)
	level := slog.LevelInfo
	if result == ResultThrottled {
		level = slog.LevelDebug // a flood of throttled guesses must not flood the log
	}
	rl.auditAt(ctx, level, auditLoginFailed, userID, slog.String("reason", reason), rl.emailHash(email))
}

// authenticate checks an e-mail and password, hashing for owners (see
// Hasher). Unknown addresses and accounts without a usable password cost
// one hash as well, so the answer time does not tell them apart. A legacy
// or outdated hash is upgraded. A wrong password or unknown address is
// the only refusal.
func (rl *Sessions) authenticate(ctx context.Context, email, password string, owners []string) (User, error) {
	u, err := rl.store.UserByEmail(ctx, email)
	if errors.Is(err, ErrNotFound) || (err == nil && u.PasswordHash == "") {
		if err := rl.hasher.dummyVerify(ctx, password, owners...); err != nil {
			return User{}, err
		}
		return User{}, errBadCredentials()
	}
	if err != nil {
		return User{}, err
	}
	ok, rehash, err := rl.hasher.verify(ctx, password, u.PasswordHash, owners...)
	if err != nil {
		return User{}, err
	}
	if !ok {
		return User{}, errBadCredentials()
	}
	if rehash {
		if h, err := rl.hasher.Hash(ctx, password, owners...); err == nil {
			switch err := rl.upgradeHash(ctx, u.ID, u.PasswordHash, h); {
			case err == nil:
				u.PasswordHash = h
			case !errors.Is(err, errHashChanged):
				rl.logger.Warn("upgrading password hash", "user_id", u.ID, "error", err)
			}
		}
	}
	return u, nil
}

// errHashChanged: the hash an upgrade would replace is no longer stored.
var errHashChanged = errors.New("the password changed meanwhile")

// upgradeHash replaces the user's password hash old by upgraded, unless a
// concurrent reset or change has replaced old already (errHashChanged):
// an upgrade never undoes a new password.
func (rl *Sessions) upgradeHash(ctx context.Context, userID int64, old, upgraded string) error {
	return rl.store.InTx(ctx, func(tx Store) error {
		cur, err := tx.UserForUpdate(ctx, userID)
		if err != nil {
			return err
		}
		if cur.PasswordHash != old {
			return errHashChanged
		}
		return tx.SetPasswordHash(ctx, userID, upgraded)
	})
}
