package account

import (
	"context"
	"errors"
	"log/slog"
	"slices"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passwords"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// Signup is registration: sign-up, the confirmation of an address,
// invitations and the invited user's first password.
type Signup struct{ *core }

// Messages of the registration flows.
const (
	msgEmailTaken        = "A user is already registered with this e-mail address."
	msgSignupMismatch    = "The two password fields didn't match."
	MsgVerificationSent  = "Verification e-mail sent."
	msgRoleAboveInviter  = "You cannot grant a role higher than your own."
	maxRole              = 32767
	msgRoleBelowMinimum  = "Ensure this value is greater than or equal to 0."
	msgRoleAboveMaximum  = "Ensure this value is less than or equal to 32767."
	msgPasswordSetDetail = "Password set."
	msgPasswordSetMFA    = "Password set. Please configure MFA to complete registration."
	msgSignupClosed      = "Sign-up is closed."
	msgInvitationsOff    = "Invitations are not part of this site's registration."
)

// claimedForSignup reports whether an existing account holds its address
// against a sign-up: it is confirmed, was ever used, or has a live
// invitation. Other holders are abandoned sign-ups, replaced by the next
// sign-up for the address.
func (rl *Signup) claimedForSignup(ctx context.Context, u User) (bool, error) {
	if u.EmailVerified || !u.LastLogin.IsZero() {
		return true, nil
	}
	inv, err := rl.store.UserTokens(ctx, u.ID, purposeInvitation, rl.notBeforeFor(rl.policy.EmailConfirmationTTL))
	return len(inv) > 0, err
}

// pendingSignup reports whether u, an account not claimed for sign-up, is
// a sign-up whose confirmation link still works: it keeps its address, and
// its password, until the link expires.
func (rl *Signup) pendingSignup(ctx context.Context, u User) (bool, error) {
	links, err := rl.store.UserTokens(ctx, u.ID, purposeEmailConfirmation, rl.notBeforeFor(rl.policy.EmailConfirmationTTL))
	return len(links) > 0, err
}

// Registrant is a sign-up's body: the address, the password twice and
// the names, with the body as decoded.
type Registrant struct {
	Form
	Email, Password1, Password2, FirstName, LastName string
}

// SignedUp is how a sign-up ended: the session, or the setup bootstrap in
// MFA required mode (Step), or neither when the address must be
// confirmed first. MailSent says a verification mail applies.
type SignedUp struct {
	Step
	MailSent bool
}

// SignUp is a sign-up (POST {prefix}/registration/, and
// the sign-up page). Under mandatory verification a taken address answers
// exactly like a free one (its owner gets an "account exists" mail);
// otherwise it is refused on `email`. A pending sign-up for the address
// (its confirmation link still works) is kept: the new one gets the
// answer of a new account whenever that answer holds no session, the
// address a "sign-up pending" mail, and nothing is created. An abandoned
// sign-up for the address (its link expired) is replaced.
func (rl *Signup) SignUp(ctx context.Context, o Origin, in Registrant) (SignedUp, error) {
	ctx = withOrigin(ctx, o)
	if !rl.policy.Registration.SignupOpen() {
		return SignedUp{}, refuse(Forbidden, msgSignupClosed)
	}
	if in.Refused != nil {
		return SignedUp{}, in.Refused
	}
	fe := in.Invalid
	email := checkEmail(&fe, NormalizeEmail(in.Email))
	if err := rl.throttleRequest(ctx, "registration", email); err != nil {
		return SignedUp{}, err
	}
	if !fe.Has("password1") {
		for _, msg := range passwords.Validate(in.Password1, email) {
			fe.Add("password1", msg)
		}
	}
	first := checkName(&fe, "first_name", in.FirstName)
	last := checkName(&fe, "last_name", in.LastName)
	hidden := rl.policy.EmailVerification == VerifyMandatory
	var taken *User   // hidden conflict: the owner gets a note
	var pending *User // a pending sign-up, kept: the address gets a note
	var abandoned int64
	if !fe.Has("email") {
		u, err := rl.store.UserByEmail(ctx, email)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return SignedUp{}, err
		default:
			claimed, err := rl.claimedForSignup(ctx, u)
			if err != nil {
				return SignedUp{}, err
			}
			isPending := false
			if !claimed {
				if isPending, err = rl.pendingSignup(ctx, u); err != nil {
					return SignedUp{}, err
				}
			}
			// The first sign-up's answer can be repeated without an
			// account when it held no session.
			sessionless := hidden || rl.policy.MFA == MFARequired
			switch {
			case isPending && sessionless:
				pending = &u
			case (claimed || isPending) && !hidden:
				fe.Add("email", msgEmailTaken)
			case claimed:
				taken = &u
			default:
				abandoned = u.ID
			}
		}
	}
	if err := fe.Err(); err != nil {
		return SignedUp{}, err
	}
	if in.Password1 != in.Password2 {
		return SignedUp{}, (FieldErrors{"non_field_errors": {msgSignupMismatch}}).Err()
	}
	hash, err := rl.hasher.Hash(ctx, in.Password1, rl.hashOwners(ctx, email)...)
	if err != nil {
		return SignedUp{}, err
	}
	mailSent := rl.policy.EmailVerification != VerifyNone
	if taken != nil {
		// The same answer as a new account, and a note to the owner.
		rl.sendMail(o, MailAccountExists, taken.Email, MailData{ResetRequestURL: rl.policy.PasswordResetRequestURL})
		return rl.signupOutcome(ctx, nil, mailSent)
	}
	if pending != nil {
		// The same answer as the first sign-up, whose password and link
		// stay; the note holds no link that would confirm this one.
		rl.sendMail(o, MailSignupPending, pending.Email, MailData{
			Expires:         humanDuration(rl.policy.EmailConfirmationTTL),
			ResetRequestURL: rl.policy.PasswordResetRequestURL,
		})
		return rl.signupOutcome(ctx, nil, mailSent)
	}
	u := User{
		Email:         email,
		PasswordHash:  hash,
		FirstName:     first,
		LastName:      last,
		IsActive:      true,
		EmailVerified: rl.policy.EmailVerification == VerifyNone,
		DateJoined:    rl.now(),
	}
	var secret string
	if mailSent {
		if secret, err = newLinkSecret(rl.rand); err != nil {
			return SignedUp{}, err
		}
	}
	u, err = rl.createLinkedUser(ctx, u, abandoned, purposeEmailConfirmation, secret)
	if errors.Is(err, ErrConflict) {
		// A concurrent sign-up took the address first.
		if hidden {
			return rl.signupOutcome(ctx, nil, mailSent)
		}
		return SignedUp{}, fieldError("email", msgEmailTaken)
	}
	if err != nil {
		return SignedUp{}, err
	}
	if mailSent {
		rl.mailVerificationLink(o, MailEmailConfirmation, u.Email, secret)
	}
	rl.logger.Info("user signed up", "user_id", u.ID, "client_ip", o.IP)
	return rl.signupOutcome(ctx, &u, mailSent)
}

// createLinkedUser creates u, with the digest of the link secret (if not "")
// as a link of purpose, in one transaction that first deletes the account
// replace (if not 0) whose address u takes over. It returns u with its id.
func (rl *Signup) createLinkedUser(ctx context.Context, u User, replace int64, purpose, secret string) (User, error) {
	err := rl.store.InTx(ctx, func(tx Store) error {
		if replace != 0 {
			if err := tx.DeleteUser(ctx, replace); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		id, err := tx.CreateUser(ctx, u)
		if err != nil {
			return err
		}
		u.ID = id
		if secret != "" {
			_, err = tx.CreateToken(ctx, Token{UserID: id, Purpose: purpose, Token: linkDigest(secret), Created: rl.now()})
		}
		return err
	})
	return u, err
}

// signupOutcome is the result of a sign-up; u is nil for a hidden
// conflict or a kept pending sign-up, which get the same shape as a new
// account (a bootstrap id that leads nowhere in MFA required mode). Under
// mandatory verification the setup challenge of a new account is held
// back until its address is confirmed (confirmAddress): until then it
// answers exactly like the id of a taken address.
func (rl *Signup) signupOutcome(ctx context.Context, u *User, mailSent bool) (SignedUp, error) {
	out := SignedUp{MailSent: mailSent}
	if rl.policy.MFA == MFARequired {
		var id string
		var err error
		switch {
		case u == nil:
			id, err = tokens.NewID(rl.rand)
		case rl.policy.EmailVerification == VerifyMandatory:
			id, err = rl.newChallenge(ctx, rl.store, *u, purposeSignupChallenge)
		default:
			id, err = rl.newChallenge(ctx, rl.store, *u, purposeMFASetupChallenge)
		}
		out.SetupChallenge = id
		return out, err
	}
	if rl.policy.EmailVerification == VerifyMandatory {
		return out, nil
	}
	pair, err := rl.openLoginSession(ctx, *u)
	out.Pair = pair
	return out, err
}

// ErrInvitationInvalid: an invitation link whose account can no longer
// use it.
var ErrInvitationInvalid = errors.New("the invitation is no longer valid")

// Followed is where a followed confirmation or invitation link leads:
// the address is confirmed, and an invited user without a password gets
// a set-password Capability to hand over (nil otherwise).
type Followed struct {
	Capability *Capability
}

// FollowLink follows the link key of a confirmation or invitation mail
// (GET {prefix}/registration/verification/<key>/). A
// confirmation link works once: the address is confirmed (the
// `email_verified` claim follows at the next refresh). An invitation link
// leads to the set-password step and works until the password is set.
// An unknown or spent link is ErrLinkInvalid; an invitation of an account
// disabled or gone is ErrInvitationInvalid.
func (rl *Signup) FollowLink(ctx context.Context, o Origin, key string) (Followed, error) {
	ctx = withOrigin(ctx, o)
	if key == "" || len(key) > 128 {
		return Followed{}, ErrLinkInvalid
	}
	digest := linkDigest(key)
	notBefore := rl.notBeforeFor(rl.policy.EmailConfirmationTTL)
	if rl.policy.Registration.InvitationsOn() {
		row, err := rl.store.FindToken(ctx, purposeInvitation, digest, notBefore)
		if err == nil {
			return rl.followInvitation(ctx, row)
		}
		if !errors.Is(err, ErrNotFound) {
			return Followed{}, err
		}
	}
	row, err := rl.store.ConsumeToken(ctx, purposeEmailConfirmation, digest, notBefore)
	if errors.Is(err, ErrNotFound) {
		return Followed{}, ErrLinkInvalid
	}
	if err != nil {
		return Followed{}, err
	}
	err = rl.store.InTx(ctx, func(tx Store) error {
		u, err := tx.UserForUpdate(ctx, row.UserID)
		if err != nil {
			return err
		}
		if !u.IsActive {
			return ErrLinkInvalid
		}
		return rl.confirmAddress(ctx, tx, u)
	})
	if errors.Is(err, ErrNotFound) {
		err = ErrLinkInvalid
	}
	return Followed{}, err
}

// confirmAddress marks u's address confirmed by its sign-up's link, turns
// the sign-up's held-back setup challenge into a live one (its lifetime
// starts now), and drops its other confirmation links. Mandatory
// verification opens no session before this, so there is none to enable.
// u is the row as read with UserForUpdate in the transaction tx.
func (rl *Signup) confirmAddress(ctx context.Context, tx Store, u User) error {
	if !u.EmailVerified {
		if err := tx.SetEmailVerified(ctx, u.ID, true); err != nil {
			return err
		}
	}
	held, err := tx.UserTokens(ctx, u.ID, purposeSignupChallenge, rl.notBeforeFor(rl.policy.EmailConfirmationTTL))
	if err != nil {
		return err
	}
	if _, err := tx.DeleteUserTokens(ctx, u.ID, purposeSignupChallenge, purposeEmailConfirmation); err != nil {
		return err
	}
	for _, ch := range held {
		if _, err := tx.CreateToken(ctx, Token{UserID: u.ID, Purpose: purposeMFASetupChallenge, Token: ch.Token, Created: rl.now()}); err != nil {
			return err
		}
	}
	return nil
}

// followInvitation confirms the invited address and, while the account
// has no password, issues a set-password capability (replacing earlier
// ones).
func (rl *Signup) followInvitation(ctx context.Context, row Token) (Followed, error) {
	var u User
	err := rl.store.InTx(ctx, func(tx Store) error {
		var err error
		if u, err = tx.UserForUpdate(ctx, row.UserID); err != nil {
			return err
		}
		if !u.IsActive {
			return ErrInvitationInvalid
		}
		if !u.EmailVerified {
			if err := tx.SetEmailVerified(ctx, u.ID, true); err != nil {
				return err
			}
			u.EmailVerified = true
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		err = ErrInvitationInvalid
	}
	if err != nil {
		return Followed{}, err
	}
	if u.PasswordHash != "" {
		return Followed{}, nil
	}
	c, err := rl.issueCapability(ctx, u, PurposePassSetAccess)
	if err != nil {
		return Followed{}, err
	}
	return Followed{Capability: &c}, nil
}

// mayGrant is the invitation role rule: staff (1000) may grant any role,
// superusers (900) any role but staff, and any other role only itself or
// the plain user role 0.
func mayGrant(inviter, role int) bool {
	switch inviter {
	case RoleStaff:
		return true
	case RoleSuperuser:
		return role != RoleStaff
	default:
		return role == inviter || role == RoleUser
	}
}

// Invitee is an invitation's body: the address, the role and the names
// (optional), with the body as decoded.
type Invitee struct {
	Form
	Email               string
	Role                int
	FirstName, LastName string
}

// Invite creates an account without a password for the invitee and mails
// the invitation link (POST {prefix}/registration/user-register/). The
// caller of the access token must hold an
// `invite_roles` role (re-read from the database). A pending invitation
// or an abandoned sign-up for the address is replaced; a used account is
// refused.
func (rl *Signup) Invite(ctx context.Context, o Origin, access string, in Invitee) error {
	ctx = withOrigin(ctx, o)
	if !rl.policy.Registration.InvitationsOn() {
		return refuse(Forbidden, msgInvitationsOff)
	}
	caller, err := rl.sessions.Check(ctx, access, false)
	if err != nil {
		return err
	}
	// The body was read before the inviter's row, so that a slow body
	// cannot carry a role taken away meanwhile; its errors still come
	// after the permission check.
	inviter, err := rl.store.UserByID(ctx, caller.NumericUserID())
	if errors.Is(err, ErrNotFound) || (err == nil && !inviter.IsActive) {
		return errTokenNotValid(MsgTokenInvalid)
	}
	if err != nil {
		return err
	}
	if !slices.Contains(rl.policy.InviteRoles, inviter.Role) {
		return refuse(Forbidden, MsgPermissionDenied)
	}
	if in.Refused != nil {
		return in.Refused
	}
	if err := rl.liveSession(ctx, caller); err != nil {
		return err
	}
	fe := in.Invalid
	email := checkEmail(&fe, NormalizeEmail(in.Email))
	switch {
	case fe.Has("role"):
	case in.Role < 0:
		fe.Add("role", msgRoleBelowMinimum)
	case in.Role > maxRole:
		fe.Add("role", msgRoleAboveMaximum)
	case !mayGrant(inviter.Role, in.Role):
		fe.Add("role", msgRoleAboveInviter)
	}
	first := checkName(&fe, "first_name", in.FirstName)
	last := checkName(&fe, "last_name", in.LastName)
	var replace int64
	if !fe.Has("email") {
		u, err := rl.store.UserByEmail(ctx, email)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return err
		case u.EmailVerified || !u.LastLogin.IsZero():
			fe.Add("email", msgEmailTaken)
		default:
			replace = u.ID
		}
	}
	if err := fe.Err(); err != nil {
		return err
	}
	secret, err := newLinkSecret(rl.rand)
	if err != nil {
		return err
	}
	u := User{Email: email, FirstName: first, LastName: last, Role: in.Role, IsActive: true, DateJoined: rl.now()}
	u, err = rl.createLinkedUser(ctx, u, replace, purposeInvitation, secret)
	if errors.Is(err, ErrConflict) {
		return fieldError("email", msgEmailTaken)
	}
	if err != nil {
		return err
	}
	rl.mailVerificationLink(o, MailInvitation, u.Email, secret)
	rl.logger.Info("user invited", "user_id", u.ID, "inviter_id", inviter.ID, "role", in.Role)
	return nil
}

// SetPassword sets an invited user's first password with the set-password
// capability c (verified by Passwords.ParseCapability, and its CSRF value
// by the caller): POST {prefix}/registration/set-password/. The invitation is claimed in the same transaction as the
// password, so of many capabilities for one invitation only one can set
// it. In MFA required mode it leads to the setup bootstrap instead of a
// session.
func (rl *Signup) SetPassword(ctx context.Context, o Origin, c tokens.Claims, in NewPassword) (Done, error) {
	ctx = withOrigin(ctx, o)
	u, err := rl.setWithCapability(ctx, c, PurposePassSetAccess, in, func(ctx context.Context, tx Store, u *User) error {
		n, err := tx.DeleteUserTokens(ctx, u.ID, purposeInvitation)
		if err != nil {
			return err
		}
		if n == 0 {
			return errCapabilitySpent()
		}
		return nil
	})
	if err != nil {
		return Done{}, err
	}
	rl.audit(ctx, auditPasswordChanged, u.ID, slog.String("how", "set"))
	return rl.afterCredentialChange(ctx, u, msgPasswordSetDetail, msgPasswordSetMFA)
}

// Resend mails a new confirmation link for an unconfirmed sign-up (POST
// {prefix}/registration/resend-email/; the older link dies). The answer
// is the same whatever the address, so it tells nothing about accounts;
// invited users get their link again by a new invitation.
func (rl *Signup) Resend(ctx context.Context, o Origin, email string, in Form) error {
	ctx = withOrigin(ctx, o)
	if !rl.policy.Registration.SignupOpen() {
		return refuse(Forbidden, msgSignupClosed)
	}
	if in.Refused != nil {
		return in.Refused
	}
	fe := in.Invalid
	email = checkEmail(&fe, NormalizeEmail(email))
	if err := fe.Err(); err != nil {
		return err
	}
	if err := rl.throttleRequest(ctx, "verification_resend", email); err != nil {
		return err
	}
	u, err := rl.store.UserByEmail(ctx, email)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if u.EmailVerified || !u.IsActive || u.PasswordHash == "" {
		return nil
	}
	secret, err := rl.replaceLink(ctx, u.ID, purposeEmailConfirmation)
	if err != nil {
		return err
	}
	rl.mailVerificationLink(o, MailEmailConfirmation, u.Email, secret)
	return nil
}
