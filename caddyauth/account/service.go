package account

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/secretbox"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// MFAMode is the realm's TOTP policy.
type MFAMode string

// MFA modes.
const (
	MFADisabled MFAMode = "disabled"
	MFAOptional MFAMode = "optional"
	MFARequired MFAMode = "required"
)

// Verification is when a sign-up's address must be confirmed.
type Verification string

// Verification modes.
const (
	VerifyNone      Verification = "none"
	VerifyOptional  Verification = "optional"
	VerifyMandatory Verification = "mandatory"
)

// Registration is who may create accounts.
type Registration string

// Registration modes.
const (
	RegistrationOpen         Registration = "open"
	RegistrationInvitations  Registration = "invitations"
	RegistrationAdminManaged Registration = "admin_managed"
	RegistrationClosed       Registration = "closed"
)

// SignupOpen reports whether anyone may sign up.
func (r Registration) SignupOpen() bool {
	return r == RegistrationOpen || r == RegistrationInvitations
}

// InvitationsOn reports whether invitations are part of the policy.
func (r Registration) InvitationsOn() bool {
	return r == RegistrationInvitations || r == RegistrationAdminManaged
}

// Config is the realm's policy. New gives a zero duration, mode or role
// list its default (withDefaults); a zero count, skew or issuer is a
// setting of its own and stays.
type Config struct {
	AccessTTL       time.Duration
	RefreshTTL      time.Duration
	SessionLifetime time.Duration // 0: sessions last while refreshed
	Leeway          time.Duration
	SessionCheck    bool // every access check asks whether its session is live
	ReauthWindow    time.Duration
	// PersonalTokenMaxTTL is the longest lifetime of a personal access
	// token (`pat_max_ttl`); default 365 days.
	PersonalTokenMaxTTL time.Duration
	// OmitUserAgent keeps the User-Agent header out of new sessions'
	// rows (`record_user_agent off`); by default it is recorded, clipped
	// (useragent.Clip), for the owner's list of sessions.
	OmitUserAgent bool

	MFA             MFAMode
	MFAChallengeTTL time.Duration
	MFAChallengeMax int // failed codes one login challenge survives; 0: no limit
	MFAUserMax      int // failed codes per user inside MFALockout; 0: no lockout
	MFALockout      time.Duration
	TOTPSkew        int
	TOTPIssuer      string // "" with SiteName "": the request's host

	SiteName          string
	EmailVerification Verification
	Registration      Registration
	InviteRoles       []int
	// AdminRoles are the roles that may use the admin API (`admin_roles`);
	// nil means staff and superusers.
	AdminRoles           []int
	EmailConfirmationTTL time.Duration
	PasswordResetTTL     time.Duration
	// PasswordResetRequestURL is where mails send someone who wants a
	// new password ("" leaves the hint out).
	PasswordResetRequestURL string

	// Passkeys is the WebAuthn policy; "" means second_factor when MFA
	// is not disabled, else off.
	Passkeys PasskeyMode

	// SocialCallbackURLs are the redirect URIs the code flow accepts
	// (`social_callback_urls`): a code is redeemed only for one of them.
	SocialCallbackURLs []string

	Throttles map[string]Throttle // by name; missing names keep DefaultThrottles
	// IPv6Prefix is how many leading bits of an IPv6 address are one
	// client; 0 means DefaultIPv6Prefix.
	IPv6Prefix int
}

// PasskeyModeResolved is the passkey mode c runs with, its default
// applied.
func (c Config) PasskeyModeResolved() PasskeyMode { return c.withDefaults().Passkeys }

// withDefaults is c with the defaults of what it leaves unset.
func (c Config) withDefaults() Config {
	set := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	set(&c.AccessTTL, 30*time.Minute)
	set(&c.RefreshTTL, 14*24*time.Hour)
	set(&c.ReauthWindow, 10*time.Minute)
	set(&c.PersonalTokenMaxTTL, 365*24*time.Hour)
	set(&c.MFAChallengeTTL, 5*time.Minute)
	set(&c.MFALockout, 15*time.Minute)
	set(&c.EmailConfirmationTTL, 3*24*time.Hour)
	set(&c.PasswordResetTTL, time.Hour)
	if c.MFA == "" {
		c.MFA = MFADisabled
	}
	if c.EmailVerification == "" {
		c.EmailVerification = VerifyNone
	}
	if c.Registration == "" {
		c.Registration = RegistrationOpen
	}
	if c.InviteRoles == nil {
		c.InviteRoles = []int{RoleStaff, RoleSuperuser}
	}
	if c.AdminRoles == nil {
		c.AdminRoles = []int{RoleStaff, RoleSuperuser}
	}
	if c.IPv6Prefix == 0 {
		c.IPv6Prefix = DefaultIPv6Prefix
	}
	if c.Passkeys == "" {
		c.Passkeys = PasskeysOff
		if c.MFA != MFADisabled {
			c.Passkeys = PasskeysSecondFactor
		}
	}
	return c
}

// Deps are what the core is built from besides its policy.
type Deps struct {
	Store   Store
	Limiter RateLimiter
	Keys    *tokens.KeySet
	Secrets *secretbox.Box // seals TOTP secrets
	HashKey []byte         // keys the e-mail hashes of logs and the throttle keys
	Hasher  *Hasher
	Outbox  Outbox
	Metrics Metrics // nil counts nothing
	Logger  *slog.Logger
	Audit   *slog.Logger // the audit log; nil writes none
	Clock   *Clock       // nil: the system clock
	Rand    io.Reader
	// Providers are the identity providers of social login.
	Providers []Provider
	// WebAuthn checks passkey ceremonies; nil turns passkeys off.
	WebAuthn WebAuthn
}

// Metrics counts what the core does; the Caddy adapter exports them.
type Metrics interface {
	Login(result string)
	MFAVerification(method, result string)
	Lockout(kind string)
	Throttle(name string)
	// SocialLogin counts a sign-in with provider by result; SocialLink a
	// link made or removed (action: signup, link, connect, unlink).
	SocialLogin(provider, result string)
	SocialLink(provider, action string)
}

// Results and methods the metrics are labelled with.
const (
	ResultSuccess     = "success"
	ResultMFARequired = "mfa_required"
	ResultFailure     = "failure"
	ResultLocked      = "locked"
	ResultThrottled   = "throttled"
	ResultError       = "error"

	MethodTOTP         = "totp"
	MethodRecoveryCode = "recovery_code"
	MethodPasskey      = "webauthn"
)

type noMetrics struct{}

func (noMetrics) Login(string)                   {}
func (noMetrics) MFAVerification(string, string) {}
func (noMetrics) Lockout(string)                 {}
func (noMetrics) Throttle(string)                {}
func (noMetrics) SocialLogin(string, string)     {}
func (noMetrics) SocialLink(string, string)      {}

// Clock is the core's one time source: the system clock plus an offset
// that stays zero in service and that tests move forward, so expiries can
// be tested without sleeping.
type Clock struct {
	offset atomic.Int64
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	return time.Now().Add(time.Duration(c.offset.Load()))
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// Origin is where a request came from and which site it was made to: the
// client's address (for throttles, the hasher's fair share, audit lines
// and session rows), the host it named (a TOTP issuer's fallback), and
// Site, the absolute URL under which the endpoints are served, the base
// of every mailed link. UserAgent is the request's User-Agent header, as
// sent: a session opened by the request records it (see OmitUserAgent).
type Origin struct {
	IP        string
	Host      string
	Site      string
	UserAgent string
}

type originKey struct{}

// withOrigin is ctx carrying o, for the audit lines written deeper down.
func withOrigin(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

func originOf(ctx context.Context) Origin {
	o, _ := ctx.Value(originKey{}).(Origin)
	return o
}

// Service is the account core of one realm, split by feature. Every part
// shares the same store, keys, policy, clock and randomness.
type Service struct {
	Sessions   *Sessions
	MFA        *MFA
	Challenges *Challenges
	Signup     *Signup
	Passwords  *Passwords
	Users      *Users
	Social     *Social
	Passkeys   *Passkeys
	Admin      *Admin
	// PersonalTokens are the accounts' personal access tokens.
	PersonalTokens *PersonalTokens
	core           *core
}

// core is what every feature shares.
type core struct {
	*throttler
	store   Store
	keys    *tokens.KeySet
	secrets *secretbox.Box
	hasher  *Hasher
	outbox  Outbox
	policy  Config
	clock   *Clock
	rand    io.Reader

	providers  []Provider
	webauthn   WebAuthn
	sessions   *Sessions
	mfa        *MFA
	challenges *Challenges
	social     *Social
	passkeys   *Passkeys
	verified   *accessCache
	liveCache  *sessionCache
	patCache   *patCache
	// attemptsPurged spaces the purges of MFA failures that a failed
	// check runs (Challenges.countedCheck).
	attemptsPurged onceASecond
}

// auditor writes the audit log and counts what it records.
type auditor struct {
	auditLog *slog.Logger
	hashKey  []byte
	metrics  Metrics
}

// throttler applies the request throttles.
type throttler struct {
	*auditor
	limiter    RateLimiter
	throttles  map[string]Throttle
	ipv6Prefix int
	logger     *slog.Logger
}

// New builds the core of a realm.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Store == nil || d.Keys == nil || d.Secrets == nil || d.Hasher == nil || d.Limiter == nil {
		return nil, errors.New("account: a store, a rate limiter, keys, a secret box and a hasher are required")
	}
	if err := ValidateThrottles(cfg.Throttles); err != nil {
		return nil, err
	}
	if d.Metrics == nil {
		d.Metrics = noMetrics{}
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Clock == nil {
		d.Clock = new(Clock)
	}
	if d.Outbox == nil {
		d.Outbox = discardOutbox{}
	}
	cfg = cfg.withDefaults()
	c := &core{
		throttler: &throttler{
			auditor:    &auditor{auditLog: d.Audit, hashKey: d.HashKey, metrics: d.Metrics},
			limiter:    d.Limiter,
			throttles:  buildThrottles(cfg.Throttles),
			ipv6Prefix: cfg.IPv6Prefix,
			logger:     d.Logger,
		},
		store: d.Store, keys: d.Keys, secrets: d.Secrets, hasher: d.Hasher, outbox: d.Outbox,
		policy: cfg, clock: d.Clock, rand: d.Rand, providers: d.Providers, webauthn: d.WebAuthn,
	}
	c.verified = newAccessCache()
	c.liveCache = newSessionCache(c.store, 2*time.Second)
	c.patCache = newPATCache()
	c.sessions = &Sessions{c}
	c.mfa = &MFA{c}
	c.challenges = &Challenges{c}
	c.social = &Social{c}
	c.passkeys = &Passkeys{c}
	return &Service{
		Sessions:   c.sessions,
		MFA:        c.mfa,
		Challenges: c.challenges,
		Signup:     &Signup{c},
		Passwords:  &Passwords{c},
		Users:      &Users{c},
		Social:     c.social,
		Passkeys:   c.passkeys,
		Admin:      &Admin{c},
		core:       c,

		PersonalTokens: &PersonalTokens{c},
	}, nil
}

// Config is the policy the service runs with.
func (s *Service) Config() Config { return s.core.policy }

// Keys is the realm's key set.
func (s *Service) Keys() *tokens.KeySet { return s.core.keys }

func (rl *core) now() time.Time { return rl.clock.Now() }

// PurgeLoop deletes expired rows every few minutes until ctx ends, then
// closes done.
func (s *Service) PurgeLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		s.core.purge(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// purgeRetention says how long rows of each purpose are kept.
func (rl *core) purgeRetention() map[string]time.Duration {
	return map[string]time.Duration{
		purposeMFASetupChallenge: rl.policy.MFAChallengeTTL,
		purposeMFALoginChallenge: rl.policy.MFAChallengeTTL,
		purposeMFASetupSecret:    rl.policy.MFAChallengeTTL,
		purposeMFAAttempt:        rl.attemptRetention(),
		purposeRefreshRotated:    RefreshHopGrace,
		PurposePassReset:         rl.policy.PasswordResetTTL,
		PurposePassResetAccess:   rl.policy.AccessTTL,
		PurposePassSetAccess:     rl.policy.AccessTTL,
		purposeInvitation:        rl.policy.EmailConfirmationTTL,
		purposeSignupChallenge:   rl.policy.EmailConfirmationTTL,
		purposeEmailConfirmation: rl.policy.EmailConfirmationTTL,
		purposeSocialAttempt:     SocialAttemptTTL,
		purposeSocialPending:     rl.policy.MFAChallengeTTL,
		purposePasskeyRegister:   rl.policy.MFAChallengeTTL,
		purposePasskeyAssert:     rl.policy.MFAChallengeTTL,
		purposePasskeyLogin:      rl.policy.MFAChallengeTTL,
	}
}

// attemptRetention is how long an MFA failure can still count: for the
// user's sliding window, and for its challenge while that lives.
func (rl *core) attemptRetention() time.Duration {
	return max(rl.policy.MFALockout, rl.policy.MFAChallengeTTL)
}

func (rl *core) purge(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	now := rl.now()
	n, err := rl.store.PurgeRefresh(ctx, now)
	if err != nil {
		rl.logger.Warn("purging expired refresh tokens", "error", err)
		return
	}
	total := n
	for purpose, keep := range rl.purgeRetention() {
		n, err := rl.store.PurgeTokens(ctx, purpose, now.Add(-keep))
		if err != nil {
			rl.logger.Warn("purging expired tokens", "purpose", purpose, "error", err)
			return
		}
		total += n
	}
	if total > 0 {
		rl.logger.Debug("purged expired rows", "rows", total)
	}
}
