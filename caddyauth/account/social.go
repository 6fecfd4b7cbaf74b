package account

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// Social is sign-in with an identity provider: the reference's token and
// code flows, the browser's redirect flow, and the links between accounts
// and their identities at providers (connect, list, disconnect). Who a
// provider says signed in comes through an IdentityClient the adapter
// gives; the rules of what that identity may reach are here.
type Social struct{ *core }

// SocialIdentity is who a provider says signed in: its stable subject,
// the address it gives and whether it vouches for it, and the names.
type SocialIdentity struct {
	Subject             string
	Email               string
	EmailVerified       bool
	FirstName, LastName string
}

// IdentityClient speaks to one provider. Its errors are ErrSocialToken
// (the credential did not verify), ErrSocialAudience (it was issued to
// another client), ErrFlowNotSupported, or any other error for a provider
// that cannot be reached (answered as a failing dependency).
type IdentityClient interface {
	// VerifyToken checks a credential the client obtained itself: an ID
	// token, or else an access token.
	VerifyToken(ctx context.Context, idToken, accessToken string) (SocialIdentity, error)
	// Exchange redeems an authorization code the provider sent back to
	// redirect, with the PKCE verifier ("" when the client used none) and
	// the nonce the ID token must carry ("" when none was sent).
	Exchange(ctx context.Context, redirect, code, verifier, nonce string) (SocialIdentity, error)
	// AuthCodeURL is where a browser signs in with the provider, to come
	// back to redirect with a code, the state, and the ID token bound to
	// nonce; verifier's S256 challenge goes with it.
	AuthCodeURL(ctx context.Context, redirect, state, nonce, verifier string) (string, error)
}

// Errors an IdentityClient returns.
var (
	ErrSocialToken      = errors.New("the provider's credential did not verify")
	ErrSocialAudience   = errors.New("the credential was issued to another client")
	ErrFlowNotSupported = errors.New("the provider does not support this flow")
)

// Provider is one configured identity provider.
type Provider struct {
	ID       string // in paths and rows, e.g. "google"
	ClientID string // the client registered at the provider
	// EmailLinking lets a first sign-in reach an existing account by its
	// address (under the rules of resolve); without it such a sign-in is
	// refused (email_already_registered).
	EmailLinking bool
	// Signup lets a first sign-in with an unknown address create an
	// account (as registration allows); without it, signup_not_allowed.
	Signup bool
	Client IdentityClient
}

// SocialCredential is the body of a sign-in or connect call: the client
// id it claims, and either what the token flow sends (an ID token or an
// access token) or what the code flow sends (the code, the redirect URI
// it was issued for, and the PKCE verifier if any).
type SocialCredential struct {
	Form
	ClientID             string
	IDToken, AccessToken string
	Code, CallbackURL    string
	CodeVerifier         string
	// Password is the caller's current password, for a connect from a
	// session that proved nothing recently.
	Password string
}

// Social refusals, in the reference's words and codes.
const (
	msgProviderNotConfigured = "This provider is not configured."
	msgFlowNotSupported      = "This provider does not support this flow."
	msgInvalidSocialToken    = "The provider did not accept the credential."
	msgClientIDMismatch      = "The credential was not issued to this site's client."
	msgProviderEmailUnverif  = "The provider did not give a verified e-mail address."
	msgEmailRegistered       = "An account already uses this e-mail address: sign in to it and connect the provider there."
	msgLocalUnverified       = "An account with this e-mail address was created but never confirmed. If it is not yours, reset its password to take the address back (that removes what was set up before); if it is, confirm it. Then sign in with the provider."
	msgSocialSignupClosed    = "Sign-up is closed."
	msgSocialSignupOff       = "Sign-up through this provider is not allowed."
	msgCallbackNotAllowed    = "callback_url is not allowed."
	msgSocialAccountInUse    = "This provider account is connected to another user."
	msgDisconnectNotAllowed  = "This is the last way to sign in to the account: set a password or connect another provider first."
	msgSocialAccountNotFound = "Not found."
	msgCredentialRequired    = "Send an id_token or an access_token."
	msgSocialAttemptInvalid  = "This sign-in attempt is unknown or has expired: start again."
)

// ErrSocialAttempt is the reason a browser's return from the provider is
// refused: its attempt is unknown, spent or expired.
var ErrSocialAttempt = errors.New("social sign-in attempt invalid")

// Purposes of the social flows' token rows.
const (
	// A browser's sign-in between the redirect to the provider and its
	// return: the digest of the state, the provider and the next URL.
	purposeSocialAttempt = "social_attempt"
	// A link held back until its login challenge is answered: the
	// challenge's digest, the provider and the subject.
	purposeSocialPending = "social_pending_link"
)

// SocialAttemptTTL is how long a browser may take at the provider: the
// web layer's attempt cookie lives as long.
const SocialAttemptTTL = 10 * time.Minute

// provider is the configured provider id.
func (rl *Social) provider(id string) (*Provider, error) {
	for i := range rl.providers {
		if rl.providers[i].ID == id {
			return &rl.providers[i], nil
		}
	}
	return nil, refuseCode(NotFound, msgProviderNotConfigured, "provider_not_configured")
}

// admit finds the provider a call names and counts the call towards the
// client's social_ip throttle (a refusal is counted and audited).
func (rl *Social) admit(ctx context.Context, provider, ip string) (*Provider, error) {
	p, err := rl.provider(provider)
	if err != nil {
		return nil, err
	}
	if err := rl.throttle(ctx, throttleSocialIP, rl.clientKey(ip)); err != nil {
		rl.socialFailed(ctx, p.ID, 0, "throttled", err)
		return nil, err
	}
	return p, nil
}

// identify checks a credential in the reference's order (the body, the
// client id, the callback URL) and asks the provider who it names.
func (rl *Social) identify(ctx context.Context, p *Provider, in SocialCredential, code bool) (SocialIdentity, error) {
	if err := in.err(); err != nil {
		return SocialIdentity{}, err
	}
	if !code && in.IDToken == "" && in.AccessToken == "" {
		return SocialIdentity{}, fieldError("non_field_errors", msgCredentialRequired)
	}
	if in.ClientID == "" || subtle.ConstantTimeCompare([]byte(in.ClientID), []byte(p.ClientID)) != 1 {
		return SocialIdentity{}, refuseCode(Unauthenticated, msgClientIDMismatch, "client_id_mismatch")
	}
	if code && !slices.Contains(rl.policy.SocialCallbackURLs, in.CallbackURL) {
		return SocialIdentity{}, refuseCode(Invalid, msgCallbackNotAllowed, "callback_url_not_allowed")
	}
	var id SocialIdentity
	var err error
	if code {
		id, err = p.Client.Exchange(ctx, in.CallbackURL, in.Code, in.CodeVerifier, "")
	} else {
		id, err = p.Client.VerifyToken(ctx, in.IDToken, in.AccessToken)
	}
	return id, socialRefusal(err)
}

// socialRefusal is the answer to a provider's verdict.
func socialRefusal(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrSocialAudience):
		return refuseCode(Unauthenticated, msgClientIDMismatch, "client_id_mismatch")
	case errors.Is(err, ErrSocialToken):
		return refuseCode(Unauthenticated, msgInvalidSocialToken, "invalid_social_token")
	case errors.Is(err, ErrFlowNotSupported):
		return refuseCode(Invalid, msgFlowNotSupported, "flow_not_supported")
	}
	return err
}

// SignIn is the reference's sign-in with a provider: the token flow
// (POST {prefix}/social/<provider>/token/) or, with code, the code flow
// (…/code/). It answers as a password login does: the session, or the
// second step.
func (rl *Social) SignIn(ctx context.Context, o Origin, provider string, in SocialCredential, code bool) (Step, error) {
	ctx = withOrigin(ctx, o)
	p, err := rl.admit(ctx, provider, o.IP)
	if err != nil {
		return Step{}, err
	}
	id, err := rl.identify(ctx, p, in, code)
	if err != nil {
		rl.socialFailed(ctx, p.ID, 0, "credential", err)
		return Step{}, err
	}
	return rl.signInAs(ctx, p, id)
}

// signInAs is the sign-in of a verified identity: the account it
// resolves to, the account's state, the MFA gate, then the session.
func (rl *Social) signInAs(ctx context.Context, p *Provider, id SocialIdentity) (Step, error) {
	r, err := rl.resolve(ctx, p, id)
	if errors.Is(err, ErrConflict) {
		// A concurrent first sign-in of the same identity or address
		// created its row first: resolve again, to that row.
		r, err = rl.resolve(ctx, p, id)
	}
	if err != nil {
		rl.socialFailed(ctx, p.ID, r.user.ID, "account", err)
		return Step{}, err
	}
	u := r.user
	if rl.policy.EmailVerification == VerifyMandatory && !u.EmailVerified {
		rl.socialFailed(ctx, p.ID, u.ID, "email_not_verified", nil)
		return Step{}, refuseCode(Unauthenticated, "User email is not verified", "email_not_verified")
	}
	step, err := rl.challenges.gate(ctx, u)
	if err != nil {
		rl.socialFailed(ctx, p.ID, u.ID, "mfa_gate", err)
		return Step{}, err
	}
	if step.Pending() {
		// The link (or its last_login) is written when the second step is
		// answered, never before.
		ch := step.Challenge + step.SetupChallenge
		row := Token{UserID: u.ID, Purpose: purposeSocialPending, Token: pendingLink(ch, p.ID, id.Subject), Created: rl.now()}
		if _, err := rl.store.CreateToken(ctx, row); err != nil {
			return Step{}, err
		}
		rl.metrics.SocialLogin(p.ID, ResultMFARequired)
		rl.audit(ctx, auditSocialLogin, u.ID, slog.String("provider", p.ID), slog.Bool("mfa_pending", true))
		return step, nil
	}
	var pair TokenPair
	err = rl.store.InTx(ctx, func(tx Store) error {
		cur, err := tx.UserForUpdate(ctx, u.ID)
		if err != nil {
			return err
		}
		if !cur.IsActive {
			return refuse(Unauthenticated, MsgNoActiveAccount)
		}
		if err := rl.writeLink(ctx, tx, &cur, p.ID, id.Subject); err != nil {
			return err
		}
		if err := tx.SetLastLogin(ctx, cur.ID, rl.now()); err != nil {
			return err
		}
		pair, err = rl.openSession(ctx, tx, cur, originOf(ctx).IP)
		return err
	})
	if err != nil {
		rl.socialFailed(ctx, p.ID, u.ID, "account", err)
		return Step{}, err
	}
	rl.metrics.SocialLogin(p.ID, ResultSuccess)
	rl.audit(ctx, auditSocialLogin, u.ID, slog.String("provider", p.ID), slog.Bool("created", r.created))
	return Step{Pair: pair}, nil
}

// resolved is the account an identity signs in to, and whether this
// sign-in created it.
type resolved struct {
	user    User
	created bool
}

// resolve finds the account of an identity: the one its (provider,
// subject) is linked to; else, by the address the provider vouches for,
// an existing account whose owner has proven control of that mailbox (its
// address confirmed, a live invitation, or a staff role); else a new
// account without a password, as registration allows. Whatever an
// unproven party set up for the address is never reached: a sign-up
// never confirmed nor used is replaced, one in use waits for its
// confirmation (local_account_unverified), and under verification `none`,
// where no address is ever confirmed, an account with a password is
// reached only by connecting the provider from a session of it.
func (rl *Social) resolve(ctx context.Context, p *Provider, id SocialIdentity) (resolved, error) {
	link, err := rl.store.SocialAccountByUID(ctx, p.ID, id.Subject)
	switch {
	case err == nil:
		u, err := rl.store.UserByID(ctx, link.UserID)
		if err != nil {
			return resolved{}, err
		}
		if !u.IsActive {
			return resolved{user: u}, refuse(Unauthenticated, MsgNoActiveAccount)
		}
		return resolved{user: u}, nil
	case !errors.Is(err, ErrNotFound):
		return resolved{}, err
	}
	email := NormalizeEmail(id.Email)
	if !id.EmailVerified || !ValidEmail(email) {
		return resolved{}, refuseCode(Invalid, msgProviderEmailUnverif, "provider_email_unverified")
	}
	u, err := rl.store.UserByEmail(ctx, email)
	var replace int64
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return resolved{}, err
	case !u.IsActive:
		return resolved{user: u}, refuse(Unauthenticated, MsgNoActiveAccount)
	case !sameMailbox(id.Email, u.Email):
		// Found only through Unicode case folding (a Kelvin sign for a
		// K, a dotted capital I): another mailbox than the account's.
		return resolved{}, refuseCode(Conflict, msgEmailRegistered, "email_already_registered")
	default:
		proven, err := rl.mailboxProven(ctx, u)
		switch {
		case err != nil:
			return resolved{}, err
		case proven && !p.EmailLinking:
			return resolved{}, refuseCode(Conflict, msgEmailRegistered, "email_already_registered")
		case proven:
			// The provider vouches for the address: the link confirms it
			// (writeLink).
			u.EmailVerified = true
			return resolved{user: u}, nil
		case u.EmailVerified:
			return resolved{}, refuseCode(Conflict, msgEmailRegistered, "email_already_registered")
		case !u.LastLogin.IsZero():
			return resolved{}, refuseCode(Conflict, msgLocalUnverified, "local_account_unverified")
		}
		replace = u.ID
	}
	if !rl.policy.Registration.SignupOpen() {
		return resolved{}, refuseCode(Forbidden, msgSocialSignupClosed, "signup_closed")
	}
	if !p.Signup {
		return resolved{}, refuseCode(Invalid, msgSocialSignupOff, "signup_not_allowed")
	}
	// Names the profile rules refuse are left out, not refused.
	var ignored FieldErrors
	nu := User{
		Email:         email,
		FirstName:     checkName(&ignored, "first_name", id.FirstName),
		LastName:      checkName(&ignored, "last_name", id.LastName),
		IsActive:      true,
		EmailVerified: true,
		DateJoined:    rl.now(),
	}
	err = rl.store.InTx(ctx, func(tx Store) error {
		if replace != 0 {
			if err := tx.DeleteUser(ctx, replace); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		var err error
		if nu.ID, err = tx.CreateUser(ctx, nu); err != nil {
			return err
		}
		_, err = tx.CreateSocialAccount(ctx, SocialAccount{UserID: nu.ID, Provider: p.ID, UID: id.Subject, Created: rl.now()})
		return err
	})
	if err != nil {
		return resolved{}, err
	}
	if replace != 0 {
		rl.audit(ctx, auditSetupRemoved, replace, slog.String("by", "social_signup"))
	}
	rl.metrics.SocialLink(p.ID, "signup")
	rl.audit(ctx, auditSocialLinked, nu.ID, slog.String("provider", p.ID), slog.String("how", "signup"))
	return resolved{user: nu, created: true}, nil
}

// sameMailbox reports whether a provider's address names the stored one
// up to ASCII case: lookups fold case the Unicode way, which would let
// another mailbox (say with a Kelvin sign for its K) reach the account.
func sameMailbox(given, stored string) bool {
	given = strings.TrimSpace(given)
	if len(given) != len(stored) {
		return false
	}
	for i := 0; i < len(given); i++ {
		a, b := given[i], stored[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// mailboxProven reports whether u's owner has shown control of its
// mailbox: the address was confirmed (under verification `none` only an
// account without a password counts, one a provider or an invitation
// made), a live invitation waits for it, or it is a staff account.
func (rl *Social) mailboxProven(ctx context.Context, u User) (bool, error) {
	if u.Role >= RoleSuperuser {
		return true, nil
	}
	if u.EmailVerified && (rl.policy.EmailVerification != VerifyNone || u.PasswordHash == "") {
		return true, nil
	}
	inv, err := rl.store.UserTokens(ctx, u.ID, purposeInvitation, rl.notBeforeFor(rl.policy.EmailConfirmationTTL))
	return len(inv) > 0, err
}

// writeLink records, through tx, a sign-in of u (locked) with (provider,
// subject): the link's last login, creating the link when it is new. A
// new link to an account confirms its address (the provider vouched for
// it) and ends its invitations, which a password would have answered. A
// subject linked to another account meanwhile is refused.
func (rl *Social) writeLink(ctx context.Context, tx Store, u *User, provider, subject string) error {
	link, err := tx.SocialAccountByUID(ctx, provider, subject)
	switch {
	case err == nil && link.UserID != u.ID:
		return refuseCode(Conflict, msgSocialAccountInUse, "social_account_in_use")
	case err == nil:
		return tx.SetSocialLogin(ctx, link.ID, rl.now())
	case !errors.Is(err, ErrNotFound):
		return err
	}
	if _, err := tx.CreateSocialAccount(ctx, SocialAccount{UserID: u.ID, Provider: provider, UID: subject, Created: rl.now(), LastLogin: rl.now()}); err != nil {
		if errors.Is(err, ErrConflict) {
			return refuseCode(Conflict, msgSocialAccountInUse, "social_account_in_use")
		}
		return err
	}
	if !u.EmailVerified {
		if err := tx.SetEmailVerified(ctx, u.ID, true); err != nil {
			return err
		}
		u.EmailVerified = true
	}
	if _, err := tx.DeleteUserTokens(ctx, u.ID, purposeInvitation); err != nil {
		return err
	}
	rl.metrics.SocialLink(provider, "link")
	rl.audit(ctx, auditSocialLinked, u.ID, slog.String("provider", provider), slog.String("how", "email"))
	return nil
}

// pendingLink is the token of a link held back until the challenge ch is
// answered.
func pendingLink(ch, provider, subject string) string {
	return challengeDigest(ch) + " " + provider + " " + subject
}

// completePendingLinks writes, through tx, the links held back for the
// second step whose challenge (login or setup) is the row ch, now
// answered for u (locked).
func (rl *Social) completePendingLinks(ctx context.Context, tx Store, u *User, ch Token) error {
	rows, err := tx.UserTokens(ctx, u.ID, purposeSocialPending, rl.now().Add(-rl.policy.MFAChallengeTTL))
	if err != nil || len(rows) == 0 {
		return err
	}
	prefix := ch.Token + " "
	for _, row := range rows {
		rest, ok := strings.CutPrefix(row.Token, prefix)
		if !ok {
			continue
		}
		if _, err := tx.DeleteToken(ctx, purposeSocialPending, row.Token); err != nil {
			return err
		}
		provider, subject, _ := strings.Cut(rest, " ")
		err := rl.writeLink(ctx, tx, u, provider, subject)
		if IsRefusal(err) {
			// Linked to someone else meanwhile: the sign-in stands (it
			// proved the account), the link is not made.
			rl.logger.Info("social link not made: the subject is linked to another account", "user_id", u.ID, "provider", provider)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// socialFailed counts and audits a refused social sign-in.
func (rl *Social) socialFailed(ctx context.Context, provider string, userID int64, reason string, err error) {
	var refusal *Refusal
	result := ResultFailure
	switch {
	case err != nil && !errors.As(err, &refusal):
		rl.metrics.SocialLogin(provider, ResultError)
		return
	case reason == "throttled":
		result = ResultThrottled
	case refusal != nil && refusal.Kind == Throttled:
		result, reason = ResultLocked, "mfa_locked"
	case refusal != nil && refusal.Code != "":
		reason = refusal.Code
	}
	rl.metrics.SocialLogin(provider, result)
	level := slog.LevelInfo
	if result == ResultThrottled {
		level = slog.LevelDebug
	}
	rl.auditAt(ctx, level, auditSocialLoginFailed, userID, slog.String("provider", provider), slog.String("reason", reason))
}

// SocialLink is one link as its owner sees it.
type SocialLink struct {
	ID         int64
	Provider   string
	UID        string
	LastLogin  time.Time // zero: never used to sign in
	DateJoined time.Time // when the link was made
}

func linkOf(a SocialAccount) SocialLink {
	return SocialLink{ID: a.ID, Provider: a.Provider, UID: a.UID, LastLogin: a.LastLogin, DateJoined: a.Created}
}

// caller is the live account of a bearer access token.
func (rl *Social) caller(ctx context.Context, access string) (tokens.Claims, User, error) {
	c, err := rl.sessions.Check(ctx, access, false)
	if err != nil {
		return tokens.Claims{}, User{}, err
	}
	u, err := rl.sessions.liveCaller(ctx, c)
	return c, u, err
}

// Connect links the identity a credential names to the bearer's account
// (POST {prefix}/social/<provider>/connect/token/ and …/connect/code/).
// A new way to sign in is a credential change: the session must be live
// and have proved itself recently, or the body carries the password. An
// identity linked to another account is refused (social_account_in_use);
// one linked to this account already is answered as it is.
func (rl *Social) Connect(ctx context.Context, o Origin, access, provider string, in SocialCredential, code bool) (SocialLink, error) {
	ctx = withOrigin(ctx, o)
	c, u, err := rl.caller(ctx, access)
	if err != nil {
		return SocialLink{}, err
	}
	p, err := rl.admit(ctx, provider, o.IP)
	if err != nil {
		return SocialLink{}, err
	}
	if err := rl.reauthenticate(ctx, c, u, in.Password); err != nil {
		return SocialLink{}, err
	}
	id, err := rl.identify(ctx, p, in, code)
	if err != nil {
		return SocialLink{}, err
	}
	var out SocialAccount
	err = rl.store.InTx(ctx, func(tx Store) error {
		if _, err := tx.UserForUpdate(ctx, u.ID); err != nil {
			return err
		}
		link, err := tx.SocialAccountByUID(ctx, p.ID, id.Subject)
		switch {
		case err == nil && link.UserID != u.ID:
			return refuseCode(Conflict, msgSocialAccountInUse, "social_account_in_use")
		case err == nil:
			out = link
			return nil
		case !errors.Is(err, ErrNotFound):
			return err
		}
		out = SocialAccount{UserID: u.ID, Provider: p.ID, UID: id.Subject, Created: rl.now()}
		out.ID, err = tx.CreateSocialAccount(ctx, out)
		if errors.Is(err, ErrConflict) {
			return refuseCode(Conflict, msgSocialAccountInUse, "social_account_in_use")
		}
		return err
	})
	if err != nil {
		return SocialLink{}, err
	}
	rl.metrics.SocialLink(p.ID, "connect")
	rl.audit(ctx, auditSocialLinked, u.ID, slog.String("provider", p.ID), slog.String("how", "connect"))
	return linkOf(out), nil
}

// Accounts lists the bearer's links (GET {prefix}/social/accounts/).
func (rl *Social) Accounts(ctx context.Context, access string) ([]SocialLink, error) {
	_, u, err := rl.caller(ctx, access)
	if err != nil {
		return nil, err
	}
	return rl.links(ctx, u.ID)
}

func (rl *Social) links(ctx context.Context, userID int64) ([]SocialLink, error) {
	rows, err := rl.store.SocialAccounts(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]SocialLink, 0, len(rows))
	for _, a := range rows {
		out = append(out, linkOf(a))
	}
	return out, nil
}

// Disconnect removes the bearer's link id (DELETE
// {prefix}/social/accounts/<id>/), unless it is the account's last way to
// sign in: no usable password and no other link (disconnect_not_allowed).
// Another user's id is not found.
func (rl *Social) Disconnect(ctx context.Context, o Origin, access string, id int64) error {
	ctx = withOrigin(ctx, o)
	_, u, err := rl.caller(ctx, access)
	if err != nil {
		return err
	}
	provider, err := rl.unlink(ctx, u.ID, func(links []SocialAccount) (SocialAccount, bool) {
		i := slices.IndexFunc(links, func(a SocialAccount) bool { return a.ID == id })
		if i < 0 {
			return SocialAccount{}, false
		}
		return links[i], true
	})
	if err != nil {
		return err
	}
	rl.metrics.SocialLink(provider, "unlink")
	rl.audit(ctx, auditSocialUnlinked, u.ID, slog.String("provider", provider))
	return nil
}

// unlink deletes the user's link that pick chooses, in one transaction
// with the user's row locked, so that two removals at once cannot take
// the last two ways in. It returns the link's provider.
func (rl *Social) unlink(ctx context.Context, userID int64, pick func([]SocialAccount) (SocialAccount, bool)) (string, error) {
	var provider string
	err := rl.store.InTx(ctx, func(tx Store) error {
		u, err := tx.UserForUpdate(ctx, userID)
		if err != nil {
			return err
		}
		links, err := tx.SocialAccounts(ctx, userID)
		if err != nil {
			return err
		}
		link, ok := pick(links)
		if !ok {
			return refuse(NotFound, msgSocialAccountNotFound)
		}
		if u.PasswordHash == "" && len(links) == 1 {
			return refuseCode(Invalid, msgDisconnectNotAllowed, "disconnect_not_allowed")
		}
		provider = link.Provider
		deleted, err := tx.DeleteSocialAccount(ctx, userID, link.ID)
		if err == nil && !deleted {
			return refuse(NotFound, msgSocialAccountNotFound)
		}
		return err
	})
	return provider, err
}

// Attempt is a browser's sign-in on its way to the provider: the URL to
// send it to, and the state that names the attempt, which the browser
// keeps (in a cookie) to show on its return.
type Attempt struct {
	URL, State string
}

// attemptRow is the token of the attempt with this state, for provider,
// returning to next: binding all three, so none can be swapped.
func attemptRow(state, provider, next string) string {
	return linkDigest(state + "\n" + provider + "\n" + next)
}

// attemptSecret derives the nonce or the PKCE verifier of an attempt from
// its state under the realm's key, so that the row holds neither.
func (rl *Social) attemptSecret(label, state string) string {
	return rl.keyedHash("social-"+label, state)
}

// Begin starts a browser's sign-in with provider, to come back to
// redirect (the callback under the prefix) and then go to next: the
// attempt is kept server-side, single-use, for a few minutes.
func (rl *Social) Begin(ctx context.Context, o Origin, provider, redirect, next string) (Attempt, error) {
	ctx = withOrigin(ctx, o)
	p, err := rl.admit(ctx, provider, o.IP)
	if err != nil {
		return Attempt{}, err
	}
	state, err := newLinkSecret(rl.rand)
	if err != nil {
		return Attempt{}, err
	}
	url, err := p.Client.AuthCodeURL(ctx, redirect, state, rl.attemptSecret("nonce", state), rl.attemptSecret("pkce", state))
	if err != nil {
		return Attempt{}, err
	}
	if _, err := rl.store.CreateToken(ctx, Token{Purpose: purposeSocialAttempt, Token: attemptRow(state, p.ID, next), Created: rl.now()}); err != nil {
		return Attempt{}, err
	}
	return Attempt{URL: url, State: state}, nil
}

// Return is a browser's return from the provider: the state the provider
// sent back, the one the browser kept, the next URL it kept, and the
// code.
type Return struct {
	State, KeptState, Next, Code string
}

// Finish completes a browser's sign-in with provider: the returned state
// must be the kept one and name a live attempt (spent here, once), then
// the code is redeemed with the attempt's verifier and nonce and the
// identity signs in as in SignIn.
func (rl *Social) Finish(ctx context.Context, o Origin, provider, redirect string, in Return) (Step, error) {
	ctx = withOrigin(ctx, o)
	p, err := rl.admit(ctx, provider, o.IP)
	if err != nil {
		return Step{}, err
	}
	dead := refuse(Invalid, msgSocialAttemptInvalid).because(ErrSocialAttempt)
	if in.State == "" || subtle.ConstantTimeCompare([]byte(in.State), []byte(in.KeptState)) != 1 {
		rl.socialFailed(ctx, p.ID, 0, "state", dead)
		return Step{}, dead
	}
	_, err = rl.store.ConsumeToken(ctx, purposeSocialAttempt, attemptRow(in.State, p.ID, in.Next), rl.now().Add(-SocialAttemptTTL))
	if errors.Is(err, ErrNotFound) {
		rl.socialFailed(ctx, p.ID, 0, "state", dead)
		return Step{}, dead
	}
	if err != nil {
		return Step{}, err
	}
	id, err := p.Client.Exchange(ctx, redirect, in.Code, rl.attemptSecret("pkce", in.State), rl.attemptSecret("nonce", in.State))
	if err = socialRefusal(err); err != nil {
		rl.socialFailed(ctx, p.ID, 0, "credential", err)
		return Step{}, err
	}
	return rl.signInAs(ctx, p, id)
}

// Links lists the links of the account with this address (the command
// line's list).
func (rl *Users) Links(ctx context.Context, email string) ([]SocialLink, error) {
	u, err := rl.lookup(ctx, email)
	if err != nil {
		return nil, err
	}
	return rl.social.links(ctx, u.ID)
}

// Unlink removes the link of the account with this address to provider
// (with subject uid, needed only when it is linked to provider twice), as
// Disconnect does (never the last way in), with the command line's
// errors.
func (rl *Users) Unlink(ctx context.Context, email, provider, uid string) error {
	u, err := rl.lookup(ctx, email)
	if err != nil {
		return err
	}
	ambiguous := false
	_, err = rl.social.unlink(ctx, u.ID, func(links []SocialAccount) (SocialAccount, bool) {
		var match []SocialAccount
		for _, a := range links {
			if a.Provider == provider && (uid == "" || a.UID == uid) {
				match = append(match, a)
			}
		}
		ambiguous = len(match) > 1
		if len(match) != 1 {
			return SocialAccount{}, false
		}
		return match[0], true
	})
	var r *Refusal
	switch {
	case ambiguous:
		return fmt.Errorf("%s is linked to %s more than once: name the link with --uid (see list-social)", u.Email, provider)
	case errors.As(err, &r) && r.Kind == NotFound:
		return fmt.Errorf("%s is not linked to %s", u.Email, provider)
	case errors.As(err, &r):
		return errors.New(r.Detail)
	case err != nil:
		return err
	}
	rl.metrics.SocialLink(provider, "unlink")
	rl.audit(ctx, auditSocialUnlinked, u.ID, slog.String("provider", provider), slog.String("by", "command_line"))
	return nil
}
