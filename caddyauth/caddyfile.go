package caddyauth

import (
	"net"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/web"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("jwt_allauth", parseGlobalOption)
	httpcaddyfile.RegisterDirective("jwt_allauth", parseHandler)
	httpcaddyfile.RegisterHandlerDirective("jwt_allauth_guard", parseGuard)
	// The endpoints come before basic_auth and every responding directive,
	// so they stay reachable without a token; the guard comes after it, so
	// it protects whatever responds later in the route.
	httpcaddyfile.RegisterDirectiveOrder("jwt_allauth", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterDirectiveOrder("jwt_allauth_guard", httpcaddyfile.After, "basic_auth")
}

// parseGlobalOption sets up the jwt_allauth app. Syntax:
//
//	jwt_allauth {
//		store sqlite [<path>] | postgres <dsn>
//		signing_key <secret>
//		secrets_key <secret>
//		issuer <iss>
//		audience <aud>
//		access_ttl <duration>
//		refresh_ttl <duration>
//		session_lifetime <duration>
//		leeway <duration>
//		refresh_token cookie|body
//		cookie_insecure
//		cookie_samesite lax|strict|none
//		session_check
//		record_user_agent on|off
//		reauth_window <duration>
//		pat_max_ttl <duration>
//		mfa_totp_mode disabled|optional|required
//		mfa_challenge_ttl <duration>
//		mfa_challenge_max_attempts <n>
//		mfa_max_attempts <n>
//		mfa_lockout <duration>
//		totp_skew <steps>
//		totp_issuer <name>
//		site_name <name>
//		email_verification none|optional|mandatory
//		registration open|invitations|admin_managed|closed
//		public_url <url>
//		invite_roles <int...>
//		admin_roles <int...>
//		email_confirmation_ttl <duration>
//		password_reset_ttl <duration>
//		email_verified_redirect <url>
//		password_reset_redirect <url>
//		password_set_redirect <url>
//		password_reset_request_url <url>
//		mail log [{
//			templates <dir>
//		}]
//		mail smtp <host:port> {
//			username <user>
//			password <password>
//			from <address>
//			tls starttls|implicit|opportunistic|none
//			templates <dir>
//		}
//		access_cookie <name>
//		rate_limit memory|redis <url> [{ timeout <duration>; key_prefix <prefix> }]
//		throttle <name> <limit> <window> | throttle <name> off
//		throttle_ipv6_prefix <bits>
//		social <id> [<kind> [<issuer>]] { client_id …; client_secret …; name …; scopes …; tenant …; link_by_email on|off; signup on|off }
//		social_callback_urls <url...>
//		passkeys off|second_factor|passwordless
//		passkey_rp_id <host>
//		passkey_origins <origin...>
//	}
//
// `throttle` may be repeated, once per name (see Throttle for the names).
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "jwt_allauth", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile reads the global option's block.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if d.NextArg() {
		return d.ArgErr()
	}
	texts := map[string]*string{
		"signing_key":        &a.SigningKey,
		"secrets_key":        &a.SecretsKey,
		"issuer":             &a.Issuer,
		"audience":           &a.Audience,
		"refresh_token":      &a.RefreshToken,
		"mfa_totp_mode":      &a.MFATOTPMode,
		"passkeys":           &a.Passkeys,
		"passkey_rp_id":      &a.PasskeyRPID,
		"site_name":          &a.SiteName,
		"email_verification": &a.EmailVerification,
		"registration":       &a.Registration,
		"public_url":         &a.PublicURL,

		"email_verified_redirect":    &a.EmailVerifiedRedirect,
		"password_reset_redirect":    &a.PasswordResetRedirect,
		"password_set_redirect":      &a.PasswordSetRedirect,
		"password_reset_request_url": &a.PasswordResetRequestURL,
		"access_cookie":              &a.AccessCookie,
		"cookie_samesite":            &a.CookieSameSite,
	}
	durations := map[string]*caddy.Duration{
		"access_ttl":        &a.AccessTTL,
		"refresh_ttl":       &a.RefreshTTL,
		"session_lifetime":  &a.SessionLifetime,
		"leeway":            &a.Leeway,
		"mfa_challenge_ttl": &a.MFAChallengeTTL,
		"mfa_lockout":       &a.MFALockout,
		"reauth_window":     &a.ReauthWindow,
		"pat_max_ttl":       &a.PATMaxTTL,

		"email_confirmation_ttl": &a.EmailConfirmationTTL,
		"password_reset_ttl":     &a.PasswordResetTTL,
	}
	ints := map[string]**int{
		"mfa_challenge_max_attempts": &a.MFAChallengeMaxAttempts,
		"mfa_max_attempts":           &a.MFAMaxAttempts,
		"totp_skew":                  &a.TOTPSkew,
		"throttle_ipv6_prefix":       &a.ThrottleIPv6Prefix,
	}
	flags := map[string]*bool{
		"cookie_insecure": &a.CookieInsecure,
		"session_check":   &a.SessionCheck,
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch {
		case texts[opt] != nil:
			if !d.NextArg() {
				return d.ArgErr()
			}
			*texts[opt] = d.Val()
		case durations[opt] != nil:
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			*durations[opt] = caddy.Duration(dur)
		case ints[opt] != nil:
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil {
				return d.Errf("%s: %q is not an integer", opt, d.Val())
			}
			*ints[opt] = &n
		case flags[opt] != nil:
			*flags[opt] = true
		case opt == "record_user_agent":
			var v string
			if !d.AllArgs(&v) || (v != "on" && v != "off") {
				return d.Errf("record_user_agent: want on or off")
			}
			on := v == "on"
			a.RecordUserAgent = &on
			continue
		case opt == "totp_issuer":
			if !d.NextArg() {
				return d.ArgErr()
			}
			v := d.Val()
			a.TOTPIssuer = &v
		case opt == "invite_roles":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.InviteRoles = a.InviteRoles[:0]
			for _, arg := range args {
				n, err := strconv.Atoi(arg)
				if err != nil {
					return d.Errf("invite_roles: %q is not an integer", arg)
				}
				a.InviteRoles = append(a.InviteRoles, n)
			}
			continue
		case opt == "admin_roles":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.AdminRoles = []int{}
			for _, arg := range args {
				n, err := strconv.Atoi(arg)
				if err != nil {
					return d.Errf("admin_roles: %q is not an integer", arg)
				}
				a.AdminRoles = append(a.AdminRoles, n)
			}
			continue
		case opt == "mail":
			if err := a.unmarshalMail(d); err != nil {
				return err
			}
			continue
		case opt == "social":
			if err := a.unmarshalSocial(d); err != nil {
				return err
			}
			continue
		case opt == "passkey_origins":
			if a.PasskeyOrigins = d.RemainingArgs(); len(a.PasskeyOrigins) == 0 {
				return d.ArgErr()
			}
			continue
		case opt == "social_callback_urls":
			if a.SocialCallbackURLs = d.RemainingArgs(); len(a.SocialCallbackURLs) == 0 {
				return d.ArgErr()
			}
			if err := checkCallbackURLs(a.SocialCallbackURLs); err != nil {
				return d.Err(err.Error())
			}
		case opt == "store":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "jwt_allauth.stores."+name)
			if err != nil {
				return err
			}
			a.StoreRaw = caddyconfig.JSONModuleObject(unm, "backend", name, nil)
			continue
		case opt == "throttle":
			var name string
			var t Throttle
			args := d.RemainingArgs()
			switch {
			case len(args) == 2 && args[1] == "off":
				name = args[0]
			case len(args) == 3:
				name = args[0]
				n, err := strconv.Atoi(args[1])
				if err != nil || n < 1 {
					return d.Errf("throttle %s: limit %q is not a whole number of at least 1 (write `throttle %s off` to turn it off)", name, args[1], name)
				}
				dur, err := caddy.ParseDuration(args[2])
				if err != nil || dur <= 0 {
					return d.Errf("throttle %s: window %q is not a positive duration", name, args[2])
				}
				t = Throttle{Limit: n, Window: caddy.Duration(dur)}
			default:
				return d.Errf("throttle: want `throttle <name> <limit> <window>` or `throttle <name> off`")
			}
			if _, known := account.DefaultThrottles[name]; !known {
				return d.Errf("throttle: unknown name %q", name)
			}
			if _, dup := a.Throttles[name]; dup {
				return d.Errf("throttle %s: given twice", name)
			}
			if a.Throttles == nil {
				a.Throttles = map[string]Throttle{}
			}
			a.Throttles[name] = t
			continue
		case opt == "rate_limit":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			if name == "memory" {
				a.LimiterRaw = nil
				break
			}
			unm, err := caddyfile.UnmarshalModule(d, "jwt_allauth.rate_limiters."+name)
			if err != nil {
				return err
			}
			a.LimiterRaw = caddyconfig.JSONModuleObject(unm, "backend", name, nil)
			continue
		default:
			return d.Errf("unrecognized jwt_allauth option '%s'", opt)
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

// unmarshalMail reads `mail log [{...}]` or `mail smtp <host:port> {...}`.
func (a *App) unmarshalMail(d *caddyfile.Dispenser) error {
	mc := &MailConfig{}
	if !d.NextArg() {
		return d.ArgErr()
	}
	mc.Transport = d.Val()
	switch mc.Transport {
	case "log":
	case "smtp":
		if !d.NextArg() {
			return d.ArgErr()
		}
		mc.Address = d.Val()
	default:
		return d.Errf("mail: unknown transport '%s' (want log or smtp)", mc.Transport)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	fields := map[string]*string{"templates": &mc.Templates}
	if mc.Transport == "smtp" {
		fields["username"] = &mc.Username
		fields["password"] = &mc.Password
		fields["from"] = &mc.From
		fields["tls"] = &mc.TLS
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dst := fields[d.Val()]
		if dst == nil {
			return d.Errf("unrecognized mail %s option '%s'", mc.Transport, d.Val())
		}
		if !d.AllArgs(dst) {
			return d.ArgErr()
		}
	}
	a.Mail = mc
	return nil
}

// parseHandler sets up the endpoints. Syntax:
//
//	jwt_allauth [<matcher>] {
//		prefix <path>
//		templates <dir>
//		pages on|off
//		cors <origin...>
//	}
//
// The prefix is a subdirective because a bare first token starting with
// `/` is a matcher in Caddy; such a path matcher is refused, since it would
// hide every endpoint but one path. The handler's site_url is the site
// block's address when the block names exactly one host (see siteURL).
func parseHandler(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	h.Next() // the directive name
	if h.NextArg() && strings.HasPrefix(h.Val(), "/") {
		return nil, h.Errf("jwt_allauth takes its path prefix as a subdirective (`jwt_allauth {\n\tprefix %s\n}`), not as a path matcher", h.Val())
	}
	h.Reset()
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	hd := new(Handler)
	if err := hd.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if !h.IsNamedRoute() {
		hd.SiteURL = siteURL(siteKeys(h), h.Option("http_port"), h.Option("https_port"))
	}
	return h.NewRoute(matcherSet, hd), nil
}

// siteKeys returns the addresses the directive's site block starts with.
// Caddy's Caddyfile helper keeps its block in an unexported field and
// offers no accessor, so they are read by reflection; nil if that field is
// not there (a Caddy that changed it), which leaves public_url required.
// The adapt goldens under testdata/caddyfile_adapt fail if that happens.
func siteKeys(h httpcaddyfile.Helper) []string {
	keys := reflect.ValueOf(h).FieldByName("parentBlock")
	if !keys.IsValid() || keys.Kind() != reflect.Struct {
		return nil
	}
	if keys = keys.FieldByName("Keys"); !keys.IsValid() || keys.Kind() != reflect.Slice {
		return nil
	}
	out := make([]string, 0, keys.Len())
	for i := range keys.Len() {
		text := keys.Index(i)
		if text.Kind() == reflect.Struct {
			text = text.FieldByName("Text")
		}
		if !text.IsValid() || text.Kind() != reflect.String {
			return nil
		}
		out = append(out, text.String())
	}
	return out
}

// siteURL is the public address of a site block that names exactly one
// host (`auth.example.com` is https://auth.example.com,
// `http://localhost:8080` itself), or "" for any other block: no host
// (`:8080`), a wildcard, a placeholder or anything else that is not a host
// name or an IP address, or several addresses. An address without a port
// gets the one Caddy listens on for its scheme (http_port, https_port);
// 80 for http and 443 for https are left out.
func siteURL(keys []string, httpPort, httpsPort any) string {
	if len(keys) != 1 {
		return ""
	}
	addr, err := httpcaddyfile.ParseAddress(keys[0])
	if err != nil || addr.Host == "" || strings.Trim(addr.Host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:") != "" {
		return ""
	}
	standard := map[string]string{"http": "80", "https": "443"}
	listen := map[string]string{"http": "80", "https": "443"}
	if p, ok := httpPort.(int); ok {
		listen["http"] = strconv.Itoa(p)
	}
	if p, ok := httpsPort.(int); ok {
		listen["https"] = strconv.Itoa(p)
	}
	scheme, port := addr.Scheme, addr.Port
	if scheme == "" {
		scheme = "https"
		if port == listen["http"] {
			scheme = "http"
		}
	}
	if _, known := standard[scheme]; !known {
		return ""
	}
	if port == "" {
		port = listen[scheme]
	}
	if port == standard[scheme] {
		return (&url.URL{Scheme: scheme, Host: hostOnly(addr.Host)}).String()
	}
	return (&url.URL{Scheme: scheme, Host: net.JoinHostPort(addr.Host, port)}).String()
}

// hostOnly brackets an IPv6 address for a URL.
func hostOnly(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// UnmarshalCaddyfile reads the handler directive.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "prefix":
			if !d.AllArgs(&h.Prefix) {
				return d.ArgErr()
			}
		case "templates":
			if !d.AllArgs(&h.Templates) {
				return d.ArgErr()
			}
		case "pages":
			var v string
			if !d.AllArgs(&v) || (v != "on" && v != "off") {
				return d.Errf("pages: want on or off")
			}
			h.DisablePages = v == "off"
		case "cors":
			var err error
			if h.CORS, err = parseOrigins(d, h.CORS); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized jwt_allauth option '%s'", d.Val())
		}
	}
	return nil
}

// parseGuard sets up the guard. Syntax:
//
//	jwt_allauth_guard [<matcher>] {
//		roles <int...>
//		header <Header-Name> <claim>
//		session_check
//		cookie
//		redirect [<login page>]
//		preflight answer|pass
//		cors <origin...>
//		access_tokens
//	}
//
// `redirect` without a path sends browsers to /auth/page/login, the login
// page of endpoints under the default prefix.
func parseGuard(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Guard)
	err := g.UnmarshalCaddyfile(h.Dispenser)
	return g, err
}

// UnmarshalCaddyfile reads the guard directive.
func (g *Guard) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "roles":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, a := range args {
				n, err := strconv.Atoi(a)
				if err != nil {
					return d.Errf("roles: %q is not an integer", a)
				}
				g.Roles = append(g.Roles, n)
			}
		case "header":
			var name, claim string
			if !d.AllArgs(&name, &claim) {
				return d.ArgErr()
			}
			if g.Headers == nil {
				g.Headers = map[string]string{}
			}
			g.Headers[name] = claim
		case "session_check":
			if d.NextArg() {
				return d.ArgErr()
			}
			g.SessionCheck = true
		case "cookie":
			if d.NextArg() {
				return d.ArgErr()
			}
			g.Cookie = true
		case "access_tokens":
			if d.NextArg() {
				return d.ArgErr()
			}
			g.AccessTokens = true
		case "redirect":
			g.Redirect = web.DefaultLoginPage
			if d.NextArg() {
				g.Redirect = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "preflight":
			if !d.AllArgs(&g.Preflight) || (g.Preflight != web.PreflightAnswer && g.Preflight != web.PreflightPass) {
				return d.Errf("preflight: want answer or pass")
			}
		case "cors":
			var err error
			if g.CORS, err = parseOrigins(d, g.CORS); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized jwt_allauth_guard option '%s'", d.Val())
		}
	}
	return nil
}

// parseOrigins reads the arguments of a `cors` line (it may be repeated)
// and refuses what is not an exact origin.
func parseOrigins(d *caddyfile.Dispenser, have []string) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	if err := web.CheckOrigins(args); err != nil {
		return nil, d.Err(err.Error())
	}
	return append(have, args...), nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*Guard)(nil)
)
