package account

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"log/slog"
)

// Throttle is one request throttle: at most Limit requests per sliding
// Window for one key (a client, a user or a normalised e-mail address),
// counted through the realm's RateLimiter, so with a shared limiter every
// node shares the counts. Limit 0 turns it off. DefaultThrottles lists
// the names, what each counts, and their defaults.
type Throttle struct {
	Limit  int
	Window time.Duration
}

// Throttle names.
const (
	throttleLoginIP                 = "login_ip"
	throttleLoginEmail              = "login_email"
	throttleMFAVerifyIP             = "mfa_verify_ip"
	throttlePasswordCheckIP         = "password_check_ip"
	throttlePasswordCheckUser       = "password_check_user"
	throttleRegistrationIP          = "registration_ip"
	throttleRegistrationEmail       = "registration_email"
	throttlePasswordResetIP         = "password_reset_ip"
	throttlePasswordResetEmail      = "password_reset_email"
	throttleVerificationResendIP    = "verification_resend_ip"
	throttleVerificationResendEmail = "verification_resend_email"
	throttleSocialIP                = "social_ip"
	throttlePasskeyIP               = "passkey_ip"
	throttleTokenCreateIP           = "token_create_ip"
)

// DefaultThrottles are the throttles a Config does not set, by name:
//
//	login_ip                  20 per 1m   logins, per client
//	login_email               10 per 15m  wrong passwords per e-mail address: logins, and every other password check of that account
//	mfa_verify_ip             20 per 1m   second-factor checks of a login, per client
//	password_check_ip         20 per 1m   a signed-in user's password checked (password change, MFA deactivation), per client
//	password_check_user       10 per 15m  the same, per user
//	registration_ip           20 per 1m   sign-up, per client
//	registration_email         5 per 5m   sign-up, per e-mail address
//	password_reset_ip         20 per 1m   password reset request, per client
//	password_reset_email       5 per 1m   password reset request, per e-mail address
//	verification_resend_ip    20 per 1m   verification mail resend, per client
//	verification_resend_email  3 per 3m   verification mail resend, per e-mail address
//	social_ip                 20 per 1m   sign-ins with a provider (each flow, the browser's start and return), connects, per client
//	passkey_ip                30 per 1m   passkey registrations (begin and finish) and passwordless starts (the login page makes one per view for autofill), per client
//	token_create_ip           10 per 1m   personal access tokens made, per client
//
// Every request counts, successful or not, except for login_email, which
// counts failures: a wrong password, or any password for an address with
// no account. It is still decided before the password is hashed: the
// attempt is counted first and taken back once the password matched, so
// an owner signing in often is never locked out, while parallel guesses
// see each other. Throttles keyed by e-mail count unknown and existing
// addresses alike. Durable per-account limits (the MFA lockout) live in
// the store and do not depend on these.
var DefaultThrottles = map[string]Throttle{
	throttleLoginIP:                 {20, (time.Minute)},
	throttleLoginEmail:              {10, (15 * time.Minute)},
	throttleMFAVerifyIP:             {20, (time.Minute)},
	throttlePasswordCheckIP:         {20, (time.Minute)},
	throttlePasswordCheckUser:       {10, (15 * time.Minute)},
	throttleRegistrationIP:          {20, (time.Minute)},
	throttleRegistrationEmail:       {5, (5 * time.Minute)},
	throttlePasswordResetIP:         {20, (time.Minute)},
	throttlePasswordResetEmail:      {5, (time.Minute)},
	throttleVerificationResendIP:    {20, (time.Minute)},
	throttleVerificationResendEmail: {3, (3 * time.Minute)},
	throttleSocialIP:                {20, (time.Minute)},
	throttlePasskeyIP:               {30, (time.Minute)},
	throttleTokenCreateIP:           {10, (time.Minute)},
}

// ErrUnknownThrottle is a call naming a throttle that does not exist: a
// bug, answered 500.
var ErrUnknownThrottle = errors.New("unknown throttle")

// buildThrottles is the defaults overridden by the configured throttles.
func buildThrottles(configured map[string]Throttle) map[string]Throttle {
	out := make(map[string]Throttle, len(DefaultThrottles))
	for name, t := range DefaultThrottles {
		out[name] = t
	}
	for name, t := range configured {
		out[name] = t
	}
	return out
}

// ValidateThrottles checks configured throttles.
func ValidateThrottles(configured map[string]Throttle) error {
	for name, t := range configured {
		if _, ok := DefaultThrottles[name]; !ok {
			names := make([]string, 0, len(DefaultThrottles))
			for n := range DefaultThrottles {
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
func (rl *throttler) throttleKey(name, key string) string {
	return "t:" + name + ":" + rl.keyedHash("throttle:"+name, key)[:32]
}

// throttle counts one request for key under the named throttle and returns
// the Throttled refusal when it is over the limit. An empty key, or a throttle turned
// off, never refuses. A limiter that cannot decide is a dependency failure
// failure, never a pass.
func (rl *throttler) throttle(ctx context.Context, name, key string) error {
	t, ok := rl.throttles[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownThrottle, name)
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
	return rl.throttled(ctx, name, wait)
}

// throttled counts and audits a refusal by the named throttle and returns
// its refusal.
func (rl *throttler) throttled(ctx context.Context, name string, wait time.Duration) error {
	rl.metrics.Throttle(name)
	rl.auditAt(ctx, slog.LevelDebug, auditThrottled, 0, slog.String("throttle", name))
	return errThrottled(msgThrottled, int((wait+time.Second-1)/time.Second)).because(ErrRequestThrottled)
}

// throttleRequest applies a flow's two throttles: `<flow>_ip` to the
// client, then `<flow>_email` to the normalised address (skipped when
// email is empty). Flows: registration, password_reset,
// verification_resend (a login counts failures instead: passwordLogin).
func (rl *throttler) throttleRequest(ctx context.Context, flow, email string) error {
	if err := rl.throttle(ctx, flow+"_ip", rl.clientKey(originOf(ctx).IP)); err != nil {
		return err
	}
	if _, ok := rl.throttles[flow+"_email"]; !ok || email == "" {
		return nil
	}
	return rl.throttle(ctx, flow+"_email", NormalizeEmail(email))
}

// DefaultIPv6Prefix is how many leading bits of an IPv6 address are one
// client unless the Config says otherwise.
const DefaultIPv6Prefix = 64

// clientKey is the client a throttle and the hasher's fair share count:
// an IPv4 address (also when written IPv4-in-IPv6) as it is, an IPv6
// address cut to its first `throttle_ipv6_prefix` bits, since one
// customer is handed a whole /64 (or more) and can pick any address in
// it. ip is the client address of an Origin; anything else is used as
// given.
func (rl *throttler) clientKey(ip string) string {
	if ip == "" {
		// A flow called without its Origin: all such calls count as one
		// client, so a throttle still holds rather than never refusing.
		return "unknown client"
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		ap, err := netip.ParseAddrPort(ip)
		if err != nil {
			return ip
		}
		addr = ap.Addr()
	}
	addr = addr.Unmap().WithZone("")
	if !addr.Is6() {
		return addr.String()
	}
	p, err := addr.Prefix(rl.ipv6Prefix)
	if err != nil {
		return addr.String()
	}
	return p.String()
}

// hashOwners are the owners a hash for a request about email is booked
// under (see Hasher): the client and the address.
func (rl *throttler) hashOwners(ctx context.Context, email string) []string {
	owners := []string{"client:" + rl.clientKey(originOf(ctx).IP)}
	if email != "" {
		owners = append(owners, "email:"+NormalizeEmail(email))
	}
	return owners
}

// passwordFailure is one attempt counted towards login_email before the
// password is checked; settle keeps it (the check failed) or takes it
// back.
type passwordFailure struct {
	key, id string
}

// countFailure counts an attempt against email's login_email budget, or
// refuses when the address has no attempts left. It is called
// before any hash, whether or not the address has an account.
func (rl *throttler) countFailure(ctx context.Context, email string) (passwordFailure, error) {
	t, ok := rl.throttles[throttleLoginEmail]
	if !ok {
		return passwordFailure{}, fmt.Errorf("%w %q", ErrUnknownThrottle, throttleLoginEmail)
	}
	email = NormalizeEmail(email)
	if t.Limit <= 0 || email == "" {
		return passwordFailure{}, nil
	}
	key := rl.throttleKey(throttleLoginEmail, email)
	id, allowed, wait, err := rl.limiter.Reserve(ctx, key, t.Limit, time.Duration(t.Window))
	if err != nil {
		return passwordFailure{}, fmt.Errorf("rate limiter: %w", err)
	}
	if !allowed {
		return passwordFailure{}, rl.throttled(ctx, throttleLoginEmail, wait)
	}
	return passwordFailure{key: key, id: id}, nil
}

// settle keeps the counted attempt when failed, else takes it back (the
// password matched, or it could not be checked at all).
func (rl *throttler) settle(ctx context.Context, f passwordFailure, failed bool) {
	if failed || f.id == "" {
		return
	}
	if err := rl.limiter.Cancel(context.WithoutCancel(ctx), f.key, f.id); err != nil {
		rl.logger.Warn("a matched password stays counted as a failure", "error", err)
	}
}

// checkPassword checks the current password of the signed-in user u for
// endpoint (named in the audit line), as every endpoint that asks for it
// does: the password_check throttles per client and per user, then the
// address's login_email failure budget (a locked address is locked here
// too), the hash, booked under the client and the address. A wrong
// password counts towards login_email and is audited. The error is a 429
// or a failing dependency; a wrong password is false.
func (rl *core) checkPassword(ctx context.Context, u User, password, endpoint string) (bool, error) {
	if err := rl.throttle(ctx, throttlePasswordCheckIP, rl.clientKey(originOf(ctx).IP)); err != nil {
		return false, err
	}
	if err := rl.throttle(ctx, throttlePasswordCheckUser, strconv.FormatInt(u.ID, 10)); err != nil {
		return false, err
	}
	failure, err := rl.countFailure(ctx, u.Email)
	if err != nil {
		return false, err
	}
	ok, _, err := rl.hasher.verify(ctx, password, u.PasswordHash, rl.hashOwners(ctx, u.Email)...)
	rl.settle(ctx, failure, err == nil && !ok)
	if err != nil {
		return false, err
	}
	if !ok {
		rl.audit(ctx, auditPasswordCheckFailed, u.ID, slog.String("endpoint", endpoint), rl.emailHash(u.Email))
	}
	return ok, nil
}
