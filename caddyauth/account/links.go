package account

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// linkDigest is how a link secret, a challenge id or a capability's jti
// is kept in the token table: its SHA-256, so a read of the database does
// not hand out live secrets.
func linkDigest(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// newLinkSecret returns 32 random bytes, URL-safe.
func newLinkSecret(r io.Reader) (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// notBeforeFor is the oldest creation time a row of a link purpose may
// have and still work.
func (rl *core) notBeforeFor(ttl time.Duration) time.Time {
	return rl.now().Add(-ttl)
}

// replaceLink makes a new link secret of purpose for the user and stores
// its digest in place of the user's earlier ones, so that only the newest
// link works. It returns the secret, for the mail.
func (rl *core) replaceLink(ctx context.Context, userID int64, purpose string) (string, error) {
	secret, err := newLinkSecret(rl.rand)
	if err != nil {
		return "", err
	}
	if _, err := rl.store.ReplaceToken(ctx, Token{UserID: userID, Purpose: purpose, Token: linkDigest(secret), Created: rl.now()}); err != nil {
		return "", err
	}
	return secret, nil
}

// mailVerificationLink mails to the link of a confirmation or invitation
// (kind names which) with the link secret.
func (rl *core) mailVerificationLink(o Origin, kind, to, secret string) {
	rl.sendMail(o, kind, to, MailData{
		Link:    o.Site + "/registration/verification/" + secret + "/",
		Expires: humanDuration(rl.policy.EmailConfirmationTTL),
	})
}

// Capability is a one-time capability token (reference §2.1) handed to
// a browser that followed a mailed link: it authorises one password
// change, for TTL, and JTI is what its CSRF value is derived from.
type Capability struct {
	Token, JTI string
	TTL        time.Duration
}

// issueCapability mints a capability of permission for u and records its
// jti digest, replacing the user's earlier ones: only the newest
// capability works.
func (rl *core) issueCapability(ctx context.Context, u User, permission string) (Capability, error) {
	jti, err := tokens.NewID(rl.rand)
	if err != nil {
		return Capability{}, err
	}
	now := rl.now()
	c := tokens.Claims{TokenType: tokens.TypeAccess, ForUser: u.ID, OneTimePermission: permission}
	c.ID = jti
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(rl.policy.AccessTTL))
	tok, err := rl.keys.SignOneTime(c)
	if err != nil {
		return Capability{}, err
	}
	if _, err := rl.store.ReplaceToken(ctx, Token{UserID: u.ID, Purpose: permission, Token: linkDigest(jti), Created: now}); err != nil {
		return Capability{}, err
	}
	return Capability{Token: tok, JTI: jti, TTL: rl.policy.AccessTTL}, nil
}

// ErrNoCapability is the reason of the refusal of a missing or forged
// capability.
var ErrNoCapability = errors.New("no valid capability")

// ParseCapability verifies the capability token raw of permission (one of
// PurposePassResetAccess, PurposePassSetAccess) and returns its claims;
// whether its row still stands is checked when it is spent.
func (rl *Passwords) ParseCapability(raw, permission string) (tokens.Claims, error) {
	missing := refuse(Unauthenticated, MsgNoCredentials).because(ErrNoCapability)
	if raw == "" {
		return tokens.Claims{}, missing
	}
	c, err := rl.keys.ParseOneTime(raw, permission, rl.now())
	if err != nil || c.ForUser == 0 || c.ID == "" {
		return tokens.Claims{}, missing
	}
	return c, nil
}

// revokeCredentials ends everything a credential change must end: every
// session and personal access token of the user and every pending link,
// capability and MFA challenge (the MFA failure records stay, so a reset
// does not lift a lockout).
func revokeCredentials(ctx context.Context, st Store, userID int64) error {
	if _, err := st.RevokeUserSessions(ctx, userID); err != nil {
		return err
	}
	// Personal access tokens are credentials too: a password change or
	// reset, or disabling the account, ends them (within the guard's
	// cache window).
	toks, err := st.PersonalTokens(ctx, userID)
	if err != nil {
		return err
	}
	for _, tk := range toks {
		if _, err := st.DeletePersonalToken(ctx, userID, tk.ID); err != nil {
			return err
		}
	}
	_, err = st.DeleteUserTokens(ctx, userID,
		PurposePassReset, PurposePassResetAccess, PurposePassSetAccess,
		purposeInvitation, purposeEmailConfirmation,
		purposeMFASetupChallenge, purposeSignupChallenge, purposeMFALoginChallenge, purposeMFASetupSecret)
	return err
}
