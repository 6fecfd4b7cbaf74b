package account

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"log/slog"
)

// Security events written to the audit log: one line each, at info level,
// on the logger named `jwt_allauth.audit` (route it with Caddy's `log`
// global option, e.g. `include jwt_allauth.audit`). A line carries the
// event, the user id when known, the client address, and never a password,
// code, token or e-mail address (an address appears only as email_hash).
const (
	auditLoginSucceeded  = "login_succeeded"
	auditLoginFailed     = "login_failed"
	auditMFASucceeded    = "mfa_succeeded"
	auditMFAFailed       = "mfa_failed"
	auditMFALockout      = "mfa_lockout"
	auditSessionRevoked  = "session_revoked"
	auditPasswordChanged = "password_changed"
	auditSetupRemoved    = "unconfirmed_setup_removed"
	auditThrottled       = "throttled" // at debug level: a flood must not flood the log
	// Social login, with the provider's id: a sign-in (created: a new
	// account), a refused one (reason), a link made (how: signup, email,
	// connect) or removed.
	auditSocialLogin       = "social_login_succeeded"
	auditSocialLoginFailed = "social_login_failed"
	auditSocialLinked      = "social_linked"
	auditSocialUnlinked    = "social_unlinked"
	// Passkeys, with the passkey's id: registered, removed, renamed, and locked
	// because its signature counter went backwards (a cloned
	// authenticator).
	auditPasskeyAdded   = "passkey_added"
	auditPasskeyRemoved = "passkey_removed"
	auditPasskeyRenamed = "passkey_renamed"
	auditPasskeyLocked  = "passkey_locked"
	// Personal access tokens, with the token's id (and, made, its role).
	auditTokenCreated = "token_created"
	auditTokenRevoked = "token_revoked"
)

// auditPasswordCheckFailed is a wrong password given by a signed-in user
// (see core.checkPassword), with the endpoint and the email_hash.
const auditPasswordCheckFailed = "password_check_failed"

// audit writes one audit line for event. userID 0 means the user is not
// known (an unknown address, a bad challenge). The client address is the
// Origin's the flow was called with.
func (rl *auditor) audit(ctx context.Context, event string, userID int64, fields ...slog.Attr) {
	rl.auditAt(ctx, slog.LevelInfo, event, userID, fields...)
}

func (rl *auditor) auditAt(ctx context.Context, level slog.Level, event string, userID int64, fields ...slog.Attr) {
	l := rl.auditLog
	if l == nil || !l.Enabled(ctx, level) {
		return
	}
	base := []slog.Attr{slog.String("event", event)}
	if userID != 0 {
		base = append(base, slog.String("user_id", strconv.FormatInt(userID, 10)))
	}
	if ip := originOf(ctx).IP; ip != "" {
		base = append(base, slog.String("client_ip", ip))
	}
	l.LogAttrs(ctx, level, event, append(base, fields...)...)
}

// auditSessionRevoked records that sessions of userID ended for reason
// ("logout", "logout_all", "password_change", "refresh_not_whitelisted",
// ...; README lists them).
func (rl *auditor) auditSessionRevoked(ctx context.Context, userID int64, reason string) {
	rl.audit(ctx, auditSessionRevoked, userID, slog.String("reason", reason))
}

// emailHash is the form in which an address may appear in logs: a
// truncated HMAC-SHA256 of the normalised address under the realm's hash
// key, enough to correlate lines about one address without writing it, and
// not to be confirmed by hashing a guess.
func (rl *auditor) emailHash(email string) slog.Attr {
	return slog.String("email_hash", rl.keyedHash("email", NormalizeEmail(email))[:16])
}

// EmailHash is the email_hash of an address in the audit lines, for other
// logs to write instead of the address.
func (s *Service) EmailHash(email string) string {
	return s.core.emailHash(email).Value.String()
}

// keyedHash is the hex HMAC-SHA256 of a labelled value under the realm's
// hash key.
func (rl *auditor) keyedHash(label, value string) string {
	mac := hmac.New(sha256.New, rl.hashKey)
	mac.Write([]byte(label + "\x00" + value))
	return hex.EncodeToString(mac.Sum(nil))
}

// mfaOutcome counts and audits one MFA code check of userID. wrong, the
// message a failure of that factor answers, tells the method.
func (rl *auditor) mfaOutcome(ctx context.Context, userID int64, wrong, result string) {
	method := MethodTOTP
	switch wrong {
	case msgInvalidRecovery:
		method = MethodRecoveryCode
	case msgPasskeyInvalid:
		method = MethodPasskey
	}
	rl.metrics.MFAVerification(method, result)
	event := auditMFAFailed
	if result == ResultSuccess {
		event = auditMFASucceeded
	}
	rl.audit(ctx, event, userID, slog.String("method", method))
}

// mfaLockedOut counts and audits a user reaching the MFA failure limit.
func (rl *auditor) mfaLockedOut(ctx context.Context, userID int64) {
	rl.metrics.Lockout("mfa")
	rl.audit(ctx, auditMFALockout, userID)
}
