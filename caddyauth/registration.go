package caddyauth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passwords"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// Messages of the registration endpoints.
const (
	msgInvalidEmail      = "Enter a valid email address."
	msgEmailTaken        = "A user is already registered with this e-mail address."
	msgSignupMismatch    = "The two password fields didn't match."
	msgNameFormat        = "Incorrect format"
	msgVerificationSent  = "Verification e-mail sent."
	msgRoleAboveInviter  = "You cannot grant a role higher than your own."
	maxEmailLength       = 100
	maxNameLength        = 100
	maxRole              = 32767
	msgRoleBelowMinimum  = "Ensure this value is greater than or equal to 0."
	msgRoleAboveMaximum  = "Ensure this value is less than or equal to 32767."
	msgPasswordSetDetail = "Password set."
	msgPasswordSetMFA    = "Password set. Please configure MFA to complete registration."
)

// emailField reads a required address: trimmed, lower-cased, at most 100
// characters, and valid (no display name, no line breaks).
func emailField(f *form) string {
	email := normalizeEmail(f.Str("email", true, true))
	if f.Failed("email") {
		return ""
	}
	if utf8.RuneCountInString(email) > maxEmailLength {
		f.MaxLen("email", email, maxEmailLength)
		return ""
	}
	if !validEmail(email) {
		f.Fail("email", msgInvalidEmail)
		return ""
	}
	return email
}

// nameField reads first_name or last_name: letters (ASCII and Latin-1) and
// spaces only, at most 100 characters; stored with runs of spaces
// collapsed and each word capitalised.
func nameField(f *form, name string, required bool) string {
	s := f.Str(name, required, true)
	if s == "" || f.Failed(name) {
		return ""
	}
	if utf8.RuneCountInString(s) > maxNameLength {
		f.MaxLen(name, s, maxNameLength)
		return ""
	}
	for _, r := range s {
		latin1Letter := r >= 0xC0 && r <= 0xFF && r != 0xD7 && r != 0xF7
		if r != ' ' && !(r < 0x80 && unicode.IsLetter(r)) && !latin1Letter {
			f.Fail(name, msgNameFormat)
			return ""
		}
	}
	words := strings.Fields(s)
	for i, w := range words {
		r, size := utf8.DecodeRuneInString(w)
		words[i] = string(unicode.ToUpper(r)) + strings.ToLower(w[size:])
	}
	return strings.Join(words, " ")
}

// claimedForSignup reports whether an existing account holds its address
// against a sign-up: it is confirmed, was ever used, or has a live
// invitation. Other holders are abandoned sign-ups, replaced by the next
// sign-up for the address.
func (rl *realm) claimedForSignup(ctx context.Context, u account.User) (bool, error) {
	if u.EmailVerified || !u.LastLogin.IsZero() {
		return true, nil
	}
	inv, err := rl.store.UserTokens(ctx, u.ID, purposeInvitation, rl.notBeforeFor(rl.policy.emailConfirmationTTL))
	return len(inv) > 0, err
}

// pendingSignup reports whether u, an account not claimed for sign-up, is
// a sign-up whose confirmation link still works: it keeps its address, and
// its password, until the link expires.
func (rl *realm) pendingSignup(ctx context.Context, u account.User) (bool, error) {
	links, err := rl.store.UserTokens(ctx, u.ID, purposeEmailConfirmation, rl.notBeforeFor(rl.policy.emailConfirmationTTL))
	return len(links) > 0, err
}

// register answers POST {prefix}/registration/ (behaviour.md §3.8).
func (h *Handler) register(w http.ResponseWriter, r *http.Request) error {
	f, err := readForm(w, r)
	if err != nil {
		return err
	}
	res, err := h.signUp(r, f)
	if err != nil {
		return err
	}
	switch {
	case res.mfa != nil:
		return writeJSON(w, http.StatusCreated, res.mfa)
	case res.session:
		return h.writeTokens(w, http.StatusCreated, res.pair, nil)
	default:
		return writeJSON(w, http.StatusCreated, map[string]string{"detail": msgVerificationSent})
	}
}

// signupResult is how a sign-up ended, for POST /registration/ and the
// sign-up page to answer each in its own way.
type signupResult struct {
	// mfa is the MFA setup bootstrap in required mode (with `detail` when
	// a verification mail applies).
	mfa map[string]any
	// pair is the session opened when verification is none or optional
	// and MFA is not required; session says there is one.
	pair    tokenPair
	session bool
	// Otherwise the answer is msgVerificationSent.
}

// signUp is a sign-up from the fields of f (email, password1, password2,
// first_name, last_name), shared by POST {prefix}/registration/ and the
// sign-up page. Under mandatory verification a taken address answers
// exactly like a free one (its owner gets an "account exists" mail);
// otherwise it is a 400 on `email`. A pending sign-up for the address (its
// confirmation link still works) is kept: the new one gets the answer of a
// new account whenever that answer holds no session, the address a
// "sign-up pending" mail, and nothing is created. An abandoned sign-up for
// the address (its link expired) is replaced.
func (h *Handler) signUp(r *http.Request, f *form) (signupResult, error) {
	rl := h.realm
	ctx := r.Context()
	email := emailField(f)
	if err := rl.throttleRequest(r, "registration", email); err != nil {
		return signupResult{}, err
	}
	p1 := f.Str("password1", true, false)
	p2 := f.Str("password2", true, false)
	if !f.Failed("password1") {
		for _, msg := range passwords.Validate(p1, email) {
			f.Fail("password1", msg)
		}
	}
	first := nameField(f, "first_name", true)
	last := nameField(f, "last_name", true)
	hidden := rl.policy.emailVerification == verifyMandatory
	var taken *account.User   // hidden conflict: the owner gets a note
	var pending *account.User // a pending sign-up, kept: the address gets a note
	var abandoned int64       // an abandoned sign-up, replaced by this one
	if !f.Failed("email") {
		u, err := rl.store.UserByEmail(ctx, email)
		switch {
		case errors.Is(err, account.ErrNotFound):
		case err != nil:
			return signupResult{}, err
		default:
			claimed, err := rl.claimedForSignup(ctx, u)
			if err != nil {
				return signupResult{}, err
			}
			isPending := false
			if !claimed {
				if isPending, err = rl.pendingSignup(ctx, u); err != nil {
					return signupResult{}, err
				}
			}
			// The first sign-up's answer can be repeated without an
			// account when it held no session.
			sessionless := hidden || rl.policy.mfaMode == mfaRequired
			switch {
			case isPending && sessionless:
				pending = &u
			case (claimed || isPending) && !hidden:
				f.Fail("email", msgEmailTaken)
			case claimed:
				taken = &u
			default:
				abandoned = u.ID
			}
		}
	}
	if err := f.err(); err != nil {
		return signupResult{}, err
	}
	if p1 != p2 {
		return signupResult{}, errFields(map[string][]string{"non_field_errors": {msgSignupMismatch}})
	}
	hash, err := rl.hasher.hash(ctx, p1, rl.hashOwners(r, email)...)
	if err != nil {
		return signupResult{}, err
	}
	mailSent := rl.policy.emailVerification != verifyNone
	if taken != nil {
		// The same answer as a new account, and a note to the owner.
		rl.sendMail(mailAccountExists, taken.Email, mailData{ResetRequestURL: rl.policy.passwordResetRequestURL})
		return h.signupOutcome(r, nil, mailSent)
	}
	if pending != nil {
		// The same answer as the first sign-up, whose password and link
		// stay; the note holds no link that would confirm this one.
		rl.sendMail(mailSignupPending, pending.Email, mailData{
			Expires:         humanDuration(rl.policy.emailConfirmationTTL),
			ResetRequestURL: rl.policy.passwordResetRequestURL,
		})
		return h.signupOutcome(r, nil, mailSent)
	}
	u := account.User{
		Email:         email,
		PasswordHash:  hash,
		FirstName:     first,
		LastName:      last,
		IsActive:      true,
		EmailVerified: rl.policy.emailVerification == verifyNone,
		DateJoined:    rl.now(),
	}
	var secret string
	if mailSent {
		if secret, err = newLinkSecret(rl.rand); err != nil {
			return signupResult{}, err
		}
	}
	u, err = rl.createLinkedUser(ctx, u, abandoned, purposeEmailConfirmation, secret)
	if errors.Is(err, account.ErrConflict) {
		// A concurrent sign-up took the address first.
		if hidden {
			return h.signupOutcome(r, nil, mailSent)
		}
		return signupResult{}, errField("email", msgEmailTaken)
	}
	if err != nil {
		return signupResult{}, err
	}
	if mailSent {
		h.mailVerificationLink(mailEmailConfirmation, u.Email, secret)
	}
	rl.logger.Info("user signed up", zap.Int64("user_id", u.ID), zap.String("client_ip", clientIP(r)))
	return h.signupOutcome(r, &u, mailSent)
}

// createLinkedUser creates u, with the digest of the link secret (if not "")
// as a link of purpose, in one transaction that first deletes the account
// replace (if not 0) whose address u takes over. It returns u with its id.
func (rl *realm) createLinkedUser(ctx context.Context, u account.User, replace int64, purpose, secret string) (account.User, error) {
	err := rl.store.InTx(ctx, func(tx account.Store) error {
		if replace != 0 {
			if err := tx.DeleteUser(ctx, replace); err != nil && !errors.Is(err, account.ErrNotFound) {
				return err
			}
		}
		id, err := tx.CreateUser(ctx, u)
		if err != nil {
			return err
		}
		u.ID = id
		if secret != "" {
			_, err = tx.CreateToken(ctx, account.Token{UserID: id, Purpose: purpose, Token: linkDigest(secret), Created: rl.now()})
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
func (h *Handler) signupOutcome(r *http.Request, u *account.User, mailSent bool) (signupResult, error) {
	rl := h.realm
	ctx := r.Context()
	extra := map[string]any{}
	if mailSent {
		extra["detail"] = msgVerificationSent
	}
	if rl.policy.mfaMode == mfaRequired {
		var id string
		var err error
		switch {
		case u == nil:
			id, err = tokens.NewID(rl.rand)
		case rl.policy.emailVerification == verifyMandatory:
			id, err = rl.newChallenge(ctx, rl.store, *u, purposeSignupChallenge)
		default:
			id, err = rl.newChallenge(ctx, rl.store, *u, purposeMFASetupChallenge)
		}
		if err != nil {
			return signupResult{}, err
		}
		extra["mfa_setup_required"] = true
		extra["setup_challenge_id"] = id
		return signupResult{mfa: extra}, nil
	}
	if rl.policy.emailVerification == verifyMandatory {
		return signupResult{}, nil
	}
	pair, err := h.openLoginSession(ctx, r, *u)
	if err != nil {
		return signupResult{}, err
	}
	return signupResult{pair: pair, session: true}, nil
}

// verifyEmail answers GET {prefix}/registration/verification/<key>/, the
// link of a confirmation or invitation mail (behaviour.md §3.9). A
// confirmation link works once: the address is confirmed (the
// `email_verified` claim follows at the next refresh), and the browser
// goes to email_verified_redirect or the built-in page. An invitation
// link leads to the set-password step and works until the password is
// set.
func (h *Handler) verifyEmail(w http.ResponseWriter, r *http.Request) error {
	rl := h.realm
	ctx := r.Context()
	key := strings.TrimSuffix(h.pathParam(r, "/registration/verification/"), "/")
	if key == "" || strings.Contains(key, "/") || len(key) > 128 {
		return h.linkPage(w, r, http.StatusNotFound, pageLinkInvalid)
	}
	digest := linkDigest(key)
	notBefore := rl.notBeforeFor(rl.policy.emailConfirmationTTL)
	if h.invitationsOn() {
		row, err := rl.store.FindToken(ctx, purposeInvitation, digest, notBefore)
		if err == nil {
			return h.followInvitation(w, r, row)
		}
		if !errors.Is(err, account.ErrNotFound) {
			return err
		}
	}
	row, err := rl.store.ConsumeToken(ctx, purposeEmailConfirmation, digest, notBefore)
	if errors.Is(err, account.ErrNotFound) {
		return h.linkPage(w, r, http.StatusNotFound, pageLinkInvalid)
	}
	if err != nil {
		return err
	}
	err = rl.store.InTx(ctx, func(tx account.Store) error {
		u, err := tx.UserForUpdate(ctx, row.UserID)
		if err != nil {
			return err
		}
		if !u.IsActive {
			return errNotFoundPage
		}
		return rl.confirmAddress(ctx, tx, u)
	})
	if errors.Is(err, account.ErrNotFound) || errors.Is(err, errNotFoundPage) {
		return h.linkPage(w, r, http.StatusNotFound, pageLinkInvalid)
	}
	if err != nil {
		return err
	}
	return h.verifiedLanding(w)
}

// errNotFoundPage makes a transaction answer with the invalid-link page.
var errNotFoundPage = errors.New("link of an inactive account")

// confirmAddress marks u's address confirmed by its sign-up's link, turns
// the sign-up's held-back setup challenge into a live one (its lifetime
// starts now), and drops its other confirmation links. Mandatory
// verification opens no session before this, so there is none to enable.
// u is the row as read with UserForUpdate in the transaction tx.
func (rl *realm) confirmAddress(ctx context.Context, tx account.Store, u account.User) error {
	if !u.EmailVerified {
		if err := tx.SetEmailVerified(ctx, u.ID, true); err != nil {
			return err
		}
	}
	held, err := tx.UserTokens(ctx, u.ID, purposeSignupChallenge, rl.notBeforeFor(rl.policy.emailConfirmationTTL))
	if err != nil {
		return err
	}
	if _, err := tx.DeleteUserTokens(ctx, u.ID, purposeSignupChallenge, purposeEmailConfirmation); err != nil {
		return err
	}
	for _, ch := range held {
		if _, err := tx.CreateToken(ctx, account.Token{UserID: u.ID, Purpose: purposeMFASetupChallenge, Token: ch.Token, Created: rl.now()}); err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) verifiedLanding(w http.ResponseWriter) error {
	target := h.realm.policy.emailVerifiedRedirect
	if target == "" {
		target = h.Prefix + "/registration/verified/"
	}
	return redirect(w, target)
}

// followInvitation confirms the invited address and hands out a
// set-password capability (replacing earlier ones) in the
// set_password_access_token cookie with a CSRF cookie, then sends the
// browser to password_set_redirect or the built-in form under the prefix.
func (h *Handler) followInvitation(w http.ResponseWriter, r *http.Request, row account.Token) error {
	rl := h.realm
	ctx := r.Context()
	var u account.User
	err := rl.store.InTx(ctx, func(tx account.Store) error {
		var err error
		if u, err = tx.UserForUpdate(ctx, row.UserID); err != nil {
			return err
		}
		if !u.IsActive {
			return errNotFoundPage
		}
		if !u.EmailVerified {
			if err := tx.SetEmailVerified(ctx, u.ID, true); err != nil {
				return err
			}
			u.EmailVerified = true
		}
		return nil
	})
	if errors.Is(err, account.ErrNotFound) || errors.Is(err, errNotFoundPage) {
		return h.linkPage(w, r, http.StatusBadRequest, pageInvitationInvalid)
	}
	if err != nil {
		return err
	}
	if u.PasswordHash != "" {
		return h.verifiedLanding(w)
	}
	return h.handOverCapability(w, r, u, setPasswordCookie, purposePassSetAccess,
		rl.policy.passwordSetRedirect, "/registration/set-password/default/")
}

// mayGrant is the invitation role rule: staff (1000) may grant any role,
// superusers (900) any role but staff, and any other role only itself or
// the plain user role 0.
func mayGrant(inviter, role int) bool {
	switch inviter {
	case account.RoleStaff:
		return true
	case account.RoleSuperuser:
		return role != account.RoleStaff
	default:
		return role == inviter || role == account.RoleUser
	}
}

// userRegister answers POST {prefix}/registration/user-register/
// (behaviour.md §3.10): a holder of an `invite_roles` role (re-read from
// the database) creates an account without a password for `email` with
// `role`, and the invitation link is mailed. A pending invitation or an
// abandoned sign-up for the address is replaced; a used account is a 400.
func (h *Handler) userRegister(w http.ResponseWriter, r *http.Request) error {
	caller, err := h.authenticated(r)
	if err != nil {
		return err
	}
	rl := h.realm
	ctx := r.Context()
	// The body before the inviter's row, so that a slow body cannot carry
	// a role taken away meanwhile; its errors still come after the
	// permission check.
	f, bodyErr := readForm(w, r)
	inviter, err := rl.store.UserByID(ctx, caller.NumericUserID())
	if errors.Is(err, account.ErrNotFound) || (err == nil && !inviter.IsActive) {
		return errTokenNotValid(msgTokenInvalid)
	}
	if err != nil {
		return err
	}
	if !slices.Contains(rl.policy.inviteRoles, inviter.Role) {
		return errDetail(http.StatusForbidden, msgPermissionDenied)
	}
	if bodyErr != nil {
		return bodyErr
	}
	if err := rl.liveSession(ctx, caller); err != nil {
		return err
	}
	email := emailField(f)
	role, ok := f.Integer("role", true)
	switch {
	case !ok:
	case role < 0:
		f.Fail("role", msgRoleBelowMinimum)
	case role > maxRole:
		f.Fail("role", msgRoleAboveMaximum)
	case !mayGrant(inviter.Role, role):
		f.Fail("role", msgRoleAboveInviter)
	}
	first := nameField(f, "first_name", false)
	last := nameField(f, "last_name", false)
	var replace int64
	if !f.Failed("email") {
		u, err := rl.store.UserByEmail(ctx, email)
		switch {
		case errors.Is(err, account.ErrNotFound):
		case err != nil:
			return err
		case u.EmailVerified || !u.LastLogin.IsZero():
			f.Fail("email", msgEmailTaken)
		default:
			replace = u.ID
		}
	}
	if err := f.err(); err != nil {
		return err
	}
	secret, err := newLinkSecret(rl.rand)
	if err != nil {
		return err
	}
	u := account.User{Email: email, FirstName: first, LastName: last, Role: role, IsActive: true, DateJoined: rl.now()}
	u, err = rl.createLinkedUser(ctx, u, replace, purposeInvitation, secret)
	if errors.Is(err, account.ErrConflict) {
		return errField("email", msgEmailTaken)
	}
	if err != nil {
		return err
	}
	h.mailVerificationLink(mailInvitation, u.Email, secret)
	rl.logger.Info("user invited", zap.Int64("user_id", u.ID), zap.Int64("inviter_id", inviter.ID), zap.Int("role", role))
	return writeJSON(w, http.StatusCreated, map[string]any{})
}

// setPassword answers POST {prefix}/registration/set-password/ (behaviour.md
// §3.11), authorised by the set_password_access_token cookie and the CSRF
// header. The invitation is claimed in the same transaction as the
// password, so of many capabilities for one invitation only one can set
// it. In MFA required mode the answer is the setup bootstrap instead of
// tokens.
func (h *Handler) setPassword(w http.ResponseWriter, r *http.Request) error {
	u, err := h.setPasswordWithCapability(w, r, setPasswordCookie, purposePassSetAccess, func(ctx context.Context, tx account.Store, u *account.User) error {
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
		return err
	}
	h.realm.auditPasswordChanged(r.Context(), u.ID, "set")
	return h.afterCredentialChange(w, r, u, msgPasswordSetDetail, msgPasswordSetMFA)
}

// signupOpen reports whether anyone may sign up (POST /registration/ and
// the sign-up page are routed).
func (h *Handler) signupOpen() bool {
	p := h.realm.policy.registration
	return p == registrationOpen || p == registrationInvitations
}

// invitationsOn reports whether invitations are part of the registration
// policy.
func (h *Handler) invitationsOn() bool {
	p := h.realm.policy.registration
	return p == registrationInvitations || p == registrationAdminManaged
}

// resendEmail answers POST {prefix}/registration/resend-email/: a new
// confirmation link for an unconfirmed sign-up (the older link dies). The
// answer is the same whatever the address, so it tells nothing about
// accounts; invited users get their link again by a new invitation.
func (h *Handler) resendEmail(w http.ResponseWriter, r *http.Request) error {
	rl := h.realm
	ctx := r.Context()
	f, err := readForm(w, r)
	if err != nil {
		return err
	}
	email := emailField(f)
	if err := f.err(); err != nil {
		return err
	}
	if err := rl.throttleRequest(r, "verification_resend", email); err != nil {
		return err
	}
	ok := map[string]string{"detail": "ok"}
	u, err := rl.store.UserByEmail(ctx, email)
	if errors.Is(err, account.ErrNotFound) {
		return writeJSON(w, http.StatusOK, ok)
	}
	if err != nil {
		return err
	}
	if u.EmailVerified || !u.IsActive || u.PasswordHash == "" {
		return writeJSON(w, http.StatusOK, ok)
	}
	secret, err := rl.replaceLink(ctx, u.ID, purposeEmailConfirmation)
	if err != nil {
		return err
	}
	h.mailVerificationLink(mailEmailConfirmation, u.Email, secret)
	return writeJSON(w, http.StatusOK, ok)
}
