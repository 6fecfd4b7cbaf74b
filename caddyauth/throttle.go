package caddyauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Throttle is one request throttle: at most Limit requests per sliding
// Window for one key (a client address or a normalised e-mail address),
// counted through the realm's rate limiter (`rate_limit`), so with Redis
// every node shares the counts. A request over the limit is answered 429
// `{"detail": "Request was throttled. Expected available in N seconds."}`
// with `Retry-After: N`, before any password is hashed or any account is
// looked up; throttles keyed by e-mail count unknown and existing
// addresses alike, so the answer does not tell them apart.
//
// The throttles, their keys and defaults (set any with the `throttle`
// option of the jwt_allauth global option):
//
//	login_ip                  20 per 1m   POST /login/ and the login page, per client address
//	login_email               10 per 15m  POST /login/ and the login page, per e-mail address
//	mfa_verify_ip             20 per 1m   POST /mfa/verify/, /mfa/verify-recovery/ and the MFA page, per client address
//	registration_ip           20 per 1m   sign-up, per client address
//	registration_email         5 per 5m   sign-up, per e-mail address
//	password_reset_ip         20 per 1m   password reset request, per client address
//	password_reset_email       5 per 1m   password reset request, per e-mail address
//	verification_resend_ip    20 per 1m   verification mail resend, per client address
//	verification_resend_email  3 per 3m   verification mail resend, per e-mail address
//
// Every attempt counts, successful or not, so that a burst of parallel
// guesses is cut off before it reaches the password hasher. Durable
// per-account limits (the MFA lockout) live in the store and do not depend
// on these.
type Throttle struct {
	// Requests allowed per window. 0 turns the throttle off.
	Limit int `json:"limit"`

	// The sliding window. Required when limit is above 0.
	Window caddy.Duration `json:"window,omitempty"`
}

// Throttle names.
const (
	throttleLoginIP                 = "login_ip"
	throttleLoginEmail              = "login_email"
	throttleMFAVerifyIP             = "mfa_verify_ip"
	throttleRegistrationIP          = "registration_ip"
	throttleRegistrationEmail       = "registration_email"
	throttlePasswordResetIP         = "password_reset_ip"
	throttlePasswordResetEmail      = "password_reset_email"
	throttleVerificationResendIP    = "verification_resend_ip"
	throttleVerificationResendEmail = "verification_resend_email"
)

// defaultThrottles are the throttles when the config sets none.
var defaultThrottles = map[string]Throttle{
	throttleLoginIP:                 {20, caddy.Duration(time.Minute)},
	throttleLoginEmail:              {10, caddy.Duration(15 * time.Minute)},
	throttleMFAVerifyIP:             {20, caddy.Duration(time.Minute)},
	throttleRegistrationIP:          {20, caddy.Duration(time.Minute)},
	throttleRegistrationEmail:       {5, caddy.Duration(5 * time.Minute)},
	throttlePasswordResetIP:         {20, caddy.Duration(time.Minute)},
	throttlePasswordResetEmail:      {5, caddy.Duration(time.Minute)},
	throttleVerificationResendIP:    {20, caddy.Duration(time.Minute)},
	throttleVerificationResendEmail: {3, caddy.Duration(3 * time.Minute)},
}

// msgThrottled is DRF's throttling message; errThrottled appends the wait.
const msgThrottled = "Request was throttled."

// errUnknownThrottle is a call naming a throttle that does not exist: a
// bug, answered 500.
var errUnknownThrottle = errors.New("unknown throttle")

// buildThrottles is the defaults overridden by the configured throttles.
func buildThrottles(configured map[string]Throttle) map[string]Throttle {
	out := make(map[string]Throttle, len(defaultThrottles))
	for name, t := range defaultThrottles {
		out[name] = t
	}
	for name, t := range configured {
		out[name] = t
	}
	return out
}

// validateThrottles checks configured throttles.
func validateThrottles(configured map[string]Throttle) error {
	for name, t := range configured {
		if _, ok := defaultThrottles[name]; !ok {
			names := make([]string, 0, len(defaultThrottles))
			for n := range defaultThrottles {
				names = append(names, n)
			}
			slices.Sort(names)
			return fmt.Errorf("throttle %q: unknown name (want one of %s)", name, strings.Join(names, ", "))
		}
		if t.Limit < 0 {
			return fmt.Errorf("throttle %s: limit must not be negative", name)
		}
		if t.Limit > 0 && t.Window <= 0 {
			return fmt.Errorf("throttle %s: window must be positive", name)
		}
	}
	return nil
}

// throttleKey is what the limiter sees for key under throttle name: the
// name and a truncated keyed hash of both (see keyedHash), so that no
// address or e-mail reaches Redis or a log, nor can be confirmed there.
func (rl *realm) throttleKey(name, key string) string {
	return "t:" + name + ":" + rl.keyedHash("throttle:"+name, key)[:32]
}

// throttle counts one request for key under the named throttle and returns
// the 429 when it is over the limit. An empty key, or a throttle turned
// off, never refuses. A limiter that cannot decide is a dependency failure
// (503), never a pass.
func (rl *realm) throttle(ctx context.Context, name, key string) error {
	t, ok := rl.throttles[name]
	if !ok {
		return fmt.Errorf("%w %q", errUnknownThrottle, name)
	}
	if t.Limit <= 0 || key == "" {
		return nil
	}
	allowed, wait, err := rl.limiter.Allow(ctx, rl.throttleKey(name, key), t.Limit, time.Duration(t.Window))
	if err != nil {
		return fmt.Errorf("rate limiter: %w", err)
	}
	if allowed {
		return nil
	}
	rl.metrics.throttle(name)
	rl.auditAt(ctx, zapcore.DebugLevel, auditThrottled, 0, zap.String("throttle", name))
	return errThrottled(msgThrottled, int((wait+time.Second-1)/time.Second))
}

// throttleRequest applies a flow's two throttles: `<flow>_ip` to the
// client address, then `<flow>_email` to the normalised address (skipped
// when email is empty or the flow has no such throttle). Flows: login,
// registration, password_reset, verification_resend.
func (rl *realm) throttleRequest(r *http.Request, flow, email string) error {
	ctx := r.Context()
	if err := rl.throttle(ctx, flow+"_ip", clientIP(r)); err != nil {
		return err
	}
	if _, ok := rl.throttles[flow+"_email"]; !ok || email == "" {
		return nil
	}
	return rl.throttle(ctx, flow+"_email", normalizeEmail(email))
}
