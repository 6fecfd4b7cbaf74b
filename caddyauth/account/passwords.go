package account

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passwords"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// Passwords is the password reset by mailed link, the change of a
// signed-in user's password, and the capabilities both links hand out.
type Passwords struct{ *core }

// Messages of the password forms.
const (
	msgPasswordMismatch = "The two password fields didn’t match."
	msgOldPasswordWrong = "Your old password was entered incorrectly. Please enter it again."
)

// resetFloor is the least time a reset request takes, so the answer time
// does not tell known addresses from unknown ones. It is a duration, not
// a point in time, so it uses a real timer.
const resetFloor = 500 * time.Millisecond

// NewPassword is a new password typed twice, with the body as decoded.
type NewPassword struct {
	Form
	Password1, Password2 string
}

// check checks that both fields are there, match and pass the password
// policy for email; messages go on new_password2, as Django's
// SetPasswordForm puts them, recorded in fe. It returns the password.
func (in NewPassword) check(fe *FieldErrors, email string) string {
	if fe.Has("new_password1") || fe.Has("new_password2") {
		return ""
	}
	if in.Password1 != in.Password2 {
		fe.Add("new_password2", msgPasswordMismatch)
		return ""
	}
	for _, msg := range passwords.Validate(in.Password2, email) {
		fe.Add("new_password2", msg)
	}
	return in.Password1
}

// RequestReset is POST {prefix}/password/reset/ and the forgot-password
// page, for the address email (normalised) with the
// body as decoded: always the same success after the same floor; a link
// is mailed only to an active account with a usable password, its address
// confirmed or not (following the link proves the address, see
// resetProof). A new link replaces the user's older one. An invalid
// address or a throttled request is refused at once.
func (rl *Passwords) RequestReset(ctx context.Context, o Origin, email string, in Form) error {
	ctx = withOrigin(ctx, o)
	floor := time.NewTimer(resetFloor)
	defer floor.Stop()
	if in.Refused != nil {
		return in.Refused
	}
	fe := in.Invalid
	email = NormalizeEmail(email)
	if !fe.Has("email") && !ValidEmail(email) {
		fe.Add("email", MsgInvalidEmail)
	}
	if err := fe.Err(); err != nil {
		return err
	}
	if err := rl.throttleRequest(ctx, "password_reset", email); err != nil {
		return err
	}
	if err := rl.mailResetLink(ctx, o, email); err != nil {
		return err
	}
	select {
	case <-floor.C:
	case <-ctx.Done():
	}
	return nil
}

// mailResetLink stores a reset link for the account of email, if it may
// have one, and mails it.
func (rl *Passwords) mailResetLink(ctx context.Context, o Origin, email string) error {
	u, err := rl.store.UserByEmail(ctx, email)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !u.IsActive || u.PasswordHash == "" {
		return nil
	}
	secret, err := rl.replaceLink(ctx, u.ID, PurposePassReset)
	if err != nil {
		return err
	}
	uid := base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(u.ID, 10)))
	rl.sendMail(o, MailPasswordReset, u.Email, MailData{
		Link:    o.Site + "/password/reset/confirm/" + uid + "/" + secret + "/",
		Expires: humanDuration(rl.policy.PasswordResetTTL),
	})
	return nil
}

// ErrLinkInvalid: a mailed link is unknown, spent, superseded, expired, or
// its account cannot use it.
var ErrLinkInvalid = errors.New("the link is invalid or has expired")

// FollowResetLink spends the mailed reset link <uid>/<secret> (GET
// {prefix}/password/reset/confirm/<uid>/<secret>/) and returns a reset
// capability, valid for access_ttl and replacing earlier ones. Any bad
// link is ErrLinkInvalid.
func (rl *Passwords) FollowResetLink(ctx context.Context, o Origin, uidPart, secret string) (Capability, error) {
	ctx = withOrigin(ctx, o)
	if secret == "" || len(secret) > 128 {
		return Capability{}, ErrLinkInvalid
	}
	rawUID, err := base64.RawURLEncoding.DecodeString(trimPadding(uidPart))
	if err != nil {
		return Capability{}, ErrLinkInvalid
	}
	uid, err := strconv.ParseInt(string(rawUID), 10, 64)
	if err != nil {
		return Capability{}, ErrLinkInvalid
	}
	row, err := rl.store.ConsumeToken(ctx, PurposePassReset, linkDigest(secret), rl.notBeforeFor(rl.policy.PasswordResetTTL))
	if errors.Is(err, ErrNotFound) || (err == nil && row.UserID != uid) {
		return Capability{}, ErrLinkInvalid
	}
	if err != nil {
		return Capability{}, err
	}
	u, err := rl.store.UserByID(ctx, uid)
	if errors.Is(err, ErrNotFound) || (err == nil && (!u.IsActive || u.PasswordHash == "")) {
		return Capability{}, ErrLinkInvalid
	}
	if err != nil {
		return Capability{}, err
	}
	return rl.issueCapability(ctx, u, PurposePassResetAccess)
}

func trimPadding(s string) string {
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
	}
	return s
}

// Done is a credential change by capability: Detail for the answer, and
// where it leads (the session, or the second step first). Saved is true
// once the password is saved and the capability spent, even when what
// follows (the MFA gate, the session) fails.
type Done struct {
	Step
	Detail string
	Saved  bool
}

// SetNew sets a new password with the reset capability c (verified by
// ParseCapability, and its CSRF value by the caller): POST
// {prefix}/password/reset/set-new/. Unlike the reference, the capability
// is spent only once the new password is accepted, and the answer goes
// through the MFA gate. A reset of an unconfirmed address confirms it
// (resetProof).
func (rl *Passwords) SetNew(ctx context.Context, o Origin, c tokens.Claims, in NewPassword) (Done, error) {
	ctx = withOrigin(ctx, o)
	var proof resetProof
	u, err := rl.setWithCapability(ctx, c, PurposePassResetAccess, in, proof.apply)
	if err != nil {
		return Done{}, err
	}
	if proof.first {
		rl.audit(ctx, auditSetupRemoved, u.ID,
			slog.Int("authenticators", proof.authenticators), slog.Int("passkeys", proof.passkeys), slog.Int("sessions", proof.sessions))
	}
	rl.audit(ctx, auditPasswordChanged, u.ID, slog.String("how", "reset"))
	rl.auditSessionRevoked(ctx, u.ID, "password_reset")
	return rl.afterCredentialChange(ctx, u, "Password reset.", "")
}

// resetProof is what a password reset by mailed link proved. When the
// address was not confirmed yet, the link is its first proof: the owner may
// be taking over an account someone else created, so apply, in the
// reset's transaction, confirms the address and removes every factor
// (TOTP, recovery codes) and every session set up before it. Otherwise
// "a reset never skips MFA" would keep the owner out behind a stranger's
// TOTP. A creator who confirmed by the sign-up's link keeps what they set
// up: their address is confirmed, so a later reset removes nothing.
type resetProof struct {
	first                              bool
	authenticators, passkeys, sessions int
}

func (p *resetProof) apply(ctx context.Context, tx Store, u *User) error {
	if u.EmailVerified {
		return nil
	}
	var err error
	if p.authenticators, err = tx.DeleteAuthenticators(ctx, u.ID); err != nil {
		return err
	}
	// Every factor the stranger may have set up: passkeys too, and the
	// ceremonies begun for them.
	if p.passkeys, err = tx.DeletePasskeys(ctx, u.ID); err != nil {
		return err
	}
	if _, err := tx.DeleteUserTokens(ctx, u.ID, purposePasskeyRegister, purposePasskeyAssert); err != nil {
		return err
	}
	if p.sessions, err = tx.RevokeUserSessions(ctx, u.ID); err != nil {
		return err
	}
	if err := tx.SetEmailVerified(ctx, u.ID, true); err != nil {
		return err
	}
	u.EmailVerified = true
	p.first = true
	return nil
}

// errCapabilitySpent is a capability whose row is gone: spent, superseded
// by a newer link, expired, or never issued.
func errCapabilitySpent() error { return errTokenNotValid(MsgTokenInvalid) }

// setWithCapability is the common pipeline of a password set by
// capability (reset, invitation): the row (refused as not valid), the
// user (the same), the body (refused, capability not spent), then the
// capability is claimed by one atomic delete and the password saved with
// a credential-change revocation. withinTx runs first in the transaction
// of the change (e.g. to claim the invitation), see savePassword. It
// returns the user after the change.
func (rl *core) setWithCapability(ctx context.Context, c tokens.Claims, permission string, in NewPassword, withinTx func(ctx context.Context, tx Store, u *User) error) (User, error) {
	if in.Refused != nil {
		return User{}, in.Refused
	}
	digest := linkDigest(c.ID)
	notBefore := rl.now().Add(-rl.policy.AccessTTL)
	row, err := rl.store.FindToken(ctx, permission, digest, notBefore)
	if errors.Is(err, ErrNotFound) || (err == nil && row.UserID != c.ForUser) {
		return User{}, errCapabilitySpent()
	}
	if err != nil {
		return User{}, err
	}
	u, err := rl.store.UserByID(ctx, c.ForUser)
	if errors.Is(err, ErrNotFound) || (err == nil && !u.IsActive) {
		// As the reference: a capability of a deactivated user is spent.
		if _, err := rl.store.ConsumeToken(ctx, permission, digest, notBefore); err != nil && !errors.Is(err, ErrNotFound) {
			return User{}, err
		}
		return User{}, errCapabilitySpent()
	}
	if err != nil {
		return User{}, err
	}
	fe := in.Invalid
	password := in.check(&fe, u.Email)
	if err := fe.Err(); err != nil {
		return User{}, err
	}
	// Claim first, so concurrent holders of the same capability lose
	// before they spend a hash; put the row back if the change fails
	// for a reason that is not the client's.
	row, err = rl.store.ConsumeToken(ctx, permission, digest, notBefore)
	if errors.Is(err, ErrNotFound) {
		return User{}, errCapabilitySpent()
	}
	if err != nil {
		return User{}, err
	}
	restore := func() {
		if _, err := rl.store.CreateToken(context.WithoutCancel(ctx), row); err != nil {
			rl.logger.Warn("restoring an unspent capability", "user_id", row.UserID, "error", err)
		}
	}
	hash, err := rl.hasher.Hash(ctx, password, rl.hashOwners(ctx, u.Email)...)
	if err != nil {
		restore()
		return User{}, err
	}
	err = rl.store.InTx(ctx, func(tx Store) error {
		cur, err := savePassword(ctx, tx, u.ID, hash, withinTx)
		if err != nil {
			return err
		}
		u = cur
		return nil
	})
	if err != nil {
		if !IsRefusal(err) {
			restore()
		}
		return User{}, err
	}
	return u, nil
}

// savePassword saves hash as the password of the user userID in the
// transaction tx and revokes the user's credentials (revokeCredentials). A
// user deleted or deactivated meanwhile is refused as a token no longer
// valid (which is also how a spent capability answers). withinTx, when not
// nil, runs first, with the user as read and locked; it writes the columns
// it changes itself and updates u to match. It returns the user as saved.
func savePassword(ctx context.Context, tx Store, userID int64, hash string, withinTx func(ctx context.Context, tx Store, u *User) error) (User, error) {
	cur, err := tx.UserForUpdate(ctx, userID)
	if errors.Is(err, ErrNotFound) || (err == nil && !cur.IsActive) {
		return User{}, errTokenNotValid(MsgTokenInvalid)
	}
	if err != nil {
		return User{}, err
	}
	if withinTx != nil {
		if err := withinTx(ctx, tx, &cur); err != nil {
			return User{}, err
		}
	}
	if err := tx.SetPasswordHash(ctx, cur.ID, hash); err != nil {
		return User{}, err
	}
	cur.PasswordHash = hash
	if err := revokeCredentials(ctx, tx, cur.ID); err != nil {
		return User{}, err
	}
	return cur, nil
}

// afterCredentialChange is where a successful password reset or set
// leads: the MFA gate first (a reset never skips the second factor: a
// user with TOTP gets a login challenge, and in required mode a user
// without TOTP the setup bootstrap), else a new session. detail is the
// answer's; bootstrapDetail replaces it in the bootstrap answer when set.
func (rl *core) afterCredentialChange(ctx context.Context, u User, detail, bootstrapDetail string) (Done, error) {
	saved := Done{Saved: true}
	step, err := rl.challenges.gate(ctx, u)
	if err != nil {
		return saved, err
	}
	if step.Pending() {
		if step.SetupChallenge != "" && bootstrapDetail != "" {
			detail = bootstrapDetail
		}
		return Done{Step: step, Detail: detail, Saved: true}, nil
	}
	pair, err := rl.openLoginSession(ctx, u)
	if err != nil {
		return saved, err
	}
	return Done{Step: Step{Pair: pair}, Detail: detail, Saved: true}, nil
}

// PasswordChange is POST {prefix}/password/change/'s body: the old
// password and the new one twice.
type PasswordChange struct {
	NewPassword
	Old string
}

// Change saves a new password for the caller of the access token given
// the old one: every session and pending link of the
// user is revoked, and a new session is opened for the caller.
func (rl *Passwords) Change(ctx context.Context, o Origin, access string, in PasswordChange) (TokenPair, error) {
	ctx = withOrigin(ctx, o)
	caller, err := rl.sessions.Check(ctx, access, false)
	if err != nil {
		return TokenPair{}, err
	}
	// The body was read before the row, so that a slow body cannot carry
	// a stale copy; its errors still come after the account's.
	u, err := rl.store.UserByID(ctx, caller.NumericUserID())
	if errors.Is(err, ErrNotFound) || (err == nil && !u.IsActive) {
		return TokenPair{}, errTokenNotValid(MsgTokenInvalid)
	}
	if err != nil {
		return TokenPair{}, err
	}
	if in.Refused != nil {
		return TokenPair{}, in.Refused
	}
	if err := rl.liveSession(ctx, caller); err != nil {
		return TokenPair{}, err
	}
	fe := in.Invalid
	password := in.check(&fe, u.Email)
	if !fe.Has("old_password") {
		ok, err := rl.checkPassword(ctx, u, in.Old, "password_change")
		if err != nil {
			return TokenPair{}, err
		}
		if !ok {
			fe.Add("old_password", msgOldPasswordWrong)
		}
	}
	if err := fe.Err(); err != nil {
		return TokenPair{}, err
	}
	hash, err := rl.hasher.Hash(ctx, password, rl.hashOwners(ctx, u.Email)...)
	if err != nil {
		return TokenPair{}, err
	}
	var pair TokenPair
	err = rl.store.InTx(ctx, func(tx Store) error {
		cur, err := savePassword(ctx, tx, u.ID, hash, func(ctx context.Context, tx Store, cur *User) error {
			// The old password was checked against the hash read above;
			// a reset or change since then makes it wrong.
			if cur.PasswordHash != u.PasswordHash {
				return fieldError("old_password", msgOldPasswordWrong)
			}
			return nil
		})
		if err != nil {
			return err
		}
		pair, err = rl.openSession(ctx, tx, cur, o.IP)
		return err
	})
	if err != nil {
		return TokenPair{}, err
	}
	rl.audit(ctx, auditPasswordChanged, u.ID, slog.String("how", "change"))
	rl.auditSessionRevoked(ctx, u.ID, "password_change")
	return pair, nil
}
