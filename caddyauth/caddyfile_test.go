package caddyauth

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/web"
)

func TestAppCaddyfileErrors(t *testing.T) {
	cases := []struct{ input, want string }{
		{"jwt_allauth extra", "wrong argument count"},
		{"jwt_allauth {\n bogus 1\n}", "unrecognized jwt_allauth option 'bogus'"},
		{"jwt_allauth {\n access_ttl\n}", "wrong argument count"},
		{"jwt_allauth {\n access_ttl soon\n}", "access_ttl"},
		{"jwt_allauth {\n signing_key a b\n}", "wrong argument count"},
		{"jwt_allauth {\n mfa_max_attempts ten\n}", "not an integer"},
		{"jwt_allauth {\n store nosuchdb x\n}", "jwt_allauth.stores.nosuchdb"},
		{"jwt_allauth {\n rate_limit\n}", "wrong argument count"},
		{"jwt_allauth {\n throttle login_ip 0 1m\n}", "throttle login_ip off"},
		{"jwt_allauth {\n record_user_agent\n}", "record_user_agent: want on or off"},
		{"jwt_allauth {\n record_user_agent no\n}", "record_user_agent: want on or off"},
		{"jwt_allauth {\n record_user_agent off on\n}", "record_user_agent: want on or off"},
	}
	for _, tc := range cases {
		var a App
		err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.input, err, tc.want)
		}
	}
}

func TestAppCaddyfileValues(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`jwt_allauth {
		signing_key {env.K}
		access_ttl 15m
		refresh_token body
		mfa_challenge_max_attempts 0
		totp_issuer ""
		cookie_insecure
		access_cookie session
		record_user_agent off
		pat_max_ttl 90d
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.PATMaxTTL != caddy.Duration(90*24*time.Hour) {
		t.Fatalf("pat_max_ttl 90d parsed as %v", a.PATMaxTTL)
	}
	if a.RecordUserAgent == nil || *a.RecordUserAgent {
		t.Fatalf("record_user_agent off parsed as %v", a.RecordUserAgent)
	}
	if a.SigningKey != "{env.K}" || a.AccessTTL != caddy.Duration(15*60e9) || a.RefreshToken != "body" ||
		a.MFAChallengeMaxAttempts == nil || *a.MFAChallengeMaxAttempts != 0 || a.TOTPIssuer == nil || *a.TOTPIssuer != "" || !a.CookieInsecure || a.AccessCookie != "session" {
		t.Fatalf("parsed %+v", a)
	}
}

func TestAppValidate(t *testing.T) {
	neg := -1
	skew := 5
	cases := []struct {
		app  App
		want string
	}{
		{App{RefreshToken: "header"}, "refresh_token"},
		{App{MFATOTPMode: "sometimes"}, "mfa_totp_mode"},
		{App{EmailVerification: "yes"}, "email_verification"},
		{App{Registration: "public"}, "registration"},
		{App{Leeway: caddy.Duration(31e9)}, "leeway"},
		{App{AccessTTL: caddy.Duration(2e9), RefreshTTL: caddy.Duration(1e9)}, "access_ttl"},
		{App{MFAMaxAttempts: &neg}, "mfa_max_attempts"},
		{App{TOTPSkew: &skew}, "totp_skew"},
		{App{AccessTTL: caddy.Duration(-1)}, "access_ttl"},
		{App{ReauthWindow: caddy.Duration(-1)}, "reauth_window"},
		{App{PATMaxTTL: caddy.Duration(-1)}, "pat_max_ttl"},
		{App{PATMaxTTL: caddy.Duration(time.Hour)}, "pat_max_ttl"},
		{App{AccessCookie: "a b"}, "access_cookie"},
		{App{AccessCookie: "refresh_token"}, "access_cookie"},
		{App{AccessCookie: "__Host-session"}, "without a prefix"},
		{App{AccessCookie: "__secure-session"}, "without a prefix"},
		{App{CookieSameSite: "None"}, "cookie_samesite"},
		{App{CookieSameSite: "none", CookieInsecure: true}, "needs Secure cookies"},
	}
	for _, tc := range cases {
		err := tc.app.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want it to mention %q", tc.app, err, tc.want)
		}
	}
	if err := (&App{}).Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestHandlerAndGuardCaddyfile(t *testing.T) {
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwt_allauth {\n prefix /api/auth\n}")); err != nil || h.Prefix != "/api/auth" {
		t.Fatalf("prefix: %v %q", err, h.Prefix)
	}
	for input, want := range map[string]string{
		"jwt_allauth /auth":             "wrong argument count",
		"jwt_allauth {\n prefix\n}":     "wrong argument count",
		"jwt_allauth {\n prefixe /a\n}": "unrecognized",
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v", input, err)
		}
	}
	h = Handler{}
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwt_allauth {\n templates /etc/caddy/pages\n pages off\n}")); err != nil || h.Templates != "/etc/caddy/pages" || !h.DisablePages {
		t.Fatalf("templates, pages: %v %+v", err, h)
	}
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwt_allauth {\n pages maybe\n}")); err == nil {
		t.Error("pages maybe accepted")
	}
	for _, p := range []string{"auth", "/auth/*", "/a{b}"} {
		if err := (&Handler{Prefix: p}).Validate(); err == nil {
			t.Errorf("prefix %q validated", p)
		}
	}

	var g Guard
	err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwt_allauth_guard {\n roles 0 300\n header X-Uid user_id\n session_check\n access_tokens\n}"))
	if err != nil || len(g.Roles) != 2 || g.Roles[1] != 300 || g.Headers["X-Uid"] != "user_id" || !g.SessionCheck || !g.AccessTokens {
		t.Fatalf("guard: %v %+v", err, g)
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	for input, want := range map[string]string{
		"jwt_allauth_guard {\n roles admin\n}":      "not an integer",
		"jwt_allauth_guard {\n roles\n}":            "wrong argument count",
		"jwt_allauth_guard {\n header X-Uid\n}":     "wrong argument count",
		"jwt_allauth_guard {\n session_check 1\n}":  "wrong argument count",
		"jwt_allauth_guard {\n access_tokens on\n}": "wrong argument count",
		"jwt_allauth_guard {\n cookie x\n}":         "wrong argument count",
		"jwt_allauth_guard {\n redirect /a /b\n}":   "wrong argument count",
		"jwt_allauth_guard {\n cookies\n}":          "unrecognized",
	} {
		var g Guard
		if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v", input, err)
		}
	}
	for input, want := range map[string]Guard{
		"jwt_allauth_guard {\n cookie\n}":                       {GuardConfig: web.GuardConfig{Cookie: true}},
		"jwt_allauth_guard {\n redirect\n}":                     {GuardConfig: web.GuardConfig{Redirect: "/auth/page/login"}},
		"jwt_allauth_guard {\n redirect /account/page/login\n}": {GuardConfig: web.GuardConfig{Redirect: "/account/page/login"}},
	} {
		var g Guard
		if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil || g.Cookie != want.Cookie || g.Redirect != want.Redirect {
			t.Errorf("%q: %v %+v", input, err, g)
		}
		if err := g.Validate(); err != nil {
			t.Errorf("%q: %v", input, err)
		}
	}
	for _, bad := range []string{"login", "//evil.example/login", "https://evil.example/login", "/auth/page/login?x=1", "/", "/a\\b"} {
		if err := (&Guard{GuardConfig: web.GuardConfig{Redirect: bad}}).Validate(); err == nil {
			t.Errorf("redirect %q validated", bad)
		}
	}
	if err := (&Guard{GuardConfig: web.GuardConfig{Headers: map[string]string{"X-Uid": "password"}}}).Validate(); err == nil {
		t.Error("unknown claim validated")
	}
	if err := (&Guard{GuardConfig: web.GuardConfig{Headers: map[string]string{"authorization": "user_id"}}}).Validate(); err == nil {
		t.Error("the Authorization header could be overwritten")
	}
	if err := (&Guard{GuardConfig: web.GuardConfig{Headers: map[string]string{"X Uid": "user_id"}}}).Validate(); err == nil {
		t.Error("bad header name validated")
	}
}

// TestSiteURL: a site block's address becomes the base of mailed links
// only when it names exactly one host.
func TestSiteURL(t *testing.T) {
	for _, tc := range []struct {
		keys      []string
		httpPort  any
		httpsPort any
		want      string
	}{
		{[]string{"auth.example.com"}, nil, nil, "https://auth.example.com"},
		{[]string{"https://auth.example.com"}, nil, nil, "https://auth.example.com"},
		{[]string{"auth.example.com:8443"}, nil, nil, "https://auth.example.com:8443"},
		{[]string{"auth.example.com:443"}, nil, nil, "https://auth.example.com"},
		{[]string{"auth.example.com/app"}, nil, nil, "https://auth.example.com"},
		{[]string{"http://localhost:8080"}, nil, nil, "http://localhost:8080"},
		{[]string{"http://localhost"}, nil, nil, "http://localhost"},
		{[]string{"http://localhost"}, 8080, nil, "http://localhost:8080"},
		{[]string{"localhost:8080"}, 8080, nil, "http://localhost:8080"},
		{[]string{"example.com:80"}, nil, nil, "http://example.com"},
		{[]string{"example.com"}, nil, 8443, "https://example.com:8443"},
		{[]string{"http://127.0.0.1:9000"}, nil, nil, "http://127.0.0.1:9000"},
		{[]string{"http://[::1]:9000"}, nil, nil, "http://[::1]:9000"},
		{[]string{"https://[::1]"}, nil, nil, "https://[::1]"},
		{[]string{"a.example.com", "b.example.com"}, nil, nil, ""},
		{[]string{"http://example.com", "https://example.com"}, nil, nil, ""},
		{[]string{":8080"}, nil, nil, ""},
		{[]string{"http://"}, nil, nil, ""},
		{[]string{"*.example.com"}, nil, nil, ""},
		{[]string{"{$SITE}"}, nil, nil, ""},
		{[]string{"{env.SITE}"}, nil, nil, ""},
		{[]string{"&(named)"}, nil, nil, ""},
		{nil, nil, nil, ""},
	} {
		if got := siteURL(tc.keys, tc.httpPort, tc.httpsPort); got != tc.want {
			t.Errorf("siteURL(%q, %v, %v) = %q, want %q", tc.keys, tc.httpPort, tc.httpsPort, got, tc.want)
		}
	}
}

func TestHandlerValidateSiteURL(t *testing.T) {
	for site, ok := range map[string]bool{"": true, "https://auth.example.com": true, "http://localhost:8080/": true,
		"ftp://example.com": false, "example.com": false, "https://example.com/?q=1": false} {
		err := (&Handler{Prefix: "/auth", SiteURL: site}).Validate()
		if (err == nil) != ok {
			t.Errorf("site_url %q: error %v", site, err)
		}
	}
}
