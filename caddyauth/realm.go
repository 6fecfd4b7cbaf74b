package caddyauth

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/secretbox"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// Values of the policy settings.
const (
	mfaDisabled = "disabled"
	mfaOptional = "optional"
	mfaRequired = "required"

	verifyNone      = "none"
	verifyOptional  = "optional"
	verifyMandatory = "mandatory"

	registrationOpen         = "open"
	registrationInvitations  = "invitations"
	registrationAdminManaged = "admin_managed"
	registrationClosed       = "closed"
)

// policy is the realm's settings after defaults.
type policy struct {
	issuer, audience  string
	accessTTL         time.Duration
	refreshTTL        time.Duration
	sessionLifetime   time.Duration
	leeway            time.Duration
	refreshInBody     bool
	cookieSecure      bool
	cookieSameSite    http.SameSite
	mfaMode           string
	mfaChallengeTTL   time.Duration
	mfaChallengeMax   int
	mfaUserMax        int
	mfaLockout        time.Duration
	totpSkew          int
	totpIssuer        string
	siteName          string
	emailVerification string
	registration      string
	publicURL         string
	sessionCheck      bool
	reauthWindow      time.Duration

	inviteRoles             []int
	emailConfirmationTTL    time.Duration
	passwordResetTTL        time.Duration
	emailVerifiedRedirect   string
	passwordResetRedirect   string
	passwordSetRedirect     string
	passwordResetRequestURL string
	accessCookie            string
}

// realm is the account service behind the HTTP adapters: it holds the
// store, the keys and the policy, and the one clock and randomness source
// every expiry and every token is made from.
type realm struct {
	store    account.Store
	limiter  account.RateLimiter
	keys     *tokens.KeySet
	secrets  *secretbox.Box
	csrfKey  []byte
	hasher   *passwordHasher
	sessions *sessionCache
	verified *accessCache
	hashKey  []byte // keys emailHash and throttleKey
	policy   policy
	clock    *clock
	now      func() time.Time
	rand     io.Reader
	logger   *zap.Logger

	throttles map[string]Throttle // by name, defaults applied
	metrics   *metrics
	auditLog  *zap.Logger // named "audit"
	mail      *mailQueue
	mails     map[string]mailTemplate

	ipv6Prefix int // bits of an IPv6 address that make one client (`throttle_ipv6_prefix`); 0 means 64
}

// clock is the realm's one time source: the system clock plus an offset
// that stays zero in service and that tests move forward, so expiries can
// be tested against a running server without sleeping.
type clock struct {
	offset atomic.Int64
}

func (c *clock) now() time.Time {
	return time.Now().Add(time.Duration(c.offset.Load()))
}

// tokenPair is what a session-opening call hands to the client, and the
// jti of its refresh token.
type tokenPair struct {
	access, refresh string
	refreshJTI      string
}

// openSession mints a new session for u: a refresh token with a fresh
// session id, its whitelist row, and the access token derived from it.
func (rl *realm) openSession(ctx context.Context, st account.Store, u account.User, enabled bool, ip string) (tokenPair, error) {
	session, err := tokens.NewID(rl.rand)
	if err != nil {
		return tokenPair{}, err
	}
	now := rl.now()
	return rl.issuePair(ctx, st, u, session, now.Unix(), enabled, ip, "")
}

// issuePair builds the refresh token of a session (and its access token),
// then either inserts its whitelist row or, when oldJTI is set, rotates the
// row oldJTI into it.
func (rl *realm) issuePair(ctx context.Context, st account.Store, u account.User, session string, sessionIAT int64, enabled bool, ip, oldJTI string) (tokenPair, error) {
	now := rl.now()
	jti, err := tokens.NewID(rl.rand)
	if err != nil {
		return tokenPair{}, err
	}
	refresh, refreshExp, err := rl.signRefresh(u, session, sessionIAT, jti, now)
	if err != nil {
		return tokenPair{}, err
	}
	row := account.RefreshToken{JTI: jti, Session: session, UserID: u.ID, Enabled: enabled, Created: now, Expires: refreshExp, IP: ip}
	if oldJTI == "" {
		err = st.InsertRefresh(ctx, row)
	} else {
		err = st.RotateRefresh(ctx, oldJTI, row)
	}
	if err != nil {
		return tokenPair{}, err
	}
	access, err := rl.signAccess(u, session, sessionIAT, now)
	if err != nil {
		return tokenPair{}, err
	}
	return tokenPair{access: access, refresh: refresh, refreshJTI: jti}, nil
}

// sessionClaims are the claims every token of u's session carries.
func sessionClaims(u account.User, session string, sessionIAT int64) tokens.Claims {
	return tokens.Claims{
		UserID:        strconv.FormatInt(u.ID, 10),
		Session:       session,
		SessionIAT:    sessionIAT,
		Role:          u.Role,
		EmailVerified: u.EmailVerified,
	}
}

// capExpiry shortens exp to the end of the session when session_lifetime
// is set.
func (rl *realm) capExpiry(exp time.Time, sessionIAT int64) time.Time {
	if lt := rl.policy.sessionLifetime; lt > 0 {
		if limit := time.Unix(sessionIAT, 0).Add(lt); exp.After(limit) {
			return limit
		}
	}
	return exp
}

// signRefresh signs the refresh token jti of a session, issued at issued,
// and returns it with its expiry.
func (rl *realm) signRefresh(u account.User, session string, sessionIAT int64, jti string, issued time.Time) (string, time.Time, error) {
	exp := rl.capExpiry(issued.Add(rl.policy.refreshTTL), sessionIAT)
	c := sessionClaims(u, session, sessionIAT)
	c.TokenType = tokens.TypeRefresh
	c.ID = jti
	c.IssuedAt = jwt.NewNumericDate(issued)
	c.ExpiresAt = jwt.NewNumericDate(exp)
	tok, err := rl.keys.Sign(c)
	return tok, exp, err
}

// signAccess signs a new access token of a session, issued at now.
func (rl *realm) signAccess(u account.User, session string, sessionIAT int64, now time.Time) (string, error) {
	c := sessionClaims(u, session, sessionIAT)
	c.TokenType = tokens.TypeAccess
	var err error
	if c.ID, err = tokens.NewID(rl.rand); err != nil {
		return "", err
	}
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(rl.capExpiry(now.Add(rl.policy.accessTTL), sessionIAT))
	return rl.keys.Sign(c)
}

// purgeLoop deletes expired rows every few minutes until ctx ends.
func (rl *realm) purgeLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		rl.purge(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// purgeRetention says how long rows of each purpose are kept.
func (rl *realm) purgeRetention() map[string]time.Duration {
	return map[string]time.Duration{
		purposeMFASetupChallenge: rl.policy.mfaChallengeTTL,
		purposeMFALoginChallenge: rl.policy.mfaChallengeTTL,
		purposeMFASetupSecret:    rl.policy.mfaChallengeTTL,
		purposeMFAAttempt:        rl.attemptRetention(),
		purposeRefreshRotated:    refreshHopGrace,
		purposePassReset:         rl.policy.passwordResetTTL,
		purposePassResetAccess:   rl.policy.accessTTL,
		purposePassSetAccess:     rl.policy.accessTTL,
		purposeInvitation:        rl.policy.emailConfirmationTTL,
		purposeSignupChallenge:   rl.policy.emailConfirmationTTL,
		purposeEmailConfirmation: rl.policy.emailConfirmationTTL,
	}
}

// attemptRetention is how long an MFA failure can still count: for the
// user's sliding window, and for its challenge while that lives.
func (rl *realm) attemptRetention() time.Duration {
	return max(rl.policy.mfaLockout, rl.policy.mfaChallengeTTL)
}

func (rl *realm) purge(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	now := rl.now()
	n, err := rl.store.PurgeRefresh(ctx, now)
	if err != nil {
		rl.logger.Warn("purging expired refresh tokens", zap.Error(err))
		return
	}
	total := n
	for purpose, keep := range rl.purgeRetention() {
		n, err := rl.store.PurgeTokens(ctx, purpose, now.Add(-keep))
		if err != nil {
			rl.logger.Warn("purging expired tokens", zap.String("purpose", purpose), zap.Error(err))
			return
		}
		total += n
	}
	if total > 0 {
		rl.logger.Debug("purged expired rows", zap.Int("rows", total))
	}
}
