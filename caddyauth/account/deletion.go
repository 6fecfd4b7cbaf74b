package account

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/jsonform"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// The deletion of an account: by its owner (DELETE {prefix}/user/) or by
// an administrator (`caddy jwt-allauth delete-user`). Either way one
// transaction locks the user's row first and deletes it; every row of the
// user in the other tables (refresh tokens, the token table, TOTP and
// recovery codes, social links, passkeys) goes with it by the schema's
// ON DELETE CASCADE (caddyauth/sqlstore/migrations), so the address is
// free for a new sign-up at once.

// auditAccountDeleted records a deleted account, with who deleted it.
const auditAccountDeleted = "account_deleted"

// msgCodeRequired asks for the second factor a deletion needs.
const msgCodeRequired = "This account has a second factor: send a current code in the `code` field."

// Deletion is the body of DELETE {prefix}/user/: the caller's current
// password and, when the account has a second factor, a code (see
// Users.Delete).
type Deletion struct {
	Form
	Password string
	Code     string
}

// usablePassword reports whether a password can sign in to u at all: an
// empty hash, or one marked unusable ("!…"), never verifies.
func usablePassword(u User) bool {
	return u.PasswordHash != "" && !strings.HasPrefix(u.PasswordHash, "!")
}

// Delete deletes the account of the bearer of access, whose session must
// be live, with everything the store keeps of it.
//
// The proof it asks for:
//   - the current password, checked as every password of a signed-in
//     user is (checkPassword: throttled, counted towards the address's
//     login failures, audited); an account without a usable password (a
//     social-only one) proves itself instead by a recent authentication
//     of the session (reauth_window), the password field ignored;
//   - when login asks the account for a second factor, in.Code too: with
//     TOTP a current TOTP code; with passkeys but no TOTP one of its
//     recovery codes (a passkey ceremony is not part of this JSON call),
//     or, when none is left, the recent authentication above (signing in
//     to such an account asked for the passkey). A wrong code is refused
//     and counts against the user's MFA budget (countedCheck), as on
//     verify; a locked out user is refused.
//
// Of concurrent deletions of one account one deletes it; the others find
// the account gone and are refused as a token of a deleted user is.
func (rl *Users) Delete(ctx context.Context, o Origin, access string, in Deletion) error {
	ctx = withOrigin(ctx, o)
	c, err := rl.sessions.Check(ctx, access, false)
	if err != nil {
		return err
	}
	if err := in.err(); err != nil {
		return err
	}
	u, err := rl.sessions.liveCaller(ctx, c)
	if err != nil {
		return err
	}
	if usablePassword(u) {
		if in.Password == "" {
			return fieldError("password", jsonform.MsgRequired)
		}
		err = rl.reauthenticate(ctx, c, u, in.Password)
	} else {
		err = rl.reauthenticate(ctx, c, u, "")
	}
	if err != nil {
		return err
	}
	check, f, err := rl.deletionFactor(ctx, c, u, in.Code)
	if err != nil {
		return userGone(err)
	}
	if f.spend == nil {
		err = rl.deleteLocked(ctx, u.ID)
	} else {
		err = rl.challenges.countedCheck(ctx, check, f, func(tx Store, _ User) error {
			return tx.DeleteUser(ctx, u.ID)
		})
	}
	if err != nil {
		return userGone(err)
	}
	rl.audit(ctx, auditAccountDeleted, u.ID, slog.String("by", "self"), rl.emailHash(u.Email))
	return nil
}

// deletionFactor works out the second factor a deletion of u by the
// bearer of c needs (see Delete): f.spend is nil when none is needed,
// else f is code, to check as a counted check of check.
func (rl *Users) deletionFactor(ctx context.Context, c tokens.Claims, u User, code string) (check mfaCheck, f factor, err error) {
	if rl.policy.MFA == MFADisabled {
		return mfaCheck{}, factor{}, nil
	}
	hasTOTP, err := rl.mfa.hasTOTP(ctx, u.ID)
	if err != nil {
		return mfaCheck{}, factor{}, err
	}
	hasPasskey, _, err := rl.passkeyFactor(ctx, u.ID)
	if err != nil || (!hasTOTP && !hasPasskey) {
		return mfaCheck{}, factor{}, err
	}
	check = mfaCheck{userID: u.ID, what: "user/delete"}
	if hasTOTP {
		if code == "" {
			return mfaCheck{}, factor{}, fieldError("code", msgCodeRequired)
		}
		if err := rl.challenges.checkLockout(ctx, rl.store, u.ID); err != nil {
			return mfaCheck{}, factor{}, err
		}
		secret, err := rl.mfa.userTOTPSecret(ctx, u.ID)
		if err != nil {
			// A concurrent deletion took the TOTP with the account: the
			// account is gone, not its factor.
			if _, gone := rl.store.UserByID(ctx, u.ID); errors.Is(gone, ErrNotFound) {
				return mfaCheck{}, factor{}, ErrNotFound
			}
			return mfaCheck{}, factor{}, err
		}
		check.wrong = msgInvalidCode
		return check, rl.challenges.totpFactor(ctx, u.ID, secret, code), nil
	}
	n, err := rl.store.CountRecoveryCodes(ctx, u.ID)
	if err != nil {
		return mfaCheck{}, factor{}, err
	}
	if n == 0 {
		if !rl.sessions.RecentlyAuthenticated(c) {
			return mfaCheck{}, factor{}, errReauthRequired()
		}
		return mfaCheck{}, factor{}, nil
	}
	if code == "" {
		return mfaCheck{}, factor{}, fieldError("code", msgCodeRequired)
	}
	if err := rl.challenges.checkLockout(ctx, rl.store, u.ID); err != nil {
		return mfaCheck{}, factor{}, err
	}
	check.wrong = msgInvalidRecovery
	return check, rl.challenges.recoveryFactor(ctx, u.ID, code), nil
}

// deleteLocked deletes the user id in one transaction that locks the
// row first. ErrNotFound when the user is gone already.
func (rl *core) deleteLocked(ctx context.Context, id int64) error {
	return rl.store.InTx(ctx, func(tx Store) error {
		if _, err := tx.UserForUpdate(ctx, id); err != nil {
			return err
		}
		return tx.DeleteUser(ctx, id)
	})
}

// DeleteByEmail deletes the account of email and everything the store
// keeps of it, as an administrator does from the command line: no
// password or code is asked.
func (rl *Users) DeleteByEmail(ctx context.Context, email string) (User, error) {
	u, err := rl.lookup(ctx, email)
	if err != nil {
		return User{}, err
	}
	if err := rl.deleteLocked(ctx, u.ID); err != nil {
		return User{}, err
	}
	rl.audit(ctx, auditAccountDeleted, u.ID, slog.String("by", "admin_cli"), rl.emailHash(u.Email))
	return u, nil
}
