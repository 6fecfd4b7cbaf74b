package caddyauth

import (
	"encoding/json"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzCaddyfile feeds the global option and both directives to their
// Caddyfile parsers: each either fails with an error or gives a config
// that marshals and validates (or fails validation) without panicking.
func FuzzCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"jwt_allauth {\n\tstore sqlite /tmp/x.db\n\tsigning_key {env.JWT}\n\taccess_ttl 5m\n}",
		"jwt_allauth {\n\tthrottle login_ip 10 1m\n\tthrottle login_email off\n}",
		"jwt_allauth {\n\trate_limit memory\n\tmfa_totp_mode optional\n\ttotp_skew 1\n}",
		"jwt_allauth {\n\trate_limit redis redis://127.0.0.1:6379/0 {\n\t\ttimeout 100ms\n\t}\n}",
		"jwt_allauth {\n\tmfa_max_attempts -3\n\ttotp_issuer \"\"\n}",
		"jwt_allauth {\n\tthrottle login_ip 1 1m\n\tthrottle login_ip 2 1m\n}",
		"jwt_allauth extra {\n}",
		"jwt_allauth {\n\tprefix /auth\n}",
		"jwt_allauth_guard {\n\troles 0 900 1000\n\theader X-User-Id user_id\n\tsession_check\n}",
		"jwt_allauth {\n\tstore",
		"jwt_allauth {\n\t{\n}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		// Caddy refuses what its lexer cannot read before any module
		// sees it (NewTestDispenser would exit the process on it).
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		d := func() *caddyfile.Dispenser { return caddyfile.NewDispenser(tokens) }
		var a App
		if err := a.UnmarshalCaddyfile(d()); err == nil {
			if _, err := json.Marshal(&a); err != nil {
				t.Fatalf("app config does not marshal: %v", err)
			}
			_ = a.Validate()
		}
		var h Handler
		if err := h.UnmarshalCaddyfile(d()); err == nil {
			_ = h.Validate()
		}
		var g Guard
		if err := g.UnmarshalCaddyfile(d()); err == nil {
			_ = g.Validate()
		}
	})
}
