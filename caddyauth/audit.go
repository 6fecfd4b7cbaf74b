package caddyauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
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
)

// auditPasswordCheckFailed is a wrong password given by a signed-in user
// (see realm.checkPassword), with the endpoint and the email_hash.
const auditPasswordCheckFailed = "password_check_failed"

// audit writes one audit line for event. userID 0 means the user is not
// known (an unknown address, a bad challenge). The client address is
// Caddy's client_ip of the request ctx belongs to.
func (rl *realm) audit(ctx context.Context, event string, userID int64, fields ...zap.Field) {
	rl.auditAt(ctx, zapcore.InfoLevel, event, userID, fields...)
}

func (rl *realm) auditAt(ctx context.Context, level zapcore.Level, event string, userID int64, fields ...zap.Field) {
	l := rl.auditLog
	if l == nil {
		return
	}
	ce := l.Check(level, event)
	if ce == nil {
		return
	}
	base := []zap.Field{zap.String("event", event)}
	if userID != 0 {
		base = append(base, zap.String("user_id", strconv.FormatInt(userID, 10)))
	}
	if ip := clientIPOf(ctx); ip != "" {
		base = append(base, zap.String("client_ip", ip))
	}
	ce.Write(append(base, fields...)...)
}

// auditPasswordChanged records a new password of userID; how says which
// way it came ("change", "reset", "set" for an invitation's first one).
func (rl *realm) auditPasswordChanged(ctx context.Context, userID int64, how string) {
	rl.audit(ctx, auditPasswordChanged, userID, zap.String("how", how))
}

// auditSessionRevoked records that sessions of userID ended for reason
// ("logout", "logout_all", "password_change", "refresh_not_whitelisted",
// ...; README lists them).
func (rl *realm) auditSessionRevoked(ctx context.Context, userID int64, reason string) {
	rl.audit(ctx, auditSessionRevoked, userID, zap.String("reason", reason))
}

// emailHash is the form in which an address may appear in logs: a
// truncated HMAC-SHA256 of the normalised address under the realm's hash
// key, enough to correlate lines about one address without writing it, and
// not to be confirmed by hashing a guess.
func (rl *realm) emailHash(email string) zap.Field {
	return zap.String("email_hash", rl.keyedHash("email", normalizeEmail(email))[:16])
}

// keyedHash is the hex HMAC-SHA256 of a labelled value under the realm's
// hash key.
func (rl *realm) keyedHash(label, value string) string {
	mac := hmac.New(sha256.New, rl.hashKey)
	mac.Write([]byte(label + "\x00" + value))
	return hex.EncodeToString(mac.Sum(nil))
}

// clientIPOf is Caddy's client_ip of the request ctx belongs to, or "".
func clientIPOf(ctx context.Context) string {
	ip, _ := caddyhttp.GetVar(ctx, caddyhttp.ClientIPVarKey).(string)
	return ip
}

// mfaOutcome counts and audits one MFA code check of userID. wrong, the
// message a failure of that factor answers, tells the method.
func (rl *realm) mfaOutcome(ctx context.Context, userID int64, wrong, result string) {
	method := methodTOTP
	if wrong == msgInvalidRecovery {
		method = methodRecoveryCode
	}
	rl.metrics.mfaVerification(method, result)
	event := auditMFAFailed
	if result == resultSuccess {
		event = auditMFASucceeded
	}
	rl.audit(ctx, event, userID, zap.String("method", method))
}

// mfaLockedOut counts and audits a user reaching the MFA failure limit.
func (rl *realm) mfaLockedOut(ctx context.Context, userID int64) {
	rl.metrics.lockout("mfa")
	rl.audit(ctx, auditMFALockout, userID)
}
