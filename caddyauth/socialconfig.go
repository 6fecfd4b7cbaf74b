package caddyauth

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/social"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/web"
)

// SocialProvider is one identity provider of social login (`social` in
// the global option). The OpenID Connect kinds are discovered from their
// issuer: `google`, `microsoft` (the tenant's issuer), `gitlab` and
// `oidc` (any issuer URL). Discovery and keys are fetched on first use,
// so a provider that is down never stops a start. The sign-in flows that
// use these providers are not served yet: configured providers are
// checked at start and listed at {prefix}/social/providers/.
type SocialProvider struct {
	// The provider's id in paths, e.g. `google` or `company`: lower-case
	// letters, digits, `-` and `_`.
	ID string `json:"id"`
	// google, microsoft, gitlab or oidc. Default: the id.
	Kind string `json:"kind,omitempty"`
	// The issuer URL (oidc only): https, or http on a loopback address.
	Issuer string `json:"issuer,omitempty"`
	// The Microsoft tenant (microsoft only): a tenant id or domain.
	// Required: a multi-tenant issuer cannot be checked.
	Tenant string `json:"tenant,omitempty"`
	// The client registered at the provider. Give the secret as a
	// placeholder such as `{env.GOOGLE_CLIENT_SECRET}`.
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
	// The name shown on buttons. Default: the kind's, or the id.
	Name string `json:"name,omitempty"`
	// The scopes asked for. Default: openid email profile.
	Scopes []string `json:"scopes,omitempty"`
}

// socialKinds are the OpenID Connect providers known by name, with their
// issuer and display name.
var socialKinds = map[string]struct{ issuer, name string }{
	"google":    {"https://accounts.google.com", "Google"},
	"microsoft": {"https://login.microsoftonline.com/%s/v2.0", "Microsoft"},
	"gitlab":    {"https://gitlab.com", "GitLab"},
	"oidc":      {"", ""},
}

var socialIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// issuer is the provider's issuer URL.
func (p SocialProvider) issuer() string {
	switch p.Kind {
	case "oidc":
		return p.Issuer
	case "microsoft":
		return fmt.Sprintf(socialKinds["microsoft"].issuer, p.Tenant)
	}
	return socialKinds[p.Kind].issuer
}

// validateSocial checks the providers without any I/O.
func validateSocial(providers []SocialProvider) error {
	seen := map[string]bool{}
	for _, p := range providers {
		if !socialIDPattern.MatchString(p.ID) {
			return fmt.Errorf("social %q: an id is 1 to 32 lower-case letters, digits, '-' or '_'", p.ID)
		}
		if seen[p.ID] {
			return fmt.Errorf("social %s: the id is used twice", p.ID)
		}
		seen[p.ID] = true
		if _, ok := socialKinds[p.Kind]; !ok {
			kinds := make([]string, 0, len(socialKinds))
			for k := range socialKinds {
				kinds = append(kinds, k)
			}
			slices.Sort(kinds)
			return fmt.Errorf("social %s: unknown kind %q (want one of %s; github and apple are not supported yet)", p.ID, p.Kind, strings.Join(kinds, ", "))
		}
		if p.ClientID == "" {
			return fmt.Errorf("social %s: client_id is required", p.ID)
		}
		switch {
		case p.Kind == "oidc" && p.Issuer == "":
			return fmt.Errorf("social %s: an oidc provider needs its issuer URL: social %s oidc https://login.example.com", p.ID, p.ID)
		case p.Kind != "oidc" && p.Issuer != "":
			return fmt.Errorf("social %s: the issuer of %s is known; give an issuer only with kind oidc", p.ID, p.Kind)
		case p.Kind == "microsoft" && (p.Tenant == "" || strings.ContainsAny(p.Tenant, "/?#")):
			return fmt.Errorf("social %s: microsoft needs `tenant <tenant id or domain>`", p.ID)
		case p.Kind != "microsoft" && p.Tenant != "":
			return fmt.Errorf("social %s: tenant is a microsoft option", p.ID)
		}
		if err := social.CheckIssuer(p.issuer()); err != nil {
			return fmt.Errorf("social %s: %v", p.ID, err)
		}
	}
	return nil
}

// socialList is the list the providers endpoint shows, placeholders
// expanded. The providers' clients (caddyauth/social) are made when the
// sign-in flows that call them are served.
func socialList(providers []SocialProvider, repl *caddy.Replacer) []web.SocialProvider {
	var listed []web.SocialProvider
	for _, p := range providers {
		name := p.Name
		if name == "" {
			name = socialKinds[p.Kind].name
		}
		if name == "" {
			name = p.ID
		}
		listed = append(listed, web.SocialProvider{ID: p.ID, Name: name, ClientID: repl.ReplaceAll(p.ClientID, "")})
	}
	return listed
}

// unmarshalSocial reads one provider:
//
//	social <id> [<kind> [<issuer>]] {
//		client_id <id>
//		client_secret <secret>
//		name <display name>
//		scopes <scope...>
//		tenant <tenant>
//	}
func (a *App) unmarshalSocial(d *caddyfile.Dispenser) error {
	var p SocialProvider
	if !d.NextArg() {
		return d.ArgErr()
	}
	p.ID = d.Val()
	p.Kind = p.ID
	if d.NextArg() {
		p.Kind = d.Val()
		if d.NextArg() {
			p.Issuer = d.Val()
		}
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	fields := map[string]*string{"client_id": &p.ClientID, "client_secret": &p.ClientSecret, "name": &p.Name, "tenant": &p.Tenant}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt == "scopes" {
			if p.Scopes = d.RemainingArgs(); len(p.Scopes) == 0 {
				return d.ArgErr()
			}
			continue
		}
		dst := fields[opt]
		if dst == nil {
			return d.Errf("unrecognized social option '%s'", opt)
		}
		if !d.AllArgs(dst) {
			return d.ArgErr()
		}
	}
	if err := validateSocial(append(slices.Clone(a.Social), p)); err != nil {
		return d.Err(err.Error())
	}
	a.Social = append(a.Social, p)
	return nil
}
