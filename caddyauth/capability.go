package caddyauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passwords"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// Purposes of the single-use rows behind mailed links and capability
// cookies. Every such row holds the SHA-256 (hex) of its secret, never the
// secret itself.
const (
	purposePassReset         = "PASS_RESET"
	purposePassResetAccess   = "PASS_RESET_ACCESS"
	purposePassSetAccess     = "PASS_SET_ACCESS"
	purposeInvitation        = "INVITATION"
	purposeEmailConfirmation = "EMAIL_CONFIRMATION"
)

// Cookies set when a mailed link is followed.
const (
	resetCookie       = "password_reset_access_token"
	setPasswordCookie = "set_password_access_token"
	csrfCookie        = "csrftoken"
	csrfHeader        = "X-CSRFToken"
)

// linkDigest is how a link secret or a capability's jti is kept in the
// token table.
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

// sendMail renders the mail name for to and queues it. A failure is logged
// and never reaches the HTTP answer.
func (rl *realm) sendMail(name, to string, data mailData) {
	if data.SiteName == "" {
		data.SiteName = rl.siteName()
	}
	data.Email = to
	m, err := rl.mails[name].render(to, data)
	if err != nil {
		rl.logger.Error("mail not sent: rendering failed", zap.String("mail", name), zap.Error(err))
		rl.metrics.mailNotSent(name, mailRenderFailed)
		return
	}
	m.kind = name
	rl.mail.enqueue(m)
}

// siteName is `site_name`, else the host of `public_url`.
func (rl *realm) siteName() string {
	return siteNameOf(rl.policy.siteName, rl.policy.publicURL)
}

// siteName is `site_name`, else the host of the handler's public URL.
func (h *Handler) siteName() string {
	return siteNameOf(h.realm.policy.siteName, h.publicURL)
}

func siteNameOf(siteName, publicURL string) string {
	if siteName != "" {
		return siteName
	}
	if _, host, ok := cutScheme(publicURL); ok {
		return host
	}
	return "our site"
}

func cutScheme(u string) (scheme, rest string, ok bool) {
	for _, s := range []string{"https://", "http://"} {
		if len(u) > len(s) && u[:len(s)] == s {
			return s, u[len(s):], true
		}
	}
	return "", "", false
}

// link is the absolute URL of a path under this handler's prefix, built
// from `public_url` (else the site's address) only, never from the request.
func (h *Handler) link(path string) string {
	return h.publicURL + h.Prefix + path
}

// replaceLink makes a new link secret of purpose for the user and stores
// its digest in place of the user's earlier ones, so that only the newest
// link works. It returns the secret, for the mail.
func (rl *realm) replaceLink(ctx context.Context, userID int64, purpose string) (string, error) {
	secret, err := newLinkSecret(rl.rand)
	if err != nil {
		return "", err
	}
	if _, err := rl.store.ReplaceToken(ctx, account.Token{UserID: userID, Purpose: purpose, Token: linkDigest(secret), Created: rl.now()}); err != nil {
		return "", err
	}
	return secret, nil
}

// mailVerificationLink mails to the link of a confirmation or invitation
// (mail names which) with the link secret.
func (h *Handler) mailVerificationLink(mail, to, secret string) {
	h.realm.sendMail(mail, to, mailData{
		SiteName: h.siteName(),
		Link:     h.link("/registration/verification/" + secret + "/"),
		Expires:  humanDuration(h.realm.policy.emailConfirmationTTL),
	})
}

// issueCapability mints a one-time capability token (reference §2.1) for
// u and records its jti digest, replacing the user's earlier ones: only the
// newest capability works. It returns the token and its jti.
func (rl *realm) issueCapability(ctx context.Context, st account.Store, u account.User, permission string) (string, string, error) {
	jti, err := tokens.NewID(rl.rand)
	if err != nil {
		return "", "", err
	}
	now := rl.now()
	c := tokens.Claims{TokenType: tokens.TypeAccess, ForUser: u.ID, OneTimePermission: permission}
	c.ID = jti
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(rl.policy.accessTTL))
	tok, err := rl.keys.SignOneTime(c)
	if err != nil {
		return "", "", err
	}
	if _, err := st.ReplaceToken(ctx, account.Token{UserID: u.ID, Purpose: permission, Token: linkDigest(jti), Created: now}); err != nil {
		return "", "", err
	}
	return tok, jti, nil
}

// setCapabilityCookies sets the capability cookie (HttpOnly, only sent to
// the endpoints under the prefix) and the CSRF cookie the page must echo in
// the X-CSRFToken header (readable by scripts, the whole site). The CSRF
// value is a MAC of the capability's jti under the realm's CSRF key, so the
// server accepts only the value it issued with this capability: a
// `csrftoken` planted by a sibling subdomain, or kept from another flow,
// never matches.
func (h *Handler) setCapabilityCookies(w http.ResponseWriter, name, token, jti string) {
	secure := h.realm.policy.cookieSecure
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    token,
		Path:     h.Prefix + "/",
		MaxAge:   int(h.realm.policy.accessTTL.Seconds()),
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	})
	http.SetCookie(w, &http.Cookie{
		Name:     csrfCookie,
		Value:    h.realm.capabilityCSRF(jti),
		Path:     "/",
		MaxAge:   int(h.realm.policy.accessTTL.Seconds()),
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	})
}

// capabilityCSRF is the CSRF value issued with the capability of that jti.
func (rl *realm) capabilityCSRF(jti string) string {
	m := hmac.New(sha256.New, rl.csrfKey)
	m.Write([]byte("capability csrf\x00" + jti))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// handOverCapability issues a capability of permission for u, sets it in
// the cookie named cookie with the CSRF cookie, and sends the browser to
// target, or to the built-in form at path under the prefix when target is
// "".
func (h *Handler) handOverCapability(w http.ResponseWriter, r *http.Request, u account.User, cookie, permission, target, path string) error {
	tok, jti, err := h.realm.issueCapability(r.Context(), h.realm.store, u, permission)
	if err != nil {
		return err
	}
	h.setCapabilityCookies(w, cookie, tok, jti)
	if target == "" {
		target = h.Prefix + path
	}
	return redirect(w, target)
}

// clearCapabilityCookie removes a spent capability cookie.
func (h *Handler) clearCapabilityCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Path: h.Prefix + "/", MaxAge: -1,
		HttpOnly: true, Secure: h.realm.policy.cookieSecure, SameSite: http.SameSiteLaxMode,
	})
}

// capability reads and verifies the capability cookie of a set-password
// call: 401 without a valid one (the row is checked later), then the
// double-submit CSRF check: 403, and the capability is not spent.
func (h *Handler) capability(r *http.Request, cookie, permission string) (tokens.Claims, error) {
	rl := h.realm
	missing := errDetail(http.StatusUnauthorized, msgNoCredentials)
	missing.challenge = "Cookie"
	ck, err := r.Cookie(cookie)
	if err != nil || ck.Value == "" {
		return tokens.Claims{}, missing
	}
	c, err := rl.keys.ParseOneTime(ck.Value, permission, rl.now())
	if err != nil || c.ForUser == 0 || c.ID == "" {
		return tokens.Claims{}, missing
	}
	return c, rl.checkCSRF(r, c.ID)
}

// checkCSRF is the double-submit check: the X-CSRFToken header must equal
// a csrftoken cookie, and that must be the value issued with the
// capability of jti. Every csrftoken the browser sends is looked at, so a
// second one planted for a parent domain cannot hide the issued one.
func (rl *realm) checkCSRF(r *http.Request, jti string) error {
	var sent []string
	for _, ck := range r.CookiesNamed(csrfCookie) {
		if ck.Value != "" {
			sent = append(sent, ck.Value)
		}
	}
	if len(sent) == 0 {
		return errDetail(http.StatusForbidden, "CSRF Failed: CSRF cookie not set.")
	}
	hv := r.Header.Get(csrfHeader)
	if hv == "" {
		return errDetail(http.StatusForbidden, "CSRF Failed: CSRF token missing.")
	}
	want := rl.capabilityCSRF(jti)
	if !hmac.Equal([]byte(hv), []byte(want)) || !slices.Contains(sent, want) {
		return errDetail(http.StatusForbidden, "CSRF Failed: CSRF token incorrect.")
	}
	return nil
}

// revokeCredentials ends everything a credential change must end: every
// session of the user and every pending link, capability and MFA
// challenge (the MFA failure records stay, so a reset does not lift a
// lockout).
func revokeCredentials(ctx context.Context, st account.Store, userID int64) error {
	if _, err := st.RevokeUserSessions(ctx, userID); err != nil {
		return err
	}
	_, err := st.DeleteUserTokens(ctx, userID,
		purposePassReset, purposePassResetAccess, purposePassSetAccess,
		purposeInvitation, purposeEmailConfirmation,
		purposeMFASetupChallenge, purposeSignupChallenge, purposeMFALoginChallenge, purposeMFASetupSecret)
	return err
}

// Messages of the password forms.
const (
	msgPasswordMismatch = "The two password fields didn’t match."
	msgOldPasswordWrong = "Your old password was entered incorrectly. Please enter it again."
)

// newPasswordFields reads new_password1 and new_password2 and, when both
// are there, checks that they match and pass the password policy for
// email; messages go on new_password2, as Django's SetPasswordForm puts
// them.
func newPasswordFields(f *form, email string) string {
	p1 := f.Str("new_password1", true, false)
	p2 := f.Str("new_password2", true, false)
	f.MaxLen("new_password1", p1, passwords.MaxLength)
	f.MaxLen("new_password2", p2, passwords.MaxLength)
	if f.Failed("new_password1") || f.Failed("new_password2") {
		return ""
	}
	if p1 != p2 {
		f.Fail("new_password2", msgPasswordMismatch)
		return ""
	}
	for _, msg := range passwords.Validate(p2, email) {
		f.Fail("new_password2", msg)
	}
	return p1
}

// errCapabilitySpent is a capability whose row is gone: spent, superseded
// by a newer link, expired, or never issued.
func errCapabilitySpent() error { return errTokenNotValid(msgTokenInvalid) }

// setPasswordWithCapability is the common pipeline of
// {prefix}/password/reset/set-new/ and {prefix}/registration/set-password/:
// the cookie (401), CSRF (403), the row (401), the user (401), the body
// (400, capability not spent), then the capability is claimed by one atomic
// delete and the password saved with a credential-change revocation.
// withinTx runs first in the transaction of the change (e.g. to claim the
// invitation), see savePassword. It returns the user after the change.
func (h *Handler) setPasswordWithCapability(w http.ResponseWriter, r *http.Request, cookie, permission string, withinTx func(ctx context.Context, tx account.Store, u *account.User) error) (account.User, error) {
	rl := h.realm
	ctx := r.Context()
	c, err := h.capability(r, cookie, permission)
	if err != nil {
		return account.User{}, err
	}
	f, err := readForm(w, r)
	if err != nil {
		return account.User{}, err
	}
	digest := linkDigest(c.ID)
	notBefore := rl.now().Add(-rl.policy.accessTTL)
	row, err := rl.store.FindToken(ctx, permission, digest, notBefore)
	if errors.Is(err, account.ErrNotFound) || (err == nil && row.UserID != c.ForUser) {
		return account.User{}, errCapabilitySpent()
	}
	if err != nil {
		return account.User{}, err
	}
	u, err := rl.store.UserByID(ctx, c.ForUser)
	if errors.Is(err, account.ErrNotFound) || (err == nil && !u.IsActive) {
		// As the reference: a capability of a deactivated user is spent.
		if _, err := rl.store.ConsumeToken(ctx, permission, digest, notBefore); err != nil && !errors.Is(err, account.ErrNotFound) {
			return account.User{}, err
		}
		return account.User{}, errCapabilitySpent()
	}
	if err != nil {
		return account.User{}, err
	}
	password := newPasswordFields(f, u.Email)
	if err := f.err(); err != nil {
		return account.User{}, err
	}
	// Claim first, so concurrent holders of the same capability lose
	// before they spend a hash; put the row back if the change fails
	// for a reason that is not the client's.
	row, err = rl.store.ConsumeToken(ctx, permission, digest, notBefore)
	if errors.Is(err, account.ErrNotFound) {
		return account.User{}, errCapabilitySpent()
	}
	if err != nil {
		return account.User{}, err
	}
	restore := func() {
		if _, err := rl.store.CreateToken(context.WithoutCancel(ctx), row); err != nil {
			rl.logger.Warn("restoring an unspent capability", zap.Int64("user_id", row.UserID), zap.Error(err))
		}
	}
	hash, err := rl.hasher.hash(ctx, password, rl.hashOwners(r, u.Email)...)
	if err != nil {
		restore()
		return account.User{}, err
	}
	err = rl.store.InTx(ctx, func(tx account.Store) error {
		cur, err := savePassword(ctx, tx, u.ID, hash, withinTx)
		if err != nil {
			return err
		}
		u = cur
		return nil
	})
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			restore()
		}
		return account.User{}, err
	}
	h.clearCapabilityCookie(w, cookie)
	return u, nil
}

// savePassword saves hash as the password of the user userID in the
// transaction tx and revokes the user's credentials (revokeCredentials). A
// user deleted or deactivated meanwhile is refused as a token no longer
// valid (which is also how a spent capability answers). withinTx, when not
// nil, runs first, with the user as read and locked; it writes the columns
// it changes itself and updates u to match. It returns the user as saved.
func savePassword(ctx context.Context, tx account.Store, userID int64, hash string, withinTx func(ctx context.Context, tx account.Store, u *account.User) error) (account.User, error) {
	cur, err := tx.UserForUpdate(ctx, userID)
	if errors.Is(err, account.ErrNotFound) || (err == nil && !cur.IsActive) {
		return account.User{}, errTokenNotValid(msgTokenInvalid)
	}
	if err != nil {
		return account.User{}, err
	}
	if withinTx != nil {
		if err := withinTx(ctx, tx, &cur); err != nil {
			return account.User{}, err
		}
	}
	if err := tx.SetPasswordHash(ctx, cur.ID, hash); err != nil {
		return account.User{}, err
	}
	cur.PasswordHash = hash
	if err := revokeCredentials(ctx, tx, cur.ID); err != nil {
		return account.User{}, err
	}
	return cur, nil
}

// afterCredentialChange answers a successful password reset or set: the
// MFA gate first (a reset never skips the second factor: a user with TOTP
// gets a login challenge, and in required mode a user without TOTP the
// setup bootstrap), else a new session. detail goes in the body;
// bootstrapDetail replaces it in the bootstrap answer when set.
func (h *Handler) afterCredentialChange(w http.ResponseWriter, r *http.Request, u account.User, detail, bootstrapDetail string) error {
	rl := h.realm
	ctx := r.Context()
	if payload, err := rl.mfaGate(ctx, u); err != nil || payload != nil {
		if err != nil {
			return err
		}
		payload["detail"] = detail
		if _, ok := payload["mfa_setup_required"]; ok && bootstrapDetail != "" {
			payload["detail"] = bootstrapDetail
		}
		return writeJSON(w, http.StatusOK, payload)
	}
	pair, err := h.openLoginSession(ctx, r, u)
	if err != nil {
		return err
	}
	return h.writeTokens(w, http.StatusOK, pair, map[string]any{"detail": detail})
}

// openLoginSession opens a session for u and records the login time. u
// may sign in: under mandatory verification its address is confirmed
// (sign-up opens no session then, and a reset or an invitation link
// confirms the address before it gets here).
func (h *Handler) openLoginSession(ctx context.Context, r *http.Request, u account.User) (tokenPair, error) {
	rl := h.realm
	var pair tokenPair
	err := rl.store.InTx(ctx, func(tx account.Store) error {
		cur, err := tx.UserForUpdate(ctx, u.ID)
		if err != nil {
			return err
		}
		cur.LastLogin = rl.now()
		if err := tx.SetLastLogin(ctx, cur.ID, cur.LastLogin); err != nil {
			return err
		}
		pair, err = rl.openSession(ctx, tx, cur, true, clientIP(r))
		return err
	})
	return pair, err
}

// notBeforeFor is the oldest creation time a row of a link purpose may
// have and still work.
func (rl *realm) notBeforeFor(ttl time.Duration) time.Time {
	return rl.now().Add(-ttl)
}
