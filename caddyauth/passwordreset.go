package caddyauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passwords"
)

// resetFloor is the least time POST {prefix}/password/reset/ takes, so the
// answer time does not tell known addresses from unknown ones. It is a
// duration, not a point in time, so it uses a real timer.
const resetFloor = 500 * time.Millisecond

// passwordReset answers POST {prefix}/password/reset/ (behaviour.md §3.6).
func (h *Handler) passwordReset(w http.ResponseWriter, r *http.Request) error {
	f, err := readForm(w, r)
	if err != nil {
		return err
	}
	if err := h.requestPasswordReset(r, f); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{"detail": "Password reset e-mail has been sent."})
}

// requestPasswordReset is the work of POST /password/reset/ and of the
// forgot-password page, for the `email` field of f: always the same
// success after the same floor; a link is mailed only to an active
// account with a usable password, its address confirmed or not (following
// the link proves the address, see passwordResetSetNew). A new link
// replaces the user's older one. An invalid address or a throttled
// request is refused at once.
func (h *Handler) requestPasswordReset(r *http.Request, f *form) error {
	floor := time.NewTimer(resetFloor)
	defer floor.Stop()
	email := normalizeEmail(f.Str("email", true, true))
	if !f.Failed("email") && !validEmail(email) {
		f.Fail("email", msgInvalidEmail)
	}
	if err := f.err(); err != nil {
		return err
	}
	if err := h.realm.throttleRequest(r, "password_reset", email); err != nil {
		return err
	}
	if err := h.mailResetLink(r.Context(), email); err != nil {
		return err
	}
	select {
	case <-floor.C:
	case <-r.Context().Done():
	}
	return nil
}

// mailResetLink stores a reset link for the account of email, if it may
// have one, and mails it.
func (h *Handler) mailResetLink(ctx context.Context, email string) error {
	rl := h.realm
	u, err := rl.store.UserByEmail(ctx, email)
	if errors.Is(err, account.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !u.IsActive || u.PasswordHash == "" {
		return nil
	}
	secret, err := rl.replaceLink(ctx, u.ID, purposePassReset)
	if err != nil {
		return err
	}
	uid := base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(u.ID, 10)))
	rl.sendMail(mailPasswordReset, u.Email, mailData{
		SiteName: h.siteName(),
		Link:     h.link("/password/reset/confirm/" + uid + "/" + secret + "/"),
		Expires:  humanDuration(rl.policy.passwordResetTTL),
	})
	return nil
}

// passwordResetConfirm answers GET {prefix}/password/reset/confirm/<uid>/<token>/,
// the mailed link: the link row is consumed, a reset capability (valid for
// access_ttl, replacing earlier ones) is set in the
// password_reset_access_token cookie with a CSRF cookie, and the browser
// goes on to password_reset_redirect or the built-in form. Any bad link
// gets the built-in "invalid link" page (200). An Authorization header is
// ignored.
func (h *Handler) passwordResetConfirm(w http.ResponseWriter, r *http.Request) error {
	rl := h.realm
	ctx := r.Context()
	rest := strings.TrimSuffix(h.pathParam(r, "/password/reset/confirm/"), "/")
	uidPart, secret, ok := strings.Cut(rest, "/")
	invalid := func() error {
		return h.linkPage(w, r, http.StatusOK, pageResetInvalid)
	}
	if !ok || secret == "" || strings.Contains(secret, "/") || len(secret) > 128 {
		return invalid()
	}
	rawUID, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(uidPart, "="))
	if err != nil {
		return invalid()
	}
	uid, err := strconv.ParseInt(string(rawUID), 10, 64)
	if err != nil {
		return invalid()
	}
	row, err := rl.store.ConsumeToken(ctx, purposePassReset, linkDigest(secret), rl.notBeforeFor(rl.policy.passwordResetTTL))
	if errors.Is(err, account.ErrNotFound) || (err == nil && row.UserID != uid) {
		return invalid()
	}
	if err != nil {
		return err
	}
	u, err := rl.store.UserByID(ctx, uid)
	if errors.Is(err, account.ErrNotFound) || (err == nil && (!u.IsActive || u.PasswordHash == "")) {
		return invalid()
	}
	if err != nil {
		return err
	}
	return h.handOverCapability(w, r, u, resetCookie, purposePassResetAccess,
		rl.policy.passwordResetRedirect, "/password/reset/default/")
}

// passwordResetSetNew answers POST {prefix}/password/reset/set-new/,
// authorised by the password_reset_access_token cookie and the CSRF
// header. Unlike the reference, the capability is spent only once the new
// password is accepted, and the answer goes through the MFA gate. A reset
// of an unconfirmed address confirms it (resetProof).
func (h *Handler) passwordResetSetNew(w http.ResponseWriter, r *http.Request) error {
	var proof resetProof
	u, err := h.setPasswordWithCapability(w, r, resetCookie, purposePassResetAccess, proof.apply)
	if err != nil {
		return err
	}
	rl := h.realm
	if proof.first {
		rl.audit(r.Context(), auditSetupRemoved, u.ID,
			zap.Int("authenticators", proof.authenticators), zap.Int("sessions", proof.sessions))
	}
	rl.auditPasswordChanged(r.Context(), u.ID, "reset")
	rl.auditSessionRevoked(r.Context(), u.ID, "password_reset")
	return h.afterCredentialChange(w, r, u, "Password reset.", "")
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
	first                    bool
	authenticators, sessions int
}

func (p *resetProof) apply(ctx context.Context, tx account.Store, u *account.User) error {
	if u.EmailVerified {
		return nil
	}
	var err error
	if p.authenticators, err = tx.DeleteAuthenticators(ctx, u.ID); err != nil {
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

// passwordChange answers POST {prefix}/password/change/ (behaviour.md
// §3.7): with the old password, the new one is saved, every session and
// pending link of the user is revoked, and a new session is opened for
// the caller.
func (h *Handler) passwordChange(w http.ResponseWriter, r *http.Request) error {
	caller, err := h.authenticated(r)
	if err != nil {
		return err
	}
	rl := h.realm
	ctx := r.Context()
	// The body before the row, so that a slow body cannot carry a stale
	// copy; its errors still come after the account's.
	f, bodyErr := readForm(w, r)
	u, err := rl.store.UserByID(ctx, caller.NumericUserID())
	if errors.Is(err, account.ErrNotFound) || (err == nil && !u.IsActive) {
		return errTokenNotValid(msgTokenInvalid)
	}
	if err != nil {
		return err
	}
	if bodyErr != nil {
		return bodyErr
	}
	if err := rl.liveSession(ctx, caller); err != nil {
		return err
	}
	old := f.Str("old_password", true, false)
	f.MaxLen("old_password", old, passwords.MaxLength)
	password := newPasswordFields(f, u.Email)
	if !f.Failed("old_password") {
		ok, err := rl.checkPassword(r, u, old, "password_change")
		if err != nil {
			return err
		}
		if !ok {
			f.Fail("old_password", msgOldPasswordWrong)
		}
	}
	if err := f.err(); err != nil {
		return err
	}
	hash, err := rl.hasher.hash(ctx, password, rl.hashOwners(r, u.Email)...)
	if err != nil {
		return err
	}
	var pair tokenPair
	err = rl.store.InTx(ctx, func(tx account.Store) error {
		cur, err := savePassword(ctx, tx, u.ID, hash, func(ctx context.Context, tx account.Store, cur *account.User) error {
			// The old password was checked against the hash read above;
			// a reset or change since then makes it wrong.
			if cur.PasswordHash != u.PasswordHash {
				return errField("old_password", msgOldPasswordWrong)
			}
			return nil
		})
		if err != nil {
			return err
		}
		pair, err = rl.openSession(ctx, tx, cur, true, clientIP(r))
		return err
	})
	if err != nil {
		return err
	}
	rl.auditPasswordChanged(ctx, u.ID, "change")
	rl.auditSessionRevoked(ctx, u.ID, "password_change")
	return h.writeTokens(w, http.StatusOK, pair, map[string]any{"detail": "New password has been saved."})
}

// redirect answers 302 to target (a URL or a path).
func redirect(w http.ResponseWriter, target string) error {
	w.Header().Set("Location", target)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusFound)
	return nil
}
