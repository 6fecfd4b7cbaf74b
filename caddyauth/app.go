// Package caddyauth is the Caddy adapter of caddy-jwt-allauth: the
// jwt_allauth app, the endpoints handler, the guard and the
// authentication provider, their Caddyfile syntax and the
// `caddy jwt-allauth` command. It builds the account core (caddyauth/account)
// from the config and hands each request to the web layer (caddyauth/web).
package caddyauth

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/mail"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/secretbox"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/web"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `jwt_allauth` Caddy app, configured by the global option of the
// same name. It owns what every site and every guard share: the user store,
// the signing keys, the password hasher, the rate limiter and the policy.
// Without a global option it runs on its defaults (SQLite under Caddy's data
// directory, keys generated once and kept in Caddy's storage).
type App struct {
	// The user store. Default: `{"backend": "sqlite"}`, a file under Caddy's
	// data directory.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=jwt_allauth.stores inline_key=backend"`

	// An HS256 shared secret of at least 32 bytes. Give it as a placeholder
	// such as `{env.JWT_SECRET}` or `{file./run/secrets/jwt}`: Caddy saves
	// its running config to disk, and a literal secret would land there.
	// When absent, an Ed25519 key pair is generated once and kept in Caddy's
	// storage (the `storage` global option; the data directory by default),
	// never in the user database: every node sharing the database needs the
	// same storage, as clustered nodes have for their certificates.
	SigningKey string `json:"signing_key,omitempty"`

	// Key material of at least 32 bytes for encrypting TOTP secrets at rest
	// (and keying CSRF tokens and hashes). Placeholders are expanded. When
	// absent: derived from `signing_key` when that is set, else a random key
	// generated once and kept in Caddy's storage beside the signing key.
	SecretsKey string `json:"secrets_key,omitempty"`

	// The `iss` claim of issued tokens and the issuer the verifier expects.
	// Default: "caddy-jwt-allauth".
	Issuer string `json:"issuer,omitempty"`

	// The `aud` claim of issued tokens and the audience the verifier
	// expects. Default: "caddy-jwt-allauth".
	Audience string `json:"audience,omitempty"`

	// Lifetime of access tokens. Default: 30m.
	AccessTTL caddy.Duration `json:"access_ttl,omitempty"`

	// Lifetime of refresh tokens. Default: 14d.
	RefreshTTL caddy.Duration `json:"refresh_ttl,omitempty"`

	// An absolute cap on a session, counted from the login that opened it,
	// whatever the refreshes. Default: none.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`

	// How long past `exp` a token is still accepted, for clock drift between
	// nodes. At most 30s. Default: 0.
	Leeway caddy.Duration `json:"leeway,omitempty"`

	// Where the refresh token travels: "cookie" (default; an HttpOnly
	// cookie named `refresh_token`, SameSite=Lax unless `cookie_samesite`
	// says otherwise) or "body" (the `refresh`
	// field of the JSON body, in both directions).
	RefreshToken string `json:"refresh_token,omitempty"`

	// Whether the refresh cookie is marked Secure. Default: true. Turn it
	// off only for plain-HTTP local testing.
	CookieInsecure bool `json:"cookie_insecure,omitempty"`

	// The SameSite attribute of the session cookies (the refresh cookie and
	// the access-token cookie): "lax" (default), "strict", or "none" for a
	// single-page app on another site that calls the endpoints with
	// credentials. "none" needs Secure cookies, so not with
	// `cookie_insecure`.
	CookieSameSite string `json:"cookie_samesite,omitempty"`

	// MFA with TOTP: "disabled" (default), "optional" or "required".
	MFATOTPMode string `json:"mfa_totp_mode,omitempty"`

	// Passkeys (WebAuthn): "off", "second_factor" (the default when MFA
	// is not disabled, else off) or "passwordless" (second factor too).
	Passkeys string `json:"passkeys,omitempty"`
	// The WebAuthn relying party ID, default the host of public_url, and
	// the origins allowed, default public_url's scheme and host.
	PasskeyRPID    string   `json:"passkey_rp_id,omitempty"`
	PasskeyOrigins []string `json:"passkey_origins,omitempty"`

	// How long MFA challenges and pending setup secrets live. Default: 5m.
	MFAChallengeTTL caddy.Duration `json:"mfa_challenge_ttl,omitempty"`

	// Failed MFA verifications that invalidate one challenge. 0 disables the
	// limit. Default: 5.
	MFAChallengeMaxAttempts *int `json:"mfa_challenge_max_attempts,omitempty"`

	// Failed MFA verifications of one user, across challenges and both
	// verify endpoints, within `mfa_lockout` that lock the user out of MFA
	// (429 until the oldest failure leaves the window). 0 disables the
	// limit. Default: 10.
	MFAMaxAttempts *int `json:"mfa_max_attempts,omitempty"`

	// The sliding window of the per-user MFA limit. Default: 15m.
	MFALockout caddy.Duration `json:"mfa_lockout,omitempty"`

	// TOTP time steps of drift accepted either side of now. Default: 1.
	TOTPSkew *int `json:"totp_skew,omitempty"`

	// The issuer shown in authenticator apps. When nil: "JWT-Allauth". When
	// set to "": `site_name`, else the request host.
	TOTPIssuer *string `json:"totp_issuer,omitempty"`

	// The site's name, used in mails and as the TOTP issuer fallback.
	SiteName string `json:"site_name,omitempty"`

	// E-mail verification: "none" (default), "optional" or "mandatory".
	EmailVerification string `json:"email_verification,omitempty"`

	// Who may create accounts: "open" (default), "invitations",
	// "admin_managed" or "closed".
	Registration string `json:"registration,omitempty"`

	// The public base URL of the site, e.g. `https://example.com`: links in
	// mails are this plus the endpoints' prefix, never anything taken from
	// the request (Host, X-Forwarded-Host). Required by the endpoints
	// handler, whose password reset, confirmation and invitation mails
	// link to it.
	PublicURL string `json:"public_url,omitempty"`

	// Roles whose holders may invite users (POST
	// {prefix}/registration/user-register/) when `registration` is
	// "invitations" or "admin_managed". Default: 1000 900. Whatever the
	// list, an inviter grants at most its own rank: staff (1000) any role,
	// superusers (900) any role but 1000, any other role only itself or 0.
	InviteRoles []int `json:"invite_roles,omitempty"`

	// Roles whose holders may use the admin API ({prefix}/admin/).
	// Default: 1000 900. Whatever the list, an administrator changes only
	// users it does not rank below and grants at most its own rank, as
	// invite_roles says.
	AdminRoles []int `json:"admin_roles,omitempty"`

	// How long e-mail confirmation and invitation links live. Default: 3d.
	EmailConfirmationTTL caddy.Duration `json:"email_confirmation_ttl,omitempty"`

	// How long a password reset link lives. Default: 1h.
	PasswordResetTTL caddy.Duration `json:"password_reset_ttl,omitempty"`

	// Where a followed e-mail confirmation link lands (a URL or a path).
	// Default: the built-in page {prefix}/registration/verified/.
	EmailVerifiedRedirect string `json:"email_verified_redirect,omitempty"`

	// Where a followed password reset link lands, with the
	// `password_reset_access_token` and `csrftoken` cookies set; the page
	// there posts the new password to {prefix}/password/reset/set-new/.
	// Default: the built-in page {prefix}/password/reset/default/.
	PasswordResetRedirect string `json:"password_reset_redirect,omitempty"`

	// Where a followed invitation link lands, with the
	// `set_password_access_token` and `csrftoken` cookies set; the page
	// there posts the password to {prefix}/registration/set-password/.
	// Default: the built-in page {prefix}/registration/set-password/default/.
	PasswordSetRedirect string `json:"password_set_redirect,omitempty"`

	// A "forgot password" page linked from the mail sent when someone signs
	// up with an address that already has an account. Default: none.
	PasswordResetRequestURL string `json:"password_reset_request_url,omitempty"`

	// How mails leave the server. Default: `mail log` (written to Caddy's
	// log, for local use only).
	Mail *MailConfig `json:"mail,omitempty"`

	// Reject access tokens whose session was revoked (logout, replay,
	// password change). Costs one cached database read per session every
	// few seconds; when the database is down such requests get 503.
	SessionCheck bool `json:"session_check,omitempty"`

	// Whether a new session records the User-Agent header of the request
	// that opened it (at most 512 bytes), for its owner's list of
	// sessions ({prefix}/sessions/). Default: true; false stores none.
	RecordUserAgent *bool `json:"record_user_agent,omitempty"`

	// How recently a session must have checked a password or a second
	// factor for an enrolment (TOTP setup and activation) to go ahead
	// without the current password in the body's `password` field. A
	// session's proof is the login (or MFA verification, password change
	// or reset) that opened it; refreshes keep it. Default: 10m.
	ReauthWindow caddy.Duration `json:"reauth_window,omitempty"`

	// The longest lifetime a personal access token may be given
	// (POST {prefix}/tokens/, `expires_in_days`), at least a day.
	// Default: 365d.
	PATMaxTTL caddy.Duration `json:"pat_max_ttl,omitempty"`

	// The name of the cookie that carries the access token for browsers:
	// the HTML pages set it, and guards with `cookie` or `redirect` read it.
	// HttpOnly, Path=/, SameSite=Lax unless `cookie_samesite` says
	// otherwise. Default: `access_token`. With Secure cookies (that is,
	// without `cookie_insecure`) the name carries the `__Host-` prefix:
	// `__Host-access_token` by default.
	AccessCookie string `json:"access_cookie,omitempty"`

	// The rate limiter the throttles count through. Default: in memory,
	// per node. With `{"backend": "redis", "url": ...}` the counts are
	// shared by every node using that Redis, and survive reloads.
	LimiterRaw json.RawMessage `json:"rate_limit,omitempty" caddy:"namespace=jwt_allauth.rate_limiters inline_key=backend"`

	// Request throttles by name, each `{"limit": n, "window": duration}`;
	// a limit of 0 turns one off. Names not given keep their defaults.
	// See Throttle for the names, their keys and defaults.
	Throttles map[string]Throttle `json:"throttles,omitempty"`

	// How many leading bits of an IPv6 address make one client for the
	// per-client throttles and the hasher's fair share: one customer gets
	// a whole /64 (or more) and may use any address in it. 1 to 128;
	// IPv4 clients are always counted by address. Default: 64.
	ThrottleIPv6Prefix *int `json:"throttle_ipv6_prefix,omitempty"`

	// The identity providers of social login, in the order the pages list
	// them (see SocialProvider).
	Social []SocialProvider `json:"social,omitempty"`
	// The redirect URIs a client may redeem a code for in the code flow
	// ({prefix}/social/<provider>/code/): exact URLs.
	SocialCallbackURLs []string `json:"social_callback_urls,omitempty"`

	realm   *realm
	logger  *zap.Logger
	stop    context.CancelFunc
	done    chan struct{}
	metrics *metrics   // held from the shared collectors until Cleanup
	mail    *mailLease // held on a shared mail queue until Cleanup
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "jwt_allauth",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets defaults, loads the store and the limiter, and loads or
// creates the signing keys.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	defaulted := a.StoreRaw == nil
	if defaulted {
		a.StoreRaw = json.RawMessage(`{"backend":"sqlite"}`)
	}
	storeMod, err := ctx.LoadModule(a, "StoreRaw")
	if err != nil {
		if defaulted {
			return fmt.Errorf("no store configured, and the default SQLite store failed (add `store postgres <dsn>` to the jwt_allauth global option, or check the data directory): %v", err)
		}
		return fmt.Errorf("loading store: %v", err)
	}
	store, ok := storeMod.(account.Store)
	if !ok {
		return fmt.Errorf("store module %T does not implement the Store interface", storeMod)
	}
	clk := new(account.Clock)
	var limiter account.RateLimiter = account.NewMemoryLimiter(clk.Now)
	if a.LimiterRaw != nil {
		mod, err := ctx.LoadModule(a, "LimiterRaw")
		if err != nil {
			return fmt.Errorf("loading rate limiter: %v", err)
		}
		limiter = mod.(account.RateLimiter)
	}
	m, err := acquireMetrics(ctx.GetMetricsRegistry())
	if err != nil {
		return err
	}
	a.metrics = m
	cfg := account.Config{
		AccessTTL:       time.Duration(a.AccessTTL),
		RefreshTTL:      time.Duration(a.RefreshTTL),
		SessionLifetime: time.Duration(a.SessionLifetime),
		Leeway:          time.Duration(a.Leeway),
		SessionCheck:    a.SessionCheck,
		ReauthWindow:    time.Duration(a.ReauthWindow),
		OmitUserAgent:   a.RecordUserAgent != nil && !*a.RecordUserAgent,

		PersonalTokenMaxTTL: time.Duration(a.PATMaxTTL),

		MFA:             account.MFAMode(a.MFATOTPMode),
		Passkeys:        account.PasskeyMode(a.Passkeys),
		MFAChallengeTTL: time.Duration(a.MFAChallengeTTL),
		MFAChallengeMax: intOr(a.MFAChallengeMaxAttempts, 5),
		MFAUserMax:      intOr(a.MFAMaxAttempts, 10),
		MFALockout:      time.Duration(a.MFALockout),
		TOTPSkew:        intOr(a.TOTPSkew, 1),
		TOTPIssuer:      "JWT-Allauth",

		SiteName:                a.SiteName,
		EmailVerification:       account.Verification(a.EmailVerification),
		Registration:            account.Registration(a.Registration),
		InviteRoles:             a.InviteRoles,
		AdminRoles:              a.AdminRoles,
		EmailConfirmationTTL:    time.Duration(a.EmailConfirmationTTL),
		PasswordResetTTL:        time.Duration(a.PasswordResetTTL),
		PasswordResetRequestURL: repl.ReplaceAll(a.PasswordResetRequestURL, ""),

		SocialCallbackURLs: a.SocialCallbackURLs,

		Throttles:  coreThrottles(a.Throttles),
		IPv6Prefix: intOr(a.ThrottleIPv6Prefix, 0),
	}
	if a.TOTPIssuer != nil {
		cfg.TOTPIssuer = *a.TOTPIssuer
	}
	site := web.Config{
		PublicURL:             strings.TrimRight(repl.ReplaceAll(a.PublicURL, ""), "/"),
		RefreshInBody:         a.RefreshToken == "body",
		CookieSecure:          !a.CookieInsecure,
		CookieSameSite:        sameSiteModes[a.CookieSameSite],
		AccessCookie:          web.HostCookie(orDefault(a.AccessCookie, web.DefaultAccessCookie), !a.CookieInsecure),
		EmailVerifiedRedirect: repl.ReplaceAll(a.EmailVerifiedRedirect, ""),
		PasswordResetRedirect: repl.ReplaceAll(a.PasswordResetRedirect, ""),
		PasswordSetRedirect:   repl.ReplaceAll(a.PasswordSetRedirect, ""),
		ClientIP:              clientIP,
		Rand:                  rand.Reader,
		Failures:              m,
	}
	if site.PublicURL != "" {
		if err := checkPublicURL(site.PublicURL); err != nil {
			return fmt.Errorf("public_url: %v", err)
		}
	}

	rl := &realm{
		store:    store,
		clock:    clk,
		rand:     rand.Reader,
		logger:   a.logger,
		metrics:  m,
		hasher:   account.NewHasher(rand.Reader, 2*time.Second, m.hashWait),
		tokenCfg: tokens.Config{Issuer: orDefault(a.Issuer, "caddy-jwt-allauth"), Audience: orDefault(a.Audience, "caddy-jwt-allauth"), Leeway: cfg.Leeway},
	}
	if a.mail, err = rl.provisionMail(a.Mail, repl); err != nil {
		return err
	}
	keyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	signingKey, err := expandSecret(repl, "signing_key", a.SigningKey)
	if err != nil {
		return err
	}
	secretsKey, err := expandSecret(repl, "secrets_key", a.SecretsKey)
	if err != nil {
		return err
	}
	if err := rl.loadKeys(keyCtx, ctx.Storage(), signingKey, secretsKey); err != nil {
		return err
	}
	providers, err := coreProviders(a.Social, repl)
	if err != nil {
		return err
	}
	webauthn, err := a.relyingParty(cfg.PasskeyModeResolved(), site.PublicURL)
	if err != nil {
		return err
	}
	rl.svc, err = account.New(cfg, account.Deps{
		Store:   store,
		Limiter: limiter,
		Keys:    rl.keys,
		Secrets: rl.secrets,
		HashKey: rl.hashKey,
		Hasher:  rl.hasher,
		Outbox:  rl,
		Metrics: m,
		Logger:  slog.New(zapslog.NewHandler(a.logger.Core(), zapslog.WithName(a.logger.Name()))),
		Audit:   slog.New(zapslog.NewHandler(a.logger.Core(), zapslog.WithName(a.logger.Name()+".audit"))),
		Clock:   clk,
		Rand:    rand.Reader,

		Providers: providers,
		WebAuthn:  webauthn,
	})
	if err != nil {
		return err
	}
	site.SocialProviders = socialList(a.Social, repl)
	site.CSRFKey = rl.csrfKey
	rl.site = site
	a.logger.Info("jwt_allauth ready", zap.String("signing", rl.keys.Algorithm()), zap.String("kid", rl.keys.KeyID()))
	a.realm = rl
	return nil
}

// realm is what the app builds for its sites and guards: the account core
// and what the web layer of each site starts from.
type realm struct {
	svc      *account.Service
	site     web.Config // a site's settings but for its prefix, CORS and templates
	store    account.Store
	keys     *tokens.KeySet
	secrets  *secretbox.Box
	hashKey  []byte
	csrfKey  []byte
	tokenCfg tokens.Config
	hasher   *account.Hasher
	clock    *account.Clock
	rand     io.Reader
	logger   *zap.Logger
	metrics  *metrics
	mails    map[string]mail.Template
	mail     *mailQueue
}

// sameSiteModes maps `cookie_samesite` to the attribute; absent is Lax.
var sameSiteModes = map[string]http.SameSite{
	"":       http.SameSiteLaxMode,
	"lax":    http.SameSiteLaxMode,
	"strict": http.SameSiteStrictMode,
	"none":   http.SameSiteNoneMode,
}

// Validate checks the settings without doing any I/O.
func (a *App) Validate() error {
	checks := []struct {
		name, value string
		allowed     []string
	}{
		{"refresh_token", a.RefreshToken, []string{"", "cookie", "body"}},
		{"mfa_totp_mode", a.MFATOTPMode, []string{"", string(account.MFADisabled), string(account.MFAOptional), string(account.MFARequired)}},
		{"passkeys", a.Passkeys, []string{"", string(account.PasskeysOff), string(account.PasskeysSecondFactor), string(account.PasskeysPasswordless)}},
		{"email_verification", a.EmailVerification, []string{"", string(account.VerifyNone), string(account.VerifyOptional), string(account.VerifyMandatory)}},
		{"registration", a.Registration, []string{"", string(account.RegistrationOpen), string(account.RegistrationInvitations), string(account.RegistrationAdminManaged), string(account.RegistrationClosed)}},
		{"cookie_samesite", a.CookieSameSite, []string{"", "lax", "strict", "none"}},
	}
	for _, c := range checks {
		if !slices.Contains(c.allowed, c.value) {
			return fmt.Errorf("%s: unknown value %q (want one of %s)", c.name, c.value, strings.Join(c.allowed[1:], ", "))
		}
	}
	if a.Mail != nil {
		if !slices.Contains([]string{"", "log", "smtp"}, a.Mail.Transport) {
			return fmt.Errorf("mail: unknown transport %q (want log or smtp)", a.Mail.Transport)
		}
		if !slices.Contains([]string{"", "starttls", "implicit", "opportunistic", "none"}, a.Mail.TLS) {
			return fmt.Errorf("mail: unknown tls mode %q (want starttls, implicit, opportunistic or none)", a.Mail.TLS)
		}
	}
	for _, role := range a.InviteRoles {
		if role < 0 || role > 32767 {
			return fmt.Errorf("invite_roles: %d is not a role (0 to 32767)", role)
		}
	}
	for _, role := range a.AdminRoles {
		if role < 0 || role > 32767 {
			return fmt.Errorf("admin_roles: %d is not a role (0 to 32767)", role)
		}
	}
	for name, d := range map[string]caddy.Duration{"access_ttl": a.AccessTTL, "refresh_ttl": a.RefreshTTL, "session_lifetime": a.SessionLifetime, "mfa_challenge_ttl": a.MFAChallengeTTL, "leeway": a.Leeway, "email_confirmation_ttl": a.EmailConfirmationTTL, "password_reset_ttl": a.PasswordResetTTL, "reauth_window": a.ReauthWindow, "pat_max_ttl": a.PATMaxTTL} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	if a.PATMaxTTL > 0 && time.Duration(a.PATMaxTTL) < 24*time.Hour {
		return errors.New("pat_max_ttl must be at least a day (24h): tokens live a whole number of days")
	}
	for name, p := range map[string]*int{"mfa_challenge_max_attempts": a.MFAChallengeMaxAttempts, "mfa_max_attempts": a.MFAMaxAttempts} {
		if p != nil && *p < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	if a.TOTPSkew != nil && (*a.TOTPSkew < 0 || *a.TOTPSkew > 3) {
		return errors.New("totp_skew must be between 0 and 3")
	}
	if time.Duration(a.Leeway) > 30*time.Second {
		return errors.New("leeway must be at most 30s")
	}
	if a.CookieSameSite == "none" && a.CookieInsecure {
		return errors.New("cookie_samesite none needs Secure cookies (browsers drop a SameSite=None cookie without Secure): remove cookie_insecure and serve the site over HTTPS, or use cookie_samesite lax")
	}
	if a.AccessCookie != "" {
		if err := (&http.Cookie{Name: a.AccessCookie, Value: "x"}).Valid(); err != nil || a.AccessCookie == web.RefreshCookie {
			return fmt.Errorf("access_cookie: %q is not a usable cookie name", a.AccessCookie)
		}
		if lower := strings.ToLower(a.AccessCookie); strings.HasPrefix(lower, "__host-") || strings.HasPrefix(lower, "__secure-") {
			return fmt.Errorf("access_cookie: write the name without a prefix (%q): the __Host- prefix is added when cookies are Secure", a.AccessCookie)
		}
	}
	if a.AccessTTL != 0 && a.RefreshTTL != 0 && a.AccessTTL > a.RefreshTTL {
		return errors.New("access_ttl must not be longer than refresh_ttl")
	}
	if p := a.ThrottleIPv6Prefix; p != nil && (*p < 1 || *p > 128) {
		return errors.New("throttle_ipv6_prefix must be between 1 and 128")
	}
	if err := validateSocial(a.Social); err != nil {
		return err
	}
	if err := checkCallbackURLs(a.SocialCallbackURLs); err != nil {
		return err
	}
	return account.ValidateThrottles(coreThrottles(a.Throttles))
}

// Start runs the background purge of expired rows and the mail sender (a
// sender kept from before a reload runs on).
func (a *App) Start() error {
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	a.done = make(chan struct{})
	go a.realm.svc.PurgeLoop(ctx, a.done)
	a.realm.mail.start()
	return nil
}

// Stop ends the background purge and waits for it, and lets go of the
// shared mail queue. In a reload the new app, provisioned before this Stop,
// holds the queue on; at shutdown the queue stops here, while the config's
// logs are still open, reporting each mail still queued as not sent. A
// reload to other mail settings hands the queued mails over to the new
// queue.
func (a *App) Stop() error {
	if a.stop != nil {
		a.stop()
		<-a.done
	}
	return a.mail.release()
}

// Cleanup lets go of the shared mail queue (when Stop did not run: a config
// that failed to load) and of the shared metrics.
func (a *App) Cleanup() error {
	return errors.Join(a.mail.release(), releaseMetrics(&a.metrics))
}

// provisionMail builds the mail transport and the templates, and takes
// the send queue for these settings: the one a previous config left
// running, or a new one.
func (rl *realm) provisionMail(c *MailConfig, repl *caddy.Replacer) (*mailLease, error) {
	var cfg MailConfig
	if c != nil {
		cfg = *c
	}
	var m mailer = logMailer{logger: rl.logger}
	if cfg.Transport != "smtp" {
		rl.logger.Info("mail log: mails, links included, are written to this log and not sent; configure `mail smtp` to send them")
	}
	if cfg.Transport == "smtp" {
		cfg.Address = repl.ReplaceAll(cfg.Address, "")
		cfg.Username = repl.ReplaceAll(cfg.Username, "")
		cfg.Password = repl.ReplaceAll(cfg.Password, "")
		cfg.From = repl.ReplaceAll(cfg.From, "")
		sm, err := mail.NewSMTP(mail.SMTPConfig{Address: cfg.Address, From: cfg.From, Username: cfg.Username, Password: cfg.Password, TLS: cfg.TLS})
		if err != nil {
			return nil, err
		}
		m = sm
	}
	dir := repl.ReplaceAll(cfg.Templates, "")
	if err := web.CheckTemplateDir(dir); err != nil {
		return nil, fmt.Errorf("mail %v", err)
	}
	tmpl, err := mail.Load(dir, account.MailKinds[:], account.MailData{SiteName: "Example", Email: "user@example.com", Link: "https://example.com/", Expires: "1 hour"})
	if err != nil {
		return nil, err
	}
	rl.mails = tmpl
	lease, err := acquireMailQueue(mailSettingsKey(cfg),
		&mailUser{mailer: m, logger: rl.logger.Named("mail"), metrics: rl.metrics, tag: rl.emailTag})
	if err != nil {
		return nil, err
	}
	rl.mail = lease.queue
	return lease, nil
}

// checkPublicURL accepts an absolute http(s) URL with a host and nothing
// after the path.
func checkPublicURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("want an absolute http(s) URL such as https://example.com, got %q", s)
	}
	return nil
}

// expandSecret expands the placeholders of a secret option. An option that
// is set but expands to nothing (an unset environment variable, an empty
// file) is an error, never a silent fallback to a generated key.
func expandSecret(repl *caddy.Replacer, name, raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	v := repl.ReplaceAll(raw, "")
	if strings.TrimSpace(v) == "" {
		return "", fmt.Errorf("%s is set but expands to an empty value (is the environment variable or file there?)", name)
	}
	return v, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
